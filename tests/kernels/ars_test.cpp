// ARS-5 (core/ars.hpp, kernels/random_bits.hpp): the portable AES rounds
// against FIPS-197's AES-128 example and against the AES-NI instructions, the
// rng's ARS blocks against an AES-NI restatement of the Weyl key schedule, and
// the SIMD stream of every instruction set against the portable blocks.
#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>

#include "greenreduce/core/ars.hpp"
#include "greenreduce/kernels/random_bits.hpp"
#include "kernels/archs.hpp"
#include "support/random.hpp"

using namespace greenreduce;

namespace {

philox_block from_bytes(const std::array<std::uint8_t, 16>& b) {
  philox_block w{};
  for (int k = 0; k < 4; ++k)
    w[k] = static_cast<std::uint32_t>(b[4 * k]) | static_cast<std::uint32_t>(b[4 * k + 1]) << 8 |
           static_cast<std::uint32_t>(b[4 * k + 2]) << 16 |
           static_cast<std::uint32_t>(b[4 * k + 3]) << 24;
  return w;
}

#if defined(__AES__)
philox_block random_block(std::mt19937_64& gen) {
  philox_block b{};
  for (int k = 0; k < 4; ++k) b[k] = static_cast<std::uint32_t>(gen());
  return b;
}
__m128i to_m128(const philox_block& b) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.w));
}
philox_block from_m128(__m128i v) {
  philox_block b{};
  _mm_storeu_si128(reinterpret_cast<__m128i*>(b.w), v);
  return b;
}
#endif

}  // namespace

TEST_CASE("ars: the S-box and the AES rounds give FIPS-197's AES-128 example", "[kernels][ars]") {
  const auto& sb = ars::sbox_host.v;
  CHECK(sb[0x00] == 0x63);
  CHECK(sb[0x01] == 0x7C);
  CHECK(sb[0x53] == 0xED);
  CHECK(sb[0xFF] == 0x16);
  // FIPS-197 appendix C.1: key 00 01 .. 0f, plaintext 00 11 22 .. ff.
  std::array<std::uint8_t, 16> key{}, pt{};
  for (int i = 0; i < 16; ++i) {
    key[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i);
    pt[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(0x11 * i);
  }
  // Key expansion (FIPS-197 5.2) on little-endian words: RotWord is a rotate
  // right by 8, Rcon goes into the low byte.
  std::array<std::uint32_t, 44> w{};
  const philox_block k = from_bytes(key);
  for (int i = 0; i < 4; ++i) w[static_cast<std::size_t>(i)] = k[i];
  std::uint32_t rcon = 1;
  for (std::size_t i = 4; i < 44; ++i) {
    std::uint32_t t = w[i - 1];
    if (i % 4 == 0) {
      t = (t >> 8) | (t << 24);
      t = ars::sub_byte(t, 0) | ars::sub_byte(t, 1) << 8 | ars::sub_byte(t, 2) << 16 |
          ars::sub_byte(t, 3) << 24;
      t ^= rcon;
      rcon = ars::gf_mul(static_cast<std::uint8_t>(rcon), 2);
    }
    w[i] = w[i - 4] ^ t;
  }
  auto rk = [&](std::size_t r) {
    return philox_block{{w[4 * r], w[4 * r + 1], w[4 * r + 2], w[4 * r + 3]}};
  };
  philox_block s = from_bytes(pt);
  for (int i = 0; i < 4; ++i) s[i] ^= rk(0)[i];
  for (std::size_t r = 1; r < 10; ++r) s = ars::aes_round<false>(s, rk(r));
  s = ars::aes_round<true>(s, rk(10));
  const philox_block want = from_bytes({0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd,
                                        0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a});
  CHECK(s == want);
}

#if defined(__AES__)
TEST_CASE("ars: the portable rounds equal AESENC / AESENCLAST on random blocks", "[kernels][ars]") {
  const auto seed = test::seed(901);
  INFO("seed " << seed);
  std::mt19937_64 gen(seed);
  for (int t = 0; t < 20000; ++t) {
    const philox_block s = random_block(gen), k = random_block(gen);
    REQUIRE(ars::aes_round<false>(s, k) == from_m128(_mm_aesenc_si128(to_m128(s), to_m128(k))));
    REQUIRE(ars::aes_round<true>(s, k) == from_m128(_mm_aesenclast_si128(to_m128(s), to_m128(k))));
  }
}

TEST_CASE("ars: an rng's ARS-5 blocks equal the AES-NI form with the Weyl key schedule",
          "[kernels][ars]") {
  const auto seed = test::seed(902);
  INFO("seed " << seed);
  std::mt19937_64 gen(seed);
  const __m128i weyl =
      _mm_set_epi64x(static_cast<long long>(ars::weyl_hi), static_cast<long long>(ars::weyl_lo));
  for (int t = 0; t < 2000; ++t) {
    rng g(gen(), gen());
    g.offset = t % 3 == 0 ? ~std::uint64_t{0} - gen() % 8 : gen();  // includes the 2^64 wrap
    const std::uint64_t j = gen() % 64;
    const std::uint64_t c = g.offset + j;
    const __m128i ctr = _mm_set_epi64x(static_cast<long long>(g.stream), static_cast<long long>(c));
    __m128i key = _mm_set_epi64x(0, static_cast<long long>(g.seed));
    __m128i v = _mm_xor_si128(ctr, key);
    for (int r = 1; r < 5; ++r) {
      key = _mm_add_epi64(key, weyl);
      v = _mm_aesenc_si128(v, key);
    }
    key = _mm_add_epi64(key, weyl);
    v = _mm_aesenclast_si128(v, key);
    REQUIRE(ars5_block(g, j) == from_m128(v));
  }
}
#endif

TEST_CASE("ars: the SIMD stream of every instruction set equals the portable blocks",
          "[kernels][ars]") {
  const auto seed = test::seed(903);
  INFO("seed " << seed);
  test::for_each_arch([&](auto arch, const std::string& name) {
    using Arch = decltype(arch);
    constexpr std::size_t w = kernels::u32_batch<Arch>::size;
    INFO(name);
    std::mt19937_64 gen(seed);
    for (int t = 0; t < 50; ++t) {
      rng g(gen(), gen());
      g.offset = t % 2 == 0 ? ~std::uint64_t{0} - gen() % 40 : gen();
      const std::uint64_t first = gen() % 1000;
      kernels::ars_stream<Arch> st(g, first);
      for (std::uint64_t call = 0; call < 20; ++call) {
        alignas(64) std::uint32_t got[w];
        st.next().store_aligned(got);
        for (std::size_t m = 0; m < w; ++m) {
          const philox_block b = ars5_block(g, first + call * (w / 4) + m / 4);
          REQUIRE(got[m] == b[static_cast<int>(m % 4)]);
        }
      }
    }
  });
}
