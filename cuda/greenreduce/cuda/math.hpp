// greenreduce/cuda/math.hpp — the per-element math of the CUDA codecs, as
// plain C++ that both nvcc (device) and the host compiler build.
//
// Every rule here restates one rule of the CPU kernels (include/greenreduce/
// kernels/*.hpp) so that a GPU encodes the same bytes as a CPU:
//   int8     kernels/int8.hpp: the bucket scale (absmax / 127 rounded up to 16
//            significant bits), the pre-scale of tiny buckets, the nearest and
//            stochastic quantizers, and the philox.hpp group rule for the
//            random word of element i;
//   ternary  kernels/ternary.hpp: the random 16 bits of element i (ARS-5
//            blocks, core/ars.hpp, whose portable AES rounds read a device
//            copy of the S-box), the code of one element, the code's byte and
//            shift, the clipped scale;
//   fp16/bf16 kernels/half.hpp: round-to-nearest-even conversions.
// Nothing here includes a CUDA header: the host test (tests/cuda/
// cross_format_test.cpp) compiles this file with g++ and holds every function
// to the CPU kernel it restates, bit for bit, so the two cannot drift apart.
//
// Rounding: on the device the multiplies and divisions are the explicitly
// rounded intrinsics (__fmul_rn, __fdiv_rn), which nvcc never contracts into
// an FMA and which stay IEEE under --use_fast_math's -prec-div=false; only
// -ftz=true (flushing subnormals) would change results, so do not build the
// CUDA codecs with --use_fast_math.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "greenreduce/core/ars.hpp"
#include "greenreduce/core/config.hpp"
#include "greenreduce/core/rng.hpp"

namespace greenreduce::cuda::math {

GREENREDUCE_HD std::uint32_t bits_of(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}
GREENREDUCE_HD float float_of(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#endif
}
GREENREDUCE_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
GREENREDUCE_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
GREENREDUCE_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
/// Round to nearest even, as an integer (std::nearbyint in the default mode).
GREENREDUCE_HD std::int32_t round_even(float x) {
#if defined(__CUDA_ARCH__)
  return __float2int_rn(x);
#else
  return static_cast<std::int32_t>(std::nearbyint(x));
#endif
}

inline constexpr std::uint32_t abs_mask = 0x7FFFFFFFU;
inline constexpr std::uint32_t inf_bits = 0x7F800000U;  ///< |x| bits >= this: Inf or NaN

// ------------------------------------------------------------------ int8

/// kernels::int8_bucket: the scale on the wire and the quantizer's factors.
struct int8_params {
  float scale;
  float pre;
  float inv;
};

GREENREDUCE_HD int8_params int8_params_of(float absmax) {
  int8_params b{0.0F, 1.0F, 0.0F};
  const float raw = div_rn(absmax, 127.0F);
  b.scale = float_of((bits_of(raw) + 0xFFU) & ~0xFFU);
  if (b.scale > 0x1.fffep127F / 127.0F) b.scale = float_of(bits_of(raw) & ~0xFFU);
  b.pre = absmax < 0x1p-64F ? 0x1p64F : 1.0F;
  b.inv = b.scale > 0.0F ? div_rn(1.0F, mul_rn(b.scale, b.pre)) : 0.0F;
  return b;
}

GREENREDUCE_HD float int8_scaled(float x, const int8_params& b) {
  const float v = mul_rn(mul_rn(x, b.pre), b.inv);
  return fminf(fmaxf(v, -127.0F), 127.0F);
}
GREENREDUCE_HD std::int32_t int8_nearest(float x, const int8_params& b) {
  return round_even(int8_scaled(x, b));
}
GREENREDUCE_HD std::int32_t int8_stochastic(float x, const int8_params& b, std::uint32_t word) {
  const std::int32_t t = round_even(mul_rn(int8_scaled(x, b), 0x1p24F));
  return (t + static_cast<std::int32_t>(word >> 8)) >> 24;
}

/// kernels/philox.hpp group rule: groups of 64 elements read 16 blocks; block
/// j of group g (block 16g + j of the call) feeds elements 64g + 16k + j with
/// word k (k < 4).
inline constexpr std::uint64_t philox_group = 64;
inline constexpr std::uint64_t philox_group_blocks = 16;
GREENREDUCE_HD std::uint64_t int8_element(std::uint64_t group, std::uint32_t j, std::uint32_t k) {
  return philox_group * group + 16U * k + j;
}
GREENREDUCE_HD std::uint32_t int8_word(const rng& g, std::uint64_t i) {
  const std::uint64_t r = i % philox_group;
  return g.block(philox_group_blocks * (i / philox_group) + r % 16)[static_cast<int>(r / 16)];
}

/// One work item of the stochastic int8 kernel: Philox block 16·grp + j of
/// the call, whose word k rounds element 64·grp + 16k + j, for the elements
/// in [s, e). The host test runs this same function to replay the kernel.
GREENREDUCE_HD void int8_stochastic_item(const float* x, std::uint64_t grp, std::uint32_t j,
                                         std::uint64_t s, std::uint64_t e, const int8_params& p,
                                         const rng& g, std::int8_t* q) {
  const philox_block words = g.block(philox_group_blocks * grp + j);
  for (std::uint32_t k = 0; k < 4; ++k) {
    const std::uint64_t i = int8_element(grp, j, k);
    if (i >= s && i < e) q[i] = static_cast<std::int8_t>(int8_stochastic(x[i], p, words[k]));
  }
}

// ------------------------------------------------------------------ ternary

inline constexpr std::uint64_t ternary_tile = 256;
inline constexpr std::uint64_t ternary_lanes = 16;
inline constexpr std::uint64_t ternary_blocks_per_tile = 32;

/// ARS-5 block (relative to the rng offset), word and shift of element i's 16 bits.
struct ternary_bits_at {
  std::uint64_t block;
  int word;
  unsigned shift;
};
GREENREDUCE_HD ternary_bits_at ternary_bits_of(std::uint64_t i) {
  const std::uint64_t t = i / ternary_tile, e = i % ternary_tile, q = e / ternary_lanes,
                      l = e % ternary_lanes;
  return {ternary_blocks_per_tile * t + 4 * (q >> 1) + (l >> 2), static_cast<int>(l & 3),
          static_cast<unsigned>(16 * (q & 1))};
}
GREENREDUCE_HD std::uint32_t ternary_random16(const rng& g, std::uint64_t i) {
  const ternary_bits_at a = ternary_bits_of(i);
  return (ars5_block(g, a.block)[a.word] >> a.shift) & 0xFFFFU;
}

GREENREDUCE_HD float ternary_threshold_factor(float s) {
  return s > 0.0F ? div_rn(65536.0F, s) : 0.0F;
}
/// 0 (zero), 1 (+s) or 2 (-s).
GREENREDUCE_HD std::uint32_t ternary_code(float x, std::uint32_t r16, float s, float f) {
  const std::uint32_t bits = bits_of(x);
  const float a = float_of(bits & abs_mask);
  const float t = mul_rn(fminf(a, s), f);
  return static_cast<float>(r16) < t ? 1U + (bits >> 31) : 0U;
}

/// Work items of a full tile: item (P, k) evaluates ARS-5 blocks 32t + 8P + k
/// and 32t + 8P + 4 + k (row pairs 2P and 2P + 1, lanes 4k..4k+3) once and
/// returns the 16 codes of rows 4P..4P+3 of lanes 4k + m as byte m: byte P of
/// packed word 4k + m, i.e. codes[64t + 4(4k + m) + P].
inline constexpr unsigned ternary_items_per_tile = 16;
GREENREDUCE_HD std::uint32_t ternary_tile_item(const float* x, std::uint64_t t, unsigned P,
                                               unsigned k, float s, float f, const rng& g) {
  const float* xt = x + ternary_tile * t;
  std::uint32_t bytes = 0;
  for (unsigned pair = 0; pair < 2; ++pair) {
    const philox_block w = ars5_block(g, ternary_blocks_per_tile * t + 8 * P + 4 * pair + k);
    for (unsigned h = 0; h < 2; ++h) {
      const unsigned row = 4 * P + 2 * pair + h;  // bits 2(row % 4) of byte m
      for (unsigned m = 0; m < 4; ++m) {
        const std::uint32_t r16 = (w[static_cast<int>(m)] >> (16 * h)) & 0xFFFFU;
        bytes |= ternary_code(xt[16 * row + 4 * k + m], r16, s, f) << (8 * m + 2 * (row % 4));
      }
    }
  }
  return bytes;
}

/// Byte j of the last, partial tile (linear layout: elements from + 4j ..
/// from + 4j + 3 below hi), padding bits 0.
GREENREDUCE_HD std::uint8_t ternary_tail_byte(const float* x, std::uint64_t from, std::uint64_t j,
                                              std::uint64_t hi, float s, float f, const rng& g) {
  std::uint32_t byte = 0;
  for (unsigned c = 0; c < 4; ++c) {
    const std::uint64_t i = from + 4 * j + c;
    if (i < hi) byte |= ternary_code(x[i], ternary_random16(g, i), s, f) << (2 * c);
  }
  return static_cast<std::uint8_t>(byte);
}

/// Lane l's sums of the bucket [lo, hi): x and fma-accumulated x^2 over
/// elements lo + l, lo + l + 16, ... in increasing order (lo is a multiple of 16).
GREENREDUCE_HD void ternary_lane_sums(const float* x, std::uint64_t lo, std::uint64_t hi,
                                      unsigned l, float& sum, float& sumsq) {
  float s = 0.0F, q = 0.0F;
  for (std::uint64_t i = lo + l; i < hi; i += 16) {
    const float v = x[i];
    s = add_rn(s, v);
    q = fmaf(v, v, q);
  }
  sum = s;
  sumsq = q;
}

/// Byte of element i's code among n elements, and its bit shift in that byte.
GREENREDUCE_HD std::uint64_t ternary_code_byte(std::uint64_t i, std::uint64_t n, unsigned& shift) {
  const std::uint64_t t = i / ternary_tile;
  if ((t + 1) * ternary_tile <= n) {
    const std::uint64_t e = i % ternary_tile, q = e / ternary_lanes, l = e % ternary_lanes;
    shift = static_cast<unsigned>(2 * (q % 4));
    return t * (ternary_tile / 4) + 4 * l + q / 4;
  }
  shift = static_cast<unsigned>(2 * (i % 4));
  return i / 4;
}

/// kernels::ternary::scale_of from the 16 lane sums (sum x, fma-sum x^2, each
/// lane in increasing element order), combined in double by the tree
/// l + 8, l + 4, l + 2, l + 1.
GREENREDUCE_HD float ternary_scale(float absmax, const float* sum, const float* sumsq,
                                   std::uint64_t m, float clip_c) {
  if (!(clip_c > 0.0F) || m == 0) return absmax;
  double s[16], q[16];
  for (int l = 0; l < 16; ++l) {
    s[l] = sum[l];
    q[l] = sumsq[l];
  }
  for (int h = 8; h > 0; h /= 2)
    for (int l = 0; l < h; ++l) {
      s[l] += s[l + h];
      q[l] += q[l + h];
    }
  const double md = static_cast<double>(m);
  const double mean = s[0] / md;
  double var = fma(-mean, mean, q[0] / md);
  if (var < 0.0) var = 0.0;
  const auto clip = static_cast<float>(static_cast<double>(clip_c) * sqrt(var));
  return fminf(absmax, clip);
}

// ------------------------------------------------------------------ fp16 / bf16

/// kernels::scalar::fp16_from_float: nearest even; overflow, Inf, NaN -> Inf.
GREENREDUCE_HD std::uint16_t fp16_from_float(float f) {
  const std::uint32_t x = bits_of(f);
  const std::uint32_t sign = (x >> 16) & 0x8000U;
  const std::uint32_t a = x & abs_mask;
  if (a >= 0x47800000U) return static_cast<std::uint16_t>(sign | 0x7C00U);
  if (a < 0x38800000U) {
    if (a < 0x33000000U) return static_cast<std::uint16_t>(sign);
    const std::uint32_t e = a >> 23;
    const std::uint32_t m = (a & 0x7FFFFFU) | 0x800000U;
    const std::uint32_t shift = 126 - e;
    std::uint32_t q = m >> shift;
    const std::uint32_t rem = m & ((1U << shift) - 1), half = 1U << (shift - 1);
    q += (rem > half || (rem == half && (q & 1U))) ? 1U : 0U;
    return static_cast<std::uint16_t>(sign | q);
  }
  std::uint32_t q = (a - 0x38000000U) >> 13;
  const std::uint32_t rem = a & 0x1FFFU;
  q += (rem > 0x1000U || (rem == 0x1000U && (q & 1U))) ? 1U : 0U;
  return static_cast<std::uint16_t>(sign | q);
}
GREENREDUCE_HD float fp16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000U) << 16;
  const std::uint32_t e = (h >> 10) & 0x1FU, m = h & 0x3FFU;
  if (e == 0x1F) return float_of(sign | 0x7F800000U | (m << 13));
  if (e == 0) return float_of(sign | bits_of(mul_rn(static_cast<float>(m), 0x1p-24F)));
  return float_of(sign | ((e + 112) << 23) | (m << 13));
}
GREENREDUCE_HD std::uint16_t bf16_from_float(float f) {
  const std::uint32_t x = bits_of(f);
  return static_cast<std::uint16_t>((x + 0x7FFFU + ((x >> 16) & 1U)) >> 16);
}
GREENREDUCE_HD float bf16_to_float(std::uint16_t h) {
  return float_of(static_cast<std::uint32_t>(h) << 16);
}

/// |x| bits at or above which fp16 / bf16 encoding rejects the input.
inline constexpr std::uint32_t fp16_first_bad = 0x477FF000U;
inline constexpr std::uint32_t bf16_first_bad = 0x7F7F8000U;

// ------------------------------------------------------------------ top-k

/// kernels::topk::key: orders |x| like the floats, Inf/NaN above all finite.
GREENREDUCE_HD std::uint32_t topk_key(float x) {
  return bits_of(x) & abs_mask;
}

}  // namespace greenreduce::cuda::math
