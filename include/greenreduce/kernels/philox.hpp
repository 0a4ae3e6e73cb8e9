// greenreduce/kernels/philox.hpp — the rule by which the int8 stochastic
// kernels hand Philox4x32-10 words (core/rng.hpp) to elements, over the SIMD
// Philox of kernels/random_bits.hpp.
//
// Group rule (the contract a CUDA kernel reproduces bit for bit): the elements
// of one call are cut into groups of 64; group g reads the 16 blocks
// rng.offset + 16g .. 16g + 15, and element i uses
//
//     word (i % 64) / 16   of block   rng.offset + 16 * (i / 64) + i % 16.
//
// So word k of the 16 blocks covers 16 consecutive elements: one SIMD lane
// (or one GPU thread) per block yields whole batches of consecutive elements
// with no transpose, and the rule does not depend on the vector width. A call
// of n elements consumes 16 * ceil(n / 64) blocks.
#pragma once

#include <cstddef>
#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "greenreduce/core/rng.hpp"
#include "greenreduce/kernels/random_bits.hpp"

namespace greenreduce::kernels {

inline constexpr std::size_t philox_group = 64;         ///< elements per group
inline constexpr std::size_t philox_group_blocks = 16;  ///< blocks per group

/// Blocks a call of n elements consumes under the group rule.
constexpr std::uint64_t philox_blocks_for(std::size_t n) noexcept {
  return philox_group_blocks * ((n + philox_group - 1) / philox_group);
}

namespace scalar {
/// The random word of element i of a call (the group rule, one element at a time).
inline std::uint32_t philox_word(const rng& g, std::size_t i) noexcept {
  const std::size_t r = i % philox_group;
  return g.block(philox_group_blocks * (i / philox_group) + r % 16)[r / 16];
}

/// The 64 words of group `group`, in element order.
inline void philox_group_words(const rng& g, std::size_t group, std::uint32_t* words) noexcept {
  for (std::size_t j = 0; j < philox_group_blocks; ++j) {
    const philox_block b = g.block(philox_group_blocks * group + j);
    for (std::size_t k = 0; k < 4; ++k) words[16 * k + j] = b[k];
  }
}
}  // namespace scalar

/// SIMD form of scalar::philox_group_words: the 16 blocks of a group as
/// 16 / batch::size evaluations of kernels/random_bits.hpp's philox_words,
/// each storing whole batches of words.
template <class Arch = xsimd::default_arch>
void philox_group_words(const rng& g, std::size_t group, std::uint32_t* words) noexcept {
  constexpr std::size_t w = xsimd::batch<std::uint32_t, Arch>::size;
  static_assert(philox_group_blocks % w == 0, "a group must hold whole batches of blocks");
  for (std::size_t j0 = 0; j0 < philox_group_blocks; j0 += w) {
    const auto r = philox_words<Arch>(g, philox_group_blocks * group + j0);
    for (std::size_t k = 0; k < 4; ++k) r[k].store_unaligned(words + 16 * k + j0);
  }
}

}  // namespace greenreduce::kernels
