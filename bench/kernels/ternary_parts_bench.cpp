// The parts of ternary encode (codec::ternary(), buckets of 512, clip 2.5),
// each alone over the whole input, so that BM_encode_ternary can be read as
// their sum (docs/kernels.md, "Where ternary and top-k encode spend their time"):
//   BM_ternary_part_ars/<n>:      the ARS-5 blocks encode draws
//                                 (kernels::ternary::blocks_for(n)), SIMD
//                                 (VAES / AES-NI where the build has them)
//   BM_ternary_part_philox/<n>:   as many Philox4x32-10 blocks, SIMD: the
//                                 random source ternary used before ARS-5
//   BM_ternary_part_stats/<n>:    bucket_stats (absmax, lane sums, sums of
//                                 squares) of every bucket
//   BM_ternary_part_quantize/<n>: quantize_tiles over every tile (ARS-5 +
//                                 decision + 2-bit packing), one fixed scale
// Bytes are fp32 input bytes, as for every kernel figure; one thread.
#include <benchmark/benchmark.h>

#include "greenreduce/core/buffer.hpp"
#include "greenreduce/kernels/ternary.hpp"
#include "sizes.hpp"

namespace {

using namespace greenreduce;
namespace kt = greenreduce::kernels::ternary;

constexpr std::size_t bucket = 512;

aligned_vector<float> gradient(std::size_t n) {  // as sparse_bench.cpp
  aligned_vector<float> x(n);
  rng g(1234);
  for (std::size_t i = 0; i < n; i += 4) {
    const auto b = g.block(i / 4);
    for (std::size_t j = 0; j < 4 && i + j < n; ++j)
      x[i + j] = (uniform_float(b[j]) - 0.5F) * uniform_float(b[(j + 1) % 4]) * 1e-2F;
  }
  return x;
}

void BM_ternary_part_philox(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  using u32 = kernels::u32_batch<xsimd::default_arch>;
  const rng g(7);
  for (auto _ : state) {
    u32 acc(0U);
    for (std::uint64_t b = 0; b < kt::blocks_for(n); b += u32::size) {
      const auto w = kernels::philox_words<xsimd::default_arch>(g, b);
      acc ^= (w[0] ^ w[1]) ^ (w[2] ^ w[3]);
    }
    benchmark::DoNotOptimize(acc);
  }
  bench::set_fp32_bytes(state);
}
BENCHMARK(BM_ternary_part_philox)->Apply(bench::kernel_sizes);

void BM_ternary_part_ars(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  using u32 = kernels::u32_batch<xsimd::default_arch>;
  const rng g(7);
  for (auto _ : state) {
    kernels::ars_stream<xsimd::default_arch> bits(g, 0);
    u32 acc(0U);
    for (std::uint64_t b = 0; b < kt::blocks_for(n); b += u32::size / 4) acc ^= bits.next();
    benchmark::DoNotOptimize(acc);
  }
  bench::set_fp32_bytes(state);
}
BENCHMARK(BM_ternary_part_ars)->Apply(bench::kernel_sizes);

void BM_ternary_part_stats(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto x = gradient(n);
  for (auto _ : state) {
    for (std::size_t lo = 0; lo < n; lo += bucket) {
      const kt::stats st = kt::bucket_stats(x.data() + lo, std::min(bucket, n - lo), true);
      benchmark::DoNotOptimize(st);
    }
  }
  bench::set_fp32_bytes(state);
}
BENCHMARK(BM_ternary_part_stats)->Apply(bench::kernel_sizes);

void BM_ternary_part_quantize(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto x = gradient(n);
  aligned_vector<std::uint8_t> codes(kt::code_bytes(n));
  const rng g(7);
  const std::size_t full = n / kt::tile * kt::tile;
  for (auto _ : state) {
    kt::quantize_tiles(x.data(), 0, full, 4e-3F, g, codes.data());
    benchmark::DoNotOptimize(codes.data());
    benchmark::ClobberMemory();
  }
  bench::set_fp32_bytes(state);
}
BENCHMARK(BM_ternary_part_quantize)->Apply(bench::kernel_sizes);

}  // namespace
