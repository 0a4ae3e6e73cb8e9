// greenreduce/codec/int8.hpp — 8-bit integers with one absmax scale per bucket.
//
// Math (kernels/int8.hpp): each bucket of `bucket` consecutive elements sends
// scale = max|x| / 127 (fp32, rounded up to 16 significant bits) and
// q = R(x / scale) in [-127, 127], R being round-to-nearest-even or stochastic
// rounding (unbiased: E[x'] = x to 2^-25 of the scale; Alistarh et al., QSGD,
// 2017, for bucketed stochastic quantization). Decoding is x' = q * scale,
// exact in fp32 thanks to the 16-bit scale, so decode_add rounds once and is
// the same bit for bit on every machine. Invariants, per bucket:
//   nearest:    |x - x'| <= scale / 2   (plus fp32 rounding of v and q * scale)
//   stochastic: |x - x'| <= scale
//
// Stochastic rounding draws from the caller's rng with the group rule of
// kernels/philox.hpp: element i of the call uses word (i % 64) / 16 of block
// rng.offset + 16 * (i / 64) + i % 16, 24 bits of it (word >> 8); the call
// then advances the rng by 16 * ceil(n / 64) blocks. Nearest rounding does not
// touch the rng.
//
// Wire payload (after the 32-byte frame header), nb = ceil(n / bucket):
//
//   off       size  field
//     0       4     bucket size, uint32 little-endian (must equal the codec's)
//     4       4 nb  scales, fp32 little-endian, one per bucket, finite and >= 0
//                   (encode emits 16 significant bits; decode accepts any)
//     4+4nb   n     q, int8, element order
//
// decode / decode_add validate the whole frame (sizes, bucket, every scale)
// before writing anything. q = -128 is never emitted; if found it decodes as
// -128 * scale (integrity is the frame CRC's job, as for every dense codec).
// config_hash covers the bucket size; the rounding mode does not change the
// wire format and is not part of it.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string_view>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/core/bytes.hpp"
#include "greenreduce/kernels/int8.hpp"

namespace greenreduce::codec {

/// How a quantizer maps a scaled value to an integer level.
enum class rounding : std::uint8_t { nearest, stochastic };

/// Per-bucket absmax int8. `codec::int8{}` (buckets of 512, nearest),
/// `codec::int8{256, codec::rounding::stochastic}`, `codec::int8::stochastic()`.
class int8 {
 public:
  static constexpr codec_id wire_id = codec_id::int8;
  static constexpr std::size_t default_bucket = 512;
  static constexpr std::size_t max_bucket = std::size_t{1} << 30;

  /// Throws config_error unless 1 <= bucket <= max_bucket.
  explicit int8(std::size_t bucket = default_bucket, rounding mode = rounding::nearest)
      : bucket_(bucket), mode_(mode) {
    if (bucket == 0 || bucket > max_bucket)
      throw config_error(greenreduce::detail::str("int8 bucket size must be in [1, ", max_bucket,
                                                  "], got ", bucket));
  }
  static int8 nearest(std::size_t bucket = default_bucket) { return int8(bucket); }
  static int8 stochastic(std::size_t bucket = default_bucket) {
    return int8(bucket, rounding::stochastic);
  }

  std::size_t bucket() const noexcept { return bucket_; }
  rounding mode() const noexcept { return mode_; }

  constexpr codec_id id() const noexcept { return wire_id; }
  constexpr std::string_view name() const noexcept {
    return mode_ == rounding::stochastic ? "int8_stochastic" : "int8";
  }
  constexpr std::uint64_t config_hash() const noexcept {
    return hash_words({static_cast<std::uint64_t>(wire_id), bucket_});
  }
  std::size_t buckets(std::size_t n) const noexcept { return (n + bucket_ - 1) / bucket_; }
  std::size_t payload_bytes(std::size_t n) const noexcept { return 4 + 4 * buckets(n) + n; }
  std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    return frame_header_bytes + payload_bytes(n);
  }

  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng& g) const {
    const std::size_t n = in.size(), payload = payload_bytes(n);
    require_output(name(), frame_header_bytes + payload, out.size());
    std::byte* p = out.data() + frame_header_bytes;
    store_le<std::uint32_t>(p, static_cast<std::uint32_t>(bucket_));
    const bool stochastic = mode_ == rounding::stochastic;
    if (!kernels::encode_int8(in, bucket_, stochastic ? &g : nullptr, p + 4,
                              p + 4 + 4 * buckets(n))) {
      require_finite(name(), in);  // the kernel saw a NaN/Inf: name it
    }
    if (stochastic) g.advance(kernels::philox_blocks_for(n));
    return finish_frame(out, wire_id, n, payload);
  }

  void decode(std::span<const std::byte> frame, std::span<float> out) const {
    const auto v = validated(frame, out.size());
    kernels::decode_int8(v.scales, v.q, bucket_, out);
  }

  void decode_add(std::span<const std::byte> frame, std::span<float> acc) const {
    const auto v = validated(frame, acc.size());
    kernels::decode_add_int8(v.scales, v.q, bucket_, acc);
  }

  /// encode: read 4n, write n + 4nb; abs-max, two multiplies, clamp, round,
  /// pack per element, plus a quarter Philox block (~20 ops) when stochastic.
  std::size_t encode_ops_per_element() const noexcept {
    return mode_ == rounding::stochastic ? 28 : 8;
  }
  work encode_work(std::size_t n) const noexcept {
    return {5 * n + 4 * buckets(n), encode_ops_per_element() * n};
  }
  /// decode_add: read n + 4nb + 4n, write 4n; widen, convert, multiply, add.
  work decode_work(std::size_t n) const noexcept { return {9 * n + 4 * buckets(n), 4 * n}; }

 private:
  struct view {
    const std::byte* scales;
    const std::byte* q;
  };

  view validated(std::span<const std::byte> frame, std::size_t n) const {
    const auto v = parse_frame(frame, frame_expect{}.of(wire_id).count(n));
    const std::size_t need = payload_bytes(n), nb = buckets(n);
    if (v.payload.size() >= 4) {
      const auto got = load_le<std::uint32_t>(v.payload.data());
      if (got != bucket_)
        throw decode_error(greenreduce::detail::str("int8 frame was encoded with buckets of ", got,
                                                    " elements, this codec uses ", bucket_));
    }
    if (v.payload.size() != need)
      throw decode_error(greenreduce::detail::str("int8 frame declares ", n,
                                                  " elements but carries ", v.payload.size(),
                                                  " payload bytes (needs ", need, ")"));
    const std::byte* scales = v.payload.data() + 4;
    for (std::size_t b = 0; b < nb; ++b) {
      const float s = kernels::scalar::load_scale(scales, b);
      if (!(s >= 0.0F && s <= std::numeric_limits<float>::max()))
        throw decode_error(greenreduce::detail::str("int8 frame: bucket ", b, " has scale ", s,
                                                    ", expected finite and >= 0"));
    }
    return {scales, scales + 4 * nb};
  }

  std::size_t bucket_;
  rounding mode_;
};

static_assert(codec<int8>);

}  // namespace greenreduce::codec
