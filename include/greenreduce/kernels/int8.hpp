// greenreduce/kernels/int8.hpp — per-bucket absmax int8 quantization, the
// kernels of codec::int8.
//
// Math (as in QSGD-style bucketed quantizers, Alistarh et al. 2017, and
// 8-bit all-reduce schemes such as Dettmers 2016): for each bucket of `bucket`
// consecutive elements, absmax = max|x|, scale = absmax / 127 rounded up to 16
// significant bits (the fp32 on the wire), and q = R(x / scale) clamped to
// [-127, 127], R being
//   nearest:     round to nearest even;
//   stochastic:  floor(v + u), u uniform on a 2^-24 grid in [0, 1), computed
//                exactly in 32-bit integers as (RNE(v * 2^24) + (word >> 8)) >> 24
//                with `word` the element's Philox word (kernels/philox.hpp rule),
//                so E[q] = RNE(v * 2^24) / 2^24: unbiased to 2^-25.
// Decoding is x' = q * scale, exact in fp32 (8 bits times 16 bits), so
// decode_add (acc + q * scale) rounds once whether or not a compiler fuses it:
// SIMD, scalar and GPU kernels agree bit for bit on every machine.
//
// Each bucket is one fused step while it sits in L1: an integer max over the
// bit patterns (|x| as uint32 orders like |x|, and NaN/Inf exceed 0x7F7FFFFF,
// so the same max detects non-finite input), then quantize and pack. The
// quantizer has no multiply feeding an add (v = (x * pre) * inv, then
// min/max/convert/integer ops), so no compiler can contract it differently in
// the SIMD body, the scalar tail, the scalar reference or a CUDA port.
//
// Buckets with absmax below 2^-64 are pre-scaled by 2^64 (exact) so that
// 1 / scale stays finite; an all-zero bucket has scale 0 and q = 0.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include <xsimd/xsimd.hpp>

#include "greenreduce/core/rng.hpp"
#include "greenreduce/kernels/lanes.hpp"
#include "greenreduce/kernels/philox.hpp"

namespace greenreduce::kernels {

inline constexpr std::uint32_t int8_nonfinite_bits = 0x7F800000U;  ///< |x| bits >= this

/// The quantization parameters of one bucket, derived from its absmax alone.
struct int8_bucket {
  float scale = 0.0F;  ///< absmax / 127 rounded up to 16 significant bits: the wire value
  float pre = 1.0F;    ///< 2^64 when absmax < 2^-64, else 1
  float inv = 0.0F;    ///< 1 / (scale * pre); 0 for an all-zero bucket

  /// Clears the low 8 mantissa bits, rounding up: |q| <= 255 times such a
  /// scale is exact in fp32, so decode has no rounding at all and decode_add
  /// rounds once, fused or not.
  static float round_scale(float s) noexcept {
    return std::bit_cast<float>((std::bit_cast<std::uint32_t>(s) + 0xFFU) & ~0xFFU);
  }

  static int8_bucket of(float absmax) noexcept {
    int8_bucket b;
    b.scale = round_scale(absmax / 127.0F);
    // Within 2^-16 of FLT_MAX, rounding up would make 127 * scale overflow:
    // round down there (the clamp to +-127 then absorbs the excess).
    if (b.scale > 0x1.fffep127F / 127.0F)
      b.scale = std::bit_cast<float>(std::bit_cast<std::uint32_t>(absmax / 127.0F) & ~0xFFU);
    b.pre = absmax < 0x1p-64F ? 0x1p64F : 1.0F;
    b.inv = b.scale > 0.0F ? 1.0F / (b.scale * b.pre) : 0.0F;
    return b;
  }
};

namespace scalar {

inline float int8_scaled(float x, const int8_bucket& b) noexcept {
  const float v = (x * b.pre) * b.inv;
  return std::min(std::max(v, -127.0F), 127.0F);
}
inline std::int32_t int8_nearest(float x, const int8_bucket& b) noexcept {
  return static_cast<std::int32_t>(std::nearbyint(int8_scaled(x, b)));
}
inline std::int32_t int8_stochastic(float x, const int8_bucket& b, std::uint32_t word) noexcept {
  const auto t = static_cast<std::int32_t>(std::nearbyint(int8_scaled(x, b) * 0x1p24F));
  return (t + static_cast<std::int32_t>(word >> 8)) >> 24;
}

/// max over |x| as bit patterns (>= int8_nonfinite_bits when some x is NaN/Inf).
inline std::uint32_t absmax_bits(const float* x, std::size_t n) noexcept {
  std::uint32_t m = 0;
  for (std::size_t i = 0; i < n; ++i)
    m = std::max(m, std::bit_cast<std::uint32_t>(x[i]) & 0x7FFFFFFFU);
  return m;
}

/// Quantizes `in` bucket by bucket: scales (fp32, one per bucket) and q (int8,
/// one per element). Stochastic when `g` is given (the philox.hpp group rule,
/// element i = index within `in`). Returns false, with the output partly
/// written, as soon as a bucket holds a NaN or Inf.
inline bool encode_int8(std::span<const float> in, std::size_t bucket, const rng* g,
                        std::byte* scales, std::byte* q) noexcept {
  const std::size_t n = in.size();
  for (std::size_t s = 0, b = 0; s < n; s += bucket, ++b) {
    const std::size_t e = std::min(n, s + bucket);
    const std::uint32_t am = absmax_bits(in.data() + s, e - s);
    if (am >= int8_nonfinite_bits) return false;
    const int8_bucket p = int8_bucket::of(std::bit_cast<float>(am));
    std::memcpy(scales + 4 * b, &p.scale, 4);
    for (std::size_t i = s; i < e; ++i)
      q[i] = static_cast<std::byte>(g ? int8_stochastic(in[i], p, philox_word(*g, i))
                                      : int8_nearest(in[i], p));
  }
  return true;
}

inline float load_scale(const std::byte* scales, std::size_t b) noexcept {
  float s;
  std::memcpy(&s, scales + 4 * b, 4);
  return s;
}

inline void decode_int8(const std::byte* scales, const std::byte* q, std::size_t bucket,
                        std::span<float> out) noexcept {
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<float>(static_cast<std::int8_t>(q[i])) * load_scale(scales, i / bucket);
}

inline void decode_add_int8(const std::byte* scales, const std::byte* q, std::size_t bucket,
                            std::span<float> acc) noexcept {
  for (std::size_t i = 0; i < acc.size(); ++i)
    acc[i] += static_cast<float>(static_cast<std::int8_t>(q[i])) * load_scale(scales, i / bucket);
}

}  // namespace scalar

namespace detail {

template <class Arch>
std::uint32_t absmax_bits(const float* x, std::size_t n) noexcept {
  using i32 = xsimd::batch<std::int32_t, Arch>;
  constexpr std::size_t w = i32::size;
  const i32 magnitude(0x7FFFFFFF);
  i32 m0(0), m1(0);
  std::size_t i = 0;
  for (; i + 2 * w <= n; i += 2 * w) {
    m0 = xsimd::max(m0,
                    i32::load_unaligned(reinterpret_cast<const std::int32_t*>(x + i)) & magnitude);
    m1 = xsimd::max(
        m1, i32::load_unaligned(reinterpret_cast<const std::int32_t*>(x + i + w)) & magnitude);
  }
  alignas(64) std::int32_t l[w];
  xsimd::max(m0, m1).store_aligned(l);
  return std::max(static_cast<std::uint32_t>(*std::max_element(l, l + w)),
                  scalar::absmax_bits(x + i, n - i));
}

}  // namespace detail

/// True when no x[i] is NaN or Inf: int8's SIMD absmax of the |x| bit
/// patterns, where NaN and Inf sit above every finite value (an early-exit
/// isfinite scan does not vectorize).
template <class Arch = xsimd::default_arch>
bool all_finite(const float* x, std::size_t n) noexcept {
  return detail::absmax_bits<Arch>(x, n) < int8_nonfinite_bits;
}

namespace detail {

// PreScale = false is the common bucket (pre == 1), where x * 1 is skipped:
// the result is the same bit for bit, one multiply cheaper.
template <class Arch, bool PreScale>
struct int8_quantizer {
  using f32 = xsimd::batch<float, Arch>;
  using i32 = xsimd::batch<std::int32_t, Arch>;
  using u32 = xsimd::batch<std::uint32_t, Arch>;
  f32 pre, inv;

  explicit int8_quantizer(const int8_bucket& b) : pre(b.pre), inv(b.inv) {}

  f32 scaled(const float* x) const noexcept {
    f32 v = f32::load_unaligned(x);
    if constexpr (PreScale) v = v * pre;
    v = v * inv;
    return xsimd::min(xsimd::max(v, f32(-127.0F)), f32(127.0F));
  }
  i32 nearest(const float* x) const noexcept { return xsimd::nearbyint_as_int(scaled(x)); }
  i32 stochastic(const float* x, const std::uint32_t* words) const noexcept {
    const i32 t = xsimd::nearbyint_as_int(scaled(x) * f32(0x1p24F));
    const i32 u = xsimd::bitwise_cast<i32>(u32::load_unaligned(words) >> 8);
    return (t + u) >> 24;
  }
};

}  // namespace detail

namespace detail {

/// While a bucket is quantized from L1, the next one streams in: one bucket
/// ahead keeps DRAM busy during the compute pass (the absmax pass then reads
/// from cache). Covers the 4 * batch::size floats of one packed step.
template <class Arch>
void prefetch_next_bucket(const float* here, std::size_t ahead) noexcept {
  // Integer address arithmetic: the target may lie past the end of the input.
  const auto base = reinterpret_cast<std::uintptr_t>(here) + ahead * sizeof(float);
  constexpr std::size_t bytes = 4 * xsimd::batch<float, Arch>::size * sizeof(float);
  for (std::size_t k = 0; k < bytes; k += 64)
    lanes::prefetch(reinterpret_cast<const void*>(base + k));
}

/// Quantizes elements [s, e) of one bucket. Everything by value: q is a
/// std::byte pointer, which may alias anything, so captured references would
/// be reloaded after every store.
template <class Arch, class Quantizer>
void int8_nearest_bucket(const Quantizer qz, const int8_bucket p, const float* x, std::byte* q,
                         std::size_t s, const std::size_t e) noexcept {
  constexpr std::size_t w = xsimd::batch<float, Arch>::size;
  std::size_t i = s;
  for (; i + 4 * w <= e; i += 4 * w) {
    prefetch_next_bucket<Arch>(x + i, e - s);
    lanes::narrow_i8x4<Arch>(qz.nearest(x + i), qz.nearest(x + i + w), qz.nearest(x + i + 2 * w),
                             qz.nearest(x + i + 3 * w), q + i);
  }
  for (; i < e; ++i) q[i] = static_cast<std::byte>(scalar::int8_nearest(x[i], p));
}

/// Stochastic: walks the bucket group by group (a group straddling two
/// buckets is generated once, `words` caching group `cached`), whole packed
/// steps inside each group. Returns the group left in `words`.
template <class Arch, class Quantizer>
std::size_t int8_stochastic_bucket(const Quantizer qz, const int8_bucket p, const float* x,
                                   std::byte* q, const std::size_t s, const std::size_t e,
                                   const rng& g, std::uint32_t* words,
                                   std::size_t cached) noexcept {
  constexpr std::size_t w = xsimd::batch<float, Arch>::size;
  std::size_t i = s;
  while (i < e) {
    const std::size_t group = i / philox_group, base = group * philox_group;
    if (group != cached) {
      philox_group_words<Arch>(g, group, words);
      cached = group;
    }
    const std::size_t end = std::min(e, base + philox_group);
    for (; i + 4 * w <= end; i += 4 * w) {
      prefetch_next_bucket<Arch>(x + i, e - s);
      const std::uint32_t* r = words + (i - base);
      lanes::narrow_i8x4<Arch>(qz.stochastic(x + i, r), qz.stochastic(x + i + w, r + w),
                               qz.stochastic(x + i + 2 * w, r + 2 * w),
                               qz.stochastic(x + i + 3 * w, r + 3 * w), q + i);
    }
    for (; i < end; ++i)
      q[i] = static_cast<std::byte>(scalar::int8_stochastic(x[i], p, words[i - base]));
  }
  return cached;
}

}  // namespace detail

/// SIMD form of scalar::encode_int8 (same output bit for bit). Stochastic
/// when `g` is given.
template <class Arch = xsimd::default_arch>
bool encode_int8(std::span<const float> in, std::size_t bucket, const rng* g, std::byte* scales,
                 std::byte* q) noexcept {
  static_assert(philox_group % (4 * xsimd::batch<float, Arch>::size) == 0);
  const std::size_t n = in.size();
  const float* x = in.data();
  alignas(64) std::uint32_t words[philox_group];
  std::size_t cached = SIZE_MAX;
  for (std::size_t s = 0, b = 0; s < n; s += bucket, ++b) {
    const std::size_t e = std::min(n, s + bucket);
    const std::uint32_t am = detail::absmax_bits<Arch>(x + s, e - s);
    if (am >= int8_nonfinite_bits) return false;
    const int8_bucket p = int8_bucket::of(std::bit_cast<float>(am));
    std::memcpy(scales + 4 * b, &p.scale, 4);
    const bool pre = p.pre != 1.0F;
    if (!g && !pre)
      detail::int8_nearest_bucket<Arch>(detail::int8_quantizer<Arch, false>(p), p, x, q, s, e);
    else if (!g)
      detail::int8_nearest_bucket<Arch>(detail::int8_quantizer<Arch, true>(p), p, x, q, s, e);
    else if (!pre)
      cached = detail::int8_stochastic_bucket<Arch>(detail::int8_quantizer<Arch, false>(p), p, x, q,
                                                    s, e, *g, words, cached);
    else
      cached = detail::int8_stochastic_bucket<Arch>(detail::int8_quantizer<Arch, true>(p), p, x, q,
                                                    s, e, *g, words, cached);
  }
  return true;
}

template <class Arch = xsimd::default_arch>
void decode_int8(const std::byte* scales, const std::byte* q, std::size_t bucket,
                 std::span<float> out) noexcept {
  using f32 = xsimd::batch<float, Arch>;
  constexpr std::size_t w = f32::size;
  const std::size_t n = out.size();
  for (std::size_t s = 0, b = 0; s < n; s += bucket, ++b) {
    const std::size_t e = std::min(n, s + bucket);
    const float scale = scalar::load_scale(scales, b);
    const f32 sc(scale);
    std::size_t i = s;
    for (; i + w <= e; i += w)
      (xsimd::to_float(lanes::widen_i8<Arch>(q + i)) * sc).store_unaligned(&out[i]);
    for (; i < e; ++i) out[i] = static_cast<float>(static_cast<std::int8_t>(q[i])) * scale;
  }
}

template <class Arch = xsimd::default_arch>
void decode_add_int8(const std::byte* scales, const std::byte* q, std::size_t bucket,
                     std::span<float> acc) noexcept {
  using f32 = xsimd::batch<float, Arch>;
  constexpr std::size_t w = f32::size;
  const std::size_t n = acc.size();
  float* a = acc.data();
  for (std::size_t s = 0, b = 0; s < n; s += bucket, ++b) {
    const std::size_t e = std::min(n, s + bucket);
    const float scale = scalar::load_scale(scales, b);
    const f32 sc(scale);
    std::size_t i = s;
    for (; i + 2 * w <= e; i += 2 * w) {
      const f32 q0 = xsimd::to_float(lanes::widen_i8<Arch>(q + i));
      const f32 q1 = xsimd::to_float(lanes::widen_i8<Arch>(q + i + w));
      (f32::load_unaligned(a + i) + q0 * sc).store_unaligned(a + i);
      (f32::load_unaligned(a + i + w) + q1 * sc).store_unaligned(a + i + w);
    }
    for (; i < e; ++i) a[i] += static_cast<float>(static_cast<std::int8_t>(q[i])) * scale;
  }
}

}  // namespace greenreduce::kernels
