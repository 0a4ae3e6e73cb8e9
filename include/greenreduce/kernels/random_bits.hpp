// greenreduce/kernels/random_bits.hpp — Philox4x32-10 and ARS-5 over SIMD lanes, and lane masks.
//
// `philox_words<Arch>(g, first)` evaluates W = batch<uint32_t, Arch>::size
// consecutive blocks of the rng `g` (blocks first .. first + W - 1, i.e.
// counters g.offset + first + l) in structure-of-arrays form: word w of block
// first + l is lane l of result[w]. It is bit for bit core/rng.hpp's
// philox4x32_10 (Salmon et al., SC 2011), which the tests hold it to.
//
// xsimd 8 has no 32x32 -> 64-bit multiply, so `mul_hilo` is the one place with
// instruction-set code (AVX-512F, AVX2, SSE2 via _mm*_mul_epu32), plus a
// portable per-lane fallback for any other architecture.
//
// `ars_stream<Arch>` walks consecutive ARS-5 blocks of an rng (core/ars.hpp):
// each `next()` returns the W / 4 blocks that fill one batch<uint32_t, Arch>
// (lane m = word m % 4 of block m / 4) and moves on by W / 4 blocks. With VAES
// (and AVX2, for the 64-bit counter add) a 256-bit batch is one VAESENC chain
// over two blocks; with AES-NI a 128-bit batch is one AESENC chain; every other
// case (wider batches, builds without -maes, other ISAs) evaluates the blocks
// one by one, with AESENC when the build has it and core/ars.hpp's portable
// rounds otherwise. All forms are bit for bit greenreduce::ars5_block.
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>

#include <immintrin.h>
#include <xsimd/xsimd.hpp>

#include "greenreduce/core/ars.hpp"
#include "greenreduce/core/rng.hpp"

namespace greenreduce::kernels {

template <class Arch>
using u32_batch = xsimd::batch<std::uint32_t, Arch>;

/// hi:lo = a * m per 32-bit lane (full 64-bit product).
template <class Arch>
inline void mul_hilo(u32_batch<Arch> a, std::uint32_t m, u32_batch<Arch>& hi,
                     u32_batch<Arch>& lo) noexcept {
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
    const __m512i va = a, vm = _mm512_set1_epi32(static_cast<int>(m));
    const __m512i even = _mm512_mul_epu32(va, vm);
    const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(va, 32), vm);
    lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  } else if constexpr (std::is_base_of_v<xsimd::avx2, Arch>) {
    const __m256i va = a, vm = _mm256_set1_epi32(static_cast<int>(m));
    const __m256i even = _mm256_mul_epu32(va, vm);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(va, 32), vm);
    lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  } else if constexpr (std::is_base_of_v<xsimd::sse2, Arch>) {
    const __m128i va = a, vm = _mm_set1_epi32(static_cast<int>(m));
    const __m128i even = _mm_mul_epu32(va, vm);
    const __m128i odd = _mm_mul_epu32(_mm_srli_epi64(va, 32), vm);
    const __m128i low32 = _mm_set1_epi64x(0xFFFFFFFFLL);
    lo = _mm_or_si128(_mm_and_si128(even, low32), _mm_slli_epi64(odd, 32));
    hi = _mm_or_si128(_mm_srli_epi64(even, 32), _mm_andnot_si128(low32, odd));
  } else {
    alignas(64) std::uint32_t av[u32_batch<Arch>::size], h[u32_batch<Arch>::size],
        l[u32_batch<Arch>::size];
    a.store_aligned(av);
    for (std::size_t i = 0; i < u32_batch<Arch>::size; ++i) {
      const std::uint64_t p = static_cast<std::uint64_t>(av[i]) * m;
      h[i] = static_cast<std::uint32_t>(p >> 32);
      l[i] = static_cast<std::uint32_t>(p);
    }
    hi = u32_batch<Arch>::load_aligned(h);
    lo = u32_batch<Arch>::load_aligned(l);
  }
}

/// Blocks g.offset + first + l (l < W) of `g`, word-major: result[w] lane l.
template <class Arch>
inline std::array<u32_batch<Arch>, 4> philox_words(const rng& g, std::uint64_t first) noexcept {
  using u32 = u32_batch<Arch>;
  constexpr std::size_t w = u32::size;
  const std::uint64_t c = g.offset + first;
  const auto lo = static_cast<std::uint32_t>(c);
  u32 c0, c1;
  if (lo <= 0xFFFFFFFFU - (w - 1)) {
    alignas(64) std::uint32_t iota[w];
    for (std::size_t l = 0; l < w; ++l) iota[l] = static_cast<std::uint32_t>(l);
    c0 = u32(lo) + u32::load_aligned(iota);
    c1 = u32(static_cast<std::uint32_t>(c >> 32));
  } else {  // the low word wraps inside this batch: carry into the high word per lane
    alignas(64) std::uint32_t a[w], b[w];
    for (std::size_t l = 0; l < w; ++l) {
      a[l] = static_cast<std::uint32_t>(c + l);
      b[l] = static_cast<std::uint32_t>((c + l) >> 32);
    }
    c0 = u32::load_aligned(a);
    c1 = u32::load_aligned(b);
  }
  u32 c2(static_cast<std::uint32_t>(g.stream)), c3(static_cast<std::uint32_t>(g.stream >> 32));
  auto k0 = static_cast<std::uint32_t>(g.seed), k1 = static_cast<std::uint32_t>(g.seed >> 32);
  for (int r = 0; r < philox::rounds; ++r) {
    if (r > 0) {
      k0 += philox::w0;
      k1 += philox::w1;
    }
    u32 hi0, lo0, hi1, lo1;
    mul_hilo<Arch>(c0, philox::m0, hi0, lo0);
    mul_hilo<Arch>(c2, philox::m1, hi1, lo1);
    c0 = hi1 ^ c1 ^ u32(k0);
    c1 = lo1;
    c2 = hi0 ^ c3 ^ u32(k1);
    c3 = lo0;
  }
  return {c0, c1, c2, c3};
}

#if defined(__AES__)
/// ARS-5 of one counter block with AES-NI; k[r] are the round keys.
inline __m128i ars5_aesni(__m128i ctr, const __m128i* k) noexcept {
  __m128i v = _mm_xor_si128(ctr, k[0]);
  for (int r = 1; r < ars::rounds; ++r) v = _mm_aesenc_si128(v, k[r]);
  return _mm_aesenclast_si128(v, k[ars::rounds]);
}
#endif

/// Consecutive ARS-5 blocks of an rng, W / 4 per call (see the header comment).
template <class Arch>
class ars_stream {
  using u32 = u32_batch<Arch>;
  static constexpr std::size_t w = u32::size;
  static_assert(w % 4 == 0, "ARS blocks fill 4 lanes each");
  static constexpr std::size_t blocks = w / 4;
#if defined(__VAES__) && defined(__AVX2__)
  static constexpr bool vaes = w == 8;
#else
  static constexpr bool vaes = false;
#endif
#if defined(__AES__)
  static constexpr bool aesni = true;
#else
  static constexpr bool aesni = false;
#endif

 public:
  /// Positioned at block `first` (relative to g's offset).
  ars_stream(const rng& g, std::uint64_t first) noexcept
      : counter_(g.offset + first), stream_(g.stream) {
    for (int r = 0; r <= ars::rounds; ++r) keys_[r] = ars::round_key(g.seed, 0, r);
#if defined(__VAES__) && defined(__AVX2__)
    if constexpr (vaes) {
      for (int r = 0; r <= ars::rounds; ++r)
        k256_[r] = _mm256_broadcastsi128_si256(load128(keys_[r]));
      ctr256_ =
          _mm256_set_epi64x(static_cast<long long>(stream_), static_cast<long long>(counter_ + 1),
                            static_cast<long long>(stream_), static_cast<long long>(counter_));
    }
#endif
#if defined(__AES__)
    for (int r = 0; r <= ars::rounds; ++r) k128_[r] = load128(keys_[r]);
#endif
  }

  /// Blocks first .. first + W/4 - 1 of what is left; advances by W / 4 blocks.
  u32 next() noexcept {
#if defined(__VAES__) && defined(__AVX2__)
    if constexpr (vaes) {
      __m256i v = _mm256_xor_si256(ctr256_, k256_[0]);
      for (int r = 1; r < ars::rounds; ++r) v = _mm256_aesenc_epi128(v, k256_[r]);
      v = _mm256_aesenclast_epi128(v, k256_[ars::rounds]);
      ctr256_ = _mm256_add_epi64(ctr256_, _mm256_set_epi64x(0, 2, 0, 2));
      return u32(v);
    }
#endif
    alignas(64) std::uint32_t out[w];
    for (std::size_t b = 0; b < blocks; ++b) {
      const philox_block ctr = ars::counter_block(counter_ + b, stream_);
#if defined(__AES__)
      if constexpr (aesni) {
        _mm_store_si128(reinterpret_cast<__m128i*>(out + 4 * b), ars5_aesni(load128(ctr), k128_));
        continue;
      }
#endif
      const philox_block v = ars::encrypt<ars::rounds>(ctr, keys_);
      for (int i = 0; i < 4; ++i) out[4 * b + static_cast<std::size_t>(i)] = v[i];
    }
    counter_ += blocks;
    return u32::load_aligned(out);
  }

 private:
  static __m128i load128(const philox_block& b) noexcept {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.w));
  }

  std::uint64_t counter_, stream_;
  philox_block keys_[ars::rounds + 1];
#if defined(__VAES__) && defined(__AVX2__)
  __m256i k256_[ars::rounds + 1];
  __m256i ctr256_;
#endif
#if defined(__AES__)
  __m128i k128_[ars::rounds + 1];
#endif
};

/// Bit l set when lane l of `m` is true (lanes beyond 64 are not supported).
template <class Arch>
inline std::uint64_t lane_mask(xsimd::batch_bool<float, Arch> m) noexcept {
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
    return static_cast<__mmask16>(m);
  } else if constexpr (std::is_base_of_v<xsimd::avx, Arch>) {
    return static_cast<std::uint64_t>(_mm256_movemask_ps(m));
  } else if constexpr (std::is_base_of_v<xsimd::sse2, Arch>) {
    return static_cast<std::uint64_t>(_mm_movemask_ps(m));
  } else {
    constexpr std::size_t w = xsimd::batch<float, Arch>::size;
    alignas(64) bool b[w];
    m.store_aligned(b);
    std::uint64_t r = 0;
    for (std::size_t l = 0; l < w; ++l) r |= static_cast<std::uint64_t>(b[l]) << l;
    return r;
  }
}

}  // namespace greenreduce::kernels
