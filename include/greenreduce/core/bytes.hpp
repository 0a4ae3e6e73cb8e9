// greenreduce/core/bytes.hpp — little-endian loads and stores.
//
// Everything greenreduce puts on the wire is little-endian, whatever the host.
// Loads and stores go through memcpy, so unaligned offsets are fine and no
// strict-aliasing rule is broken.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

namespace greenreduce {

namespace detail {
template <class T>
constexpr T byteswap(T v) noexcept {
  static_assert(std::is_integral_v<T>);
  if constexpr (sizeof(T) == 1) {
    return v;
  } else if constexpr (sizeof(T) == 2) {
    return static_cast<T>(__builtin_bswap16(static_cast<std::uint16_t>(v)));
  } else if constexpr (sizeof(T) == 4) {
    return static_cast<T>(__builtin_bswap32(static_cast<std::uint32_t>(v)));
  } else {
    return static_cast<T>(__builtin_bswap64(static_cast<std::uint64_t>(v)));
  }
}
}  // namespace detail

/// Reads a little-endian integer at `p` (no alignment required).
template <class T>
T load_le(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) v = detail::byteswap(v);
  return v;
}

/// Writes `v` little-endian at `p` (no alignment required).
template <class T>
void store_le(std::byte* p, T v) noexcept {
  if constexpr (std::endian::native == std::endian::big) v = detail::byteswap(v);
  std::memcpy(p, &v, sizeof(T));
}

/// The bytes of a span of trivially copyable values.
template <class T>
std::span<const std::byte> as_bytes(std::span<T> s) noexcept {
  return std::as_bytes(s);
}

}  // namespace greenreduce
