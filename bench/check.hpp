// bench/check.hpp — deterministic inputs and the --check error bound of greenreduce-bench.
//
// Rank q's input element i is a pure function of (seed, q, i), uniform in
// [-1, 1), so any rank can recompute every rank's input and the float64
// reference sum without communication.
//
// The --check bound on |result_i - exact_i| is collective::ring_error_bound
// (collective/error_bound.hpp), built on codec::encode_error_bound.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "greenreduce/codec/registry.hpp"
#include "greenreduce/collective/error_bound.hpp"

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
  const collective::ring_error_bound bound(c, p, mmax, average);
  std::uint64_t wrong = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double exact = 0, mag = 0;
    for (int q = 0; q < p; ++q) {
      const double v = input_value(seed, q, i);
      exact += v;
      mag += std::fabs(v);
    }
    if (average) exact /= p;
    const double got = result[i];
    if (!(std::fabs(got - exact) <= bound(mag, exact))) ++wrong;
  }
  return wrong;
}

}  // namespace greenreduce::bench
