// greenreduce/codec/qsgd.hpp — QSGD: stochastic quantization to s levels of the bucket's L2 norm.
//
// Alistarh, Grubic, Li, Tomioka, Vojnovic: "QSGD: Communication-Efficient SGD
// via Gradient Quantization and Encoding", NeurIPS 2017. A bucket v is sent as
// its norm ||v||_2 and, per element, sign(v_i) and a level
//     l_i = floor(s |v_i| / ||v|| + u_i),   u_i uniform in [0, 1)
// so that l_i / s is |v_i| / ||v|| rounded stochastically to the grid 1/s:
// E[x'] = x (unbiased, up to the 24-bit resolution of u and fp32 rounding) and
// the variance is at most min(d / s^2, sqrt(d) / s) ||v||^2 per bucket of d.
// Decoding is x' = sign * l * (||v|| / s), the factor computed once per bucket
// in fp32 on both sides.
//
// Codes are sign-magnitude in w bits, w the smallest of 2, 4, 8 that holds
// s: s = 1 -> 2 bits, s <= 7 -> 4 bits, s <= 127 -> 8 bits (the paper's
// Elias coding of levels is not used: fixed widths keep decode branch-free).
//
// Randomness: the group rule of kernels/philox.hpp (element i uses word
// (i % 64) / 16 of block rng.offset + 16 (i / 64) + i % 16, 24 bits of it);
// a call advances the rng by 16 ceil(n / 64) blocks. Same seed, same bytes.
//
// Wire payload (after the 32-byte frame header), nb = ceil(n / bucket):
//
//   off       size             field
//     0       4                bucket size, uint32 little-endian
//     4       4                levels s, uint32 little-endian (1..127)
//     8       4 nb             fp32 norm per bucket, finite and >= 0
//     8+4nb   ceil(n w / 8)    codes: element i at bits [w (i mod 8/w), ...) of
//                              byte i w / 8; bit w-1 of a code is the sign;
//                              levels above s and padding bits past n are rejected
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/core/bytes.hpp"
#include "greenreduce/kernels/philox.hpp"

namespace greenreduce::codec {

/// `codec::qsgd{}` (s = 7 levels in 4-bit codes, buckets of 512),
/// `codec::qsgd{127, 2048}` (8-bit codes).
class qsgd {
 public:
  static constexpr codec_id wire_id = codec_id::qsgd;
  static constexpr std::size_t default_bucket = 512;
  static constexpr unsigned default_levels = 7;
  static constexpr std::size_t max_bucket = std::size_t{1} << 30;

  /// Throws config_error unless 1 <= levels <= 127 and 1 <= bucket <= max_bucket.
  explicit qsgd(unsigned levels = default_levels, std::size_t bucket = default_bucket)
      : levels_(levels), bucket_(bucket) {
    if (levels == 0 || levels > 127)
      throw config_error(greenreduce::detail::str("qsgd levels must be in [1, 127], got ", levels));
    if (bucket == 0 || bucket > max_bucket)
      throw config_error(greenreduce::detail::str("qsgd bucket size must be in [1, ", max_bucket,
                                                  "], got ", bucket));
    bits_ = levels == 1 ? 2 : levels <= 7 ? 4 : 8;
  }

  unsigned levels() const noexcept { return levels_; }
  std::size_t bucket() const noexcept { return bucket_; }
  /// Bits per element on the wire (2, 4 or 8).
  unsigned code_bits() const noexcept { return bits_; }

  constexpr codec_id id() const noexcept { return wire_id; }
  constexpr std::string_view name() const noexcept { return "qsgd"; }
  std::uint64_t config_hash() const noexcept {
    return hash_words({static_cast<std::uint64_t>(wire_id), bucket_, levels_});
  }
  std::size_t buckets(std::size_t n) const noexcept { return (n + bucket_ - 1) / bucket_; }
  std::size_t code_bytes(std::size_t n) const noexcept { return (n * bits_ + 7) / 8; }
  std::size_t payload_bytes(std::size_t n) const noexcept {
    return 8 + 4 * buckets(n) + code_bytes(n);
  }
  std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    return frame_header_bytes + payload_bytes(n);
  }

  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng& g) const {
    const std::size_t n = in.size(), payload = payload_bytes(n);
    require_output(name(), frame_header_bytes + payload, out.size());
    std::byte* p = out.data() + frame_header_bytes;
    store_le<std::uint32_t>(p, static_cast<std::uint32_t>(bucket_));
    store_le<std::uint32_t>(p + 4, levels_);
    auto* codes = reinterpret_cast<std::uint8_t*>(p + 8 + 4 * buckets(n));
    const std::size_t nb = buckets(n);
    // Per bucket: the norm (double sum of squares, index order) and the factor s / norm.
    std::vector<float> factor(nb);
    for (std::size_t k = 0, lo = 0; lo < n; ++k, lo += bucket_) {
      const std::size_t hi = std::min(n, lo + bucket_);
      double sq = 0.0;
      for (std::size_t i = lo; i < hi; ++i) sq += static_cast<double>(in[i]) * in[i];
      if (!std::isfinite(sq)) require_finite(name(), in);  // names the first NaN/Inf
      const auto norm = static_cast<float>(std::sqrt(sq));
      store_le<std::uint32_t>(p + 8 + 4 * k, std::bit_cast<std::uint32_t>(norm));
      factor[k] = norm > 0.0F ? static_cast<float>(levels_) / norm : 0.0F;
    }
    // Per group of 64 elements (the rng's unit): 64 words, 64 codes, then packed.
    constexpr std::size_t G = kernels::philox_group;
    alignas(64) std::uint32_t words[G];
    alignas(64) std::uint8_t c8[G];
    const std::uint32_t top = levels_, sign_bit = 1U << (bits_ - 1);
    for (std::size_t g0 = 0; g0 < n; g0 += G) {
      const std::size_t m = std::min(G, n - g0);
      kernels::philox_group_words(g, g0 / G, words);
      for (std::size_t j = 0; j < m;) {  // runs of one bucket inside the group
        const std::size_t i0 = g0 + j, k = i0 / bucket_;
        const std::size_t run = std::min(m - j, (k + 1) * bucket_ - i0);
        quantize_run(in.data() + i0, words + j, c8 + j, run, factor[k], top, sign_bit);
        j += run;
      }
      pack(c8, m, codes + g0 * bits_ / 8);
    }
    g.advance(kernels::philox_blocks_for(n));
    return finish_frame(out, wire_id, n, payload);
  }

  void decode(std::span<const std::byte> frame, std::span<float> out) const {
    apply<false>(frame, out);
  }
  void decode_add(std::span<const std::byte> frame, std::span<float> acc) const {
    apply<true>(frame, acc);
  }

  /// encode: read 4n twice (norm, quantize), write n w / 8; a quarter Philox block per element.
  work encode_work(std::size_t n) const noexcept {
    return {8 * n + code_bytes(n) + 4 * buckets(n), 28 * n};
  }
  /// decode_add: read codes and 4n, write 4n; unpack, convert, multiply, add.
  work decode_work(std::size_t n) const noexcept {
    return {8 * n + code_bytes(n) + 4 * buckets(n), 5 * n};
  }

 private:
  unsigned levels_;
  std::size_t bucket_;
  unsigned bits_ = 8;

  // Levels of a run with one factor: branch-free, so it vectorizes.
  static void quantize_run(const float* x, const std::uint32_t* words, std::uint8_t* c,
                           std::size_t m, float f, std::uint32_t top,
                           std::uint32_t sign_bit) noexcept {
    for (std::size_t i = 0; i < m; ++i) {
      const float t = std::fabs(x[i]) * f + uniform_float(words[i]);
      const std::uint32_t level =
          std::min(static_cast<std::uint32_t>(static_cast<std::int32_t>(t)), top);
      const std::uint32_t neg = std::bit_cast<std::uint32_t>(x[i]) >> 31;
      c[i] = static_cast<std::uint8_t>(level | ((level != 0 ? neg : 0U) * sign_bit));
    }
  }
  // m codes (m < 64 only for the last group) into m * bits_ / 8 bytes, rounded up.
  void pack(const std::uint8_t* c, std::size_t m, std::uint8_t* out) const noexcept {
    if (bits_ == 8) {
      std::memcpy(out, c, m);
    } else if (bits_ == 4) {
      for (std::size_t i = 0; i < m; i += 2)
        out[i / 2] = static_cast<std::uint8_t>(c[i] | (i + 1 < m ? c[i + 1] << 4 : 0));
    } else {
      for (std::size_t i = 0; i < m; i += 4) {
        unsigned v = 0;
        for (std::size_t l = 0; l < 4 && i + l < m; ++l) v |= unsigned{c[i + l]} << (2 * l);
        out[i / 4] = static_cast<std::uint8_t>(v);
      }
    }
  }
  // The m codes starting at a group boundary, one per byte.
  void unpack(const std::uint8_t* in, std::size_t m, std::uint8_t* c) const noexcept {
    if (bits_ == 8) {
      std::memcpy(c, in, m);
    } else if (bits_ == 4) {
      for (std::size_t i = 0; i < m; ++i)
        c[i] = static_cast<std::uint8_t>((in[i / 2] >> (4 * (i % 2))) & 0xFU);
    } else {
      for (std::size_t i = 0; i < m; ++i)
        c[i] = static_cast<std::uint8_t>((in[i / 4] >> (2 * (i % 4))) & 0x3U);
    }
  }
  // x' = sign * level * unit over a run with one unit: branch-free, so it vectorizes.
  template <bool Add>
  static void dequantize_run(const std::uint8_t* c, float* out, std::size_t m, float unit,
                             std::uint32_t mag, std::uint32_t sign_bit) noexcept {
    for (std::size_t i = 0; i < m; ++i) {
      const std::uint32_t code = c[i];
      const float a = static_cast<float>(static_cast<std::int32_t>(code & mag)) * unit;
      const float y =
          std::bit_cast<float>(std::bit_cast<std::uint32_t>(a) |
                               (static_cast<std::uint32_t>((code & sign_bit) != 0) << 31));
      if constexpr (Add)
        out[i] += y;
      else
        out[i] = y;
    }
  }

  template <bool Add>
  void apply(std::span<const std::byte> frame, std::span<float> out) const {
    const std::size_t n = out.size(), nb = buckets(n);
    const auto v = parse_frame(frame, frame_expect{}.of(wire_id).count(n));
    const std::byte* p = v.payload.data();
    if (v.payload.size() >= 8) {
      if (load_le<std::uint32_t>(p) != bucket_)
        throw decode_error(greenreduce::detail::str("qsgd frame was encoded with buckets of ",
                                                    load_le<std::uint32_t>(p),
                                                    " elements, this codec uses ", bucket_));
      if (load_le<std::uint32_t>(p + 4) != levels_)
        throw decode_error(greenreduce::detail::str("qsgd frame was encoded with ",
                                                    load_le<std::uint32_t>(p + 4),
                                                    " levels, this codec uses ", levels_));
    }
    if (v.payload.size() != payload_bytes(n))
      throw decode_error(greenreduce::detail::str("qsgd frame declares ", n,
                                                  " elements but carries ", v.payload.size(),
                                                  " payload bytes (needs ", payload_bytes(n), ")"));
    for (std::size_t k = 0; k < nb; ++k) {
      const auto bits = load_le<std::uint32_t>(p + 8 + 4 * k);
      if (bits >= 0x7F800000U)  // negative, Inf or NaN
        throw decode_error(greenreduce::detail::str(
            "qsgd norm ", k, " is ", std::bit_cast<float>(bits), ", expected a finite value >= 0"));
    }
    const auto* codes = reinterpret_cast<const std::uint8_t*>(p + 8 + 4 * nb);
    const std::uint32_t mag = (1U << (bits_ - 1)) - 1U, sign_bit = 1U << (bits_ - 1);
    constexpr std::size_t G = kernels::philox_group;
    alignas(64) std::uint8_t c8[G];
    for (std::size_t g0 = 0; g0 < n; g0 += G) {  // validate everything before writing
      const std::size_t m = std::min(G, n - g0);
      unpack(codes + g0 * bits_ / 8, m, c8);
      unsigned worst = 0;
      for (std::size_t j = 0; j < m; ++j) worst = std::max(worst, c8[j] & mag);
      if (worst > levels_)
        for (std::size_t j = 0; j < m; ++j)
          if ((c8[j] & mag) > levels_)
            throw decode_error(greenreduce::detail::str("qsgd element ", g0 + j, " has level ",
                                                        c8[j] & mag, " > ", levels_, " levels"));
    }
    if (const std::size_t used = n * bits_; used % 8 != 0 && (codes[used / 8] >> (used % 8)) != 0)
      throw decode_error("qsgd payload sets padding bits past the last element");
    const auto s = static_cast<float>(levels_);
    for (std::size_t g0 = 0; g0 < n; g0 += G) {
      const std::size_t m = std::min(G, n - g0);
      unpack(codes + g0 * bits_ / 8, m, c8);
      for (std::size_t j = 0; j < m;) {  // runs of one bucket inside the group
        const std::size_t i0 = g0 + j, k = i0 / bucket_;
        const std::size_t run = std::min(m - j, (k + 1) * bucket_ - i0);
        const float unit = std::bit_cast<float>(load_le<std::uint32_t>(p + 8 + 4 * k)) / s;
        dequantize_run<Add>(c8 + j, out.data() + i0, run, unit, mag, sign_bit);
        j += run;
      }
    }
  }
};

static_assert(codec<qsgd>);

}  // namespace greenreduce::codec
