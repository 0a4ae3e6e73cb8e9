// examples/train/results.hpp — one row per mode: the table, the JSON and the plot data.
//
// Every number of the table is in the JSON under the same name. Energy is an
// estimate of the model (energy/model.hpp) summed over ranks; `measured_j` is
// a meter's reading of the whole machine (RAPL) when one is readable, else
// null, with the meter's reason.
#pragma once

#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "greenreduce/core/report.hpp"
#include "greenreduce/energy/json.hpp"
#include "options.hpp"
#include "plot.hpp"

namespace greenreduce::examples {

struct mode_result {
  std::string mode;
  double accuracy = 0;                          ///< test accuracy, percent
  double wall_s = 0;                            ///< training wall time (slowest rank)
  double wire_bytes = 0;                        ///< mean over ranks of socket bytes sent + received
  double samples = 0;                           ///< training samples processed, all ranks
  energy_estimate energy;                       ///< model estimate, summed over ranks
  double measured_j = NAN;                      ///< meter reading of the machine, NaN when none
  std::vector<std::pair<double, double>> loss;  ///< (epoch, mean training loss over ranks)
  std::vector<double> rank_wire_bytes, rank_joules, rank_wall_s;  ///< per worker
  std::vector<double> rank_samples, rank_compute_s;               ///< per worker (--balance)
  double compute_s = 0;   ///< mean over workers: gradient computation (straggler sleep included)
  double exchange_s = 0;  ///< mean over workers: time in the mode's exchange (waits included)
  double server_wire_bytes = 0;  ///< PS modes: bytes of the server rank(s), all of them
  double server_j = 0;           ///< PS modes: the servers' estimate (included in `energy`)
  /// PS modes, first server: the first SSP step after a sync start (-1: no
  /// switch), the updates it applied under sync and in all.
  double ps_switch_step = -1, ps_sync_updates = 0, ps_updates = 0;
};

struct run_info {
  std::string dataset, profile, link, meter_note, launcher;
  int np = 0, servers = 0, epochs = 0, batch = 0;
  double lr = 0, momentum = 0, topk_ratio = 0;
  int staleness = 0;
  double ps_sync_warmup = 0;  ///< epochs of sync consistency before SSP (PS modes)
  int ps_push_every = 1;      ///< steps of gradients per PS push
  straggler_spec straggler;
  bool balance = false;
  std::size_t train_samples = 0, test_samples = 0, parameters = 0;
  double static_watts = 0;
};

inline std::string pct_change(double v, double base) {
  if (!(base > 0) || !std::isfinite(v)) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%+.1f%%", 100.0 * (v - base) / base);
  return b;
}

inline const mode_result* find_sync(const std::vector<mode_result>& rows) {
  for (const auto& r : rows)
    if (r.mode == "sync") return &r;
  return nullptr;
}

inline void print_table(std::FILE* out, const run_info& info,
                        const std::vector<mode_result>& rows) {
  std::string ps;
  if (info.servers > 0) ps = greenreduce::detail::str(" + ", info.servers, " PS server(s)");
  if (info.servers > 0 && info.ps_sync_warmup >= info.epochs)
    ps += " (sync consistency throughout)";
  else if (info.servers > 0 && info.ps_sync_warmup > 0)
    ps += greenreduce::detail::str(" (sync for ", info.ps_sync_warmup, " epoch(s), then SSP)");
  std::fprintf(
      out,
      "\n%s: %zu train / %zu test images, MLP 784-64-32-10 (%zu parameters), %d workers%s, "
      "%d epochs, batch %d per rank, lr %g, momentum %g%s%s\n",
      info.dataset.c_str(), info.train_samples, info.test_samples, info.parameters, info.np,
      ps.c_str(), info.epochs, info.batch, info.lr, info.momentum,
      info.straggler.rank >= 0 ? greenreduce::detail::str(", straggler rank ", info.straggler.rank,
                                                          " x", info.straggler.factor)
                                     .c_str()
                               : "",
      info.balance ? ", resource-aware batch shares" : "");
  std::fprintf(out, "%-8s %9s %9s %13s %12s %12s %10s %10s %10s\n", "mode", "test acc", "wall (s)",
               "wire MB/rank", "energy J(*)", "measured J", "acc vs", "wire vs", "J vs");
  std::fprintf(out, "%-8s %9s %9s %13s %12s %12s %10s %10s %10s\n", "", "", "", "", "", "", "sync",
               "sync", "sync");
  const mode_result* s = find_sync(rows);
  for (const auto& r : rows) {
    char meas[32] = "n/a";
    if (std::isfinite(r.measured_j)) std::snprintf(meas, sizeof meas, "%.1f", r.measured_j);
    char dacc[32] = "-";
    if (s) std::snprintf(dacc, sizeof dacc, "%+.2f pt", r.accuracy - s->accuracy);
    std::fprintf(out, "%-8s %8.2f%% %9.1f %13.2f %12.1f %12s %10s %10s %10s\n", r.mode.c_str(),
                 r.accuracy, r.wall_s, r.wire_bytes / 1e6, r.energy.total_j(), meas, dacc,
                 s ? pct_change(r.wire_bytes, s->wire_bytes).c_str() : "-",
                 s ? pct_change(r.energy.total_j(), s->energy.total_j()).c_str() : "-");
  }
  std::fprintf(
      out,
      "(*) estimated (model, profile %s), summed over ranks: each rank's communication "
      "reports annotated by energy::model (link bits, memory, kernel ops, static power "
      "while communicating) + training compute (6 x parameters x samples FLOPs x op_pj "
      "+ estimated memory traffic) + static power (%g W) x the rest of its wall time. "
      "Not a measurement.\n"
      "    PS modes add the server process (its wire bytes, frame decoding, update rule and "
      "reply encoding; it shares worker 0's host, whose static power is counted once).\n"
      "    wire = bytes each worker put on and took off its sockets (headers included), "
      "mean over the %d workers.\n"
      "    measured: %s\n",
      info.profile.c_str(), info.static_watts, info.np, info.meter_note.c_str());
}

inline void write_json(std::ostream& os, const run_info& info,
                       const std::vector<mode_result>& rows) {
  using energy::json_writer;
  json_writer w(os);
  auto u = [](auto v) { return static_cast<std::uint64_t>(v); };
  w.begin_object();
  w.key("config").begin_object();
  w.member("dataset", info.dataset).member("np", u(info.np)).member("servers", u(info.servers));
  w.member("epochs", u(info.epochs));
  w.member("batch_per_rank", u(info.batch)).member("lr", info.lr).member("momentum", info.momentum);
  w.member("topk_ratio", info.topk_ratio).member("staleness", u(info.staleness));
  w.member("ps_sync_warmup_epochs", info.ps_sync_warmup);
  w.member("ps_push_every", u(info.ps_push_every));
  w.member("straggler_rank", static_cast<double>(info.straggler.rank));
  w.member("straggler_factor", info.straggler.factor);
  w.key("balance").value(info.balance ? "on" : "off");
  w.member("train_samples", u(info.train_samples)).member("test_samples", u(info.test_samples));
  w.member("parameters", u(info.parameters)).member("link", info.link);
  w.member("launcher", info.launcher);
  w.member("energy_method", std::string("estimated (model, profile ") + info.profile + ")");
  w.member("energy_profile", info.profile).member("static_watts", info.static_watts);
  w.member("meter", info.meter_note);
  w.end_object();
  const mode_result* s = find_sync(rows);
  w.key("modes").begin_array();
  for (const auto& r : rows) {
    w.begin_object();
    w.member("mode", r.mode).member("test_accuracy", r.accuracy).member("wall_s", r.wall_s);
    w.member("wire_bytes_per_rank", r.wire_bytes).member("wire_mb_per_rank", r.wire_bytes / 1e6);
    w.member("samples", r.samples);
    w.member("energy_j", r.energy.total_j()).member("network_j", r.energy.network_j);
    w.member("memory_j", r.energy.memory_j).member("compute_j", r.energy.compute_j);
    w.member("static_j", r.energy.static_j).member("measured_j", r.measured_j);
    w.member("compute_s", r.compute_s).member("exchange_s", r.exchange_s);
    w.member("server_wire_bytes", r.server_wire_bytes).member("server_j", r.server_j);
    if (r.server_wire_bytes > 0) {
      w.member("ps_switch_step", r.ps_switch_step).member("ps_sync_updates", r.ps_sync_updates);
      w.member("ps_updates", r.ps_updates);
    }
    if (s) {
      w.member("accuracy_vs_sync_pt", r.accuracy - s->accuracy);
      w.member("wire_vs_sync", s->wire_bytes > 0 ? r.wire_bytes / s->wire_bytes : NAN);
      w.member("energy_vs_sync",
               s->energy.total_j() > 0 ? r.energy.total_j() / s->energy.total_j() : NAN);
    }
    w.key("loss").begin_array();
    for (auto [e, l] : r.loss) w.begin_array().value(e).value(l).end_array();
    w.end_array();
    w.key("ranks").begin_array();
    for (std::size_t i = 0; i < r.rank_wall_s.size(); ++i) {
      w.begin_object();
      w.member("rank", u(i)).member("wall_s", r.rank_wall_s[i]);
      w.member("wire_bytes", r.rank_wire_bytes[i]).member("energy_j", r.rank_joules[i]);
      if (i < r.rank_samples.size()) w.member("samples", r.rank_samples[i]);
      if (i < r.rank_compute_s.size()) w.member("compute_s", r.rank_compute_s[i]);
      w.end_object();
    }
    w.end_array();
    w.end_object();
  }
  w.end_array();
  w.end_object();
  os << '\n';
}

inline std::vector<plot_series> plot_data(const std::vector<mode_result>& rows) {
  std::vector<plot_series> out;
  for (const auto& r : rows) out.push_back({r.mode, r.accuracy, r.energy.total_j(), r.loss});
  return out;
}

}  // namespace greenreduce::examples
