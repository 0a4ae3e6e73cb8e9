// bench/check.hpp — deterministic inputs and the --check error bound of greenreduce-bench.
//
// Rank q's input element i is a pure function of (seed, q, i), uniform in
// [-1, 1), so any rank can recompute every rank's input and the float64
// reference sum without communication.
//
// Bound on |result_i - exact_i| for a p-rank sum (average: divide by p and
// add one rounding, u |exact_i|):
//
//   gamma_2p * (sum_q |x_q,i| + p * d)  +  p * d
//
// gamma_k = k u / (1 - k u), u = 2^-24, bounds fp32 summation in any order
// (Higham 2002, eq. 4.4); d is the codec's worst error of ONE encode of a
// vector whose magnitudes are at most M = 1.1 * max_i sum_q |x_q,i| (every
// partial sum a hop re-encodes is below the full magnitude sum; 10% covers the
// errors earlier hops added). Each element is encoded at most p times on its
// way (p-1 reduce-scatter hops and the allgather encode; one encode per rank
// on the sparse allgather path). d per codec family:
//
//   none      0                     exact
//   fp16      2^-11 M + 2^-25       round to nearest, subnormal spacing
//   bf16      2^-8 M                round to nearest
//   int8      M / 127               one step of the bucket scale (stochastic)
//   fp8       2^-4 M (E4M3), 2^-3 M (E5M2), +1%: half a step of 3 or 2
//             mantissa bits (the subnormal step of the scaled value is below it)
//   qsgd      sqrt(bucket) M / s, +1%: one level of the bucket's norm
//   others    2 M                   quantizers to a few levels or sparsifiers:
//                                   a dropped or sign-only value errs by <= 2M
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "greenreduce/codec/registry.hpp"

namespace greenreduce::bench {

inline float input_value(std::uint64_t seed, int rank, std::size_t i) {
  std::uint64_t z = seed * 0x9E3779B97F4A7C15ULL +
                    static_cast<std::uint64_t>(rank) * 0xD1B54A32D192ED03ULL +
                    static_cast<std::uint64_t>(i) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return static_cast<float>(static_cast<double>(z >> 40) * 0x1p-23 - 1.0);
}

inline void fill_input(std::span<float> x, std::uint64_t seed, int rank) {
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = input_value(seed, rank, i);
}

/// The worst error of one encode of values with magnitude <= m (see above).
template <class Codec>
double per_encode_error(const Codec& c, double m) {
  const std::string_view name = c.name();
  if (name == "none") return 0;
  if (name == "fp16") return std::ldexp(m, -11) + std::ldexp(1.0, -25);
  if (name == "bf16") return std::ldexp(m, -8);
  if (name.starts_with("int8")) return m / 127;
  if (name == "fp8_e4m3") return std::ldexp(m, -4) * 1.01;
  if (name == "fp8_e5m2") return std::ldexp(m, -3) * 1.01;
  if constexpr (std::is_same_v<Codec, codec::qsgd>)
    return std::sqrt(static_cast<double>(c.bucket())) * m / c.levels() * 1.01;
  return 2 * m;
}

/// Elements of `result` (this rank's output) beyond the bound.
template <class Codec>
std::uint64_t count_wrong(const Codec& c, std::span<const float> result, std::uint64_t seed, int p,
                          bool average) {
  const std::size_t n = result.size();
  double mmax = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double mag = 0;
    for (int q = 0; q < p; ++q) mag += std::fabs(input_value(seed, q, i));
    mmax = std::max(mmax, mag);
  }
  const double u = std::ldexp(1.0, -24);
  const double gamma = 2.0 * p * u / (1 - 2.0 * p * u);
  const double d = per_encode_error(c, 1.1 * mmax);
  std::uint64_t wrong = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double exact = 0, mag = 0;
    for (int q = 0; q < p; ++q) {
      const double v = input_value(seed, q, i);
      exact += v;
      mag += std::fabs(v);
    }
    double bound = gamma * (mag + p * d) + p * d;
    if (average) {
      exact /= p;
      bound = bound / p + u * std::fabs(exact);
    }
    const double got = result[i];
    if (!(std::fabs(got - exact) <= bound)) ++wrong;
  }
  return wrong;
}

}  // namespace greenreduce::bench
