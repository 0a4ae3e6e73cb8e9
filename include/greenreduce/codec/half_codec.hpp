// greenreduce/codec/half_codec.hpp — what codec::fp16 and codec::bf16
// share: one 16-bit float per element, converted by kernels/half.hpp.
//
// Payload: n little-endian 16-bit values (binary16 or bfloat16 bit patterns),
// 2n bytes, no padding. decode is exact (every pattern, Inf/NaN included, maps
// to its fp32 value; the encoder never emits Inf/NaN, and a corrupted value
// is just another value — integrity is the frame CRC's job). decode_add rounds
// once per element (acc + x' in fp32).
#pragma once

#include <cmath>
#include <span>
#include <string_view>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/kernels/half.hpp"

namespace greenreduce::codec {

template <class Format, codec_id Id>
struct half_codec {
  static constexpr codec_id wire_id = Id;

  constexpr codec_id id() const noexcept { return wire_id; }
  constexpr std::string_view name() const noexcept { return Format::name; }
  constexpr std::uint64_t config_hash() const noexcept {
    return hash_words({static_cast<std::uint64_t>(wire_id)});
  }
  constexpr std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    return frame_header_bytes + 2 * n;
  }

  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng& /*unused*/) const {
    const std::size_t payload = 2 * in.size();
    require_output(name(), frame_header_bytes + payload, out.size());
    if (!kernels::encode_half<Format>(in, out.data() + frame_header_bytes)) reject(in);
    return finish_frame(out, wire_id, in.size(), payload);
  }

  void decode(std::span<const std::byte> frame, std::span<float> out) const {
    kernels::decode_half<Format>(payload_of(frame, out.size()).data(), out);
  }

  void decode_add(std::span<const std::byte> frame, std::span<float> acc) const {
    kernels::decode_add_half<Format>(payload_of(frame, acc.size()).data(), acc);
  }

  /// encode: read 4n, write 2n; about ten integer ops per element.
  constexpr work encode_work(std::size_t n) const noexcept { return {6 * n, 10 * n}; }
  /// decode_add: read 2n + 4n, write 4n; widen, convert, add.
  constexpr work decode_work(std::size_t n) const noexcept { return {10 * n, 6 * n}; }

 private:
  // The rare path: name the first element that is not finite or out of range.
  [[noreturn]] void reject(std::span<const float> in) const {
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (!std::isfinite(in[i]))
        throw numeric_error(greenreduce::detail::str(name(), " encode: element ", i, " is ", in[i],
                                                     "; gradients must be finite"));
      if ((Format::encode(in[i]) & 0x7FFFU) >= Format::inf_bits)
        throw numeric_error(
            greenreduce::detail::str(name(), " encode: element ", i, " is ", in[i], ", beyond ",
                                     name(), "'s finite range (largest ", Format::max_finite,
                                     "); scale the gradient or choose a wider codec"));
    }
    throw numeric_error(greenreduce::detail::str(
        name(), " encode: the kernel reported an element out of range, none found"));
  }

  std::span<const std::byte> payload_of(std::span<const std::byte> frame, std::size_t n) const {
    auto v = parse_frame(frame, frame_expect{}.of(wire_id).count(n));
    if (v.payload.size() != 2 * n)
      throw decode_error(greenreduce::detail::str(name(), " frame declares ", n,
                                                  " elements but carries ", v.payload.size(),
                                                  " payload bytes (needs ", 2 * n, ")"));
    return v.payload;
  }
};

}  // namespace greenreduce::codec
