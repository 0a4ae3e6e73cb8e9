// greenreduce/core/ars.hpp — ARS-5, the AES-round counter-based generator, in portable C++.
//
// ARS-R (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011; the ARS generator of their Random123 library): a 128-bit counter block
// is XORed with the key, then goes through R - 1 AES rounds (SubBytes, ShiftRows,
// MixColumns, AddRoundKey: exactly what the x86 AESENC instruction does) and one
// last round without MixColumns (AESENCLAST). Round key r is the key with r times
// the Weyl increments 0x9E3779B97F4A7C15 (golden ratio) and 0xBB67AE8584CAA73B
// (sqrt(3) - 1) added to its low and high 64-bit halves (mod 2^64). The paper
// reports 5 rounds as enough to pass TestU01's BigCrush ("Crush-resistant");
// Random123 uses 7 by default as a safety margin. Not a cipher: the key schedule
// is deliberately weak.
//
// An rng's ARS block j (greenreduce::ars5_block): counter = offset + j in the low
// 64 bits and the stream in the high 64 bits, key = seed in the low 64 bits and
// 0 in the high ones. A block is four little-endian 32-bit words (the
// philox_block type), byte k of the AES state being byte k % 4 of word k / 4 —
// the byte order of an __m128i, so the AES-NI / VAES form
// (kernels/random_bits.hpp) is bit for bit this code, which the tests check,
// as they check the rounds against FIPS-197's AES-128 example.
//
// The S-box is computed at compile time (multiplicative inverse in GF(2^8),
// then the affine map of FIPS-197 5.1.1); device code reads its own copy in
// global memory (nvcc cannot read a host constexpr array from the device).
#pragma once

#include <cstdint>

#include "greenreduce/core/config.hpp"
#include "greenreduce/core/rng.hpp"

namespace greenreduce {

namespace ars {
inline constexpr std::uint64_t weyl_lo = 0x9E3779B97F4A7C15ULL;  // golden ratio
inline constexpr std::uint64_t weyl_hi = 0xBB67AE8584CAA73BULL;  // sqrt(3) - 1
inline constexpr int rounds = 5;

struct sbox_table {
  std::uint8_t v[256];
};

constexpr std::uint8_t gf_mul(std::uint8_t a, std::uint8_t b) {
  std::uint8_t p = 0;
  for (int i = 0; i < 8; ++i) {
    if ((b & 1U) != 0) p = static_cast<std::uint8_t>(p ^ a);
    const bool hi = (a & 0x80U) != 0;
    a = static_cast<std::uint8_t>(a << 1);
    if (hi) a = static_cast<std::uint8_t>(a ^ 0x1BU);
    b = static_cast<std::uint8_t>(b >> 1);
  }
  return p;
}

constexpr std::uint8_t rotl8(std::uint8_t x, int r) {
  return static_cast<std::uint8_t>((x << r) | (x >> (8 - r)));
}

/// FIPS-197 5.1.1: b = x^254 (the inverse, 0 for 0), then the affine map.
constexpr sbox_table make_sbox() {
  sbox_table t{};
  for (int x = 0; x < 256; ++x) {
    std::uint8_t inv = 1, base = static_cast<std::uint8_t>(x);
    for (int e = 254; e > 0; e >>= 1) {
      if ((e & 1) != 0) inv = gf_mul(inv, base);
      base = gf_mul(base, base);
    }
    if (x == 0) inv = 0;
    t.v[x] = static_cast<std::uint8_t>(inv ^ rotl8(inv, 1) ^ rotl8(inv, 2) ^ rotl8(inv, 3) ^
                                       rotl8(inv, 4) ^ 0x63U);
  }
  return t;
}

inline constexpr sbox_table sbox_host = make_sbox();
#if defined(__CUDACC__)
static __device__ const sbox_table sbox_device = make_sbox();
#endif

GREENREDUCE_HD std::uint32_t sub_byte(std::uint32_t word, int byte) {
  const auto b = static_cast<std::uint8_t>(word >> (8 * byte));
#if defined(__CUDA_ARCH__)
  return sbox_device.v[b];
#else
  return sbox_host.v[b];
#endif
}

/// Doubling in GF(2^8) of each byte of a word.
GREENREDUCE_HD std::uint32_t xtime4(std::uint32_t w) {
  const std::uint32_t hi = w & 0x80808080U;
  return ((w & 0x7F7F7F7FU) << 1) ^ ((hi >> 7) * 0x1BU);
}

/// One AES round on a block: SubBytes, ShiftRows, MixColumns unless Last,
/// then XOR with rk (the semantics of _mm_aesenc_si128 / _mm_aesenclast_si128).
template <bool Last>
GREENREDUCE_HD philox_block aes_round(const philox_block& s, const philox_block& rk) {
  philox_block out{};
  for (int c = 0; c < 4; ++c) {
    // ShiftRows: row r of column c comes from column c + r.
    const std::uint32_t col = sub_byte(s[c], 0) | (sub_byte(s[(c + 1) & 3], 1) << 8) |
                              (sub_byte(s[(c + 2) & 3], 2) << 16) |
                              (sub_byte(s[(c + 3) & 3], 3) << 24);
    std::uint32_t mixed = col;
    if (!Last) {
      // b_r = a_r ^ t ^ 2 (a_r ^ a_{r+1}), t = a_0 ^ a_1 ^ a_2 ^ a_3.
      const std::uint32_t rot1 = (col >> 8) | (col << 24);  // byte r holds a_{r+1}
      std::uint32_t t = col ^ rot1;
      t ^= (t >> 16) | (t << 16);  // every byte now holds a_0 ^ a_1 ^ a_2 ^ a_3
      mixed = col ^ t ^ xtime4(col ^ rot1);
    }
    out[c] = mixed ^ rk[c];
  }
  return out;
}

/// Round key r of the Weyl schedule from a 128-bit key (two 64-bit halves).
GREENREDUCE_HD philox_block round_key(std::uint64_t k_lo, std::uint64_t k_hi, int r) {
  const std::uint64_t lo = k_lo + static_cast<std::uint64_t>(r) * weyl_lo;
  const std::uint64_t hi = k_hi + static_cast<std::uint64_t>(r) * weyl_hi;
  return philox_block{{static_cast<std::uint32_t>(lo), static_cast<std::uint32_t>(lo >> 32),
                       static_cast<std::uint32_t>(hi), static_cast<std::uint32_t>(hi >> 32)}};
}

/// ARS-R of one counter block with the round keys k[0..R] already expanded.
template <int R = rounds>
GREENREDUCE_HD philox_block encrypt(philox_block ctr, const philox_block* k) {
  static_assert(R >= 1 && R <= 10, "ARS is defined for 1 to 10 rounds");
  for (int i = 0; i < 4; ++i) ctr[i] ^= k[0][i];
  for (int r = 1; r < R; ++r) ctr = aes_round<false>(ctr, k[r]);
  return aes_round<true>(ctr, k[R]);
}

/// ARS-R of one counter block under the key (k_lo, k_hi).
template <int R = rounds>
GREENREDUCE_HD philox_block encrypt(philox_block ctr, std::uint64_t k_lo, std::uint64_t k_hi) {
  static_assert(R >= 1 && R <= 10, "ARS is defined for 1 to 10 rounds");
  philox_block k[R + 1];
  for (int r = 0; r <= R; ++r) k[r] = round_key(k_lo, k_hi, r);
  return encrypt<R>(ctr, k);
}

/// The counter block of absolute counter c in `stream` (see the header comment).
GREENREDUCE_HD philox_block counter_block(std::uint64_t c, std::uint64_t stream) {
  return philox_block{{static_cast<std::uint32_t>(c), static_cast<std::uint32_t>(c >> 32),
                       static_cast<std::uint32_t>(stream),
                       static_cast<std::uint32_t>(stream >> 32)}};
}

/// The counter block of an rng's block j.
GREENREDUCE_HD philox_block counter_of(const rng& g, std::uint64_t j) {
  return counter_block(g.offset + j, g.stream);
}
}  // namespace ars

/// ARS-5 block `offset + j` of the rng `g` (does not advance): the portable
/// reference every SIMD and GPU form matches.
GREENREDUCE_HD philox_block ars5_block(const rng& g, std::uint64_t j) {
  return ars::encrypt<ars::rounds>(ars::counter_of(g, j), g.seed, 0);
}

}  // namespace greenreduce
