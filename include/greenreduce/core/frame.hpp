// greenreduce/core/frame.hpp — the versioned wire frame every codec emits.
//
// Layout (32 bytes, little-endian), followed by `payload_bytes` of payload:
//
//   off size field
//     0    4 magic          "GRF1" (0x47 0x52 0x46 0x31)
//     4    1 version        frame_version (1)
//     5    1 codec          codec_id of the payload's encoding
//     6    2 flags          bit 0: payload CRC-32C present; other bits must be 0
//     8    8 elements       number of fp32 elements the payload decodes to
//    16    8 payload_bytes  bytes that follow the header
//    24    4 payload_crc32c CRC-32C of the payload when flag bit 0, else 0
//    28    4 reserved       must be 0
//
// Invariants the parser enforces before anyone touches the payload: the magic,
// version, flags and reserved word are exactly as above; the declared payload
// fits in the bytes given (no integer overflow on any length); the checksum
// matches when present. It throws decode_error otherwise and never reads
// outside the span it was given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string_view>

#include "greenreduce/core/bytes.hpp"
#include "greenreduce/core/crc32c.hpp"
#include "greenreduce/core/error.hpp"

namespace greenreduce {

/// Identifies an encoding on the wire. Values are part of the wire format.
enum class codec_id : std::uint8_t {
  none = 0,
  fp16 = 1,
  bf16 = 2,
  int8 = 3,
  ternary = 4,
  topk = 5,
  randomk = 6,
  sign = 7,
  qsgd = 8,
  fp8_e4m3 = 9,
  fp8_e5m2 = 10,
  user_first = 128,  ///< ids >= 128 are free for codecs defined outside the library
};

/// Human-readable name of a built-in codec id ("user" for ids >= 128).
constexpr std::string_view codec_name(codec_id id) noexcept {
  switch (id) {
    case codec_id::none: return "none";
    case codec_id::fp16: return "fp16";
    case codec_id::bf16: return "bf16";
    case codec_id::int8: return "int8";
    case codec_id::ternary: return "ternary";
    case codec_id::topk: return "topk";
    case codec_id::randomk: return "randomk";
    case codec_id::sign: return "sign";
    case codec_id::qsgd: return "qsgd";
    case codec_id::fp8_e4m3: return "fp8_e4m3";
    case codec_id::fp8_e5m2: return "fp8_e5m2";
    default: break;
  }
  return static_cast<std::uint8_t>(id) >= 128 ? "user" : "unknown";
}

inline constexpr std::uint32_t frame_magic = 0x31465247U;  // "GRF1" read little-endian
inline constexpr std::uint8_t frame_version = 1;
inline constexpr std::size_t frame_header_bytes = 32;

/// Flag bits of the header.
enum frame_flags : std::uint16_t {
  frame_flag_crc32c = 1U << 0,
  frame_known_flags = frame_flag_crc32c,
};

struct frame_header {
  codec_id codec = codec_id::none;
  std::uint16_t flags = 0;
  std::uint64_t elements = 0;
  std::uint64_t payload_bytes = 0;
  std::uint32_t payload_crc32c = 0;
};

/// A parsed frame: its header and a view of its payload inside the input bytes.
struct frame_view {
  frame_header header;
  std::span<const std::byte> payload;
  /// Header plus payload: where the next frame would start in a stream.
  std::size_t frame_bytes() const noexcept { return frame_header_bytes + payload.size(); }
};

/// Writes the 32-byte header into `out`. Throws config_error when `out` is too small.
inline void write_frame_header(std::span<std::byte> out, const frame_header& h) {
  if (out.size() < frame_header_bytes)
    throw config_error(detail::str("frame header needs ", frame_header_bytes,
                                   " bytes of output, got ", out.size()));
  std::byte* p = out.data();
  store_le<std::uint32_t>(p + 0, frame_magic);
  store_le<std::uint8_t>(p + 4, frame_version);
  store_le<std::uint8_t>(p + 5, static_cast<std::uint8_t>(h.codec));
  store_le<std::uint16_t>(p + 6, h.flags);
  store_le<std::uint64_t>(p + 8, h.elements);
  store_le<std::uint64_t>(p + 16, h.payload_bytes);
  store_le<std::uint32_t>(p + 24, h.payload_crc32c);
  store_le<std::uint32_t>(p + 28, 0);
}

/// Writes a header for the payload already in out[32, 32 + payload_bytes),
/// computing its CRC-32C when `with_crc`. Returns the total frame size.
inline std::size_t finish_frame(std::span<std::byte> out, codec_id codec, std::uint64_t elements,
                                std::size_t payload_bytes, bool with_crc = false) {
  if (out.size() < frame_header_bytes || out.size() - frame_header_bytes < payload_bytes)
    throw config_error(detail::str("frame of ", payload_bytes, " payload bytes needs ",
                                   frame_header_bytes + payload_bytes,
                                   " bytes of output, got ", out.size()));
  frame_header h;
  h.codec = codec;
  h.elements = elements;
  h.payload_bytes = payload_bytes;
  if (with_crc) {
    h.flags = frame_flag_crc32c;
    h.payload_crc32c = crc32c(out.subspan(frame_header_bytes, payload_bytes));
  }
  write_frame_header(out, h);
  return frame_header_bytes + payload_bytes;
}

/// What a parser may additionally require of a frame.
struct frame_expect {
  std::optional<codec_id> codec;          ///< exact codec id
  std::optional<std::uint64_t> elements;  ///< exact element count
  std::uint64_t max_payload_bytes = std::numeric_limits<std::uint64_t>::max();
  bool exact = true;  ///< the frame must span all the given bytes (no trailing bytes)

  // Chainable setters: frame_expect{}.of(codec_id::int8).count(n).
  frame_expect& of(codec_id c) noexcept { codec = c; return *this; }
  frame_expect& count(std::uint64_t n) noexcept { elements = n; return *this; }
  frame_expect& at_most(std::uint64_t payload) noexcept { max_payload_bytes = payload; return *this; }
  frame_expect& prefix() noexcept { exact = false; return *this; }
};

/// Validates a frame header (the first 32 bytes of `header`) against `expect`,
/// given that `available` bytes follow it where the frame lives (which may be
/// device memory: the CUDA codecs copy only the header to the host). Checks
/// everything but the payload CRC. Throws decode_error naming the first
/// violated field.
inline frame_header parse_frame_header(std::span<const std::byte> header, std::uint64_t available,
                                       const frame_expect& expect = {}) {
  if (header.size() < frame_header_bytes)
    throw decode_error(detail::str("frame needs a ", frame_header_bytes,
                                   "-byte header but only ", header.size(), " bytes were given"));
  const std::byte* p = header.data();
  const auto magic = load_le<std::uint32_t>(p + 0);
  if (magic != frame_magic)
    throw decode_error(detail::str("frame magic is 0x", std::hex, magic, ", expected 0x",
                                   frame_magic, " (\"GRF1\")"));
  const auto version = load_le<std::uint8_t>(p + 4);
  if (version != frame_version)
    throw decode_error(detail::str("frame version is ", unsigned{version}, ", this build reads ",
                                   unsigned{frame_version}));
  frame_header h;
  h.codec = static_cast<codec_id>(load_le<std::uint8_t>(p + 5));
  h.flags = load_le<std::uint16_t>(p + 6);
  h.elements = load_le<std::uint64_t>(p + 8);
  h.payload_bytes = load_le<std::uint64_t>(p + 16);
  h.payload_crc32c = load_le<std::uint32_t>(p + 24);
  const auto reserved = load_le<std::uint32_t>(p + 28);
  if ((h.flags & ~static_cast<std::uint16_t>(frame_known_flags)) != 0)
    throw decode_error(detail::str("frame flags 0x", std::hex, h.flags,
                                   " set unknown bits (known: 0x", unsigned{frame_known_flags}, ")"));
  if (reserved != 0)
    throw decode_error(detail::str("frame reserved word is 0x", std::hex, reserved,
                                   ", expected 0"));
  if (!(h.flags & frame_flag_crc32c) && h.payload_crc32c != 0)
    throw decode_error("frame carries a checksum but its crc32c flag is clear");
  if (expect.codec && h.codec != *expect.codec)
    throw decode_error(detail::str("frame holds codec ", codec_name(h.codec), " (id ",
                                   unsigned(static_cast<std::uint8_t>(h.codec)), "), expected ",
                                   codec_name(*expect.codec)));
  if (expect.elements && h.elements != *expect.elements)
    throw decode_error(detail::str("frame declares ", h.elements, " elements, expected ",
                                   *expect.elements));
  if (h.payload_bytes > expect.max_payload_bytes)
    throw decode_error(detail::str("frame declares ", h.payload_bytes,
                                   " payload bytes, more than the bound of ",
                                   expect.max_payload_bytes));
  if (h.payload_bytes > available)
    throw decode_error(detail::str("frame declares ", h.payload_bytes, " payload bytes but only ",
                                   available, " follow its header"));
  if (expect.exact && h.payload_bytes != available)
    throw decode_error(detail::str("frame declares ", h.payload_bytes, " payload bytes but ",
                                   available, " follow its header (", available - h.payload_bytes,
                                   " trailing bytes)"));
  return h;
}

/// Parses and validates the frame at the start of `bytes`. Throws decode_error
/// naming the first violated field; never reads outside `bytes`.
inline frame_view parse_frame(std::span<const std::byte> bytes, const frame_expect& expect = {}) {
  const std::uint64_t available =
      bytes.size() < frame_header_bytes ? 0 : bytes.size() - frame_header_bytes;
  const frame_header h = parse_frame_header(bytes, available, expect);
  frame_view v{h, bytes.subspan(frame_header_bytes, static_cast<std::size_t>(h.payload_bytes))};
  if (h.flags & frame_flag_crc32c) {
    const std::uint32_t got = crc32c(v.payload);
    if (got != h.payload_crc32c)
      throw decode_error(detail::str("frame payload CRC-32C is 0x", std::hex, got,
                                     ", header says 0x", h.payload_crc32c));
  }
  return v;
}

}  // namespace greenreduce
