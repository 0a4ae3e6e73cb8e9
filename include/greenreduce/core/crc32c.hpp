// greenreduce/core/crc32c.hpp — CRC-32C (Castagnoli, reflected 0x82F63B78).
//
// The optional payload checksum of the wire frame. CRC-32C rather than zlib's
// CRC-32 because x86 computes it in hardware (SSE4.2 `crc32`, used when the
// translation unit is compiled with it) and iSCSI, ext4 and gRPC use the same
// polynomial. Reference value: crc32c("123456789") == 0xE3069283.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

namespace greenreduce {

namespace detail {
inline constexpr std::array<std::uint32_t, 256> crc32c_table = [] {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1U) ? (c >> 1) ^ 0x82F63B78U : c >> 1;
    t[i] = c;
  }
  return t;
}();
}  // namespace detail

/// Continues a CRC-32C over `data`; start with crc = 0.
inline std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept {
  std::uint32_t c = ~crc;
  const std::byte* p = data.data();
  std::size_t n = data.size();
#if defined(__SSE4_2__) && defined(__x86_64__)
  std::uint64_t c64 = c;
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    c64 = _mm_crc32_u64(c64, w);
  }
  c = static_cast<std::uint32_t>(c64);
  for (; n > 0; --n, ++p) c = _mm_crc32_u8(c, static_cast<std::uint8_t>(*p));
#else
  for (; n > 0; --n, ++p)
    c = detail::crc32c_table[(c ^ static_cast<std::uint8_t>(*p)) & 0xFFU] ^ (c >> 8);
#endif
  return ~c;
}

}  // namespace greenreduce
