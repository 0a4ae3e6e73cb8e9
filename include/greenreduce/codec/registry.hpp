// greenreduce/codec/registry.hpp — built-in codecs chosen by name at run time.
//
//   codec::any_codec c = codec::parse_codec("int8:bucket=256:stochastic");
//   std::visit([&](const auto& codec) { /* a template over the concrete codec */ }, c);
//
// A spec is a name followed by ':'-separated parameters, each `key=value` or a
// bare value for the codec's main parameter:
//
//   none | fp16 | bf16
//   int8[:bucket=N][:nearest|:stochastic]       bare number = bucket
//   ternary[:bucket=N][:clip=C]                 bare number = bucket (multiple of 256, 0 = tensor)
//   topk[:ratio=R|:k=N][:exact|:sampled]        bare number = ratio (default 0.01)
//   randomk[:ratio=R]                           bare number = ratio (default 0.01)
//   sign[:bucket=N]                             bare number = bucket
//   fp8[:e4m3|:e5m2][:bucket=N]                 bare number = bucket (also fp8_e4m3, fp8_e5m2)
//   qsgd[:levels=S][:bucket=N]                  bare number = levels (1..127, default 7)
//
// `parse_codec_list("none,int8:256")` splits on commas. Unknown names,
// parameters or values are config_errors that list what is accepted. Tools
// that take a codec from a command line or an environment variable
// (greenreduce-bench, GREENREDUCE_CODEC) go through here so they agree.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "greenreduce/codec/bf16.hpp"
#include "greenreduce/codec/fp16.hpp"
#include "greenreduce/codec/fp8.hpp"
#include "greenreduce/codec/int8.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/codec/qsgd.hpp"
#include "greenreduce/codec/randomk.hpp"
#include "greenreduce/codec/sign.hpp"
#include "greenreduce/codec/ternary.hpp"
#include "greenreduce/codec/topk.hpp"
#include "greenreduce/core/error.hpp"

namespace greenreduce::codec {

/// One of the built-in codecs, by value.
using any_codec = std::variant<none, fp16, bf16, int8, ternary, topk, randomk, sign, fp8, qsgd>;

/// The accepted spec grammar, for help texts and error messages.
inline constexpr std::string_view codec_spec_help =
    "none | fp16 | bf16 | int8[:bucket=N][:nearest|:stochastic] | "
    "ternary[:bucket=N][:clip=C] | topk[:ratio=R|:k=N][:exact|:sampled] | randomk[:ratio=R] | "
    "sign[:bucket=N] | fp8[:e4m3|:e5m2][:bucket=N] | qsgd[:levels=S][:bucket=N]";

namespace registry_detail {

struct param {
  std::string_view key;  // empty for a bare value
  std::string_view value;
};

inline std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t at = s.find(sep, start);
    out.push_back(
        s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

[[noreturn]] inline void bad(std::string_view spec, const std::string& why) {
  throw config_error(greenreduce::detail::str("codec spec \"", spec, "\": ", why,
                                              " (accepted: ", codec_spec_help, ")"));
}

inline std::size_t to_size(std::string_view spec, std::string_view v) {
  std::size_t out = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || ptr != v.data() + v.size() || v.empty())
    bad(spec, greenreduce::detail::str("\"", v, "\" is not a non-negative integer"));
  return out;
}

inline double to_double(std::string_view spec, std::string_view v) {
  const std::string str(v);
  char* end = nullptr;
  const double out = std::strtod(str.c_str(), &end);
  if (str.empty() || end != str.c_str() + str.size() || !std::isfinite(out))
    bad(spec, greenreduce::detail::str("\"", v, "\" is not a finite number"));
  return out;
}

}  // namespace registry_detail

/// Parses one codec spec (see the header comment).
inline any_codec parse_codec(std::string_view spec) {
  using namespace registry_detail;
  const auto parts = split(spec, ':');
  const std::string_view name = parts[0];
  std::vector<param> params;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const auto eq = parts[i].find('=');
    if (parts[i].empty()) bad(spec, "empty parameter");
    if (eq == std::string_view::npos)
      params.push_back({{}, parts[i]});
    else
      params.push_back({parts[i].substr(0, eq), parts[i].substr(eq + 1)});
  }
  auto no_params = [&](any_codec c) {
    if (!params.empty()) bad(spec, greenreduce::detail::str(name, " takes no parameters"));
    return c;
  };
  if (name == "none") return no_params(none{});
  if (name == "fp16") return no_params(fp16{});
  if (name == "bf16") return no_params(bf16{});
  if (name == "int8" || name == "int8_stochastic") {
    std::size_t bucket = int8::default_bucket;
    rounding mode = name == "int8" ? rounding::nearest : rounding::stochastic;
    for (const auto& p : params) {
      if (p.key.empty() && p.value == "stochastic")
        mode = rounding::stochastic;
      else if (p.key.empty() && p.value == "nearest")
        mode = rounding::nearest;
      else if (p.key.empty() || p.key == "bucket")
        bucket = to_size(spec, p.value);
      else if (p.key == "rounding" && (p.value == "nearest" || p.value == "stochastic"))
        mode = p.value == "nearest" ? rounding::nearest : rounding::stochastic;
      else
        bad(spec, greenreduce::detail::str("unknown int8 parameter \"", p.key, "=", p.value, "\""));
    }
    return int8(bucket, mode);
  }
  auto unknown = [&](const param& p) {
    bad(spec, greenreduce::detail::str("unknown ", name, " parameter \"", p.key,
                                       p.key.empty() ? "" : "=", p.value, "\""));
  };
  if (name == "ternary") {
    std::size_t bucket = ternary::default_bucket;
    float clip = ternary::default_clip;
    for (const auto& p : params) {
      if (p.key.empty() || p.key == "bucket")
        bucket = to_size(spec, p.value);
      else if (p.key == "clip")
        clip = static_cast<float>(to_double(spec, p.value));
      else
        unknown(p);
    }
    return ternary(bucket, clip);
  }
  if (name == "topk") {
    topk t = topk::ratio(0.01);
    bool sampled = false;
    for (const auto& p : params) {
      if (p.key.empty() && p.value == "sampled")
        sampled = true;
      else if (p.key.empty() && p.value == "exact")
        sampled = false;
      else if (p.key.empty() || p.key == "ratio")
        t = topk::ratio(to_double(spec, p.value));
      else if (p.key == "k")
        t = topk::count(to_size(spec, p.value));
      else
        unknown(p);
    }
    return sampled ? t.sampled() : t.exact();
  }
  if (name == "randomk") {
    double ratio = 0.01;
    for (const auto& p : params) {
      if (p.key.empty() || p.key == "ratio")
        ratio = to_double(spec, p.value);
      else
        unknown(p);
    }
    return randomk::ratio(ratio);
  }
  if (name == "sign") {
    std::size_t bucket = sign::default_bucket;
    for (const auto& p : params) {
      if (p.key.empty() || p.key == "bucket")
        bucket = to_size(spec, p.value);
      else
        unknown(p);
    }
    return sign(bucket);
  }
  if (name == "fp8" || name == "fp8_e4m3" || name == "fp8_e5m2") {
    fp8_format f = name == "fp8_e5m2" ? fp8_format::e5m2 : fp8_format::e4m3;
    std::size_t bucket = fp8::default_bucket;
    for (const auto& p : params) {
      if (p.key.empty() && (p.value == "e4m3" || p.value == "e5m2"))
        f = p.value == "e4m3" ? fp8_format::e4m3 : fp8_format::e5m2;
      else if (p.key.empty() || p.key == "bucket")
        bucket = to_size(spec, p.value);
      else
        unknown(p);
    }
    return fp8(f, bucket);
  }
  if (name == "qsgd") {
    std::size_t levels = qsgd::default_levels, bucket = qsgd::default_bucket;
    for (const auto& p : params) {
      if (p.key.empty() || p.key == "levels")
        levels = to_size(spec, p.value);
      else if (p.key == "bucket")
        bucket = to_size(spec, p.value);
      else
        unknown(p);
    }
    if (levels == 0 || levels > 127)
      bad(spec, greenreduce::detail::str("qsgd levels must be in [1, 127], got ", levels));
    return qsgd(static_cast<unsigned>(levels), bucket);
  }
  bad(spec, greenreduce::detail::str("unknown codec \"", name, "\""));
}

/// Parses a comma-separated list of codec specs.
inline std::vector<any_codec> parse_codec_list(std::string_view list) {
  std::vector<any_codec> out;
  for (auto spec : registry_detail::split(list, ','))
    if (!spec.empty()) out.push_back(parse_codec(spec));
  if (out.empty()) registry_detail::bad(list, "no codec named");
  return out;
}

/// The name a codec reports (codec.name()).
inline std::string codec_display_name(const any_codec& c) {
  return std::visit([](const auto& x) { return std::string(x.name()); }, c);
}

}  // namespace greenreduce::codec
