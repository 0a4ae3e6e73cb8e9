// greenreduce/kernels/ternary.hpp — TernGrad's scale, stochastic quantizer and 2-bit packing.
//
// Math (Wen et al., "TernGrad", NeurIPS 2017): for a bucket g, s = max|g|
// (after optional clipping |g| <= c·sigma, sigma the bucket's standard
// deviation), and element k becomes s·sign(g_k)·b_k with b_k ~ Bernoulli(|g_k|/s).
//
// Layout (shared with the CUDA port; every rule is a pure function of i):
//   tile t = elements [256t, 256t + 256); inside it element e = 16Q + l
//   (row Q < 16, lane l < 16).
//   random bits of element i: r_i = 16 bits of ARS-5 block (core/ars.hpp)
//     B = 32t + 4(Q >> 1) + (l >> 2) (relative to the rng offset), word l & 3,
//     bits [16(Q & 1), 16(Q & 1) + 16); a call consumes 32·ceil(n/256) blocks.
//     Rows 2p and 2p + 1 of lanes 4k..4k+3 share block 4p + k, so a 128-bit
//     AES block fills 4 lanes of two rows and the blocks a tile reads are in
//     (row pair, lane) order: one VAES instruction chain feeds 8 lanes of two
//     rows, for any SIMD width that is a multiple of 4 lanes.
//     (ARS-5 replaced Philox4x32-10 here: as many bits per element, at about
//     a sixth of the cost with VAES; see docs/kernels.md.)
//   b_i = 1 iff float(r_i) < min(|g_i|, s) · (65536 / s)   (computed in fp32)
//     so P(b_i = 1) = ceil(t_i)/65536 with t_i = 65536|g_i|/s: the bias of the
//     decoded value is below s·2^-16 per element (plus one fp32 rounding of t_i).
//   code: 0b00 -> 0, 0b01 -> +s, 0b10 -> -s, 0b11 invalid.
//   packing, full tile: 16 little-endian u32 words; word l holds row Q at bits
//     [2Q, 2Q + 2). The last partial tile (n mod 256 elements) is linear: its
//     element e at byte e/4, bits [2(e%4), 2(e%4) + 2). Padding bits are 0.
//     Codes of n elements take exactly ceil(n/4) bytes.
//   scale statistics: 16 virtual lanes, element i of a bucket in lane i % 16,
//     each lane summed in increasing i in fp32 (sum x and fma(x, x, sumsq)),
//     lanes combined in double by the tree l + 8, l + 4, l + 2, l + 1. Any SIMD
//     width dividing 16 reproduces this order exactly (on FMA hardware).
// The SIMD kernels are written once against xsimd::batch and equal the
// scalar reference (`kernels::scalar`) bit for bit.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "greenreduce/core/ars.hpp"
#include "greenreduce/core/rng.hpp"
#include "greenreduce/kernels/lanes.hpp"
#include "greenreduce/kernels/random_bits.hpp"

namespace greenreduce::kernels::ternary {

inline constexpr std::size_t tile = 256;            ///< elements per tile
inline constexpr std::size_t lanes = 16;            ///< virtual lanes (= elements per row)
inline constexpr std::size_t blocks_per_tile = 32;  ///< ARS-5 blocks per tile
inline constexpr std::uint32_t abs_mask = 0x7FFFFFFFU;
inline constexpr std::uint32_t inf_bits = 0x7F800000U;
/// Elements between a line encode quantizes and the line it prefetches: 16 KiB,
/// about 1.5-2 us of encode, well past DRAM latency (1024 was measurably slower
/// at 2^24 elements, 2048-8192 the same; docs/kernels.md).
inline constexpr std::size_t prefetch_ahead = 4096;

/// ARS-5 blocks one call over n elements consumes (the rng advance).
constexpr std::uint64_t blocks_for(std::size_t n) noexcept {
  return blocks_per_tile * ((n + tile - 1) / tile);
}
/// Bytes of packed codes for n elements.
constexpr std::size_t code_bytes(std::size_t n) noexcept {
  return (n + 3) / 4;
}

/// Per-bucket statistics in the canonical 16-lane order.
struct stats {
  std::uint32_t absmax_bits = 0;  ///< max of |x| bit patterns (>= inf_bits: non-finite input)
  std::array<float, lanes> sum{};
  std::array<float, lanes> sumsq{};
};

/// s = max|x|, or min(max|x|, c·sigma) when c > 0 (m elements in the bucket).
inline float scale_of(const stats& st, std::size_t m, float clip_c) noexcept {
  const float amax = std::bit_cast<float>(st.absmax_bits);
  if (!(clip_c > 0.0F) || m == 0) return amax;
  std::array<double, lanes> s{}, q{};
  for (std::size_t l = 0; l < lanes; ++l) {
    s[l] = st.sum[l];
    q[l] = st.sumsq[l];
  }
  for (std::size_t h = lanes / 2; h > 0; h /= 2)
    for (std::size_t l = 0; l < h; ++l) {
      s[l] += s[l + h];
      q[l] += q[l + h];
    }
  const double md = static_cast<double>(m);
  const double mean = s[0] / md;
  double var = std::fma(-mean, mean, q[0] / md);
  if (var < 0.0) var = 0.0;
  const auto clip = static_cast<float>(static_cast<double>(clip_c) * std::sqrt(var));
  return std::min(amax, clip);
}

/// 65536 / s, or 0 for s = 0 (then every code is 0).
inline float threshold_factor(float s) noexcept {
  return s > 0.0F ? 65536.0F / s : 0.0F;
}

/// Where element i's 16 random bits are (see the header comment): ARS-5
/// block (relative to the rng offset), word of the block, bit shift.
struct bits_at {
  std::uint64_t block;
  int word;
  unsigned shift;
};
constexpr bits_at bits_of(std::uint64_t i) noexcept {
  const std::uint64_t t = i / tile, e = i % tile, q = e / lanes, l = e % lanes;
  return {blocks_per_tile * t + 4 * (q >> 1) + (l >> 2), static_cast<int>(l & 3),
          static_cast<unsigned>(16 * (q & 1))};
}

/// 2-bit code of one element from its value, its 16 random bits, the scale s
/// and f = threshold_factor(s).
inline std::uint32_t code_of(float x, std::uint32_t r16, float s, float f) noexcept {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
  const float a = std::bit_cast<float>(bits & abs_mask);
  const float t = std::min(a, s) * f;
  return static_cast<float>(r16) < t ? 1U + (bits >> 31) : 0U;
}

namespace scalar {

/// Random bits of element i (call-relative) under `g` (see the header comment).
inline std::uint32_t random16(const rng& g, std::uint64_t i) noexcept {
  const bits_at a = bits_of(i);
  return (ars5_block(g, a.block)[a.word] >> a.shift) & 0xFFFFU;
}

inline stats bucket_stats(const float* x, std::size_t m, bool with_moments) noexcept {
  stats st;
  for (std::size_t i = 0; i < m; ++i) {
    const std::uint32_t a = std::bit_cast<std::uint32_t>(x[i]) & abs_mask;
    st.absmax_bits = std::max(st.absmax_bits, a);
    if (with_moments) {
      st.sum[i % lanes] += x[i];
      st.sumsq[i % lanes] = std::fma(x[i], x[i], st.sumsq[i % lanes]);
    }
  }
  return st;
}

/// Byte and bit shift of element i's code among n elements.
inline std::size_t code_position(std::size_t i, std::size_t n, unsigned& shift) noexcept {
  const std::size_t t = i / tile;
  if ((t + 1) * tile <= n) {
    const std::size_t e = i % tile, q = e / lanes, l = e % lanes;
    shift = static_cast<unsigned>(2 * (q % 4));
    return t * (tile / 4) + 4 * l + q / 4;
  }
  shift = static_cast<unsigned>(2 * (i % 4));
  return i / 4;
}

/// Writes the codes of elements [begin, end) of n (bytes must be zeroed first).
inline void quantize(const float* x, std::size_t begin, std::size_t end, std::size_t n, float s,
                     const rng& g, std::uint8_t* codes) noexcept {
  const float f = threshold_factor(s);
  for (std::size_t i = begin; i < end; ++i) {
    unsigned sh = 0;
    const std::size_t at = code_position(i, n, sh);
    codes[at] = static_cast<std::uint8_t>(codes[at] | (code_of(x[i], random16(g, i), s, f) << sh));
  }
}

inline std::uint32_t code_at(const std::uint8_t* codes, std::size_t i, std::size_t n) noexcept {
  unsigned sh = 0;
  const std::size_t at = code_position(i, n, sh);
  return (codes[at] >> sh) & 3U;
}

/// out[i] = value of code i (begin <= i < end), or acc[i] += it when Add.
template <bool Add>
inline void dequantize(const std::uint8_t* codes, std::size_t begin, std::size_t end, std::size_t n,
                       float s, float* out) noexcept {
  for (std::size_t i = begin; i < end; ++i) {
    const std::uint32_t c = code_at(codes, i, n);
    const float v = static_cast<float>(static_cast<int>(c & 1U) - static_cast<int>(c >> 1)) * s;
    if constexpr (Add)
      out[i] += v;
    else
      out[i] = v;
  }
}

}  // namespace scalar

template <class Arch = xsimd::default_arch>
stats bucket_stats(const float* x, std::size_t m, bool with_moments) noexcept {
  using fb = xsimd::batch<float, Arch>;
  using ib = xsimd::batch<std::int32_t, Arch>;
  constexpr std::size_t w = fb::size, subs = lanes / w;
  static_assert(lanes % w == 0, "SIMD width must divide the 16 virtual lanes");
  std::array<ib, subs> amax;
  std::array<fb, subs> sum, sq;
  for (std::size_t j = 0; j < subs; ++j) {
    amax[j] = ib(0);
    sum[j] = fb(0.0F);
    sq[j] = fb(0.0F);
  }
  const ib mask(static_cast<std::int32_t>(abs_mask));
  const std::size_t full = m / lanes * lanes;
  if (with_moments) {
    for (std::size_t i = 0; i < full; i += lanes)
      for (std::size_t j = 0; j < subs; ++j) {
        const fb v = fb::load_unaligned(x + i + j * w);
        amax[j] = xsimd::max(amax[j], xsimd::bitwise_cast<ib>(v) & mask);
        sum[j] += v;
        sq[j] = lanes::fused_fma<Arch>(v, v, sq[j]);
      }
  } else {
    for (std::size_t i = 0; i < full; i += lanes)
      for (std::size_t j = 0; j < subs; ++j)
        amax[j] =
            xsimd::max(amax[j], xsimd::bitwise_cast<ib>(fb::load_unaligned(x + i + j * w)) & mask);
  }
  stats st;
  alignas(64) std::int32_t am[lanes];
  for (std::size_t j = 0; j < subs; ++j) {
    amax[j].store_aligned(am + j * w);
    sum[j].store_unaligned(st.sum.data() + j * w);
    sq[j].store_unaligned(st.sumsq.data() + j * w);
  }
  std::int32_t best = 0;
  for (std::size_t l = 0; l < lanes; ++l) best = std::max(best, am[l]);
  st.absmax_bits = static_cast<std::uint32_t>(best);
  for (std::size_t i = full; i < m; ++i) {  // tail rows continue each lane's order
    st.absmax_bits = std::max(st.absmax_bits, std::bit_cast<std::uint32_t>(x[i]) & abs_mask);
    if (with_moments) {
      st.sum[i % lanes] += x[i];
      st.sumsq[i % lanes] = std::fma(x[i], x[i], st.sumsq[i % lanes]);
    }
  }
  return st;
}

/// quantize_tiles with the caller's ARS-5 stream (positioned at tile begin /
/// 256) and a software prefetch of x[min(i + ahead, limit)] for
/// every 64-byte line i it quantizes, so DRAM reads stay spread over the
/// compute instead of arriving in bursts.
template <class Arch>
void quantize_tiles_with(const float* x, std::size_t begin, std::size_t end, float s,
                         ars_stream<Arch>& rand_words, std::uint8_t* codes, std::size_t ahead,
                         std::size_t limit) noexcept {
  using fb = xsimd::batch<float, Arch>;
  using ub = xsimd::batch<std::uint32_t, Arch>;
  using ib = xsimd::batch<std::int32_t, Arch>;
  constexpr std::size_t w = fb::size, subs = lanes / w;
  static_assert(w % 4 == 0, "an ARS block fills 4 lanes");
  const fb f(threshold_factor(s)), zero(0.0F);
  const ub absm(abs_mask), low16(0xFFFFU), pos_top(1U << 30), neg_top(2U << 30);
  for (std::size_t t0 = begin; t0 < end; t0 += tile) {
    std::uint8_t* out = codes + t0 / 4;
    std::array<ub, subs> packed;
    for (std::size_t j = 0; j < subs; ++j) packed[j] = ub(0U);
    for (std::size_t p = 0; p < lanes / 2; ++p) {
      if (ahead > 0) {
        __builtin_prefetch(x + std::min(t0 + 2 * lanes * p + ahead, limit));
        __builtin_prefetch(x + std::min(t0 + 2 * lanes * p + lanes + ahead, limit));
      }
      for (std::size_t j = 0; j < subs; ++j) {
        const ub word = rand_words.next();
        for (std::size_t h = 0; h < 2; ++h) {
          const std::size_t row = 2 * p + h;
          const fb v = fb::load_unaligned(x + t0 + lanes * row + j * w);
          const ub bits = xsimd::bitwise_cast<ub>(v);
          // code_of's min(|x|, s) is left out: for |x| >= s both |x|·f and
          // s·f round to at least 65536(1 - 2^-22) > every r, so the codes
          // are the same and the tests hold this path to the reference.
          const fb t = xsimd::bitwise_cast<fb>(bits & absm) * f;
          const ub r = h == 0 ? (word & low16) : (word >> 16);
          const fb rf = xsimd::to_float(xsimd::bitwise_cast<ib>(r));
          // Rows enter at the top and move down 2 bits per row, so row Q
          // ends at bits [2Q, 2Q + 2); the code (1 + sign) << 30 is one blend
          // of two constants by x's sign bit.
          const ub placed = kernels::lanes::select_by_sign(v, neg_top, pos_top);
          packed[j] = (packed[j] >> 2) | xsimd::bitwise_cast<ub>(xsimd::select(
                                             rf < t, xsimd::bitwise_cast<fb>(placed), zero));
        }
      }
    }
    for (std::size_t j = 0; j < subs; ++j)
      packed[j].store_unaligned(reinterpret_cast<std::uint32_t*>(out) + j * w);
  }
}

/// Codes of the full tiles in [begin, end) (begin, end multiples of 256, tiles
/// full within n) into their 64-byte slots; g is the call's rng.
template <class Arch = xsimd::default_arch>
void quantize_tiles(const float* x, std::size_t begin, std::size_t end, float s, const rng& g,
                    std::uint8_t* codes) noexcept {
  // Blocks are read in (tile, row pair, lane) order: one stream for the range.
  ars_stream<Arch> rand_words(g, blocks_per_tile * (begin / tile));
  quantize_tiles_with<Arch>(x, begin, end, s, rand_words, codes, 0, 0);
}

/// Codes of elements [begin, end) of the last, partial tile (linear layout;
/// bytes zeroed first): its blocks come from ars_stream, the codes from the
/// per-element rule, so the result is scalar::quantize's.
template <class Arch = xsimd::default_arch>
void quantize_tail(const float* x, std::size_t begin, std::size_t end, std::size_t n, float s,
                   const rng& g, std::uint8_t* codes) noexcept {
  using ub = xsimd::batch<std::uint32_t, Arch>;
  constexpr std::size_t per = ub::size / 4;  // blocks per batch
  const std::size_t t0 = begin / tile * tile;
  const std::size_t need = 4 * ((end - 1 - t0) / (2 * lanes) + 1);  // 4 blocks per row pair
  alignas(64) std::uint32_t words[4 * blocks_per_tile];
  ars_stream<Arch> rand_words(g, blocks_per_tile * (t0 / tile));
  for (std::size_t b = 0; b < need; b += per) rand_words.next().store_aligned(words + 4 * b);
  const float f = threshold_factor(s);
  for (std::size_t i = begin; i < end; ++i) {
    const bits_at a = bits_of(i - t0);  // blocks relative to the tile's first
    const std::uint32_t r =
        (words[4 * a.block + static_cast<std::size_t>(a.word)] >> a.shift) & 0xFFFFU;
    unsigned sh = 0;
    const std::size_t at = scalar::code_position(i, n, sh);
    codes[at] = static_cast<std::uint8_t>(codes[at] | (code_of(x[i], r, s, f) << sh));
  }
}

/// Values of the full tiles in [begin, end): out = s·code, or acc += s·code when Add.
template <bool Add, class Arch = xsimd::default_arch>
void dequantize_tiles(const std::uint8_t* codes, std::size_t begin, std::size_t end, float s,
                      float* out) noexcept {
  using fb = xsimd::batch<float, Arch>;
  using ub = xsimd::batch<std::uint32_t, Arch>;
  using ib = xsimd::batch<std::int32_t, Arch>;
  constexpr std::size_t w = fb::size, subs = lanes / w;
  const fb sv(s);
  const ub one(1U);
  for (std::size_t t0 = begin; t0 < end; t0 += tile) {
    const auto* in = reinterpret_cast<const std::uint32_t*>(codes + t0 / 4);
    for (std::size_t j = 0; j < subs; ++j) {
      const ub words = ub::load_unaligned(in + j * w);
      for (std::size_t row = 0; row < lanes; ++row) {
        const ub c = words >> static_cast<std::int32_t>(2 * row);
        const ib sgn = xsimd::bitwise_cast<ib>(c & one) - xsimd::bitwise_cast<ib>((c >> 1) & one);
        const fb v = xsimd::to_float(sgn) * sv;
        float* p = out + t0 + lanes * row + j * w;
        if constexpr (Add)
          (fb::load_unaligned(p) + v).store_unaligned(p);
        else
          v.store_unaligned(p);
      }
    }
  }
}

/// Scales and codes of n elements in buckets of b (b = 0: one bucket), as the
/// codec lays them out: scales[k] little-endian fp32, codes of code_bytes(n)
/// bytes. Returns false (with nothing valid written) when some |x| is not finite.
template <class Arch = xsimd::default_arch>
bool encode(const float* x, std::size_t n, std::size_t b, float clip_c, const rng& g,
            std::byte* scales, std::uint8_t* codes) noexcept {
  const std::size_t full = n / tile * tile;
  if (b == 0) b = n;
  if (full < n) std::memset(codes + full / 4, 0, code_bytes(n) - full / 4);
  ars_stream<Arch> rand_words(g, 0);  // tiles are quantized in order: one stream
  const bool moments = clip_c > 0.0F;
  // Statistics run one bucket ahead of the quantizer: bucket k + 1's sums do
  // not wait for bucket k's codes, so the core overlaps them with bucket k's
  // quantize. (Computing bucket k + 1's whole scale there too was 5 % slower.)
  stats next = bucket_stats<Arch>(x, std::min(n, b), moments);
  for (std::size_t k = 0, lo = 0; lo < n; ++k, lo += b) {
    const std::size_t hi = std::min(n, lo + b);
    const stats st = next;
    if (st.absmax_bits >= inf_bits) return false;
    const float s = scale_of(st, hi - lo, clip_c);
    const auto sb = std::bit_cast<std::uint32_t>(s);
    std::memcpy(scales + 4 * k, &sb, 4);
    if (hi < n) next = bucket_stats<Arch>(x + hi, std::min(n, hi + b) - hi, moments);
    const std::size_t tiles_end = std::min(hi, full);
    quantize_tiles_with<Arch>(x, lo, tiles_end, s, rand_words, codes, prefetch_ahead, n - 1);
    if (hi > tiles_end) quantize_tail<Arch>(x, std::max(lo, tiles_end), hi, n, s, g, codes);
  }
  return true;
}

/// out = decoded values (or acc += them when Add) from validated scales and codes.
template <bool Add, class Arch = xsimd::default_arch>
void decode(const std::byte* scales, const std::uint8_t* codes, std::size_t n, std::size_t b,
            float* out) noexcept {
  const std::size_t full = n / tile * tile;
  if (b == 0) b = n;
  for (std::size_t k = 0, lo = 0; lo < n; ++k, lo += b) {
    const std::size_t hi = std::min(n, lo + b);
    std::uint32_t sb;
    std::memcpy(&sb, scales + 4 * k, 4);
    const float s = std::bit_cast<float>(sb);
    const std::size_t tiles_end = std::min(hi, full);
    dequantize_tiles<Add, Arch>(codes, lo, tiles_end, s, out);
    if (hi > tiles_end) scalar::dequantize<Add>(codes, tiles_end, hi, n, s, out);
  }
}

namespace scalar {
/// The reference of ternary::encode: every element through the per-element rules.
inline bool encode(const float* x, std::size_t n, std::size_t b, float clip_c, const rng& g,
                   std::byte* scales, std::uint8_t* codes) noexcept {
  if (b == 0) b = n;
  if (n > 0) std::memset(codes, 0, code_bytes(n));
  for (std::size_t k = 0, lo = 0; lo < n; ++k, lo += b) {
    const std::size_t hi = std::min(n, lo + b);
    const stats st = bucket_stats(x + lo, hi - lo, clip_c > 0.0F);
    if (st.absmax_bits >= inf_bits) return false;
    const float s = scale_of(st, hi - lo, clip_c);
    const auto sb = std::bit_cast<std::uint32_t>(s);
    std::memcpy(scales + 4 * k, &sb, 4);
    quantize(x, lo, hi, n, s, g, codes);
  }
  return true;
}
template <bool Add>
void decode(const std::byte* scales, const std::uint8_t* codes, std::size_t n, std::size_t b,
            float* out) noexcept {
  if (b == 0) b = n;
  for (std::size_t k = 0, lo = 0; lo < n; ++k, lo += b) {
    std::uint32_t sb;
    std::memcpy(&sb, scales + 4 * k, 4);
    dequantize<Add>(codes, lo, std::min(n, lo + b), n, std::bit_cast<float>(sb), out);
  }
}
}  // namespace scalar

/// True when some 2-bit code is 0b11 or a padding bit past element n is set.
inline bool codes_invalid(const std::uint8_t* codes, std::size_t n) noexcept {
  const std::size_t bytes = code_bytes(n);
  std::uint64_t bad = 0;
  std::size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    std::uint64_t v;
    std::memcpy(&v, codes + i, 8);
    bad |= v & (v >> 1) & 0x5555555555555555ULL;
  }
  for (; i < bytes; ++i) bad |= codes[i] & (codes[i] >> 1) & 0x55U;
  if (n % 4 != 0) bad |= codes[bytes - 1] >> (2 * (n % 4));
  return bad != 0;
}

}  // namespace greenreduce::kernels::ternary
