// The ternary quantizer's random bits at kernel level (kernels/ternary.hpp):
// quantize_tiles and quantize_tail of every instruction set write
// scalar::quantize's codes for any rng position (the 64-bit counter wrap
// included), any tile range and every length of a partial tile, and the
// random 16 bits of element i are the documented word of the documented
// ARS-5 block.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <vector>

#include "greenreduce/kernels/ternary.hpp"
#include "kernels/archs.hpp"
#include "support/random.hpp"

using namespace greenreduce;
namespace kt = greenreduce::kernels::ternary;

TEST_CASE("ternary random16 is 16 bits of ARS-5 block 32t + 4(Q >> 1) + (l >> 2), word l & 3",
          "[kernels][ternary]") {
  const auto seed = test::seed(911);
  INFO("seed " << seed);
  std::mt19937_64 gen(seed);
  rng g(gen(), gen());
  g.offset = gen();
  for (std::uint64_t i = 0; i < 4096; ++i) {
    const std::uint64_t t = i / 256, q = (i % 256) / 16, l = i % 16;
    const philox_block b = ars5_block(g, 32 * t + 4 * (q / 2) + l / 4);
    REQUIRE(kt::scalar::random16(g, i) ==
            ((b[static_cast<int>(l % 4)] >> (16 * (q % 2))) & 0xFFFFU));
  }
}

TEST_CASE("ternary quantize_tiles and quantize_tail equal scalar::quantize on every ISA",
          "[kernels][ternary]") {
  const auto seed = test::seed(912);
  INFO("seed " << seed);
  test::for_each_arch([&](auto arch, const std::string& name) {
    using Arch = decltype(arch);
    INFO(name);
    std::mt19937_64 gen(seed);
    for (int trial = 0; trial < 40; ++trial) {
      rng g(gen(), gen());
      g.offset = trial % 2 == 0 ? ~std::uint64_t{0} - gen() % 200 : gen();
      const std::size_t tiles = 1 + gen() % 6, tail = trial == 0 ? 1 : gen() % 256;
      const std::size_t n = 256 * tiles + tail;
      const auto x = test::normal_floats(n, seed + static_cast<std::uint64_t>(trial));
      const float s = trial % 5 == 0 ? 0.0F : 1.5F;
      // Tiles [first, tiles) of the n elements and the partial tile, from a
      // first tile that is not 0, as encode does for a later bucket.
      const std::size_t first = gen() % tiles;
      std::vector<std::uint8_t> a(kt::code_bytes(n), 0), b(kt::code_bytes(n), 0);
      kt::quantize_tiles<Arch>(x.data(), 256 * first, 256 * tiles, s, g, a.data());
      const std::size_t tail_from = 256 * tiles + (tail == 0 ? 0 : gen() % tail);
      if (tail > 0) kt::quantize_tail<Arch>(x.data(), tail_from, n, n, s, g, a.data());
      kt::scalar::quantize(x.data(), 256 * first, 256 * tiles, n, s, g, b.data());
      if (tail > 0) kt::scalar::quantize(x.data(), tail_from, n, n, s, g, b.data());
      INFO("trial " << trial << " n " << n << " first tile " << first << " tail from "
                    << tail_from);
      REQUIRE(a == b);
    }
  });
}
