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

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <span>

#include <xsimd/xsimd.hpp>

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

}  // namespace greenreduce::kernels
