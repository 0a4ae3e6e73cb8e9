// tests/support/random.hpp — fresh random inputs for property tests.
//
// Seeds derive from Catch's --rng-seed (ctest passes "time"), so every run
// draws new inputs and a failure can be replayed with `--rng-seed N`.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <vector>

namespace greenreduce::test {

/// A seed for one test: Catch's run seed mixed with a per-site salt.
inline std::uint64_t seed(std::uint64_t salt = 0) {
  std::uint64_t x = static_cast<std::uint64_t>(Catch::rngSeed()) * 0x9E3779B97F4A7C15ULL + salt;
  x ^= x >> 31;
  return x * 0xBF58476D1CE4E5B9ULL;
}

/// n floats ~ N(mean, stddev).
inline std::vector<float> normal_floats(std::size_t n, std::uint64_t s, float mean = 0.0F,
                                        float stddev = 1.0F) {
  std::mt19937_64 gen(s);
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

/// n random bytes.
inline std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t s) {
  std::mt19937_64 gen(s);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(gen() & 0xFFU);
  return v;
}

}  // namespace greenreduce::test
