// greenreduce/transport/tcp/wire.hpp — what the tcp transport puts on a socket.
//
// Hello (24 bytes, once per connection, connector first, acceptor answers):
//   magic "GRTH" u32 | protocol version u16 | zero u16 | rank u32 | size u32 |
//   job token u64
// Frame header (16 bytes, before every message; the payload follows):
//   magic u32 ("GRTD" data, "GRTB" goodbye) | sequence u32 | length u64
// All integers little-endian. The sequence number counts the messages of one
// direction of one connection from 0, so a lost or duplicated frame is caught.
// The length is never used to allocate: the receiver's posted buffer bounds it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "greenreduce/core/bytes.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/store.hpp"

namespace greenreduce::transport::tcp_wire {

inline constexpr std::uint16_t protocol_version = 1;
inline constexpr std::uint32_t hello_magic = detail::fourcc("GRTH");
inline constexpr std::uint32_t data_magic = detail::fourcc("GRTD");
inline constexpr std::uint32_t bye_magic = detail::fourcc("GRTB");
inline constexpr std::size_t hello_bytes = 24;
inline constexpr std::size_t header_bytes = 16;

struct hello {
  std::uint32_t rank = 0;
  std::uint32_t size = 0;
  std::uint64_t token = 0;
};

inline std::array<std::byte, hello_bytes> encode_hello(const hello& h) {
  std::array<std::byte, hello_bytes> b{};
  store_le<std::uint32_t>(b.data(), hello_magic);
  store_le<std::uint16_t>(b.data() + 4, protocol_version);
  store_le<std::uint32_t>(b.data() + 8, h.rank);
  store_le<std::uint32_t>(b.data() + 12, h.size);
  store_le<std::uint64_t>(b.data() + 16, h.token);
  return b;
}

/// Parses a hello and checks it belongs to this job (magic, version, token,
/// world size, rank in range); throws decode_error saying what differs.
inline hello parse_hello(std::span<const std::byte, hello_bytes> b, std::uint32_t size,
                         std::uint64_t token) {
  const auto magic = load_le<std::uint32_t>(b.data());
  if (magic != hello_magic)
    throw decode_error(
        detail::str("hello: bad magic 0x", std::hex, magic, " (expected 0x", hello_magic, ")"));
  const auto version = load_le<std::uint16_t>(b.data() + 4);
  if (version != protocol_version)
    throw decode_error(
        detail::str("hello: protocol version ", version, " (expected ", protocol_version, ")"));
  hello h{load_le<std::uint32_t>(b.data() + 8), load_le<std::uint32_t>(b.data() + 12),
          load_le<std::uint64_t>(b.data() + 16)};
  if (h.token != token) throw decode_error("hello: job token differs (another job?)");
  if (h.size != size)
    throw decode_error(detail::str("hello: world size ", h.size, " (expected ", size, ")"));
  if (h.rank >= size)
    throw decode_error(detail::str("hello: rank ", h.rank, " out of range [0, ", size, ")"));
  return h;
}

inline void encode_header(std::span<std::byte, header_bytes> b, std::uint32_t magic,
                          std::uint32_t seq, std::uint64_t length) {
  store_le<std::uint32_t>(b.data(), magic);
  store_le<std::uint32_t>(b.data() + 4, seq);
  store_le<std::uint64_t>(b.data() + 8, length);
}

}  // namespace greenreduce::transport::tcp_wire
