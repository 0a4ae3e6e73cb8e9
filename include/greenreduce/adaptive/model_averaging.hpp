// greenreduce/adaptive/model_averaging.hpp — local SGD whose averaging period and codec a
// controller picks.
//
//   adaptive::adaptive_allreduce_options o;
//   o.policy.with_minimum_energy().with_staleness_ladder({0, 1, 3})   // periods 1, 2, 4
//       .with_comm_fraction_thresholds(0.4, 0.15);
//   o.ring.error_feedback = true;
//   adaptive::model_averaging<transport::tcp> avg(t, params, o);
//   for (step...) {
//     grad = ...; v = m v + grad; params -= lr v;   // each rank steps its own copy
//     if (auto rep = avg.step(params)) energy += *rep;  // averaged when the period is due
//   }
//   energy += avg.finish(params);                       // every rank ends with the same parameters
//
// The bounded-staleness mode of a ring: instead of averaging gradients every
// step, every rank runs its optimizer on its own gradient and the ranks
// average their parameters every period() steps (local SGD; Stich, "Local SGD
// converges fast and communicates little", ICLR 2019; Lin et al., "Don't use
// large mini-batches, use local SGD", ICLR 2020). What is exchanged is each
// rank's change since the last average, `delta = params - anchor`, through
// adaptive_allreduce (reduce_op::average, the controller's codec, the ring's
// error feedback on the owned chunk); then `params = anchor + mean(delta)` and
// that becomes the next anchor. The ring's results are bit-identical on every
// rank, so the anchors — and the parameters after each average — are too.
//
// With period 1 and SGD with momentum (v = m v + g; p -= lr v, each rank its
// own v) this is the synchronous ring exactly, up to rounding: the mean of
// the ranks' velocities follows the synchronous recurrence, and the
// parameters move by lr times it. With a codec it compresses the update
// (lr v) instead of the gradient.
//
// The period comes from the controller's consistency decision
// (adaptive_allreduce_options::local_sgd, set here): staleness s averages
// every s + 1 steps; a comm fraction or step-time spread above its threshold
// raises it, and the accuracy guard lowers it and caps it (controller.hpp).
// Every rank counts the same steps and reads the same decisions, so all ranks
// exchange at the same steps.
//
// Errors: a parameter span whose length differs from the constructor's is a
// config_error naming both lengths, before anything moves; a failed exchange
// (the transport's or the ring's error propagates) leaves the caller's
// parameters and the anchor as they were — both are written only after the
// exchange succeeded — so the run can stop with the rank's own parameters.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "greenreduce/adaptive/adaptive_allreduce.hpp"
#include "greenreduce/core/buffer.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/core/report.hpp"
#include "greenreduce/transport/concept.hpp"

namespace greenreduce::adaptive {

template <transport::transport Transport>
class model_averaging {
 public:
  /// `initial`: the parameters every rank starts from (must be the same on
  /// every rank: it is the first anchor).
  model_averaging(Transport& t, std::span<const float> initial, adaptive_allreduce_options o = {})
      : ar_(t, initial.size(), std::move(o.with_local_sgd(true))),
        anchor_(initial.begin(), initial.end()),
        delta_(initial.size()) {}

  model_averaging(const model_averaging&) = delete;
  model_averaging& operator=(const model_averaging&) = delete;

  /// Steps between averages from now on (1 = every step).
  std::uint64_t period() const noexcept { return ar_.period(); }
  /// Local steps since the last average.
  std::uint64_t pending_steps() const noexcept { return since_; }
  /// Averages so far.
  std::uint64_t exchanges() const noexcept { return ar_.steps(); }
  const controller& policy() const noexcept { return ar_.policy(); }
  /// The exchange underneath (its level, residual, options).
  const adaptive_allreduce<Transport>& allreduce() const noexcept { return ar_; }
  /// A validation loss for the controller's accuracy guard; it travels with
  /// the next exchange's observation.
  void set_validation_loss(double loss) { ar_.set_validation_loss(loss); }

  /// Call once after every local optimizer step. Averages `params` over the
  /// ranks when the period is due and returns that exchange's report;
  /// otherwise leaves them alone and returns nothing.
  std::optional<report> step(std::span<float> params) {
    check(params);
    ++since_;
    if (since_ < ar_.period()) return std::nullopt;
    return average(params);
  }

  /// Averages the steps since the last average, if any (an empty report when
  /// there were none): after it every rank holds the same parameters.
  report finish(std::span<float> params) {
    check(params);
    if (since_ == 0) return report{};
    return average(params);
  }

 private:
  void check(std::span<const float> params) const {
    if (params.size() != anchor_.size())
      throw config_error(detail::str("model_averaging: ", params.size(),
                                     " parameters given, constructed for ", anchor_.size()));
  }

  report average(std::span<float> params) {
    const std::size_t n = params.size();
    for (std::size_t i = 0; i < n; ++i) delta_[i] = params[i] - anchor_[i];
    report rep = ar_.run(delta_, collective::reduce_op::average);  // throws: nothing changed
    for (std::size_t i = 0; i < n; ++i) params[i] = anchor_[i] + delta_[i];
    std::copy(params.begin(), params.end(), anchor_.begin());
    since_ = 0;
    return rep;
  }

  adaptive_allreduce<Transport> ar_;
  aligned_vector<float> anchor_, delta_;
  std::uint64_t since_ = 0;
};

}  // namespace greenreduce::adaptive
