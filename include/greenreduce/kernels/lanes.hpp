// greenreduce/kernels/lanes.hpp — the few lane moves xsimd 8 has no portable
// form for: widening 16-bit and 8-bit wire values into 32-bit lanes, and
// narrowing 32-bit lanes back into packed wire bytes in element order, a
// blend by the sign bit, and a fused multiply-add that is fused on every
// instruction set (the 32x32->64 product of the SIMD Philox lives in
// kernels/random_bits.hpp).
//
// Every other kernel is written once against xsimd::batch; these helpers are
// the one place with instruction-set intrinsics (SSE2, SSE4.1, AVX2, AVX-512F),
// each chosen at compile time by the batch's Arch tag. Any other Arch (AVX
// without AVX2, NEON, ...) takes the generic form, which goes through a small
// stack buffer: correct everywhere, merely slower. Wire bytes need no
// alignment: loads and stores are unaligned, through may-alias vector types.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace greenreduce::kernels::lanes {

template <class Arch, class Base>
inline constexpr bool is = std::is_base_of_v<Base, Arch>;

/// batch::size little-endian uint16 at p, zero-extended into 32-bit lanes.
template <class Arch>
xsimd::batch<std::uint32_t, Arch> widen_u16(const std::byte* p) noexcept {
#if XSIMD_WITH_AVX512F
  if constexpr (is<Arch, xsimd::avx512f>)
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#endif
#if XSIMD_WITH_AVX2
  if constexpr (is<Arch, xsimd::avx2>)
    return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#endif
#if XSIMD_WITH_SSE4_1
  if constexpr (is<Arch, xsimd::sse4_1>)
    return _mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
#endif
#if XSIMD_WITH_SSE2
  if constexpr (is<Arch, xsimd::sse2>)
    return _mm_unpacklo_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)),
                              _mm_setzero_si128());
#endif
  constexpr std::size_t w = xsimd::batch<std::uint32_t, Arch>::size;
  alignas(64) std::uint32_t buf[w];
  for (std::size_t k = 0; k < w; ++k) {
    std::uint16_t h;
    std::memcpy(&h, p + 2 * k, 2);
    buf[k] = h;
  }
  return xsimd::batch<std::uint32_t, Arch>::load_aligned(buf);
}

/// Stores the low 16 bits of the lanes of a, then of b (2 * batch::size
/// uint16, element order) at p. Lanes must hold values below 65536.
template <class Arch>
void narrow_u16x2(xsimd::batch<std::uint32_t, Arch> a, xsimd::batch<std::uint32_t, Arch> b,
                  std::byte* p) noexcept {
#if XSIMD_WITH_AVX512F
  if constexpr (is<Arch, xsimd::avx512f>) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(a));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 32), _mm512_cvtepi32_epi16(b));
    return;
  }
#endif
#if XSIMD_WITH_AVX2
  if constexpr (is<Arch, xsimd::avx2>) {
    // packus interleaves 128-bit lanes: [a0-3 b0-3 | a4-7 b4-7]; the permute restores order.
    const __m256i ab = _mm256_packus_epi32(a, b);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm256_permute4x64_epi64(ab, _MM_SHUFFLE(3, 1, 2, 0)));
    return;
  }
#endif
#if XSIMD_WITH_SSE4_1
  if constexpr (is<Arch, xsimd::sse4_1>) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm_packus_epi32(a, b));
    return;
  }
#endif
#if XSIMD_WITH_SSE2
  if constexpr (is<Arch, xsimd::sse2>) {
    // No unsigned pack before SSE4.1: sign-extend the low halves, then pack signed.
    const __m128i sa = _mm_srai_epi32(_mm_slli_epi32(a, 16), 16);
    const __m128i sb = _mm_srai_epi32(_mm_slli_epi32(b, 16), 16);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm_packs_epi32(sa, sb));
    return;
  }
#endif
  constexpr std::size_t w = xsimd::batch<std::uint32_t, Arch>::size;
  alignas(64) std::uint32_t buf[2 * w];
  a.store_aligned(buf);
  b.store_aligned(buf + w);
  for (std::size_t k = 0; k < 2 * w; ++k) {
    const auto h = static_cast<std::uint16_t>(buf[k]);
    std::memcpy(p + 2 * k, &h, 2);
  }
}

/// batch::size int8 at p, sign-extended into 32-bit lanes.
template <class Arch>
xsimd::batch<std::int32_t, Arch> widen_i8(const std::byte* p) noexcept {
#if XSIMD_WITH_AVX512F
  if constexpr (is<Arch, xsimd::avx512f>)
    return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#endif
#if XSIMD_WITH_AVX2
  if constexpr (is<Arch, xsimd::avx2>)
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
#endif
#if XSIMD_WITH_SSE2
  if constexpr (is<Arch, xsimd::sse2>) {
    std::int32_t v;
    std::memcpy(&v, p, 4);
    __m128i x = _mm_cvtsi32_si128(v);
    x = _mm_unpacklo_epi8(x, x);   // b0 b0 b1 b1 ...
    x = _mm_unpacklo_epi16(x, x);  // b0 b0 b0 b0 b1 ...
    return _mm_srai_epi32(x, 24);  // sign-extended b_k in lane k
  }
#endif
  constexpr std::size_t w = xsimd::batch<std::int32_t, Arch>::size;
  alignas(64) std::int32_t buf[w];
  for (std::size_t k = 0; k < w; ++k) buf[k] = static_cast<std::int8_t>(p[k]);
  return xsimd::batch<std::int32_t, Arch>::load_aligned(buf);
}

/// Stores the lanes of b0, b1, b2, b3 as int8 (4 * batch::size bytes, element
/// order) at p. Lanes must hold values in [-128, 127].
template <class Arch>
void narrow_i8x4(xsimd::batch<std::int32_t, Arch> b0, xsimd::batch<std::int32_t, Arch> b1,
                 xsimd::batch<std::int32_t, Arch> b2, xsimd::batch<std::int32_t, Arch> b3,
                 std::byte* p) noexcept {
#if XSIMD_WITH_AVX512F
  if constexpr (is<Arch, xsimd::avx512f>) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(b0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 16), _mm512_cvtepi32_epi8(b1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 32), _mm512_cvtepi32_epi8(b2));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 48), _mm512_cvtepi32_epi8(b3));
    return;
  }
#endif
#if XSIMD_WITH_AVX2
  if constexpr (is<Arch, xsimd::avx2>) {
    // The packs work per 128-bit lane; dword k of the result holds 4 bytes of
    // batch k%4, half k/4. The permute puts each batch's halves together.
    const __m256i p01 = _mm256_packs_epi32(b0, b1);
    const __m256i p23 = _mm256_packs_epi32(b2, b3);
    const __m256i bytes = _mm256_packs_epi16(p01, p23);
    _mm256_storeu_si256(
        reinterpret_cast<__m256i*>(p),
        _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return;
  }
#endif
#if XSIMD_WITH_SSE2
  if constexpr (is<Arch, xsimd::sse2>) {
    const __m128i p01 = _mm_packs_epi32(b0, b1);
    const __m128i p23 = _mm_packs_epi32(b2, b3);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm_packs_epi16(p01, p23));
    return;
  }
#endif
  constexpr std::size_t w = xsimd::batch<std::int32_t, Arch>::size;
  alignas(64) std::int32_t buf[4 * w];
  b0.store_aligned(buf);
  b1.store_aligned(buf + w);
  b2.store_aligned(buf + 2 * w);
  b3.store_aligned(buf + 3 * w);
  for (std::size_t k = 0; k < 4 * w; ++k) p[k] = static_cast<std::byte>(buf[k]);
}

/// A hint to start loading the cache line at p (never faults, any address).
inline void prefetch(const void* p) noexcept {
#if defined(__GNUC__)
  __builtin_prefetch(p, 0, 3);
#else
  (void)p;
#endif
}

/// Lane l of neg where the sign bit of v's lane l is set, of pos elsewhere
/// (-0.0 and negative NaNs count as negative): one blendv on AVX and SSE4.1.
template <class Arch>
xsimd::batch<std::uint32_t, Arch> select_by_sign(xsimd::batch<float, Arch> v,
                                                 xsimd::batch<std::uint32_t, Arch> neg,
                                                 xsimd::batch<std::uint32_t, Arch> pos) noexcept {
  using ub = xsimd::batch<std::uint32_t, Arch>;
#if XSIMD_WITH_AVX512F
  if constexpr (is<Arch, xsimd::avx512f>)
    return _mm512_mask_blend_epi32(
        _mm512_cmplt_epi32_mask(_mm512_castps_si512(v), _mm512_setzero_si512()), pos, neg);
#endif
#if XSIMD_WITH_AVX
  if constexpr (is<Arch, xsimd::avx>)
    return _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(pos), _mm256_castsi256_ps(neg), v));
#endif
#if XSIMD_WITH_SSE4_1
  if constexpr (is<Arch, xsimd::sse4_1>)
    return _mm_castps_si128(_mm_blendv_ps(_mm_castsi128_ps(pos), _mm_castsi128_ps(neg), v));
#endif
  using ib = xsimd::batch<std::int32_t, Arch>;
  const ub m = xsimd::bitwise_cast<ub>(xsimd::bitwise_cast<ib>(v) >> 31);  // arithmetic
  return (neg & m) | (pos & ~m);  // (xsimd 8's bitwise_andnot differs by ISA)
}

/// fma(a, b, c) rounded once, computed without an FMA instruction: a·b is
/// exact in double (24 + 24 bits <= 53), the sum is rounded to odd in double
/// (round to nearest, then the last bit forced to 1 when the TwoSum error is
/// not 0), and rounding that to float is the correctly rounded result since
/// double carries more than 24 + 2 bits (S. Boldo, G. Melquiond, "Emulation of
/// FMA and correctly rounded sums: proved algorithms using rounding to odd",
/// IEEE Trans. Computers 57(4), 2008). Equals std::fma for every float input.
inline float fma_by_double(float a, float b, float c) noexcept {
  const double p = static_cast<double>(a) * static_cast<double>(b);
  const double q = static_cast<double>(c);
  const double s = p + q;
  if (!std::isfinite(s)) return static_cast<float>(s);
  const double v = s - p;
  const double e = (p - (s - v)) + (q - v);  // exact: s + e = p + q
  auto bits = std::bit_cast<std::uint64_t>(s);
  if (e != 0.0 && (bits & 1U) == 0U) {
    // s != 0 here; away from zero when e has s's sign, else toward it.
    if ((e > 0.0) == (s > 0.0))
      ++bits;
    else
      --bits;
  }
  return static_cast<float>(std::bit_cast<double>(bits));
}

/// Whether xsimd::fma on Arch is one fused instruction (one rounding).
template <class Arch>
inline constexpr bool has_fused_fma =
    is<Arch, xsimd::fma3<xsimd::sse4_2>> || is<Arch, xsimd::fma3<xsimd::avx>> ||
    is<Arch, xsimd::fma3<xsimd::avx2>> || is<Arch, xsimd::fma4> || is<Arch, xsimd::avx512f>
#if XSIMD_WITH_NEON64
    || is<Arch, xsimd::neon64>
#endif
    ;

/// a·b + c rounded once on every Arch, so results that feed the wire (the
/// ternary clipped scale) do not depend on the instruction set or on whether
/// the compiler contracts a multiply and an add: on an Arch without an FMA the
/// xsimd form is a multiply then an add, rounded twice. With the FMA
/// instruction enabled (-mfma) its intrinsic is used, else fma_by_double per
/// lane.
template <class Arch>
xsimd::batch<float, Arch> fused_fma(xsimd::batch<float, Arch> a, xsimd::batch<float, Arch> b,
                                    xsimd::batch<float, Arch> c) noexcept {
  using fb = xsimd::batch<float, Arch>;
  if constexpr (has_fused_fma<Arch>) {
    return xsimd::fma(a, b, c);
  } else {
#if defined(__FMA__) && defined(__SSE2__)
    if constexpr (sizeof(typename fb::register_type) == 16) return _mm_fmadd_ps(a, b, c);
#if defined(__AVX__)
    if constexpr (sizeof(typename fb::register_type) == 32) return _mm256_fmadd_ps(a, b, c);
#endif
#endif
    alignas(64) float va[fb::size], vb[fb::size], vc[fb::size];
    a.store_aligned(va);
    b.store_aligned(vb);
    c.store_aligned(vc);
    for (std::size_t l = 0; l < fb::size; ++l) vc[l] = fma_by_double(va[l], vb[l], vc[l]);
    return fb::load_aligned(vc);
  }
}

}  // namespace greenreduce::kernels::lanes
