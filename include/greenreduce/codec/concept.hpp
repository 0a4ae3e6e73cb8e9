// greenreduce/codec/concept.hpp — what every compressor is (the codec policy).
//
// A codec is a small value type holding its configuration and no hidden state.
// It turns a span of fp32 into one wire frame (core/frame.hpp) and back:
//
//   max_encoded_bytes(n)        upper bound of encode's output for n elements
//   encode(in, out, rng)        writes one frame into out, returns its size;
//                               never writes past out (config_error if out is
//                               smaller than max_encoded_bytes(in.size()))
//   decode(frame, out)          out = decoded values (out.size() = element count)
//   decode_add(frame, acc)      acc += decoded values, fused in one pass
//
// Decoding validates the frame (codec id, element count, payload length,
// indices in range, finite scales) and throws decode_error; it never reads or
// writes out of bounds whatever the bytes. On a throw, `out`/`acc` may be
// partly written only if the codec documents it; the built-in codecs validate
// the whole frame before writing anything, so `acc` is untouched on error.
//
// Non-finite input: encode throws numeric_error naming the first NaN/Inf index
// (the default rule of every built-in codec), so garbage never reaches a peer.
//
// `config_hash()` fingerprints the codec id and every parameter that changes
// the wire format; ranks compare it before a collective to detect mismatches.
// `encode_work(n)` / `decode_work(n)` count the memory traffic and arithmetic of
// the kernels, which the energy model turns into joules.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>

#include "greenreduce/core/error.hpp"
#include "greenreduce/core/frame.hpp"
#include "greenreduce/core/rng.hpp"

namespace greenreduce::codec {

/// Memory traffic and arithmetic of one kernel call, for the energy model.
struct work {
  std::uint64_t memory_bytes = 0;  ///< bytes read plus bytes written
  std::uint64_t ops = 0;           ///< arithmetic operations (adds, mults, compares, converts)

  work& operator+=(const work& o) noexcept {
    memory_bytes += o.memory_bytes;
    ops += o.ops;
    return *this;
  }
};

/// The codec policy. Checked at the point of use, so a wrong type gives one
/// readable error.
template <class C>
concept codec = std::copy_constructible<C> &&
    requires(const C& c, std::size_t n, std::span<const float> in, std::span<std::byte> out,
             std::span<const std::byte> frame, std::span<float> acc, rng& g) {
  { c.id() } -> std::same_as<codec_id>;
  { c.name() } -> std::convertible_to<std::string_view>;
  { c.config_hash() } -> std::same_as<std::uint64_t>;
  { c.max_encoded_bytes(n) } -> std::same_as<std::size_t>;
  { c.encode(in, out, g) } -> std::same_as<std::size_t>;
  { c.decode(frame, acc) } -> std::same_as<void>;
  { c.decode_add(frame, acc) } -> std::same_as<void>;
  { c.encode_work(n) } -> std::same_as<work>;
  { c.decode_work(n) } -> std::same_as<work>;
};

/// A codec that sends (index, value) pairs: collectives may allgather its
/// frames instead of reducing them hop by hop when that moves fewer bytes.
template <class C>
concept sparse_codec = codec<C> && requires(const C& c) {
  { C::is_sparse } -> std::convertible_to<bool>;
} && C::is_sparse;

/// FNV-1a over a codec's identifying words, for config_hash().
constexpr std::uint64_t hash_words(std::initializer_list<std::uint64_t> words) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::uint64_t w : words)
    for (int b = 0; b < 8; ++b) {
      h ^= (w >> (8 * b)) & 0xFFU;
      h *= 0x100000001b3ULL;
    }
  return h;
}

/// Throws config_error unless `out` can hold max_encoded_bytes(n).
inline void require_output(std::string_view codec_name, std::size_t need, std::size_t have) {
  if (have < need)
    throw config_error(greenreduce::detail::str(
        codec_name, " encode needs ", need, " bytes of output (max_encoded_bytes), got ", have));
}

/// Throws numeric_error naming the first non-finite element of `in`, if any.
/// Kernels detect non-finite input inside their own pass (an absmax or a
/// running x - x that turns NaN); this scalar scan runs only on that rare path
/// to name the index.
inline void require_finite(std::string_view codec_name, std::span<const float> in) {
  for (std::size_t i = 0; i < in.size(); ++i)
    if (!std::isfinite(in[i]))
      throw numeric_error(greenreduce::detail::str(codec_name, " encode: element ", i, " is ",
                                                   in[i], "; gradients must be finite"));
}

}  // namespace greenreduce::codec
