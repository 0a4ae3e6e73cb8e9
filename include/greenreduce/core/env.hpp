// greenreduce/core/env.hpp — typed, validated reads of environment variables.
//
// Every knob greenreduce takes from the environment goes through here, so a
// malformed value fails loudly with config_error naming the variable, the value
// and what was expected, instead of silently falling back to a default.
// Lookups go through an `env_source`, so tests (and embedders) can hand in a
// map instead of the process environment: no hidden global state.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "greenreduce/core/error.hpp"

namespace greenreduce {

/// Where variables are looked up: the process environment or a given map.
class env_source {
 public:
  using lookup_fn = std::function<std::optional<std::string>(const std::string&)>;

  /// The process environment (std::getenv).
  static env_source process() {
    return env_source([](const std::string& name) -> std::optional<std::string> {
      if (const char* v = std::getenv(name.c_str())) return std::string(v);
      return std::nullopt;
    });
  }
  /// A fixed set of variables, for tests and embedders.
  static env_source from_map(std::map<std::string, std::string> vars) {
    return env_source([vars = std::move(vars)](const std::string& name)
                          -> std::optional<std::string> {
      if (auto it = vars.find(name); it != vars.end()) return it->second;
      return std::nullopt;
    });
  }

  explicit env_source(lookup_fn fn) : fn_(std::move(fn)) {}

  /// The raw value, or nullopt when unset. An empty value counts as unset.
  std::optional<std::string> get(const std::string& name) const {
    auto v = fn_(name);
    if (v && v->empty()) return std::nullopt;
    return v;
  }

 private:
  lookup_fn fn_;
};

namespace detail {
[[noreturn]] inline void bad_env(const std::string& name, const std::string& value,
                                 const std::string& expected) {
  throw config_error(str(name, "=\"", value, "\" is invalid: expected ", expected));
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
}  // namespace detail

/// A string variable; `fallback` when unset.
inline std::string env_string(const env_source& env, const std::string& name,
                              std::string fallback = {}) {
  auto v = env.get(name);
  return v ? *v : std::move(fallback);
}

/// An integer in [lo, hi]; `fallback` when unset.
inline std::int64_t env_int(const env_source& env, const std::string& name, std::int64_t fallback,
                            std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
                            std::int64_t hi = std::numeric_limits<std::int64_t>::max()) {
  auto v = env.get(name);
  if (!v) return fallback;
  const std::string_view s = detail::trim(*v);
  std::int64_t out = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec == std::errc::result_out_of_range || (ec == std::errc() && (out < lo || out > hi)))
    detail::bad_env(name, *v, detail::str("an integer in [", lo, ", ", hi, "]"));
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty())
    detail::bad_env(name, *v, detail::str("an integer in [", lo, ", ", hi, "]"));
  return out;
}

/// A finite number in [lo, hi]; `fallback` when unset.
inline double env_double(const env_source& env, const std::string& name, double fallback,
                         double lo = -std::numeric_limits<double>::max(),
                         double hi = std::numeric_limits<double>::max()) {
  auto v = env.get(name);
  if (!v) return fallback;
  const std::string s(detail::trim(*v));
  const std::string expected = detail::str("a finite number in [", lo, ", ", hi, "]");
  if (s.empty()) detail::bad_env(name, *v, expected);
  char* end = nullptr;
  const double out = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(out) || out < lo || out > hi)
    detail::bad_env(name, *v, expected);
  return out;
}

/// A byte count with an optional suffix: K/M/G (powers of 1000) or KiB/MiB/GiB
/// (powers of 1024), case-insensitive, e.g. "64KiB", "1M", "4096".
inline std::uint64_t env_bytes(const env_source& env, const std::string& name,
                               std::uint64_t fallback,
                               std::uint64_t hi = std::numeric_limits<std::uint64_t>::max()) {
  auto v = env.get(name);
  if (!v) return fallback;
  const std::string_view s = detail::trim(*v);
  const std::string expected =
      detail::str("a byte count <= ", hi, " with an optional K, M, G, KiB, MiB or GiB suffix");
  std::uint64_t num = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), num);
  if (ec != std::errc() || s.empty()) detail::bad_env(name, *v, expected);
  std::string suffix(ptr, s.data() + s.size());
  for (char& c : suffix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::uint64_t mult = 1;
  if (suffix.empty() || suffix == "b") mult = 1;
  else if (suffix == "k" || suffix == "kb") mult = 1000ULL;
  else if (suffix == "m" || suffix == "mb") mult = 1000ULL * 1000;
  else if (suffix == "g" || suffix == "gb") mult = 1000ULL * 1000 * 1000;
  else if (suffix == "kib") mult = 1ULL << 10;
  else if (suffix == "mib") mult = 1ULL << 20;
  else if (suffix == "gib") mult = 1ULL << 30;
  else detail::bad_env(name, *v, expected);
  if (num > hi / mult) detail::bad_env(name, *v, expected);
  return num * mult;
}

/// A boolean: 1/0, true/false, yes/no, on/off (case-insensitive).
inline bool env_bool(const env_source& env, const std::string& name, bool fallback) {
  auto v = env.get(name);
  if (!v) return fallback;
  std::string s(detail::trim(*v));
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s == "1" || s == "true" || s == "yes" || s == "on") return true;
  if (s == "0" || s == "false" || s == "no" || s == "off") return false;
  detail::bad_env(name, *v, "one of 1, 0, true, false, yes, no, on, off");
}

/// One of a fixed set of words (exact match); `fallback` when unset.
inline std::string env_choice(const env_source& env, const std::string& name,
                              std::string fallback, std::initializer_list<std::string_view> options) {
  auto v = env.get(name);
  if (!v) return fallback;
  for (auto o : options)
    if (*v == o) return *v;
  std::string list;
  for (auto o : options) list += (list.empty() ? "" : ", ") + std::string(o);
  detail::bad_env(name, *v, "one of " + list);
}

}  // namespace greenreduce
