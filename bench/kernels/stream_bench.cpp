// Baselines for the kernel benchmarks: how fast this machine streams fp32
// through one core. Every codec figure is read as a ratio to these.
//   BM_stream_read/<n>:  one read of n floats (a sum kept in SIMD registers)
//   BM_stream_axpy/<n>:  y += a * x over n floats (read 2n, write n)
#include <benchmark/benchmark.h>

#include <xsimd/xsimd.hpp>

#include "greenreduce/core/buffer.hpp"
#include "sizes.hpp"

namespace {

using batch = xsimd::batch<float>;

void BM_stream_read(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  greenreduce::aligned_vector<float> x(n, 1.0F);
  constexpr std::size_t w = batch::size;
  for (auto _ : state) {
    // Four independent accumulators hide the add latency; the loop is bound by loads.
    batch a0(0.0F), a1(0.0F), a2(0.0F), a3(0.0F);
    std::size_t i = 0;
    for (; i + 4 * w <= n; i += 4 * w) {
      a0 += batch::load_aligned(&x[i]);
      a1 += batch::load_aligned(&x[i + w]);
      a2 += batch::load_aligned(&x[i + 2 * w]);
      a3 += batch::load_aligned(&x[i + 3 * w]);
    }
    float s = xsimd::hadd((a0 + a1) + (a2 + a3));
    for (; i < n; ++i) s += x[i];
    benchmark::DoNotOptimize(s);
  }
  greenreduce::bench::set_fp32_bytes(state);
}
BENCHMARK(BM_stream_read)->Apply(greenreduce::bench::kernel_sizes);

void BM_stream_axpy(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  greenreduce::aligned_vector<float> x(n, 1.0F), y(n, 0.0F);
  constexpr std::size_t w = batch::size;
  const batch a(1e-7F);
  for (auto _ : state) {
    std::size_t i = 0;
    for (; i + w <= n; i += w) xsimd::fma(a, batch::load_aligned(&x[i]), batch::load_aligned(&y[i]))
                                   .store_aligned(&y[i]);
    for (; i < n; ++i) y[i] += 1e-7F * x[i];
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  greenreduce::bench::set_fp32_bytes(state);
}
BENCHMARK(BM_stream_axpy)->Apply(greenreduce::bench::kernel_sizes);

}  // namespace
