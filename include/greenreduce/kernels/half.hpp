// greenreduce/kernels/half.hpp — fp32 to and from the 16-bit floats fp16
// (IEEE-754 binary16) and bf16 (bfloat16), for codec::fp16 and codec::bf16.
//
// Rounding is round-to-nearest-even, in integer arithmetic on the bit
// patterns, so it is exact and identical on every instruction set (no F16C
// needed). The fp16 SIMD form is F. Giesen's branch-free conversion
// ("float->half variants", 2016), selected lane-wise; the scalar reference in
// `kernels::scalar` is a separate, branchy transcription of IEEE-754, so the
// tests compare two independent derivations bit for bit. fp16 -> fp32 and
// bf16 -> fp32 are exact.
//
// Range rule: encode reports false when some element is NaN or Inf, or is
// finite but rounds beyond the format's largest finite value (|x| >= 65520 for
// fp16, |x| >= 0x1.ffp127 for bf16); the codec turns that into a
// numeric_error naming the element. It is detected in the same pass: a
// running integer max of the |x| bit patterns (which order like |x|, with
// NaN and Inf above every finite value) is compared once at the end.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include <xsimd/xsimd.hpp>

#include "greenreduce/kernels/lanes.hpp"

namespace greenreduce::kernels {

namespace scalar {

/// fp32 -> binary16, round to nearest even; overflow, Inf and NaN -> Inf (encode
/// rejects all three, so no lane spends work telling them apart).
inline std::uint16_t fp16_from_float(float f) noexcept {
  const auto x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000U;
  const std::uint32_t a = x & 0x7FFFFFFFU;
  if (a >= 0x47800000U) return static_cast<std::uint16_t>(sign | 0x7C00U);  // >= 2^16, Inf, NaN
  if (a < 0x38800000U) {  // below 2^-14: a binary16 subnormal or zero
    if (a < 0x33000000U) return static_cast<std::uint16_t>(sign);  // below 2^-25 (tie -> 0)
    const std::uint32_t e = a >> 23;                               // 102..112
    const std::uint32_t m = (a & 0x7FFFFFU) | 0x800000U;
    const std::uint32_t shift = 126 - e;  // value * 2^24 = m >> shift
    std::uint32_t q = m >> shift;
    const std::uint32_t rem = m & ((1U << shift) - 1), half = 1U << (shift - 1);
    q += (rem > half || (rem == half && (q & 1U))) ? 1U : 0U;
    return static_cast<std::uint16_t>(sign | q);
  }
  std::uint32_t q = (a - 0x38000000U) >> 13;  // rebias 127 -> 15, keep 10 mantissa bits
  const std::uint32_t rem = a & 0x1FFFU;
  q += (rem > 0x1000U || (rem == 0x1000U && (q & 1U))) ? 1U : 0U;  // a carry may reach Inf
  return static_cast<std::uint16_t>(sign | q);
}

/// binary16 -> fp32, exact (subnormals, Inf and NaN payloads included).
inline float fp16_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000U) << 16;
  const std::uint32_t e = (h >> 10) & 0x1FU, m = h & 0x3FFU;
  if (e == 0x1F) return std::bit_cast<float>(sign | 0x7F800000U | (m << 13));
  if (e == 0)
    return std::bit_cast<float>(sign |
                                std::bit_cast<std::uint32_t>(static_cast<float>(m) * 0x1p-24F));
  return std::bit_cast<float>(sign | ((e + 112) << 23) | (m << 13));
}

/// fp32 -> bfloat16, round to nearest even; overflow -> Inf. NaN gives an
/// unspecified pattern (encode rejects NaN before anything is sent).
inline std::uint16_t bf16_from_float(float f) noexcept {
  const auto x = std::bit_cast<std::uint32_t>(f);
  return static_cast<std::uint16_t>((x + 0x7FFFU + ((x >> 16) & 1U)) >> 16);
}

/// bfloat16 -> fp32, exact.
inline float bf16_to_float(std::uint16_t h) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

}  // namespace scalar

/// IEEE-754 binary16: 1 sign, 5 exponent, 10 mantissa bits.
struct fp16_format {
  static constexpr std::string_view name = "fp16";
  static constexpr std::uint32_t inf_bits = 0x7C00;      ///< |h| >= this is Inf or NaN
  static constexpr std::int32_t first_bad = 0x477FF000;  ///< |x| bits >= this: 65520, Inf, NaN
  static constexpr double max_finite = 65504.0;

  static std::uint16_t encode(float f) noexcept { return scalar::fp16_from_float(f); }
  static float decode(std::uint16_t h) noexcept { return scalar::fp16_to_float(h); }

  template <class Arch>
  static xsimd::batch<std::uint32_t, Arch> encode(xsimd::batch<float, Arch> f) noexcept {
    using i32 = xsimd::batch<std::int32_t, Arch>;
    using u32 = xsimd::batch<std::uint32_t, Arch>;
    const i32 x = xsimd::bitwise_cast<i32>(f);
    const i32 a = x & i32(0x7FFFFFFF);  // non-negative: signed compares order it right
    const i32 sign = (x >> 16) & i32(0x8000);
    // Normal range: rebias the exponent and add the rounding bias 0xFFF + odd bit.
    const i32 odd = (a >> 13) & i32(1);
    const i32 normal = ((a + i32(static_cast<std::int32_t>(0xC8000FFFU))) + odd) >> 13;
    // Below 2^-14: one fp32 add of 0.5 rounds the value onto the 2^-24 grid.
    const xsimd::batch<float, Arch> half(0.5F);
    const i32 sub =
        xsimd::bitwise_cast<i32>(xsimd::bitwise_cast<xsimd::batch<float, Arch>>(a) + half) -
        i32(0x3F000000);
    i32 h = xsimd::select(a < i32(0x38800000), sub, normal);
    h = xsimd::select(a >= i32(0x47800000), i32(0x7C00), h);
    return xsimd::bitwise_cast<u32>(h | sign);
  }

  template <class Arch>
  static xsimd::batch<float, Arch> decode(xsimd::batch<std::uint32_t, Arch> h) noexcept {
    using u32 = xsimd::batch<std::uint32_t, Arch>;
    using f32 = xsimd::batch<float, Arch>;
    // Shift exponent and mantissa into place; one multiply by 2^112 rebiases
    // and normalizes subnormals; Inf/NaN get their all-ones exponent back.
    const u32 em = (h & u32(0x7FFFU)) << 13;
    const f32 scaled = xsimd::bitwise_cast<f32>(em) * f32(0x1p112F);
    const u32 bits = xsimd::bitwise_cast<u32>(xsimd::select(
        scaled >= f32(65536.0F),
        xsimd::bitwise_cast<f32>(xsimd::bitwise_cast<u32>(scaled) | u32(0x7F800000U)), scaled));
    return xsimd::bitwise_cast<f32>(bits | ((h & u32(0x8000U)) << 16));
  }
};

/// bfloat16: the top half of an fp32 (1 sign, 8 exponent, 7 mantissa bits).
struct bf16_format {
  static constexpr std::string_view name = "bf16";
  static constexpr std::uint32_t inf_bits = 0x7F80;
  static constexpr std::int32_t first_bad = 0x7F7F8000;  ///< |x| bits >= this round to Inf
  static constexpr double max_finite = 0x1.fep127;

  static std::uint16_t encode(float f) noexcept { return scalar::bf16_from_float(f); }
  static float decode(std::uint16_t h) noexcept { return scalar::bf16_to_float(h); }

  template <class Arch>
  static xsimd::batch<std::uint32_t, Arch> encode(xsimd::batch<float, Arch> f) noexcept {
    using u32 = xsimd::batch<std::uint32_t, Arch>;
    const u32 x = xsimd::bitwise_cast<u32>(f);
    return (x + u32(0x7FFFU) + ((x >> 16) & u32(1U))) >> 16;
  }

  template <class Arch>
  static xsimd::batch<float, Arch> decode(xsimd::batch<std::uint32_t, Arch> h) noexcept {
    return xsimd::bitwise_cast<xsimd::batch<float, Arch>>(h << 16);
  }
};

namespace scalar {

/// out[0, 2n) = n 16-bit values of `in`; false when some element is not finite
/// or rounds beyond the format's range.
template <class Format>
bool encode_half(std::span<const float> in, std::byte* out) noexcept {
  std::uint32_t worst = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const std::uint16_t h = Format::encode(in[i]);
    worst = std::max<std::uint32_t>(worst, std::bit_cast<std::uint32_t>(in[i]) & 0x7FFFFFFFU);
    std::memcpy(out + 2 * i, &h, 2);
  }
  return worst < static_cast<std::uint32_t>(Format::first_bad);
}

template <class Format>
void decode_half(const std::byte* in, std::span<float> out) noexcept {
  for (std::size_t i = 0; i < out.size(); ++i) {
    std::uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    out[i] = Format::decode(h);
  }
}

template <class Format>
void decode_add_half(const std::byte* in, std::span<float> acc) noexcept {
  for (std::size_t i = 0; i < acc.size(); ++i) {
    std::uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    acc[i] += Format::decode(h);
  }
}

}  // namespace scalar

/// SIMD form of scalar::encode_half: two batches per step, one packed store.
template <class Format, class Arch = xsimd::default_arch>
bool encode_half(std::span<const float> in, std::byte* out) noexcept {
  using f32 = xsimd::batch<float, Arch>;
  using i32 = xsimd::batch<std::int32_t, Arch>;
  constexpr std::size_t w = f32::size;
  const std::size_t n = in.size();
  const float* x = in.data();
  // |x| bits order like |x|, and NaN/Inf sit above every finite value.
  i32 worst(0);
  const i32 magnitude(0x7FFFFFFF);
  std::size_t i = 0;
  for (; i + 2 * w <= n; i += 2 * w) {
    const f32 x0 = f32::load_unaligned(x + i), x1 = f32::load_unaligned(x + i + w);
    worst = xsimd::max(worst, xsimd::max(xsimd::bitwise_cast<i32>(x0) & magnitude,
                                         xsimd::bitwise_cast<i32>(x1) & magnitude));
    lanes::narrow_u16x2<Arch>(Format::template encode<Arch>(x0), Format::template encode<Arch>(x1),
                              out + 2 * i);
  }
  alignas(64) std::int32_t lanes_worst[w];
  worst.store_aligned(lanes_worst);
  const bool body_ok = *std::max_element(lanes_worst, lanes_worst + w) < Format::first_bad;
  return scalar::encode_half<Format>(in.subspan(i), out + 2 * i) && body_ok;
}

template <class Format, class Arch = xsimd::default_arch>
void decode_half(const std::byte* in, std::span<float> out) noexcept {
  using f32 = xsimd::batch<float, Arch>;
  constexpr std::size_t w = f32::size;
  std::size_t i = 0;
  for (; i + w <= out.size(); i += w)
    Format::template decode<Arch>(lanes::widen_u16<Arch>(in + 2 * i)).store_unaligned(&out[i]);
  scalar::decode_half<Format>(in + 2 * i, out.subspan(i));
}

template <class Format, class Arch = xsimd::default_arch>
void decode_add_half(const std::byte* in, std::span<float> acc) noexcept {
  using f32 = xsimd::batch<float, Arch>;
  constexpr std::size_t w = f32::size;
  float* a = acc.data();
  std::size_t i = 0;
  for (; i + 2 * w <= acc.size(); i += 2 * w) {
    const f32 d0 = Format::template decode<Arch>(lanes::widen_u16<Arch>(in + 2 * i));
    const f32 d1 = Format::template decode<Arch>(lanes::widen_u16<Arch>(in + 2 * (i + w)));
    (f32::load_unaligned(a + i) + d0).store_unaligned(a + i);
    (f32::load_unaligned(a + i + w) + d1).store_unaligned(a + i + w);
  }
  scalar::decode_add_half<Format>(in + 2 * i, acc.subspan(i));
}

}  // namespace greenreduce::kernels
