// examples/train/options.hpp — the command line of train_demo.
//
// parse() turns argv into a `demo_options` or throws config_error with a
// message that names the argument, what was expected and what was found; the
// program prints it with the usage text and exits with status 2.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "greenreduce/adaptive/ladder.hpp"
#include "greenreduce/core/error.hpp"

namespace greenreduce::examples {

struct straggler_spec {
  int rank = -1;        ///< -1: none
  double factor = 1.0;  ///< the rank's step takes factor x its compute time
};

/// --link-change FROM:TO:RATE: from FROM to TO (fractions of each mode's
/// steps) every worker's egress is shaped at RATE instead of --link's rate.
struct link_change_spec {
  double from = 0, to = 0;
  std::string rate;  ///< tc syntax (e.g. 100mbit); empty: no change
  bool active() const noexcept { return !rate.empty(); }
};

/// A tc rate (bit, kbit, mbit, gbit, tbit; as bench/netns.sh reads it) in bytes per second.
inline double tc_rate_bytes(const std::string& rate) {
  std::size_t digits = 0;
  while (digits < rate.size() && rate[digits] >= '0' && rate[digits] <= '9') ++digits;
  const std::string unit = rate.substr(digits);
  double scale = 0;
  if (unit == "bit") scale = 1.0 / 8;
  if (unit == "kbit") scale = 1e3 / 8;
  if (unit == "mbit") scale = 1e6 / 8;
  if (unit == "gbit") scale = 1e9 / 8;
  if (unit == "tbit") scale = 1e12 / 8;
  if (digits == 0 || digits > 12 || scale == 0)
    throw config_error(
        "a link rate must be digits and a tc unit (bit, kbit, mbit, gbit, tbit), "
        "e.g. 100mbit; got \"" +
        rate + "\"");
  const double bytes = std::stod(rate.substr(0, digits)) * scale;
  if (!(bytes >= 1)) throw config_error("the link rate \"" + rate + "\" is below 8 bit/s");
  return bytes;
}

struct demo_options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int np = 4;             ///< ranks to spawn; ignored (taken from the env) under a launcher
  bool np_given = false;  ///< --np was on the command line
  /// --modes as given; empty: every mode registered as a default (modes.hpp).
  std::vector<std::string> modes;
  int epochs = 5;
  int batch = 32;    ///< samples per rank per step (the global batch is np x batch)
  double lr = 0.05;  ///< SGD learning rate for the averaged gradient
  double momentum = 0.9;
  std::uint64_t seed = 1;
  std::size_t limit = 0;       ///< use only the first N training images (0: all)
  std::size_t test_limit = 0;  ///< evaluate on the first N test images (0: all)
  double topk_ratio = 0.05;    ///< kept fraction for topk and hybrid pushes
  int staleness = 4;           ///< SSP bound of the PS modes
  /// PS modes: epochs (may be fractional) served in sync consistency before
  /// the switch to SSP (ps::worker::change_consistency); 0: SSP from the
  /// start. Default 2 (of 5): measured, docs/train_demo.md.
  double ps_sync_warmup = 2;
  /// PS modes: a worker pushes the sum of this many steps' gradients, pulling
  /// before the first of them (fewer, larger pushes); 1: every step.
  int ps_push_every = 1;
  int servers = 1;  ///< parameter-server ranks of the PS modes (keys split over them)
  straggler_spec straggler;
  bool balance = false;
  std::string json, csv, plot;       ///< output files; plot without extension
  std::string plot_format = "auto";  ///< auto (png when gnuplot exists, else svg), png, svg
  std::string profile = "datacenter_ethernet";
  std::string link;              ///< --link RATE: ranks run in bench/netns.sh namespaces
  link_change_spec link_change;  ///< --link-change FROM:TO:RATE: a slower (or faster) phase
  double energy_budget = 0;      ///< adaptive mode: estimated J per step of the exchange, all ranks
  bool energy_min = false;       ///< adaptive mode: --energy-budget min, the cheapest allowed level
  std::string adaptive_ladder = "none,fp16,int8,ternary";  ///< adaptive mode: codec ladder
  double adaptive_guard = 0.2;  ///< adaptive mode: probe-loss rise the accuracy guard allows
  /// adaptive mode: the averaging periods (steps) the policy may use, 1 first
  /// and increasing (local SGD's period is the ring's staleness + 1).
  std::vector<std::uint32_t> adaptive_periods{1, 2, 4};
  bool progress = true;
};

inline constexpr const char* usage_text =
    "usage: train_demo [--data DIR] [--np N] [--modes LIST] [--epochs N] [--batch N]\n"
    "       [--lr X] [--momentum X] [--seed N] [--limit N] [--test-limit N]\n"
    "       [--topk-ratio X] [--staleness K] [--ps-sync-warmup EPOCHS] [--ps-push-every K]\n"
    "       [--servers S] [--straggler RANK:FACTOR] [--balance] [--json FILE] [--csv FILE]\n"
    "       [--plot PATH] [--plot-format auto|png|svg] [--profile NAME] [--link RATE]\n"
    "       [--link-change FROM:TO:RATE]\n"
    "       [--energy-budget J|min] [--adaptive-ladder LIST] [--adaptive-guard X]\n"
    "       [--adaptive-periods LIST] [--no-progress]\n"
    "--modes takes a comma-separated list of these (default: every default one):\n";

namespace options_detail {

inline double number(const std::string& opt, const std::string& v, double lo, double hi) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(x) || x < lo || x > hi)
    throw config_error(greenreduce::detail::str(opt, " expects a number in [", lo, ", ", hi,
                                                "], got \"", v, "\""));
  return x;
}

inline long long integer(const std::string& opt, const std::string& v, long long lo, long long hi) {
  long long x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || x < lo || x > hi)
    throw config_error(greenreduce::detail::str(opt, " expects an integer in [", lo, ", ", hi,
                                                "], got \"", v, "\""));
  return x;
}

}  // namespace options_detail

/// "RANK:FACTOR" with RANK >= 0 and FACTOR >= 1.
inline straggler_spec parse_straggler(const std::string& v) {
  const auto colon = v.find(':');
  if (colon == std::string::npos)
    throw config_error("--straggler expects RANK:FACTOR (e.g. 1:2), got \"" + v + "\"");
  straggler_spec s;
  s.rank =
      static_cast<int>(options_detail::integer("--straggler RANK", v.substr(0, colon), 0, 1 << 20));
  s.factor = options_detail::number("--straggler FACTOR", v.substr(colon + 1), 1.0, 1000.0);
  return s;
}

/// --adaptive-periods: comma-separated averaging periods in steps, starting
/// at 1 (every step: synchronous) and strictly increasing, at most 64.
inline std::vector<std::uint32_t> parse_periods(const std::string& v) {
  std::vector<std::uint32_t> out;
  std::size_t at = 0;
  while (at <= v.size()) {
    const auto comma = std::min(v.find(',', at), v.size());
    out.push_back(static_cast<std::uint32_t>(
        options_detail::integer("--adaptive-periods", v.substr(at, comma - at), 1, 64)));
    at = comma + 1;
  }
  if (out.front() != 1)
    throw config_error("--adaptive-periods must start with 1 (synchronous), got \"" + v + "\"");
  for (std::size_t i = 1; i < out.size(); ++i)
    if (out[i] <= out[i - 1])
      throw config_error("--adaptive-periods must increase, got \"" + v + "\"");
  return out;
}

inline link_change_spec parse_link_change(const std::string& v) {
  const auto c1 = v.find(':');
  const auto c2 = c1 == std::string::npos ? c1 : v.find(':', c1 + 1);
  if (c2 == std::string::npos)
    throw config_error("--link-change expects FROM:TO:RATE (e.g. 0.3:0.7:100mbit), got \"" + v +
                       "\"");
  link_change_spec s;
  s.from = options_detail::number("--link-change FROM", v.substr(0, c1), 0.0, 1.0);
  s.to = options_detail::number("--link-change TO", v.substr(c1 + 1, c2 - c1 - 1), 0.0, 1.0);
  if (!(s.from < s.to))
    throw config_error(greenreduce::detail::str("--link-change FROM (", s.from,
                                                ") must be below TO (", s.to, ")"));
  s.rate = v.substr(c2 + 1);
  (void)tc_rate_bytes(s.rate);
  return s;
}

inline std::vector<std::string> parse_modes(const std::string& v) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= v.size()) {
    const auto comma = v.find(',', at);
    const std::string m = v.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    if (m.empty()) throw config_error("--modes has an empty name in \"" + v + "\"");
    for (const auto& seen : out)
      if (seen == m) throw config_error("mode \"" + m + "\" is listed twice in --modes");
    out.push_back(m);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

/// The options of argv; config_error for anything malformed.
inline demo_options parse_options(int argc, const char* const* argv) {
  using options_detail::integer;
  using options_detail::number;
  demo_options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw config_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--data") {
      o.data = value();
    } else if (a == "--np") {
      o.np = static_cast<int>(integer(a, value(), 1, 64));
      o.np_given = true;
    } else if (a == "--modes") {
      o.modes = parse_modes(value());
    } else if (a == "--epochs") {
      o.epochs = static_cast<int>(integer(a, value(), 1, 1000));
    } else if (a == "--batch") {
      o.batch = static_cast<int>(integer(a, value(), 1, 65536));
    } else if (a == "--lr") {
      o.lr = number(a, value(), 1e-6, 10.0);
    } else if (a == "--momentum") {
      o.momentum = number(a, value(), 0.0, 0.999);
    } else if (a == "--seed") {
      o.seed = static_cast<std::uint64_t>(integer(a, value(), 0, INT64_MAX));
    } else if (a == "--limit") {
      o.limit = static_cast<std::size_t>(integer(a, value(), 1, INT64_MAX));
    } else if (a == "--test-limit") {
      o.test_limit = static_cast<std::size_t>(integer(a, value(), 1, INT64_MAX));
    } else if (a == "--topk-ratio") {
      o.topk_ratio = number(a, value(), 1e-6, 1.0);
    } else if (a == "--servers") {
      o.servers = static_cast<int>(integer(a, value(), 1, 16));
    } else if (a == "--staleness") {
      o.staleness = static_cast<int>(integer(a, value(), 0, 1000));
    } else if (a == "--ps-push-every") {
      o.ps_push_every = static_cast<int>(integer(a, value(), 1, 64));
    } else if (a == "--ps-sync-warmup") {
      o.ps_sync_warmup = number(a, value(), 0.0, 1000.0);
    } else if (a == "--straggler") {
      o.straggler = parse_straggler(value());
    } else if (a == "--balance") {
      o.balance = true;
    } else if (a == "--json") {
      o.json = value();
    } else if (a == "--csv") {
      o.csv = value();
    } else if (a == "--plot") {
      o.plot = value();
    } else if (a == "--plot-format") {
      o.plot_format = value();
      if (o.plot_format != "auto" && o.plot_format != "png" && o.plot_format != "svg")
        throw config_error("--plot-format expects auto, png or svg, got \"" + o.plot_format + "\"");
    } else if (a == "--profile") {
      o.profile = value();
    } else if (a == "--link") {
      o.link = value();
      if (o.link.empty()) throw config_error("--link expects a rate such as 1gbit");
    } else if (a == "--link-change") {
      o.link_change = parse_link_change(value());
    } else if (a == "--energy-budget") {
      const std::string v = value();
      o.energy_min = v == "min";
      try {
        o.energy_budget = o.energy_min ? 0.0 : number(a, v, 0.0, 1e12);
      } catch (const config_error&) {
        throw config_error(
            "--energy-budget expects a number in [0, 1e12] (J per step) or \"min\", "
            "got \"" +
            v + "\"");
      }
    } else if (a == "--adaptive-ladder") {
      o.adaptive_ladder = value();
      (void)adaptive::ladder::parse(o.adaptive_ladder);  // a bad spec fails before the launch
    } else if (a == "--adaptive-periods") {
      o.adaptive_periods = parse_periods(value());
    } else if (a == "--adaptive-guard") {
      o.adaptive_guard = number(a, value(), 0.0, 100.0);
    } else if (a == "--no-progress") {
      o.progress = false;
    } else if (a == "--help" || a == "-h") {
      throw config_error("help");
    } else {
      throw config_error("unknown argument \"" + a + "\"");
    }
  }
  return o;
}

/// Checks what depends on the world size (np workers, known only after the launch).
inline void check_world(const demo_options& o, int world) {
  if (o.link_change.active() && o.link.empty())
    throw config_error(
        "--link-change needs --link RATE (it reshapes the namespaces' links that --link uses)");
  if (o.straggler.rank >= world)
    throw config_error(greenreduce::detail::str("--straggler names rank ", o.straggler.rank,
                                                " but there are only ", world, " ranks"));
}

/// The steps of the PS modes' sync start (--ps-sync-warmup EPOCHS, may be
/// fractional): EPOCHS x steps_per_epoch rounded to the nearest step, at most
/// the whole run (`end_step` steps).
inline std::uint64_t ps_sync_steps(double epochs, std::size_t steps_per_epoch,
                                   std::uint64_t end_step) {
  const auto n = std::llround(epochs * static_cast<double>(steps_per_epoch));
  return std::min<std::uint64_t>(end_step, static_cast<std::uint64_t>(std::max(0LL, n)));
}

}  // namespace greenreduce::examples
