// examples/train/modes.hpp — the registry of training modes.
//
// Every mode lives in its own translation unit examples/train/modes_*.cpp
// (CMake builds every file of that name into train_demo) and registers itself
// with a namespace-scope `register_mode`:
//
//   static const register_mode reg{mode_spec{"int8", "ring allreduce, int8 gradients",
//                                            /*order=*/40, /*parameter_server=*/false,
//                                            /*by_default=*/true, run_int8}};
//
// So a new mode is one new file. `order` sorts the rows of the default run
// and of --help; `parameter_server` makes the run start the server rank(s)
// and the mode's function runs on them too (world.hpp). A mode's function
// runs on every process of the run and returns that process's outcome.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "greenreduce/core/error.hpp"

namespace greenreduce::examples {

struct rank_context;
struct rank_outcome;
struct demo_world;

struct mode_spec {
  using run_fn = rank_outcome (*)(rank_context&, demo_world&);
  std::string name;               ///< what --modes takes
  std::string summary;            ///< one line for --help
  int order = 0;                  ///< position in the default list and --help
  bool parameter_server = false;  ///< needs the server rank(s); run() runs there too
  bool by_default = true;         ///< in the default --modes list
  run_fn run = nullptr;

  mode_spec(std::string n, std::string s, int o, bool ps, bool def, run_fn f)
      : name(std::move(n)),
        summary(std::move(s)),
        order(o),
        parameter_server(ps),
        by_default(def),
        run(f) {}
};

/// Every registered mode, sorted by order then name.
inline std::vector<mode_spec>& mode_registry() {
  static std::vector<mode_spec> modes;
  return modes;
}

struct register_mode {
  explicit register_mode(mode_spec s) {
    auto& m = mode_registry();
    for (const auto& e : m)
      if (e.name == s.name)
        throw config_error("train_demo: mode \"" + s.name + "\" is registered twice");
    m.push_back(std::move(s));
    std::stable_sort(m.begin(), m.end(), [](const mode_spec& a, const mode_spec& b) {
      return a.order != b.order ? a.order < b.order : a.name < b.name;
    });
  }
};

/// The registered names, comma separated (for messages).
inline std::string mode_list() {
  std::string s;
  for (const auto& m : mode_registry()) s += (s.empty() ? "" : ", ") + m.name;
  return s;
}

/// The spec of `name`; config_error naming the valid modes otherwise.
inline const mode_spec& find_mode(std::string_view name) {
  for (const auto& m : mode_registry())
    if (m.name == name) return m;
  throw config_error("unknown mode \"" + std::string(name) + "\": expected one of " + mode_list());
}

/// `--modes` resolved against the registry: the default list when empty.
inline std::vector<std::string> resolve_modes(const std::vector<std::string>& asked) {
  std::vector<std::string> out;
  if (asked.empty()) {
    for (const auto& m : mode_registry())
      if (m.by_default) out.push_back(m.name);
    return out;
  }
  for (const auto& a : asked) (void)find_mode(a);
  return asked;
}

/// Whether any of `modes` needs parameter-server ranks.
inline bool needs_servers(const std::vector<std::string>& modes) {
  return std::any_of(modes.begin(), modes.end(),
                     [](const std::string& m) { return find_mode(m).parameter_server; });
}

}  // namespace greenreduce::examples
