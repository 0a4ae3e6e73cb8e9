// examples/train/balance.hpp — resource-aware batch shares for --balance.
//
// Each worker measures its throughput (samples per second of compute, an
// exponential average; a --straggler's slowdown included). Rank q then gets
// the share rate_q / sum(rate) of the global batch np x batch, so that every
// rank's compute takes about as long, and its gradient is weighted by
// b_q x np / sum(b) before the average, so the update is the mean over all
// samples of the step (harness.hpp).
//
// How the rates travel, in the ring modes: with an exact codec (fp32) they
// ride in the gradient's own allreduce, np slots after the gradient, rank q's
// rate in slot q and zeros elsewhere, so the average times np gives every
// rank every rate (adding zeros is exact) with no collective of their own.
// Lossy codecs would round the rates with the gradient (and a bucket scale
// shared with a rate of 1e5 would wreck the gradient values beside it), so
// those modes allgather the rates instead.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <span>
#include <vector>

#include "greenreduce/core/error.hpp"

namespace greenreduce::examples {

/// Batch sizes proportional to `rates` that add up to about
/// `rates.size() x batch` (each rounded, at least 1). `current` is returned
/// unchanged when the rates do not say anything (a rate that is not finite or
/// not positive: not measured yet).
inline std::vector<std::size_t> balanced_batches(std::span<const double> rates, int batch,
                                                 std::vector<std::size_t> current) {
  if (batch < 1) throw config_error(greenreduce::detail::str("batch must be >= 1, got ", batch));
  if (current.size() != rates.size())
    throw config_error(greenreduce::detail::str("balanced_batches: ", rates.size(), " rates but ",
                                                current.size(), " batch sizes"));
  for (double r : rates)
    if (!std::isfinite(r) || r <= 0) return current;
  const double sum = std::accumulate(rates.begin(), rates.end(), 0.0);
  const double global = static_cast<double>(batch) * static_cast<double>(rates.size());
  for (std::size_t q = 0; q < rates.size(); ++q)
    current[q] =
        std::max<std::size_t>(1, static_cast<std::size_t>(std::lround(global * rates[q] / sum)));
  return current;
}

/// Writes this rank's rate into its slot of the `slots` that follow the
/// gradient in the allreduce buffer, zeros into the others.
inline void put_rate(std::span<float> slots, int rank, double rate) {
  if (rank < 0 || static_cast<std::size_t>(rank) >= slots.size())
    throw config_error(
        greenreduce::detail::str("put_rate: rank ", rank, " has no slot among ", slots.size()));
  std::fill(slots.begin(), slots.end(), 0.0F);
  slots[static_cast<std::size_t>(rank)] = static_cast<float>(rate);
}

/// Every rank's rate from the slots after an average over `world` ranks.
inline void take_rates(std::span<const float> slots, int world, std::span<double> rates) {
  if (rates.size() != slots.size())
    throw config_error(greenreduce::detail::str("take_rates: ", slots.size(), " slots but ",
                                                rates.size(), " rates"));
  for (std::size_t q = 0; q < slots.size(); ++q)
    rates[q] = static_cast<double>(slots[q]) * static_cast<double>(world);
}

}  // namespace greenreduce::examples
