// greenreduce/kernels/philox.hpp — Philox4x32-10 (core/rng.hpp) for many
// blocks at once, and the rule by which stochastic kernels hand its words to
// elements.
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
#include "greenreduce/kernels/lanes.hpp"

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

/// Philox4x32-10 on batch::size counters at once, one block per lane.
template <class Arch>
struct philox_lanes {
  using u32 = xsimd::batch<std::uint32_t, Arch>;
  u32 c0, c1, c2, c3;

  void run(std::uint32_t k0, std::uint32_t k1) noexcept {
    for (int r = 0; r < philox::rounds; ++r) {
      if (r > 0) {
        k0 += philox::w0;
        k1 += philox::w1;
      }
      const auto p0 = lanes::mul_wide_u32<Arch>(c0, philox::m0);
      const auto p1 = lanes::mul_wide_u32<Arch>(c2, philox::m1);
      const u32 n0 = p1.hi ^ c1 ^ u32(k0);
      const u32 n2 = p0.hi ^ c3 ^ u32(k1);
      c0 = n0;
      c1 = p1.lo;
      c2 = n2;
      c3 = p0.lo;
    }
  }
};

/// SIMD form of scalar::philox_group_words: the 16 blocks of a group as
/// 16 / batch::size Philox evaluations, each storing whole batches of words.
template <class Arch = xsimd::default_arch>
void philox_group_words(const rng& g, std::size_t group, std::uint32_t* words) noexcept {
  using u32 = xsimd::batch<std::uint32_t, Arch>;
  constexpr std::size_t w = u32::size;
  static_assert(philox_group_blocks % w == 0, "a group must hold whole batches of blocks");
  const auto stream_lo = static_cast<std::uint32_t>(g.stream);
  const auto stream_hi = static_cast<std::uint32_t>(g.stream >> 32);
  for (std::size_t j0 = 0; j0 < philox_group_blocks; j0 += w) {
    alignas(64) std::uint32_t lo[w], hi[w];
    for (std::size_t l = 0; l < w; ++l) {
      const std::uint64_t c = g.offset + philox_group_blocks * group + j0 + l;
      lo[l] = static_cast<std::uint32_t>(c);
      hi[l] = static_cast<std::uint32_t>(c >> 32);
    }
    philox_lanes<Arch> p{u32::load_aligned(lo), u32::load_aligned(hi), u32(stream_lo),
                         u32(stream_hi)};
    p.run(static_cast<std::uint32_t>(g.seed), static_cast<std::uint32_t>(g.seed >> 32));
    p.c0.store_unaligned(words + j0);
    p.c1.store_unaligned(words + 16 + j0);
    p.c2.store_unaligned(words + 32 + j0);
    p.c3.store_unaligned(words + 48 + j0);
  }
}

}  // namespace greenreduce::kernels
