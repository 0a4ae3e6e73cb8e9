// greenreduce/collective/error_bound.hpp — how far a ring's result may be from
// the exact sum, for checking results against a float64 reference.
//
//   collective::ring_error_bound bound(codec, p, max_i sum_q |x_q,i|, average);
//   ok = std::abs(result[i] - exact[i]) <= bound(sum_q |x_q,i|, exact[i]);
//
// For a p-rank sum (reduce_op::sum) without error feedback:
//
//   |result_i - exact_i| <= gamma_2p (sum_q |x_q,i| + p d) + p d
//
// gamma_k = k u / (1 - k u), u = 2^-24, bounds fp32 summation in any order
// (Higham 2002, eq. 4.4); d = codec::encode_error_bound(codec, M) is the worst
// error of one encode of values of magnitude at most M = 1.1 max_i sum_q
// |x_q,i| (every partial sum a hop re-encodes is below the full magnitude sum;
// the 10% covers the errors earlier hops added; qsgd, whose decoded values
// can exceed the input's, takes hop j's magnitude as 1.01 (S + the bounds of
// the hops before it) instead). Each element is encoded at
// most p times on its way (p - 1 reduce-scatter hops and the allgather encode;
// one encode per rank on the sparse allgather path). For reduce_op::average
// the bound is divided by p and one rounding of the mean, u |exact_i|, added.
// With error feedback a step's result also carries earlier steps' residuals,
// so this per-call bound does not apply.
#pragma once

#include <cmath>
#include <type_traits>

#include "greenreduce/codec/error_bound.hpp"
#include "greenreduce/core/error.hpp"

namespace greenreduce::collective {

class ring_error_bound {
 public:
  /// `max_magnitude_sum`: max over elements of sum over ranks of |x_q,i|.
  template <class Codec>
  ring_error_bound(const Codec& c, int p, double max_magnitude_sum, bool average)
      : p_(p), average_(average) {
    if (p < 1) throw config_error(detail::str("ring_error_bound: p = ", p, " (must be >= 1)"));
    if (!(max_magnitude_sum >= 0) || !std::isfinite(max_magnitude_sum))
      throw config_error(detail::str("ring_error_bound: max_magnitude_sum = ", max_magnitude_sum,
                                     " (must be finite and >= 0)"));
    d_ = codec::encode_error_bound(c, 1.1 * max_magnitude_sum);
    gamma_ = 2.0 * p * u / (1 - 2.0 * p * u);
    bool grows = std::is_same_v<Codec, codec::qsgd>;
    if constexpr (std::is_same_v<Codec, codec::any_codec>)
      grows = std::holds_alternative<codec::qsgd>(c);
    if (grows) {
      // qsgd's decoded values may exceed the input's magnitude (|y| <= |x| +
      // d), so a later hop may encode a partial sum above the magnitude sum:
      // hop j sees at most 1.01 (S + the errors of hops before it).
      double total = 0;
      for (int j = 0; j < p; ++j)
        total += codec::encode_error_bound(c, 1.01 * (max_magnitude_sum + total));
      errors_ = total;
    } else {
      errors_ = p * d_;
    }
  }

  /// The bound for one element: `magnitude_sum` = sum_q |x_q,i|, `exact` =
  /// the exact result (the sum, or the mean for average).
  double operator()(double magnitude_sum, double exact) const {
    const double sum_bound = gamma_ * (magnitude_sum + errors_) + errors_;
    return average_ ? sum_bound / p_ + u * std::abs(exact) : sum_bound;
  }

  /// d: the worst error of one encode at the bound's magnitude.
  double per_encode() const noexcept { return d_; }

 private:
  static constexpr double u = 0x1p-24;
  int p_;
  bool average_;
  double d_ = 0, gamma_ = 0;
  double errors_ = 0;  // sum of the per-encode bounds over an element's p encodes
};

}  // namespace greenreduce::collective
