// greenreduce/codec/sign.hpp — scaled sign compression: 1 bit per element + a scale per bucket.
//
// EF-signSGD (Karimireddy et al., "Error Feedback Fixes SignSGD and other
// Gradient Compression Schemes", ICML 2019): a bucket g is sent as
// (||g||_1 / d)·sign(g), d the bucket's length; sign(0) = +. Deterministic (no
// rng); biased, so use it inside error_feedback<sign>. The scale is the mean
// of |g| summed in double in index order.
//
// Payload (little-endian), after the 32-byte frame header:
//   off          size        field
//   0            4           bucket size in elements (>= 1)
//   4            4·nb        fp32 scale per bucket (finite, >= 0), nb = ceil(n / bucket)
//   4 + 4·nb     ceil(n/8)   sign bits: element i at byte i/8, bit i%8; 1 = negative;
//                            padding bits past n are 0
#pragma once

#include <bit>
#include <cmath>
#include <cstring>
#include <span>

#include "greenreduce/codec/concept.hpp"

namespace greenreduce::codec {

class sign {
 public:
  static constexpr codec_id wire_id = codec_id::sign;
  static constexpr std::size_t default_bucket = 512;

  explicit sign(std::size_t bucket = default_bucket) : bucket_(bucket) {
    if (bucket == 0 || bucket > 0xFFFFFFFFULL)
      throw config_error(
          greenreduce::detail::str("sign bucket size must be in [1, 2^32), got ", bucket));
  }
  std::size_t bucket() const noexcept { return bucket_; }

  constexpr codec_id id() const noexcept { return wire_id; }
  constexpr std::string_view name() const noexcept { return "sign"; }
  std::uint64_t config_hash() const noexcept {
    return hash_words({static_cast<std::uint64_t>(wire_id), bucket_});
  }
  std::size_t buckets(std::size_t n) const noexcept { return (n + bucket_ - 1) / bucket_; }
  std::size_t payload_bytes(std::size_t n) const noexcept {
    return 4 + 4 * buckets(n) + (n + 7) / 8;
  }
  std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    return frame_header_bytes + payload_bytes(n);
  }

  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng& /*unused*/) const {
    const std::size_t n = in.size(), payload = payload_bytes(n), nb = buckets(n);
    require_output(name(), frame_header_bytes + payload, out.size());
    std::byte* p = out.data() + frame_header_bytes;
    store_le<std::uint32_t>(p, static_cast<std::uint32_t>(bucket_));
    auto* bits = reinterpret_cast<std::uint8_t*>(p + 4 + 4 * nb);
    std::memset(bits, 0, (n + 7) / 8);
    for (std::size_t k = 0, lo = 0; lo < n; ++k, lo += bucket_) {
      const std::size_t hi = std::min(n, lo + bucket_);
      double sum = 0.0;
      for (std::size_t i = lo; i < hi; ++i) {
        sum += std::abs(static_cast<double>(in[i]));
        if (std::signbit(in[i]))
          bits[i / 8] = static_cast<std::uint8_t>(bits[i / 8] | (1U << (i % 8)));
      }
      if (!std::isfinite(sum)) require_finite(name(), in);
      const auto s = static_cast<float>(sum / static_cast<double>(hi - lo));
      store_le<std::uint32_t>(p + 4 + 4 * k, std::bit_cast<std::uint32_t>(s));
    }
    return finish_frame(out, wire_id, n, payload);
  }

  void decode(std::span<const std::byte> frame, std::span<float> out) const {
    apply<false>(frame, out);
  }
  void decode_add(std::span<const std::byte> frame, std::span<float> acc) const {
    apply<true>(frame, acc);
  }

  constexpr work encode_work(std::size_t n) const noexcept { return {4 * n + n / 8, 3 * n}; }
  constexpr work decode_work(std::size_t n) const noexcept { return {8 * n + n / 8, 2 * n}; }

 private:
  std::size_t bucket_;

  template <bool Add>
  void apply(std::span<const std::byte> frame, std::span<float> out) const {
    const std::size_t n = out.size(), nb = buckets(n);
    const auto v = parse_frame(frame, frame_expect{}.of(wire_id).count(n));
    const std::byte* p = v.payload.data();
    if (v.payload.size() >= 4 && load_le<std::uint32_t>(p) != bucket_)
      throw decode_error(greenreduce::detail::str("sign frame has bucket size ",
                                                  load_le<std::uint32_t>(p),
                                                  ", this codec expects ", bucket_));
    if (v.payload.size() != payload_bytes(n))
      throw decode_error(greenreduce::detail::str("sign frame declares ", n,
                                                  " elements but carries ", v.payload.size(),
                                                  " payload bytes (needs ", payload_bytes(n), ")"));
    for (std::size_t k = 0; k < nb; ++k)
      if (load_le<std::uint32_t>(p + 4 + 4 * k) >= 0x7F800000U)
        throw decode_error(greenreduce::detail::str(
            "sign scale ", k, " is ", std::bit_cast<float>(load_le<std::uint32_t>(p + 4 + 4 * k)),
            ", expected a finite value >= 0"));
    const auto* bits = reinterpret_cast<const std::uint8_t*>(p + 4 + 4 * nb);
    if (n % 8 != 0 && (bits[n / 8] >> (n % 8)) != 0)
      throw decode_error("sign payload sets padding bits past the last element");
    for (std::size_t k = 0, lo = 0; lo < n; ++k, lo += bucket_) {
      const float s = std::bit_cast<float>(load_le<std::uint32_t>(p + 4 + 4 * k));
      for (std::size_t i = lo, hi = std::min(n, lo + bucket_); i < hi; ++i) {
        const float y = (bits[i / 8] >> (i % 8)) & 1U ? -s : s;
        if constexpr (Add)
          out[i] += y;
        else
          out[i] = y;
      }
    }
  }
};

static_assert(codec<sign>);

}  // namespace greenreduce::codec
