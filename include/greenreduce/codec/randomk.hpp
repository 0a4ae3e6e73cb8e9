// greenreduce/codec/randomk.hpp — random-k sparsification with indices regenerated from a seed.
//
// Stich, Cordonnier, Jaggi: "Sparsified SGD with Memory", NeurIPS 2018
// (random-k with error feedback). Stratified variant: the n elements are cut
// into k strata [floor(j·n/k), floor((j+1)·n/k)) and one element per stratum is
// sent, chosen by 32 random bits: index = lo_j + floor(r_j · len_j / 2^32), with
// r_j = word j % 4 of Philox block j / 4 of the caller's rng (bias of the
// choice within a stratum <= len_j / 2^32). Every element is sent with
// probability ~k/n, indices come out sorted, and no index crosses the wire:
// the receiver regenerates them from the (seed, stream, offset) in the payload.
// Values are sent unscaled (use error_feedback; multiply by n/k for an
// unbiased estimate). encode advances the rng by ceil(k/4) blocks.
//
// Payload (little-endian), after the 32-byte frame header:
//   off     size   field
//   0       8      rng seed
//   8       8      rng stream
//   16      8      rng offset of the first block
//   24      8      count k (must equal k_of(n))
//   32      4·k    fp32 values, stratum order
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <span>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/kernels/topk.hpp"

namespace greenreduce::codec {

class randomk {
 public:
  static constexpr codec_id wire_id = codec_id::randomk;
  static constexpr bool is_sparse = true;

  /// k = ceil(r·n), 0 < r <= 1.
  static randomk ratio(double r) {
    if (!(r > 0.0 && r <= 1.0))
      throw config_error(greenreduce::detail::str("randomk ratio must be in (0, 1], got ", r));
    return randomk(r);
  }
  std::size_t k_of(std::size_t n) const noexcept {
    if (n == 0) return 0;
    const double k = std::ceil(ratio_ * static_cast<double>(n));
    return std::clamp<std::size_t>(static_cast<std::size_t>(k), 1, n);
  }
  /// Index of stratum j's element for k strata over n elements under g.
  static std::size_t index_of(const rng& g, std::size_t j, std::size_t k, std::size_t n) noexcept {
    __extension__ using u128 = unsigned __int128;
    const auto lo = static_cast<std::uint64_t>(static_cast<u128>(j) * n / k);
    const auto hi = static_cast<std::uint64_t>(static_cast<u128>(j + 1) * n / k);
    const std::uint32_t r = g.block(j / 4)[j % 4];
    return static_cast<std::size_t>(
        lo + static_cast<std::uint64_t>((static_cast<u128>(r) * (hi - lo)) >> 32));
  }

  constexpr codec_id id() const noexcept { return wire_id; }
  constexpr std::string_view name() const noexcept { return "randomk"; }
  std::uint64_t config_hash() const noexcept {
    return hash_words({static_cast<std::uint64_t>(wire_id), std::bit_cast<std::uint64_t>(ratio_)});
  }
  std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    return frame_header_bytes + 32 + 4 * k_of(n);
  }

  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng& g) const {
    const std::size_t n = in.size(), k = k_of(n);
    require_output(name(), max_encoded_bytes(n), out.size());
    if (!kernels::topk::gather(kernels::topk::source::input, in.data(), nullptr, n, INFINITY, 0,
                               nullptr, nullptr)
             .finite)
      require_finite(name(), in);
    std::byte* p = out.data() + frame_header_bytes;
    store_le<std::uint64_t>(p, g.seed);
    store_le<std::uint64_t>(p + 8, g.stream);
    store_le<std::uint64_t>(p + 16, g.offset);
    store_le<std::uint64_t>(p + 24, k);
    for (std::size_t j = 0; j < k; ++j) std::memcpy(p + 32 + 4 * j, &in[index_of(g, j, k, n)], 4);
    g.advance((k + 3) / 4);
    return finish_frame(out, wire_id, n, 32 + 4 * k);
  }

  void decode(std::span<const std::byte> frame, std::span<float> out) const {
    const rng g = parse(frame, out.size());
    std::fill(out.begin(), out.end(), 0.0F);
    const std::byte* v = frame.data() + frame_header_bytes + 32;
    const std::size_t n = out.size(), k = k_of(n);
    for (std::size_t j = 0; j < k; ++j) out[index_of(g, j, k, n)] = value(v, j);
  }
  void decode_add(std::span<const std::byte> frame, std::span<float> acc) const {
    const rng g = parse(frame, acc.size());
    const std::byte* v = frame.data() + frame_header_bytes + 32;
    const std::size_t n = acc.size(), k = k_of(n);
    for (std::size_t j = 0; j < k; ++j) acc[index_of(g, j, k, n)] += value(v, j);
  }

  constexpr work encode_work(std::size_t n) const noexcept { return {4 * n, n}; }
  work decode_work(std::size_t n) const noexcept { return {12 * k_of(n), 24 * k_of(n)}; }

 private:
  double ratio_;
  explicit randomk(double r) : ratio_(r) {}

  static float value(const std::byte* v, std::size_t j) noexcept {
    return std::bit_cast<float>(load_le<std::uint32_t>(v + 4 * j));
  }
  rng parse(std::span<const std::byte> frame, std::size_t n) const {
    const auto v = parse_frame(frame, frame_expect{}.of(wire_id).count(n));
    const std::size_t k = k_of(n);
    if (v.payload.size() != 32 + 4 * k)
      throw decode_error(greenreduce::detail::str("randomk frame of ", n, " elements carries ",
                                                  v.payload.size(), " payload bytes (needs ",
                                                  32 + 4 * k, ")"));
    const std::byte* p = v.payload.data();
    if (load_le<std::uint64_t>(p + 24) != k)
      throw decode_error(greenreduce::detail::str(
          "randomk frame declares ", load_le<std::uint64_t>(p + 24), " values, expected k = ", k));
    for (std::size_t j = 0; j < k; ++j)
      if (!std::isfinite(value(p + 32, j)))
        throw decode_error(greenreduce::detail::str("randomk value ", j, " is ", value(p + 32, j),
                                                    ", expected finite"));
    rng g(load_le<std::uint64_t>(p), load_le<std::uint64_t>(p + 8));
    g.offset = load_le<std::uint64_t>(p + 16);
    return g;
  }
};

static_assert(sparse_codec<randomk>);

}  // namespace greenreduce::codec
