// greenreduce/adaptive/options.hpp — the objectives and knobs of the adaptive controller.
//
//   adaptive::controller_options o;
//   o.with_ladder(adaptive::ladder::parse("none,fp16,int8,topk:0.01"))
//    .with_energy_budget(2.5)          // joules per step (or .with_minimum_energy())
//    .with_max_slowdown(1.5)           // x the warm-up step time
//    .with_accuracy_guard(0.05);       // val loss at most 5% above the best seen
//
// Every knob is checked by validate() (called by the controller), which throws
// config_error naming the knob and the accepted range. docs/adaptive.md
// explains what each one does to the policy.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "greenreduce/adaptive/ladder.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/energy/model.hpp"

namespace greenreduce::adaptive {

struct controller_options {
  adaptive::ladder ladder;               ///< levels, loosest first (default_ladder_specs)
  std::uint64_t warmup_steps = 50;       ///< steps run at level 0 to measure baselines
  std::uint64_t window_steps = 10;       ///< steps per decision window
  std::uint32_t hysteresis_windows = 3;  ///< consecutive windows a signal must persist
  std::uint32_t dwell_windows = 5;       ///< windows after a change before the next one
  std::uint32_t max_dwell_windows = 80;  ///< cap of the dwell after repeated reversals
  std::uint32_t guard_windows = 1;       ///< consecutive bad windows before the accuracy guard acts
  double energy_budget_j = 0;            ///< joules per step; 0 = no energy objective
  bool minimize_energy = false;          ///< objective: the cheapest level the guard allows
  double max_slowdown = 0;               ///< step time / warm-up step time; 0 = no time objective
  double loosen_margin = 0.1;            ///< loosen only if predicted within (1 - margin) of limits
  double max_loss_increase = 0;          ///< relative loss rise the guard tolerates; 0 = off
  double reference_loss = std::numeric_limits<double>::quiet_NaN();  ///< NaN: best loss seen
  double max_compression_error = 0;  ///< relative codec error the guard tolerates; 0 = off
  double ewma_alpha = 0.5;           ///< weight of the newest window in the link estimates
  energy::model model;               ///< predicts joules of levels not being run
  bool adapt_consistency = true;     ///< also decide sync vs bounded staleness
  std::vector<std::uint32_t> staleness_ladder{0, 1, 2, 4};  ///< s values, sync (0) first
  double spread_high = 0.5;       ///< step-time spread that means stragglers/congestion
  double spread_low = 0.2;        ///< spread below which the congestion has cleared
  double comm_fraction_high = 0;  ///< comm / step time that means congestion; 0 = unused
  double comm_fraction_low = 0;   ///< comm fraction below which it has cleared

  controller_options& with_ladder(adaptive::ladder l) { return ladder = std::move(l), *this; }
  controller_options& with_warmup_steps(std::uint64_t n) { return warmup_steps = n, *this; }
  /// Warm-up as a fraction of a run of `total_steps` steps (rounded up).
  controller_options& with_warmup_fraction(double fraction, std::uint64_t total_steps) {
    if (!(fraction >= 0 && fraction <= 1))
      throw config_error(
          detail::str("adaptive warm-up fraction must be in [0, 1], got ", fraction));
    warmup_steps =
        static_cast<std::uint64_t>(std::ceil(fraction * static_cast<double>(total_steps)));
    return *this;
  }
  controller_options& with_window_steps(std::uint64_t n) { return window_steps = n, *this; }
  /// A change needs its signal for `windows` consecutive windows and `dwell`
  /// windows since the previous change.
  controller_options& with_hysteresis(std::uint32_t windows, std::uint32_t dwell) {
    hysteresis_windows = windows;
    dwell_windows = dwell;
    return *this;
  }
  /// The dwell doubles (up to this) each time a move reverses the previous one.
  controller_options& with_max_dwell(std::uint32_t windows) {
    return max_dwell_windows = windows, *this;
  }
  controller_options& with_energy_budget(double joules_per_step) {
    return energy_budget_j = joules_per_step, *this;
  }
  /// Objective "as few joules as the accuracy guard allows": every window,
  /// move to the allowed level predicted cheapest per step when it saves
  /// loosen_margin over what the current level was observed to cost (within
  /// max_slowdown when that is set). Excludes an energy budget.
  controller_options& with_minimum_energy(bool on = true) { return minimize_energy = on, *this; }
  /// A budget per epoch, spread evenly over its steps.
  controller_options& with_epoch_energy_budget(double joules_per_epoch,
                                               std::uint64_t steps_per_epoch) {
    if (steps_per_epoch == 0)
      throw config_error("adaptive epoch energy budget: steps_per_epoch must be >= 1");
    energy_budget_j = joules_per_epoch / static_cast<double>(steps_per_epoch);
    return *this;
  }
  controller_options& with_max_slowdown(double ratio) { return max_slowdown = ratio, *this; }
  controller_options& with_loosen_margin(double m) { return loosen_margin = m, *this; }
  /// Loosen when the validation loss exceeds the reference by more than
  /// `max_increase` of it; the reference is `reference` or, when NaN, the
  /// lowest loss observed before.
  controller_options& with_accuracy_guard(
      double max_increase, double reference = std::numeric_limits<double>::quiet_NaN()) {
    max_loss_increase = max_increase;
    reference_loss = reference;
    return *this;
  }
  controller_options& with_max_compression_error(double e) {
    return max_compression_error = e, *this;
  }
  controller_options& with_guard_windows(std::uint32_t n) { return guard_windows = n, *this; }
  controller_options& with_ewma_alpha(double a) { return ewma_alpha = a, *this; }
  controller_options& with_model(energy::model m) { return model = std::move(m), *this; }
  controller_options& with_consistency(bool on) { return adapt_consistency = on, *this; }
  controller_options& with_staleness_ladder(std::vector<std::uint32_t> s) {
    return staleness_ladder = std::move(s), *this;
  }
  controller_options& with_spread_thresholds(double high, double low) {
    spread_high = high;
    spread_low = low;
    return *this;
  }
  controller_options& with_comm_fraction_thresholds(double high, double low) {
    comm_fraction_high = high;
    comm_fraction_low = low;
    return *this;
  }

  /// Throws config_error naming the first knob out of range.
  void validate() const {
    auto bad = [](const char* knob, auto v, const char* want) {
      throw config_error(detail::str("adaptive controller option ", knob, " = ", v, ": ", want));
    };
    auto finite_nonneg = [&](const char* knob, double v) {
      if (!std::isfinite(v) || v < 0) bad(knob, v, "must be a finite number >= 0");
    };
    if (window_steps == 0) bad("window_steps", window_steps, "must be >= 1");
    if (hysteresis_windows == 0) bad("hysteresis_windows", hysteresis_windows, "must be >= 1");
    if (guard_windows == 0) bad("guard_windows", guard_windows, "must be >= 1");
    finite_nonneg("energy_budget_j", energy_budget_j);
    finite_nonneg("max_loss_increase", max_loss_increase);
    finite_nonneg("max_compression_error", max_compression_error);
    finite_nonneg("spread_high", spread_high);
    finite_nonneg("spread_low", spread_low);
    finite_nonneg("comm_fraction_high", comm_fraction_high);
    finite_nonneg("comm_fraction_low", comm_fraction_low);
    if (!std::isfinite(max_slowdown) || (max_slowdown != 0 && max_slowdown < 1))
      bad("max_slowdown", max_slowdown, "must be 0 (off) or a finite ratio >= 1");
    if (!(loosen_margin >= 0 && loosen_margin < 1))
      bad("loosen_margin", loosen_margin, "must be in [0, 1)");
    if (!(ewma_alpha > 0 && ewma_alpha <= 1)) bad("ewma_alpha", ewma_alpha, "must be in (0, 1]");
    if (!std::isnan(reference_loss) && !std::isfinite(reference_loss))
      bad("reference_loss", reference_loss, "must be finite (or NaN for the best loss seen)");
    if (minimize_energy && energy_budget_j > 0)
      bad("energy_budget_j", energy_budget_j,
          "must be 0 with minimize_energy (the objective is the minimum, not a budget)");
    if (spread_low > spread_high) bad("spread_low", spread_low, "must not exceed spread_high");
    if (comm_fraction_high > 0 && comm_fraction_low > comm_fraction_high)
      bad("comm_fraction_low", comm_fraction_low, "must not exceed comm_fraction_high");
    if (staleness_ladder.empty()) bad("staleness_ladder", "{}", "must start with 0 (sync)");
    if (staleness_ladder.front() != 0)
      bad("staleness_ladder[0]", staleness_ladder.front(), "must be 0 (sync)");
    for (std::size_t i = 1; i < staleness_ladder.size(); ++i)
      if (staleness_ladder[i] <= staleness_ladder[i - 1])
        bad("staleness_ladder", staleness_ladder[i], "values must increase");
  }
};

}  // namespace greenreduce::adaptive
