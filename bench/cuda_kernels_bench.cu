// greenreduce_bench_cuda_kernels — the device codecs' kernels as Google Benchmarks.
//
// Every benchmark reports fp32 input bytes per second (4n per iteration), like
// greenreduce_bench_kernels, next to the baseline BM_cuda_memcpy_d2d: a
// cudaMemcpy device-to-device of the same 4n bytes in the same binary, so the
// figures read as ratios to this GPU's copy speed (targets: int8, ternary and
// fp16 encode and decode_add >= 0.6x the copy; top-k 1% with error feedback
// >= 0.25x). Timing is by CUDA events around each iteration (manual time).
// encode_async and decode_add_trusted are timed (no host validation or sync
// inside); top-k's encode is synchronous by design and is timed whole.
// Without a GPU the binary prints why and exits with status 1.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <random>
#include <vector>

#include "greenreduce/cuda/codecs.cuh"

namespace gr = greenreduce;

namespace {

std::vector<std::int64_t> sizes() {
  return {1 << 16, 1 << 20, 1 << 24, 1 << 26};
}

struct fixture {
  gr::cuda::device_buffer<float> x, acc, r;
  explicit fixture(std::size_t n) : x(n), acc(n), r(n) {
    std::vector<float> h(n);
    std::mt19937 gen(7);
    std::normal_distribution<float> normal(0.0F, 1.0F);
    for (auto& v : h) v = normal(gen);
    GREENREDUCE_CUDA_CHECK(cudaMemcpy(x.data(), h.data(), 4 * n, cudaMemcpyHostToDevice));
    GREENREDUCE_CUDA_CHECK(cudaMemcpy(acc.data(), h.data(), 4 * n, cudaMemcpyHostToDevice));
    GREENREDUCE_CUDA_CHECK(cudaMemset(r.data(), 0, 4 * n));
  }
};

/// Times f() with CUDA events, once per benchmark iteration.
template <class F>
void timed(benchmark::State& state, F f) {
  cudaEvent_t a, b;
  GREENREDUCE_CUDA_CHECK(cudaEventCreate(&a));
  GREENREDUCE_CUDA_CHECK(cudaEventCreate(&b));
  f();  // warm
  for (auto _ : state) {
    GREENREDUCE_CUDA_CHECK(cudaEventRecord(a));
    f();
    GREENREDUCE_CUDA_CHECK(cudaEventRecord(b));
    GREENREDUCE_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    GREENREDUCE_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0) * 4);
  GREENREDUCE_CUDA_CHECK(cudaEventDestroy(a));
  GREENREDUCE_CUDA_CHECK(cudaEventDestroy(b));
}

void BM_cuda_memcpy_d2d(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  fixture f(n);
  timed(state, [&] {
    GREENREDUCE_CUDA_CHECK(
        cudaMemcpyAsync(f.acc.data(), f.x.data(), 4 * n, cudaMemcpyDeviceToDevice, nullptr));
  });
}

template <class Dev>
void encode(benchmark::State& state, Dev dev) {
  const auto n = static_cast<std::size_t>(state.range(0));
  fixture f(n);
  gr::cuda::device_buffer<std::byte> out(dev.max_encoded_bytes(n));
  const gr::cuda::device_status status;
  gr::rng g(1);
  timed(state,
        [&] { dev.encode_async(f.x.data(), n, out.data(), out.size(), g, status, nullptr); });
}

template <class Dev>
void decode_add(benchmark::State& state, Dev dev) {
  const auto n = static_cast<std::size_t>(state.range(0));
  fixture f(n);
  gr::cuda::device_buffer<std::byte> out(dev.max_encoded_bytes(n));
  gr::rng g(1);
  dev.encode(f.x.data(), n, out.data(), out.size(), g, nullptr);
  timed(state, [&] { dev.decode_add_trusted(out.data(), f.acc.data(), n, nullptr); });
}

void BM_cuda_topk_ef_encode(benchmark::State& state, gr::codec::topk c) {
  const auto n = static_cast<std::size_t>(state.range(0));
  fixture f(n);
  const gr::cuda::topk_codec dev(c);
  gr::cuda::device_buffer<std::byte> out(dev.max_encoded_bytes(n));
  gr::rng g(1);
  timed(state, [&] {
    dev.encode_with_residual(f.x.data(), f.r.data(), n, out.data(), out.size(), g, nullptr);
  });
}

void apply_sizes(benchmark::internal::Benchmark* b) {
  for (auto n : sizes()) b->Arg(n);
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(BM_cuda_memcpy_d2d)->Apply(apply_sizes);
BENCHMARK_CAPTURE(encode, int8, gr::cuda::int8_codec())->Apply(apply_sizes);
BENCHMARK_CAPTURE(encode, int8_stochastic, gr::cuda::int8_codec(gr::codec::int8::stochastic()))
    ->Apply(apply_sizes);
BENCHMARK_CAPTURE(encode, ternary, gr::cuda::ternary_codec())->Apply(apply_sizes);
BENCHMARK_CAPTURE(encode, fp16, gr::cuda::fp16_codec())->Apply(apply_sizes);
BENCHMARK_CAPTURE(encode, bf16, gr::cuda::bf16_codec())->Apply(apply_sizes);
BENCHMARK_CAPTURE(decode_add, int8, gr::cuda::int8_codec())->Apply(apply_sizes);
BENCHMARK_CAPTURE(decode_add, ternary, gr::cuda::ternary_codec())->Apply(apply_sizes);
BENCHMARK_CAPTURE(decode_add, fp16, gr::cuda::fp16_codec())->Apply(apply_sizes);
BENCHMARK_CAPTURE(BM_cuda_topk_ef_encode, ratio_1pct_sampled,
                  gr::codec::topk::ratio(0.01).sampled())
    ->Apply(apply_sizes);
BENCHMARK_CAPTURE(BM_cuda_topk_ef_encode, ratio_1pct_exact, gr::codec::topk::ratio(0.01))
    ->Apply(apply_sizes);

int main(int argc, char** argv) {
  if (gr::cuda::device_count() == 0) {
    std::fprintf(stderr,
                 "greenreduce_bench_cuda_kernels: no CUDA device is visible; these benchmarks "
                 "need a GPU\n");
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
