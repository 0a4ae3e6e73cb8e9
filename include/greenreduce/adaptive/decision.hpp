// greenreduce/adaptive/decision.hpp — the log record of one policy decision.
//
// The controller appends a decision whenever it changes the codec level or the
// consistency mode, and whenever its state changes without a move (warm-up
// over, budget unattainable, budget attainable again). Each record says which
// step's observation triggered it (the change applies from the next step), what
// changed, why (an enum and a sentence with the numbers) and the window means
// it acted on. to_json() writes one JSON object per record (docs/adaptive.md
// lists the members); csv_header()/to_csv() the same as a CSV row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>

#include "greenreduce/energy/csv.hpp"
#include "greenreduce/energy/json.hpp"
#include "greenreduce/ps/options.hpp"

namespace greenreduce::adaptive {

/// Why a decision was made.
enum class reason : std::uint8_t {
  warmup_done,          ///< the warm-up steps are over; baselines fixed
  over_budget,          ///< energy per step above the budget: compress harder
  over_slowdown,        ///< step time above max_slowdown x the warm-up step time
  room_to_loosen,       ///< a looser level is predicted to meet every objective with margin
  accuracy_loss,        ///< validation loss above the reference by more than allowed
  accuracy_error,       ///< compression error above its threshold
  budget_unattainable,  ///< no allowed level is predicted to meet the objectives; holding
  budget_attainable,    ///< objectives met again after being unattainable
  congestion,           ///< step-time spread (or comm fraction) high: more staleness
  congestion_cleared,   ///< spread low again: less staleness
  cheaper_level,        ///< minimize_energy: another level is predicted cheaper by the margin
};

constexpr std::string_view to_string(reason r) noexcept {
  switch (r) {
    case reason::warmup_done:
      return "warmup_done";
    case reason::over_budget:
      return "over_budget";
    case reason::over_slowdown:
      return "over_slowdown";
    case reason::room_to_loosen:
      return "room_to_loosen";
    case reason::accuracy_loss:
      return "accuracy_loss";
    case reason::accuracy_error:
      return "accuracy_error";
    case reason::budget_unattainable:
      return "budget_unattainable";
    case reason::budget_attainable:
      return "budget_attainable";
    case reason::congestion:
      return "congestion";
    case reason::congestion_cleared:
      return "congestion_cleared";
    case reason::cheaper_level:
      return "cheaper_level";
  }
  return "unknown";
}

/// What the policy is doing.
enum class policy_state : std::uint8_t {
  warmup,               ///< running level 0 to measure baselines
  tracking,             ///< objectives met (or being approached)
  budget_unattainable,  ///< objectives missed at the cheapest allowed level; holding it
};

constexpr std::string_view to_string(policy_state s) noexcept {
  switch (s) {
    case policy_state::warmup:
      return "warmup";
    case policy_state::tracking:
      return "tracking";
    case policy_state::budget_unattainable:
      return "budget_unattainable";
  }
  return "unknown";
}

/// Window means and predictions a decision acted on (NaN = not available).
struct signals {
  static constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  double joules = nan;             ///< mean joules per step
  double step_seconds = nan;       ///< mean step time
  double comm_seconds = nan;       ///< mean communication time
  double bandwidth = nan;          ///< achieved bandwidth, wire bytes / comm second (EWMA)
  double compression_ratio = nan;  ///< raw / sent bytes of the window
  double compression_error = nan;  ///< mean measured compression error
  double val_loss = nan;           ///< last validation loss of the window
  double reference_loss = nan;     ///< what the loss is compared with
  double step_spread = nan;        ///< mean step-time spread across workers
  double baseline_seconds = nan;   ///< warm-up step time (median)
  double predicted_joules = nan;   ///< prediction for the level moved to
  double predicted_seconds = nan;  ///< prediction for the level moved to
};

struct decision {
  std::uint64_t step = 0;  ///< the observation that triggered it; applies from step + 1
  std::size_t from_level = 0;
  std::size_t to_level = 0;
  std::string from_codec;  ///< spec of from_level
  std::string to_codec;    ///< spec of to_level
  ps::consistency from_mode;
  ps::consistency to_mode;
  reason why = reason::warmup_done;
  std::string text;                             ///< the reason in a sentence, with the numbers
  policy_state state = policy_state::tracking;  ///< the state after the decision
  signals measured;

  bool changes_codec() const noexcept { return from_level != to_level; }
  bool changes_mode() const noexcept { return !(from_mode == to_mode); }

  /// One JSON object (no newline).
  std::string to_json() const {
    std::ostringstream os;
    energy::json_writer w(os);
    w.begin_object();
    w.key("step").value(step);
    w.key("from_level").value(static_cast<std::uint64_t>(from_level));
    w.key("to_level").value(static_cast<std::uint64_t>(to_level));
    w.key("from").value(from_codec);
    w.key("to").value(to_codec);
    w.key("from_mode").value(from_mode.to_string());
    w.key("to_mode").value(to_mode.to_string());
    w.key("reason").value(to_string(why));
    w.key("state").value(to_string(state));
    w.key("text").value(text);
    w.key("joules").value(measured.joules);
    w.key("step_seconds").value(measured.step_seconds);
    w.key("comm_seconds").value(measured.comm_seconds);
    w.key("bandwidth").value(measured.bandwidth);
    w.key("compression_ratio").value(measured.compression_ratio);
    w.key("compression_error").value(measured.compression_error);
    w.key("val_loss").value(measured.val_loss);
    w.key("reference_loss").value(measured.reference_loss);
    w.key("step_spread").value(measured.step_spread);
    w.key("baseline_seconds").value(measured.baseline_seconds);
    w.key("predicted_joules").value(measured.predicted_joules);
    w.key("predicted_seconds").value(measured.predicted_seconds);
    w.end_object();
    return os.str();
  }

  static constexpr std::string_view csv_header =
      "step,from_level,to_level,from,to,from_mode,to_mode,reason,state,joules,step_seconds,"
      "comm_seconds,bandwidth,compression_ratio,compression_error,val_loss,predicted_joules,"
      "predicted_seconds,text";

  /// One CSV row in csv_header's order (no newline); empty cells for NaN.
  std::string to_csv() const {
    auto num = [](double v) { return std::isfinite(v) ? energy::csv::number(v) : std::string(); };
    std::string row = detail::str(step, ',', from_level, ',', to_level, ',');
    row += energy::csv::field(from_codec) + ',' + energy::csv::field(to_codec) + ',';
    row += detail::str(from_mode.to_string(), ',', to_mode.to_string(), ',', to_string(why), ',',
                       to_string(state), ',');
    for (double v : {measured.joules, measured.step_seconds, measured.comm_seconds,
                     measured.bandwidth, measured.compression_ratio, measured.compression_error,
                     measured.val_loss, measured.predicted_joules, measured.predicted_seconds})
      row += num(v) + ',';
    row += energy::csv::field(text);
    return row;
  }
};

}  // namespace greenreduce::adaptive
