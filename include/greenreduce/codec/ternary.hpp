// greenreduce/codec/ternary.hpp — TernGrad: stochastic ternary values {-s, 0, +s}, 2 bits each.
//
// Wen et al., "TernGrad: Ternary Gradients to Reduce Communication in
// Distributed Deep Learning", NeurIPS 2017. Per bucket (or per tensor) the
// scale is s = max|g|, after optional clipping at c·sigma (c = 2.5 by default,
// the paper's choice; c = 0 turns clipping off). Element k is sent as
// s·sign(g_k)·b_k, b_k ~ Bernoulli(min(|g_k|, s)/s), drawn from the caller's
// counter-based rng (ARS-5 blocks, core/ars.hpp). Unclipped, E[decode] = g up
// to s·2^-16 per element (16 random bits per element); the random-bit rule,
// the packing and the order of the clipping statistics are in
// kernels/ternary.hpp.
//
// Invariants: buckets start at multiples of 256 elements (bucket sizes are
// multiples of 256, or 0 = one scale for the whole tensor); scales are finite
// and >= 0; no code is 0b11; encode consumes kernels::ternary::blocks_for(n)
// rng blocks and advances the rng by that much.
//
// Payload (little-endian), after the 32-byte frame header:
//   off              size           field
//   0                4              bucket size in elements (0 = per tensor)
//   4                4·nb           fp32 scale per bucket, nb = ceil(n / bucket)
//                                   (per tensor: nb = 1 if n > 0 else 0)
//   4 + 4·nb         ceil(n/4)      2-bit codes (layout: kernels/ternary.hpp)
#pragma once

#include <bit>
#include <cstring>
#include <span>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/kernels/ternary.hpp"

namespace greenreduce::codec {

class ternary {
 public:
  static constexpr codec_id wire_id = codec_id::ternary;
  static constexpr std::size_t default_bucket = 512;
  static constexpr float default_clip = 2.5F;

  /// Buckets of `bucket` elements (a multiple of 256; 0 = per tensor), clipping
  /// at clip·sigma (0 = none).
  explicit ternary(std::size_t bucket = default_bucket, float clip = default_clip)
      : bucket_(bucket), clip_(clip) {
    if (bucket % kernels::ternary::tile != 0 || bucket > 0xFFFFFFFFULL)
      throw config_error(greenreduce::detail::str("ternary bucket size must be a multiple of ",
                                                  kernels::ternary::tile,
                                                  " below 2^32 (or 0), got ", bucket));
    if (!(clip >= 0.0F) || !std::isfinite(clip))
      throw config_error(
          greenreduce::detail::str("ternary clip factor must be finite and >= 0, got ", clip));
  }
  static ternary per_tensor(float clip = default_clip) { return ternary(0, clip); }
  static ternary unclipped(std::size_t bucket = default_bucket) { return ternary(bucket, 0.0F); }

  std::size_t bucket() const noexcept { return bucket_; }
  float clip() const noexcept { return clip_; }

  constexpr codec_id id() const noexcept { return wire_id; }
  constexpr std::string_view name() const noexcept { return "ternary"; }
  std::uint64_t config_hash() const noexcept {
    return hash_words({static_cast<std::uint64_t>(wire_id), bucket_, layout_version});
  }
  std::size_t buckets(std::size_t n) const noexcept {
    if (n == 0) return 0;
    return bucket_ == 0 ? 1 : (n + bucket_ - 1) / bucket_;
  }
  std::size_t payload_bytes(std::size_t n) const noexcept {
    return 4 + 4 * buckets(n) + kernels::ternary::code_bytes(n);
  }
  std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    return frame_header_bytes + payload_bytes(n);
  }

  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng& g) const {
    namespace kt = kernels::ternary;
    const std::size_t n = in.size(), payload = payload_bytes(n);
    require_output(name(), frame_header_bytes + payload, out.size());
    std::byte* p = out.data() + frame_header_bytes;
    store_le<std::uint32_t>(p, static_cast<std::uint32_t>(bucket_));
    std::byte* scales = p + 4;
    auto* codes = reinterpret_cast<std::uint8_t*>(scales + 4 * buckets(n));
    if (!kt::encode(in.data(), n, bucket_, clip_, g, scales, codes)) require_finite(name(), in);
    g.advance(kt::blocks_for(n));
    return finish_frame(out, wire_id, n, payload);
  }

  void decode(std::span<const std::byte> frame, std::span<float> out) const {
    apply<false>(frame, out);
  }
  void decode_add(std::span<const std::byte> frame, std::span<float> acc) const {
    apply<true>(frame, acc);
  }

  // encode: read 4n, write n/4; ~40 ops per element (statistics, decision,
  // packing and 16 random bits, an eighth of an ARS-5 block; the count is
  // the one of the Philox era, kept so energy estimates stay comparable).
  constexpr work encode_work(std::size_t n) const noexcept { return {4 * n + n / 4, 40 * n}; }
  constexpr work decode_work(std::size_t n) const noexcept { return {8 * n + n / 4, 6 * n}; }

 private:
  static constexpr std::uint64_t layout_version = 1;
  std::size_t bucket_;
  float clip_;

  template <bool Add>
  void apply(std::span<const std::byte> frame, std::span<float> out) const {
    namespace kt = kernels::ternary;
    const std::size_t n = out.size();
    const auto v = parse_frame(frame, frame_expect{}.of(wire_id).count(n));
    const std::byte* p = v.payload.data();
    if (v.payload.size() >= 4 && load_le<std::uint32_t>(p) != bucket_)
      throw decode_error(greenreduce::detail::str("ternary frame has bucket size ",
                                                  load_le<std::uint32_t>(p),
                                                  ", this codec expects ", bucket_));
    const std::size_t need = payload_bytes(n);
    if (v.payload.size() != need)
      throw decode_error(greenreduce::detail::str("ternary frame declares ", n,
                                                  " elements but carries ", v.payload.size(),
                                                  " payload bytes (needs ", need, ")"));
    const std::size_t nb = buckets(n);
    for (std::size_t k = 0; k < nb; ++k) {
      const auto bits = load_le<std::uint32_t>(p + 4 + 4 * k);
      if (bits >= kt::inf_bits)
        throw decode_error(greenreduce::detail::str("ternary scale ", k, " is ",
                                                    std::bit_cast<float>(bits),
                                                    ", expected a finite value >= 0"));
    }
    const auto* codes = reinterpret_cast<const std::uint8_t*>(p + 4 + 4 * nb);
    if (n > 0 && kt::codes_invalid(codes, n))
      throw decode_error("ternary payload holds the invalid code 0b11 or non-zero padding bits");
    kt::decode<Add>(p + 4, codes, n, bucket_, out.data());
  }
};

static_assert(codec<ternary>);

}  // namespace greenreduce::codec
