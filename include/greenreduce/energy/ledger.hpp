// greenreduce/energy/ledger.hpp — the account of a run: one row per operation, totals, CSV/JSON.
//
// A ledger stores each report it is given with a timestamp (from a clock the
// caller passes: no hidden global clock) and a step label, sums them, turns
// joules into kWh (1 kWh = 3.6e6 J) and grams of CO2-equivalent with a grid
// carbon intensity (default 480 gCO2/kWh: the world average of 2023, Ember,
// "Global Electricity Review 2024"; set yours, e.g. your grid operator's figure).
//
// Invariants: total() equals the += of every row's report; write_csv followed
// by read_csv gives back the same rows (numbers print in shortest round-trip
// form, so the sums are equal bit for bit); write_json emits one well-formed
// JSON text.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <istream>
#include <iterator>
#include <map>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "greenreduce/core/env.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/core/report.hpp"
#include "greenreduce/energy/csv.hpp"
#include "greenreduce/energy/json.hpp"

namespace greenreduce::energy {

/// World average carbon intensity of electricity, 2023 (Ember, Global Electricity Review 2024).
inline constexpr double default_grid_gco2_per_kwh = 480.0;
inline constexpr double joules_per_kwh = 3.6e6;
inline constexpr const char* grid_env = "GREENREDUCE_GRID_GCO2_PER_KWH";

/// GREENREDUCE_GRID_GCO2_PER_KWH, or `fallback`; malformed -> config_error.
inline double grid_intensity_from_env(const env_source& env,
                                      double fallback = default_grid_gco2_per_kwh) {
  return env_double(env, grid_env, fallback, 0, 1e5);
}

/// Seconds since the Unix epoch from std::chrono::system_clock.
inline double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// energy_method from its name; false for an unknown name.
inline bool parse_energy_method(std::string_view s, energy_method& out) {
  for (auto m : {energy_method::none, energy_method::model, energy_method::rapl,
                 energy_method::nvml, energy_method::mixed})
    if (to_string(m) == s) {
      out = m;
      return true;
    }
  return false;
}

struct ledger_row {
  double timestamp = 0;  ///< clock() when the row was added (Unix seconds by default)
  std::string step;      ///< the caller's label: a step number, a phase name, ...
  report r;
};

class ledger {
 public:
  using clock_fn = std::function<double()>;

  /// CSV columns, in the order write_csv emits them.
  static constexpr const char* columns[] = {
      "timestamp",   "step",           "op",        "codec",    "algo",
      "bytes_sent",  "bytes_received", "raw_bytes", "seconds",  "memory_bytes",
      "compute_ops", "operations",     "network_j", "memory_j", "compute_j",
      "static_j",    "measured_j",     "total_j",   "method"};

  explicit ledger(clock_fn clock = unix_seconds,
                  double grid_gco2_per_kwh = default_grid_gco2_per_kwh)
      : clock_(std::move(clock)) {
    if (!clock_) throw config_error("ledger needs a clock, got an empty std::function");
    set_grid_intensity(grid_gco2_per_kwh);
  }

  void set_grid_intensity(double g) {
    if (!std::isfinite(g) || g < 0)
      throw config_error(
          greenreduce::detail::str("grid intensity must be a finite gCO2/kWh >= 0, got ", g));
    grid_ = g;
  }
  double grid_gco2_per_kwh() const noexcept { return grid_; }

  /// Adds one report under a step label.
  void add(const report& r, std::string step = {}) {
    rows_.push_back(ledger_row{clock_(), std::move(step), r});
  }
  /// Adds one report under a step number.
  void add(const report& r, std::uint64_t step) { add(r, std::to_string(step)); }

  const std::vector<ledger_row>& rows() const noexcept { return rows_; }
  bool empty() const noexcept { return rows_.empty(); }

  /// The sum of every row (operations = number of operations summed).
  report total() const {
    report t;
    t.operations = 0;
    for (const auto& row : rows_) t += row.r;
    return t;
  }
  /// One summed report per step label, in the order steps first appeared.
  std::vector<std::pair<std::string, report>> by_step() const {
    std::vector<std::pair<std::string, report>> out;
    std::map<std::string, std::size_t> at;
    for (const auto& row : rows_) {
      auto [it, fresh] = at.emplace(row.step, out.size());
      if (fresh) {
        report z;
        z.operations = 0;
        out.emplace_back(row.step, z);
      }
      out[it->second].second += row.r;
    }
    return out;
  }

  double joules() const { return total().energy.total_j(); }
  double kwh() const { return joules() / joules_per_kwh; }
  double co2_grams() const { return kwh() * grid_; }

  void write_csv(std::ostream& os) const {
    for (std::size_t i = 0; i < std::size(columns); ++i) os << (i ? "," : "") << columns[i];
    os << '\n';
    for (const auto& row : rows_) {
      const report& r = row.r;
      const energy_estimate& e = r.energy;
      os << csv::number(row.timestamp) << ',' << csv::field(row.step) << ',' << csv::field(r.op)
         << ',' << csv::field(r.codec) << ',' << csv::field(r.algo) << ',' << r.bytes_sent << ','
         << r.bytes_received << ',' << r.raw_bytes << ',' << csv::number(r.seconds) << ','
         << r.memory_bytes << ',' << r.compute_ops << ',' << r.operations << ','
         << csv::number(e.network_j) << ',' << csv::number(e.memory_j) << ','
         << csv::number(e.compute_j) << ',' << csv::number(e.static_j) << ','
         << csv::number(e.measured_j) << ',' << csv::number(e.total_j()) << ','
         << to_string(e.method) << '\n';
    }
  }

  void write_json(std::ostream& os) const {
    json_writer w(os);
    const report t = total();
    w.begin_object();
    w.member("grid_gco2_per_kwh", grid_);
    w.key("total").begin_object();
    write_report(w, t);
    w.member("kwh", kwh()).member("co2_g", co2_grams());
    w.end_object();
    w.key("rows").begin_array();
    for (const auto& row : rows_) {
      w.begin_object();
      w.member("timestamp", row.timestamp).member("step", row.step);
      write_report(w, row.r);
      w.end_object();
    }
    w.end_array();
    w.end_object();
    os << '\n';
  }

  /// Reads what write_csv wrote (columns by header name, extra columns ignored,
  /// total_j recomputed). Throws decode_error naming the line and column.
  static ledger read_csv(std::istream& is, clock_fn clock = unix_seconds,
                         double grid_gco2_per_kwh = default_grid_gco2_per_kwh) {
    ledger out(std::move(clock), grid_gco2_per_kwh);
    std::size_t line = 0;
    std::vector<std::string> f;
    if (!csv::read_record(is, f, line))
      throw decode_error("ledger CSV is empty: expected a header");
    std::map<std::string, std::size_t> col;
    for (std::size_t i = 0; i < f.size(); ++i)
      if (!col.emplace(f[i], i).second)
        throw decode_error(
            greenreduce::detail::str("ledger CSV header repeats column \"", f[i], "\""));
    std::size_t at[std::size(columns)];
    for (std::size_t i = 0; i < std::size(columns); ++i) {
      auto it = col.find(columns[i]);
      if (it == col.end() && std::string_view(columns[i]) != "total_j")
        throw decode_error(
            greenreduce::detail::str("ledger CSV header lacks column \"", columns[i], "\""));
      at[i] = it == col.end() ? 0 : it->second;
    }
    while (csv::read_record(is, f, line)) {
      if (f.size() == 1 && f[0].empty()) continue;  // blank line
      if (f.size() != col.size())
        throw decode_error(greenreduce::detail::str("ledger CSV line ", line, ": ", f.size(),
                                                    " fields, expected ", col.size()));
      auto text = [&](std::size_t c) -> const std::string& { return f[at[c]]; };
      auto num = [&](std::size_t c, auto& v) {
        if (!csv::parse(text(c), v))
          throw decode_error(greenreduce::detail::str("ledger CSV line ", line, " column ",
                                                      columns[c], ": expected a number, found \"",
                                                      text(c), "\""));
      };
      ledger_row row;
      report& r = row.r;
      num(0, row.timestamp);
      row.step = text(1);
      r.op = text(2);
      r.codec = text(3);
      r.algo = text(4);
      num(5, r.bytes_sent);
      num(6, r.bytes_received);
      num(7, r.raw_bytes);
      num(8, r.seconds);
      num(9, r.memory_bytes);
      num(10, r.compute_ops);
      num(11, r.operations);
      num(12, r.energy.network_j);
      num(13, r.energy.memory_j);
      num(14, r.energy.compute_j);
      num(15, r.energy.static_j);
      num(16, r.energy.measured_j);
      if (!parse_energy_method(text(18), r.energy.method))
        throw decode_error(
            greenreduce::detail::str("ledger CSV line ", line,
                                     " column method: expected none, model, rapl, nvml or "
                                     "mixed, found \"",
                                     text(18), "\""));
      out.rows_.push_back(std::move(row));
    }
    return out;
  }

 private:
  static void write_report(json_writer& w, const report& r) {
    const energy_estimate& e = r.energy;
    w.member("op", r.op).member("codec", r.codec).member("algo", r.algo);
    w.member("bytes_sent", r.bytes_sent).member("bytes_received", r.bytes_received);
    w.member("raw_bytes", r.raw_bytes).member("seconds", r.seconds);
    w.member("memory_bytes", r.memory_bytes).member("compute_ops", r.compute_ops);
    w.member("operations", r.operations);
    w.member("network_j", e.network_j).member("memory_j", e.memory_j);
    w.member("compute_j", e.compute_j).member("static_j", e.static_j);
    w.member("measured_j", e.measured_j).member("total_j", e.total_j());
    w.member("method", to_string(e.method));
  }

  clock_fn clock_;
  double grid_ = default_grid_gco2_per_kwh;
  std::vector<ledger_row> rows_;
};

}  // namespace greenreduce::energy
