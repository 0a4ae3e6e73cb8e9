// greenreduce/core/rng.hpp — the counter-based random numbers of stochastic codecs.
//
// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy
// as 1, 2, 3", SC 2011): a bijection of a 128-bit counter under a 64-bit key.
// Being counter-based, element i's random bits are a pure function of (seed,
// stream, block index), so a SIMD kernel, a scalar kernel and a CUDA kernel
// produce the same bits for the same element in any order, and runs are
// reproducible from the seed alone.
//
// An `rng` is a position in that sequence: key = seed, counter = (offset + j,
// stream). A codec call that consumes B blocks reads blocks offset..offset+B-1
// and then advances the offset by B, so consecutive calls never reuse bits.
#pragma once

#include <cstdint>

#include "greenreduce/core/config.hpp"

namespace greenreduce {

/// Four 32-bit words: one Philox counter or output block. A plain aggregate
/// (not std::array) so device code can index it without relaxed constexpr.
struct philox_block {
  std::uint32_t w[4];

  GREENREDUCE_HOST_DEVICE constexpr std::uint32_t& operator[](int i) { return w[i]; }
  GREENREDUCE_HOST_DEVICE constexpr std::uint32_t operator[](int i) const { return w[i]; }
  GREENREDUCE_HOST_DEVICE constexpr const std::uint32_t* begin() const { return w; }
  GREENREDUCE_HOST_DEVICE constexpr const std::uint32_t* end() const { return w + 4; }
  static constexpr int size() { return 4; }
  friend constexpr bool operator==(const philox_block& a, const philox_block& b) {
    return a.w[0] == b.w[0] && a.w[1] == b.w[1] && a.w[2] == b.w[2] && a.w[3] == b.w[3];
  }
};

namespace philox {
inline constexpr std::uint32_t m0 = 0xD2511F53U;
inline constexpr std::uint32_t m1 = 0xCD9E8D57U;
inline constexpr std::uint32_t w0 = 0x9E3779B9U;  // golden ratio
inline constexpr std::uint32_t w1 = 0xBB67AE85U;  // sqrt(3) - 1
inline constexpr int rounds = 10;
}  // namespace philox

/// One Philox4x32-10 evaluation: the reference every SIMD/GPU variant matches.
GREENREDUCE_HD philox_block philox4x32_10(philox_block ctr, std::uint32_t k0, std::uint32_t k1) {
  for (int r = 0; r < philox::rounds; ++r) {
    if (r > 0) {
      k0 += philox::w0;
      k1 += philox::w1;
    }
    const std::uint64_t p0 = static_cast<std::uint64_t>(philox::m0) * ctr[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(philox::m1) * ctr[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = philox_block{{hi1 ^ ctr[1] ^ k0, lo1, hi0 ^ ctr[3] ^ k1, lo0}};
  }
  return ctr;
}

/// Maps 32 random bits to a float uniform in [0, 1) with 24 bits of resolution.
GREENREDUCE_HD float uniform_float(std::uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0F / 16777216.0F);
}

/// A seedable, counter-based random stream (see the header comment).
struct rng {
  std::uint64_t seed = 0;    ///< the Philox key
  std::uint64_t stream = 0;  ///< high half of the counter: independent streams per rank/tensor
  std::uint64_t offset = 0;  ///< next unused block

  rng() = default;
  GREENREDUCE_HOST_DEVICE explicit rng(std::uint64_t seed_, std::uint64_t stream_ = 0)
      : seed(seed_), stream(stream_) {}

  /// Block `offset + j` of this stream (does not advance).
  GREENREDUCE_HOST_DEVICE philox_block block(std::uint64_t j) const {
    const std::uint64_t c = offset + j;
    return philox4x32_10(philox_block{{static_cast<std::uint32_t>(c),
                                       static_cast<std::uint32_t>(c >> 32),
                                       static_cast<std::uint32_t>(stream),
                                       static_cast<std::uint32_t>(stream >> 32)}},
                         static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
  }
  /// Marks `blocks` blocks as consumed.
  GREENREDUCE_HOST_DEVICE void advance(std::uint64_t blocks) { offset += blocks; }
};

}  // namespace greenreduce
