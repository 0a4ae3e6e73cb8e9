// greenreduce/kernels/copy.hpp — fp32 to and from little-endian wire bytes.
//
// The kernels of codec::none and the building block of others: a copy that
// also detects non-finite input in the same pass (z = fma(x, 0, z) turns NaN as
// soon as one x is NaN or Inf, at the cost of one fused op per element), and
// the fused decode_add (acc += wire values). Each SIMD kernel is written once
// against xsimd::batch and has a scalar reference in `kernels::scalar`, which
// tests hold it to bit for bit.
//
// Wire bytes need no alignment. The hosts greenreduce supports are
// little-endian, so the wire layout is the in-memory layout.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include <xsimd/xsimd.hpp>
#if defined(__SSE__)
#include <immintrin.h>
#endif

static_assert(std::endian::native == std::endian::little,
              "greenreduce's SIMD kernels assume a little-endian host");

namespace greenreduce::kernels {

namespace scalar {
/// out[0, 4n) = in; returns false when some element is NaN or Inf.
inline bool copy_to_le_checked(std::span<const float> in, std::byte* out) noexcept {
  bool finite = true;
  for (std::size_t i = 0; i < in.size(); ++i) {
    finite &= std::isfinite(in[i]);
    std::memcpy(out + 4 * i, &in[i], 4);
  }
  return finite;
}
inline void copy_from_le(const std::byte* in, std::span<float> out) noexcept {
  if (!out.empty()) std::memcpy(out.data(), in, out.size() * 4);
}
inline void add_from_le(const std::byte* in, std::span<float> acc) noexcept {
  for (std::size_t i = 0; i < acc.size(); ++i) {
    float v;
    std::memcpy(&v, in + 4 * i, 4);
    acc[i] += v;
  }
}
/// add_from_le that first saves each element of acc to saved[i] (one pass
/// instead of a copy and an add: the ring keeps its caller's input this way).
inline void add_from_le_saving(const std::byte* in, std::span<float> acc, float* saved) noexcept {
  for (std::size_t i = 0; i < acc.size(); ++i) {
    float v;
    std::memcpy(&v, in + 4 * i, 4);
    saved[i] = acc[i];
    acc[i] += v;
  }
}
/// saved[0, n) = x, then x[0, n) = 0: the save before a sparse decode
/// overwrites a chunk (one pass: the zeros are stored into lines just read).
inline void save_and_zero(std::span<float> x, float* saved) noexcept {
  for (std::size_t i = 0; i < x.size(); ++i) {
    saved[i] = x[i];
    x[i] = 0.0F;
  }
}
/// out = 0 except out[idx[j]] = val[j]: the dense form of sorted sparse
/// entries (idx strictly increasing, below out.size()).
inline void expand(const std::uint64_t* idx, const float* val, std::size_t count,
                   std::span<float> out) noexcept {
  std::fill(out.begin(), out.end(), 0.0F);
  for (std::size_t j = 0; j < count; ++j) out[idx[j]] = val[j];
}
/// For each entry j: old[j] = x[idx[j]], then x[idx[j]] += val[j] (indices
/// distinct): a sparse add that keeps what it overwrote.
inline void scatter_add_saving(const std::uint64_t* idx, const float* val, std::size_t count,
                               float* x, float* old) noexcept {
  for (std::size_t j = 0; j < count; ++j) {
    old[j] = x[idx[j]];
    x[idx[j]] += val[j];
  }
}
}  // namespace scalar

template <class Arch = xsimd::default_arch>
bool copy_to_le_checked(std::span<const float> in, std::byte* out) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t w = batch::size;
  const std::size_t n = in.size();
  auto* dst = reinterpret_cast<float*>(out);  // storeu is a may-alias store
  batch z(0.0F);
  const batch zero(0.0F);
  std::size_t i = 0;
  for (; i + w <= n; i += w) {
    const batch x = batch::load_unaligned(in.data() + i);
    z = xsimd::fma(x, zero, z);
    x.store_unaligned(dst + i);
  }
  bool finite = !xsimd::any(xsimd::isnan(z));
  return scalar::copy_to_le_checked(in.subspan(i), out + 4 * i) && finite;
}

template <class Arch = xsimd::default_arch>
void copy_from_le(const std::byte* in, std::span<float> out) noexcept {
  scalar::copy_from_le(in, out);  // memcpy is already the fastest copy
}

template <class Arch = xsimd::default_arch>
void add_from_le(const std::byte* in, std::span<float> acc) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t w = batch::size;
  const auto* src = reinterpret_cast<const float*>(in);
  std::size_t i = 0;
  for (; i + w <= acc.size(); i += w)
    (batch::load_unaligned(acc.data() + i) + batch::load_unaligned(src + i))
        .store_unaligned(acc.data() + i);
  scalar::add_from_le(in + 4 * i, acc.subspan(i));
}

namespace detail {
// Elements before `p` reaches the alignment of a batch of Arch (at most n).
template <class Arch>
std::size_t to_aligned(const float* p, std::size_t n) noexcept {
  constexpr std::size_t a = sizeof(xsimd::batch<float, Arch>);
  const auto mis = reinterpret_cast<std::uintptr_t>(p) % a;
  if (mis % sizeof(float) != 0) return n;  // never aligns: all scalar
  const std::size_t k = mis == 0 ? 0 : (a - mis) / sizeof(float);
  return k < n ? k : n;
}

// A non-temporal store of x at p (aligned to the batch): the line is written
// without being read first and bypasses the caches, for copies that are read
// back only on error. Plain aligned store where the target has none.
template <class Arch>
void store_stream(float* p, const xsimd::batch<float, Arch>& x) noexcept {
#if defined(__AVX__)
  if constexpr (sizeof(x) == 32) {
    _mm256_stream_ps(p, x);
    return;
  }
#endif
#if defined(__SSE__)
  if constexpr (sizeof(x) == 16) {
    _mm_stream_ps(p, x);
    return;
  }
#endif
  x.store_aligned(p);
}

inline void stream_fence() noexcept {
#if defined(__SSE__)
  _mm_sfence();  // order the streaming stores before what follows
#endif
}
}  // namespace detail

/// add_from_le that first saves each element of acc to saved[i], with
/// streaming stores (see detail::store_stream): one pass, and the saved copy
/// costs no read of its own lines.
template <class Arch = xsimd::default_arch>
void add_from_le_saving(const std::byte* in, std::span<float> acc, float* saved) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t w = batch::size;
  const auto* src = reinterpret_cast<const float*>(in);
  const std::size_t head = detail::to_aligned<Arch>(saved, acc.size());
  scalar::add_from_le_saving(in, acc.first(head), saved);
  std::size_t i = head;
  for (; i + w <= acc.size(); i += w) {
    const batch x = batch::load_unaligned(acc.data() + i);
    detail::store_stream<Arch>(saved + i, x);
    (x + batch::load_unaligned(src + i)).store_unaligned(acc.data() + i);
  }
  detail::stream_fence();
  scalar::add_from_le_saving(in + 4 * i, acc.subspan(i), saved + i);
}

/// out[0, n) = in[0, n) with streaming stores: a backup copy that stays out
/// of the caches.
template <class Arch = xsimd::default_arch>
void copy_streaming(const float* in, float* out, std::size_t n) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t w = batch::size;
  const std::size_t head = detail::to_aligned<Arch>(out, n);
  if (head > 0) std::memcpy(out, in, head * 4);
  std::size_t i = head;
  for (; i + w <= n; i += w) detail::store_stream<Arch>(out + i, batch::load_unaligned(in + i));
  detail::stream_fence();
  if (i < n) std::memcpy(out + i, in + i, (n - i) * 4);
}

/// scalar::save_and_zero with streaming stores into `saved` (read back only
/// on error), as copy_streaming; x is zeroed with plain stores into the lines
/// the same pass has just read.
template <class Arch = xsimd::default_arch>
void save_and_zero(std::span<float> x, float* saved) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t w = batch::size;
  const std::size_t n = x.size();
  const std::size_t head = detail::to_aligned<Arch>(saved, n);
  scalar::save_and_zero(x.first(head), saved);
  std::size_t i = head;
  const batch zero(0.0F);
  for (; i + w <= n; i += w) {
    detail::store_stream<Arch>(saved + i, batch::load_unaligned(x.data() + i));
    zero.store_unaligned(x.data() + i);
  }
  detail::stream_fence();
  scalar::save_and_zero(x.subspan(i), saved + i);
}

/// scalar::expand in one sequential pass with streaming stores: each batch
/// of out is written once, zeros with the entries that fall into it, so the
/// result costs no read of out's lines and no random access (a decode that
/// zero-fills first and scatters after misses the cache once per entry).
/// The zeros up to the next entry's batch go out in a tight loop, and an
/// entry enters its batch by a select against the lane number, in registers
/// (a store to a stack copy of the batch and its reload stalled the store
/// forwarding once per entry: this pass took twice a plain zero-fill at 1%).
template <class Arch = xsimd::default_arch>
void expand_streaming(const std::uint64_t* idx, const float* val, std::size_t count,
                      std::span<float> out) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t w = batch::size;
  const std::size_t n = out.size();
  const std::size_t head = detail::to_aligned<Arch>(out.data(), n);
  std::size_t j = 0;
  auto put_scalar = [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) out[i] = 0.0F;
    for (; j < count && idx[j] < end; ++j) out[idx[j]] = val[j];
  };
  put_scalar(0, head);
  const batch zero(0.0F);
  alignas(64) float lane_of[w];
  for (std::size_t l = 0; l < w; ++l) lane_of[l] = static_cast<float>(l);
  const batch lane = batch::load_aligned(lane_of);
  const std::size_t body_end = n - (n - head) % w;  // batches cover [head, body_end)
  std::size_t i = head;
  while (i < body_end) {
    // Zeros up to the batch that holds the next entry (or to the end).
    const std::size_t next = j < count && idx[j] < body_end ? idx[j] : body_end;
    const std::size_t stop = i + (next - i) / w * w;
    for (; i < stop; i += w) detail::store_stream<Arch>(out.data() + i, zero);
    if (i == body_end) break;
    batch v = zero;
    for (; j < count && idx[j] < i + w; ++j)
      v = xsimd::select(lane == batch(static_cast<float>(idx[j] - i)), batch(val[j]), v);
    detail::store_stream<Arch>(out.data() + i, v);
    i += w;
  }
  detail::stream_fence();
  put_scalar(i, n);
}

/// scalar::scatter_add_saving with software prefetches a few entries ahead:
/// the entries are sparse, so every one is a cache miss, and the misses of
/// consecutive entries overlap instead of queueing behind each other.
inline void scatter_add_saving_prefetched(const std::uint64_t* idx, const float* val,
                                          std::size_t count, float* x, float* old) noexcept {
  constexpr std::size_t ahead = 16;
  std::size_t j = 0;
  for (; j + ahead < count; ++j) {
    __builtin_prefetch(x + idx[j + ahead], 1);
    old[j] = x[idx[j]];
    x[idx[j]] += val[j];
  }
  scalar::scatter_add_saving(idx + j, val + j, count - j, x, old + j);
}

}  // namespace greenreduce::kernels
