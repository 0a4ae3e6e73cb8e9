#include "greenreduce/core/rng.hpp"

#include <catch2/catch.hpp>
#include <cmath>

using namespace greenreduce;

TEST_CASE("philox4x32-10 reproduces the Random123 known-answer vectors", "[core][rng]") {
  // kat_vectors of Random123 1.09, philox4x32 with 10 rounds.
  CHECK(philox4x32_10({0, 0, 0, 0}, 0, 0) ==
        philox_block{0x6627e8d5U, 0xe169c58dU, 0xbc57ac4cU, 0x9b00dbd8U});
  CHECK(philox4x32_10({0xffffffffU, 0xffffffffU, 0xffffffffU, 0xffffffffU}, 0xffffffffU,
                      0xffffffffU) ==
        philox_block{0x408f276dU, 0x41c83b0eU, 0xa20bc7c6U, 0x6d5451fdU});
  CHECK(philox4x32_10({0x243f6a88U, 0x85a308d3U, 0x13198a2eU, 0x03707344U}, 0xa4093822U,
                      0x299f31d0U) ==
        philox_block{0xd16cfe09U, 0x94fdccebU, 0x5001e420U, 0x24126ea1U});
}

TEST_CASE("rng blocks depend on seed, stream and offset, and advance moves on", "[core][rng]") {
  rng a(42, 0), b(42, 1), c(43, 0);
  CHECK(a.block(0) != b.block(0));
  CHECK(a.block(0) != c.block(0));
  CHECK(a.block(0) != a.block(1));
  const auto second = a.block(1);
  a.advance(1);
  CHECK(a.block(0) == second);
  CHECK(a.offset == 1);
}

TEST_CASE("uniform_float covers [0, 1) with a uniform mean", "[core][rng]") {
  CHECK(uniform_float(0) == 0.0F);
  CHECK(uniform_float(0xFFFFFFFFU) < 1.0F);
  rng g(7);
  double sum = 0;
  const int n = 1 << 16;
  for (int i = 0; i < n / 4; ++i)
    for (auto w : g.block(static_cast<std::uint64_t>(i))) sum += uniform_float(w);
  // Mean of U[0,1) has sd sqrt(1/12/n); allow 5 sigma.
  CHECK(std::abs(sum / n - 0.5) < 5 * std::sqrt(1.0 / 12 / n));
}
