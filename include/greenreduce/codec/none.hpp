// greenreduce/codec/none.hpp — the identity codec: fp32 values as they are.
//
// The baseline every other codec is measured against, and the reference
// implementation of the codec policy (codec/concept.hpp). Payload: n
// little-endian IEEE-754 binary32 values. Exact: decode(encode(x)) == x bit for
// bit; decode_add rounds once per element (acc + x in fp32).
#pragma once

#include <cstring>
#include <span>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/kernels/copy.hpp"

namespace greenreduce::codec {

struct none {
  static constexpr codec_id wire_id = codec_id::none;

  constexpr codec_id id() const noexcept { return wire_id; }
  constexpr std::string_view name() const noexcept { return "none"; }
  constexpr std::uint64_t config_hash() const noexcept {
    return hash_words({static_cast<std::uint64_t>(wire_id)});
  }
  constexpr std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    return frame_header_bytes + n * sizeof(float);
  }

  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng& /*unused*/) const {
    const std::size_t payload = in.size() * sizeof(float);
    require_output(name(), frame_header_bytes + payload, out.size());
    if (!kernels::copy_to_le_checked(in, out.data() + frame_header_bytes))
      require_finite(name(), in);
    return finish_frame(out, wire_id, in.size(), payload);
  }

  void decode(std::span<const std::byte> frame, std::span<float> out) const {
    kernels::copy_from_le(payload_of(frame, out.size()).data(), out);
  }

  void decode_add(std::span<const std::byte> frame, std::span<float> acc) const {
    kernels::add_from_le(payload_of(frame, acc.size()).data(), acc);
  }

  constexpr work encode_work(std::size_t n) const noexcept { return {8 * n, n}; }
  constexpr work decode_work(std::size_t n) const noexcept { return {12 * n, n}; }

 private:
  std::span<const std::byte> payload_of(std::span<const std::byte> frame, std::size_t n) const {
    auto v = parse_frame(frame, frame_expect{}.of(wire_id).count(n));
    if (v.payload.size() != n * sizeof(float))
      throw decode_error(greenreduce::detail::str(
          "none frame declares ", n, " elements but carries ", v.payload.size(),
          " payload bytes (needs ", n * sizeof(float), ")"));
    return v.payload;
  }
};

static_assert(codec<none>);

}  // namespace greenreduce::codec
