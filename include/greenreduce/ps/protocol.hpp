// greenreduce/ps/protocol.hpp — the request and reply messages of the parameter server.
//
// One transport message is one request (worker -> server) or one reply
// (server -> worker). Each starts with a fixed little-endian header; what
// follows is the payload. A worker has at most one request in flight per
// server, so replies need no sequence numbers.
//
// A worker's first request to each server is a hello, whose reply says how
// many bytes the server's receive buffer holds: a push that would not fit
// (the two sides disagree on a key's length) is refused on the worker, naming
// the key, instead of breaking the connection with an over-long message.
//
// A mode request schedules a change of the consistency mode (ps/options.hpp)
// from a given step of every key on, so that every push of a step >= that
// step, from every worker, is served under the new mode (see ps/server.hpp
// "Mode changes").
//
// Request (56 bytes + payload):
//   off size field
//     0    4 magic        "GRPQ"
//     4    1 version      protocol_version (1)
//     5    1 kind         request_kind
//     6    2 flags        0, or on a push request_flags: bit 0 with_params (the
//                         reply carries the key's parameters once the push is
//                         acknowledged, as a pull's reply would), bit 1
//                         encoded_params (those in the pull codec, else fp32;
//                         only with bit 0)
//     8    4 key          key id (index in the shared key list)
//    12    4 samples      samples the worker processed for this push (0: unknown);
//                         mode: the consistency kind (1 sync, 2 async, 3 ssp)
//    16    8 step         the worker's step for this key (push); mode: the
//                         first step the change applies to; 0 otherwise
//    24    8 length       elements of the key (push, pull); mode: the
//                         staleness bound s; 0 otherwise
//    32    8 codec_hash   config_hash() of the push codec or the wanted pull codec
//    40    8 compute_ns   worker time outside the library since its last push of this key
//    48    8 payload      payload bytes that follow (push: one codec frame)
//
// Reply (40 bytes + payload):
//     0    4 magic        "GRPR"
//     4    1 version      protocol_version (1)
//     5    1 kind         the request_kind answered
//     6    2 status       reply_status; not ok: the payload is the error text
//     8    4 key          key id answered
//    12    4 reserved     must be 0
//    16    8 step         key step after the push / of the pulled parameters /
//                         the first step a mode change applies to
//    24    8 length       elements (pull, push with_params), workers (shares), the server's
//                         receive bound in bytes (hello), 0 otherwise
//    32    8 payload      payload bytes that follow
//
// A push with_params saves the pull that would follow it: one round trip and
// one request per step instead of two (BytePS's push-pull). The reply's kind
// is push; its step and payload are what a pull right after the
// acknowledgement would return.
//
// Parsers check every field against the bytes actually received and never use
// a declared length to allocate: the caller's receive buffer bounds them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "greenreduce/core/bytes.hpp"
#include "greenreduce/core/error.hpp"

namespace greenreduce::ps {

inline constexpr std::uint32_t request_magic = 0x51505247U;  // "GRPQ" read little-endian
inline constexpr std::uint32_t reply_magic = 0x52505247U;    // "GRPR"
inline constexpr std::uint8_t protocol_version = 1;
inline constexpr std::size_t request_header_bytes = 56;
inline constexpr std::size_t reply_header_bytes = 40;
/// Error texts in replies are cut to this many bytes.
inline constexpr std::size_t max_error_text = 480;

enum class request_kind : std::uint8_t {
  push = 1,    ///< payload: a codec frame of `length` elements
  pull = 2,    ///< no payload; reply payload: the parameters as a pull-codec frame
  shares = 3,  ///< no payload; reply payload: one f64 batch share per worker
  bye = 4,     ///< no payload, no reply: this worker is done with this server
  hello = 5,   ///< no payload; reply length: the largest request the server accepts
  mode = 6,    ///< no payload; schedules a consistency change (see the header comment)
};

/// Bits of a push request's flags word.
namespace request_flags {
inline constexpr std::uint16_t with_params = 1U << 0;     ///< reply with the parameters
inline constexpr std::uint16_t encoded_params = 1U << 1;  ///< ... in the pull codec
}  // namespace request_flags

enum class reply_status : std::uint16_t {
  ok = 0,
  bad_request = 1,   ///< malformed header or payload (decode_error on the worker)
  unknown_key = 2,   ///< key id not held by this server (config_error)
  wrong_length = 3,  ///< length differs from the key's (mismatch_error)
  wrong_codec = 4,   ///< codec hash differs from the server's (mismatch_error)
  out_of_step = 5,   ///< a step the mode does not accept (mismatch_error)
  peer_failed =
      6,  ///< the step cannot complete: a worker died, or this one was dropped (peer_error)
  invalid_change = 7,  ///< a mode change the server cannot apply (config_error)
};

constexpr std::string_view to_string(request_kind k) noexcept {
  switch (k) {
    case request_kind::push:
      return "push";
    case request_kind::pull:
      return "pull";
    case request_kind::shares:
      return "shares";
    case request_kind::bye:
      return "bye";
    case request_kind::hello:
      return "hello";
    case request_kind::mode:
      return "mode";
  }
  return "unknown";
}

struct request_header {
  request_kind kind = request_kind::push;
  std::uint16_t flags = 0;  ///< request_flags (push only)
  std::uint32_t key = 0;
  std::uint32_t samples = 0;
  std::uint64_t step = 0;
  std::uint64_t length = 0;
  std::uint64_t codec_hash = 0;
  std::uint64_t compute_ns = 0;
  std::uint64_t payload_bytes = 0;
};

struct reply_header {
  request_kind kind = request_kind::push;
  reply_status status = reply_status::ok;
  std::uint32_t key = 0;
  std::uint64_t step = 0;
  std::uint64_t length = 0;
  std::uint64_t payload_bytes = 0;
};

/// Writes the request header into out[0, 56); config_error when too small.
inline void write_request(std::span<std::byte> out, const request_header& h) {
  if (out.size() < request_header_bytes)
    throw config_error(
        detail::str("request header needs ", request_header_bytes, " bytes, got ", out.size()));
  std::byte* p = out.data();
  store_le<std::uint32_t>(p + 0, request_magic);
  store_le<std::uint8_t>(p + 4, protocol_version);
  store_le<std::uint8_t>(p + 5, static_cast<std::uint8_t>(h.kind));
  store_le<std::uint16_t>(p + 6, h.flags);
  store_le<std::uint32_t>(p + 8, h.key);
  store_le<std::uint32_t>(p + 12, h.samples);
  store_le<std::uint64_t>(p + 16, h.step);
  store_le<std::uint64_t>(p + 24, h.length);
  store_le<std::uint64_t>(p + 32, h.codec_hash);
  store_le<std::uint64_t>(p + 40, h.compute_ns);
  store_le<std::uint64_t>(p + 48, h.payload_bytes);
}

/// Writes the reply header into out[0, 40); config_error when too small.
inline void write_reply(std::span<std::byte> out, const reply_header& h) {
  if (out.size() < reply_header_bytes)
    throw config_error(
        detail::str("reply header needs ", reply_header_bytes, " bytes, got ", out.size()));
  std::byte* p = out.data();
  store_le<std::uint32_t>(p + 0, reply_magic);
  store_le<std::uint8_t>(p + 4, protocol_version);
  store_le<std::uint8_t>(p + 5, static_cast<std::uint8_t>(h.kind));
  store_le<std::uint16_t>(p + 6, static_cast<std::uint16_t>(h.status));
  store_le<std::uint32_t>(p + 8, h.key);
  store_le<std::uint32_t>(p + 12, 0);
  store_le<std::uint64_t>(p + 16, h.step);
  store_le<std::uint64_t>(p + 24, h.length);
  store_le<std::uint64_t>(p + 32, h.payload_bytes);
}

/// A parsed message: its header and a view of its payload inside the message.
template <class Header>
struct message_view {
  Header header;
  std::span<const std::byte> payload;
};

/// Parses one whole request message. Throws decode_error naming the field.
inline message_view<request_header> parse_request(std::span<const std::byte> msg) {
  if (msg.size() < request_header_bytes)
    throw decode_error(detail::str("request needs a ", request_header_bytes,
                                   "-byte header but the message has ", msg.size(), " bytes"));
  const std::byte* p = msg.data();
  if (const auto m = load_le<std::uint32_t>(p); m != request_magic)
    throw decode_error(detail::str("request magic is 0x", std::hex, m, ", expected 0x",
                                   request_magic, " (\"GRPQ\")"));
  if (const auto v = load_le<std::uint8_t>(p + 4); v != protocol_version)
    throw decode_error(detail::str("request protocol version is ", unsigned{v},
                                   ", this build speaks ", unsigned{protocol_version}));
  const auto kind = load_le<std::uint8_t>(p + 5);
  if (kind < 1 || kind > 6)
    throw decode_error(
        detail::str("request kind is ", unsigned{kind},
                    ", expected 1 (push), 2 (pull), 3 (shares), 4 (bye), 5 (hello) or 6 (mode)"));
  const auto flags = load_le<std::uint16_t>(p + 6);
  if (flags != 0 && (kind != static_cast<std::uint8_t>(request_kind::push) ||
                     (flags != request_flags::with_params &&
                      flags != (request_flags::with_params | request_flags::encoded_params))))
    throw decode_error(detail::str("request flags are 0x", std::hex, flags,
                                   ", expected 0 (or, on a push, 0x1 or 0x3)"));
  request_header h;
  h.kind = static_cast<request_kind>(kind);
  h.flags = flags;
  h.key = load_le<std::uint32_t>(p + 8);
  h.samples = load_le<std::uint32_t>(p + 12);
  h.step = load_le<std::uint64_t>(p + 16);
  h.length = load_le<std::uint64_t>(p + 24);
  h.codec_hash = load_le<std::uint64_t>(p + 32);
  h.compute_ns = load_le<std::uint64_t>(p + 40);
  h.payload_bytes = load_le<std::uint64_t>(p + 48);
  const std::uint64_t available = msg.size() - request_header_bytes;
  if (h.payload_bytes != available)
    throw decode_error(detail::str("request declares ", h.payload_bytes, " payload bytes but ",
                                   available, " follow its header"));
  if (h.kind != request_kind::push && h.payload_bytes != 0)
    throw decode_error(detail::str(to_string(h.kind), " request carries ", h.payload_bytes,
                                   " payload bytes, expected none"));
  return {h, msg.subspan(request_header_bytes)};
}

/// Parses one whole reply message. Throws decode_error naming the field.
inline message_view<reply_header> parse_reply(std::span<const std::byte> msg) {
  if (msg.size() < reply_header_bytes)
    throw decode_error(detail::str("reply needs a ", reply_header_bytes,
                                   "-byte header but the message has ", msg.size(), " bytes"));
  const std::byte* p = msg.data();
  if (const auto m = load_le<std::uint32_t>(p); m != reply_magic)
    throw decode_error(
        detail::str("reply magic is 0x", std::hex, m, ", expected 0x", reply_magic, " (\"GRPR\")"));
  if (const auto v = load_le<std::uint8_t>(p + 4); v != protocol_version)
    throw decode_error(detail::str("reply protocol version is ", unsigned{v},
                                   ", this build speaks ", unsigned{protocol_version}));
  const auto kind = load_le<std::uint8_t>(p + 5);
  if (kind < 1 || kind > 6 || kind == 4)
    throw decode_error(detail::str("reply kind is ", unsigned{kind}, ", expected 1, 2, 3, 5 or 6"));
  const auto status = load_le<std::uint16_t>(p + 6);
  if (status > static_cast<std::uint16_t>(reply_status::invalid_change))
    throw decode_error(detail::str("reply status is ", status, ", expected 0..7"));
  if (const auto r = load_le<std::uint32_t>(p + 12); r != 0)
    throw decode_error(detail::str("reply reserved word is 0x", std::hex, r, ", expected 0"));
  reply_header h;
  h.kind = static_cast<request_kind>(kind);
  h.status = static_cast<reply_status>(status);
  h.key = load_le<std::uint32_t>(p + 8);
  h.step = load_le<std::uint64_t>(p + 16);
  h.length = load_le<std::uint64_t>(p + 24);
  h.payload_bytes = load_le<std::uint64_t>(p + 32);
  const std::uint64_t available = msg.size() - reply_header_bytes;
  if (h.payload_bytes != available)
    throw decode_error(detail::str("reply declares ", h.payload_bytes, " payload bytes but ",
                                   available, " follow its header"));
  return {h, msg.subspan(reply_header_bytes)};
}

/// Throws the exception a non-ok reply stands for, with the server's text.
[[noreturn]] inline void throw_reply_error(reply_status s, std::string_view text) {
  const std::string what(text);
  switch (s) {
    case reply_status::bad_request:
      throw decode_error(what);
    case reply_status::unknown_key:
    case reply_status::invalid_change:
      throw config_error(what);
    case reply_status::wrong_length:
    case reply_status::wrong_codec:
    case reply_status::out_of_step:
      throw mismatch_error(what);
    case reply_status::peer_failed:
      throw peer_error(what);
    case reply_status::ok:
      break;
  }
  throw decode_error("an ok reply was passed as an error: " + what);
}

}  // namespace greenreduce::ps
