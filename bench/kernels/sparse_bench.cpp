// Sparse and low-bit codecs, read as ratios to BM_stream_read / BM_stream_axpy:
//   BM_encode_<codec>/<n>, BM_decode_add_<codec>/<n>
// ternary (bucket 512, clip 2.5), topk (ratio 0.01, sampled threshold, encode
// WITH error feedback: e = x + r, select, r = e with the sent entries zeroed),
// topk_exact (ratio 0.01, exact selection, no residual), randomk (ratio 0.01),
// sign (bucket 512). Bytes are fp32 input bytes; one thread.
#include <benchmark/benchmark.h>

#include "greenreduce/codec/error_feedback.hpp"
#include "greenreduce/codec/randomk.hpp"
#include "greenreduce/codec/sign.hpp"
#include "greenreduce/codec/ternary.hpp"
#include "greenreduce/codec/topk.hpp"
#include "greenreduce/core/buffer.hpp"
#include "sizes.hpp"

namespace {

using namespace greenreduce;

aligned_vector<float> gradient(std::size_t n) {
  aligned_vector<float> x(n);
  rng g(1234);
  for (std::size_t i = 0; i < n; i += 4) {
    const auto b = g.block(i / 4);
    for (std::size_t j = 0; j < 4 && i + j < n; ++j)  // a heavy-tailed symmetric spread
      x[i + j] = (uniform_float(b[j]) - 0.5F) * uniform_float(b[(j + 1) % 4]) * 1e-2F;
  }
  return x;
}

template <class C>
void encode_bench(benchmark::State& state, const C& c) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto x = gradient(n);
  byte_buffer out(c.max_encoded_bytes(n));
  rng g(7);
  for (auto _ : state) {
    benchmark::DoNotOptimize(c.encode(x, out, g));
    benchmark::ClobberMemory();
  }
  bench::set_fp32_bytes(state);
}

template <class C>
void decode_add_bench(benchmark::State& state, const C& c) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto x = gradient(n);
  byte_buffer out(c.max_encoded_bytes(n));
  rng g(7);
  const std::size_t len = c.encode(x, out, g);
  aligned_vector<float> acc(n, 0.0F);
  for (auto _ : state) {
    c.decode_add(std::span<const std::byte>(out.data(), len), acc);
    benchmark::DoNotOptimize(acc.data());
    benchmark::ClobberMemory();
  }
  bench::set_fp32_bytes(state);
}

void BM_encode_ternary(benchmark::State& s) {
  encode_bench(s, codec::ternary());
}
void BM_decode_add_ternary(benchmark::State& s) {
  decode_add_bench(s, codec::ternary());
}
BENCHMARK(BM_encode_ternary)->Apply(bench::kernel_sizes);
BENCHMARK(BM_decode_add_ternary)->Apply(bench::kernel_sizes);

void BM_encode_topk(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto x = gradient(n);
  codec::error_feedback<codec::topk> ef(codec::topk::ratio(0.01).sampled(), n);
  byte_buffer out(ef.codec().max_encoded_bytes(n));
  rng g(7);
  for (auto _ : state) {
    benchmark::DoNotOptimize(ef.encode(x, out, g));
    benchmark::ClobberMemory();
  }
  bench::set_fp32_bytes(state);
}
void BM_decode_add_topk(benchmark::State& s) {
  decode_add_bench(s, codec::topk::ratio(0.01).sampled());
}
BENCHMARK(BM_encode_topk)->Apply(bench::kernel_sizes);
BENCHMARK(BM_decode_add_topk)->Apply(bench::kernel_sizes);

void BM_encode_topk_exact(benchmark::State& s) {
  encode_bench(s, codec::topk::ratio(0.01));
}
void BM_decode_add_topk_exact(benchmark::State& s) {
  decode_add_bench(s, codec::topk::ratio(0.01));
}
BENCHMARK(BM_encode_topk_exact)->Apply(bench::kernel_sizes);
BENCHMARK(BM_decode_add_topk_exact)->Apply(bench::kernel_sizes);

void BM_encode_randomk(benchmark::State& s) {
  encode_bench(s, codec::randomk::ratio(0.01));
}
void BM_decode_add_randomk(benchmark::State& s) {
  decode_add_bench(s, codec::randomk::ratio(0.01));
}
BENCHMARK(BM_encode_randomk)->Apply(bench::kernel_sizes);
BENCHMARK(BM_decode_add_randomk)->Apply(bench::kernel_sizes);

void BM_encode_sign(benchmark::State& s) {
  encode_bench(s, codec::sign());
}
void BM_decode_add_sign(benchmark::State& s) {
  decode_add_bench(s, codec::sign());
}
BENCHMARK(BM_encode_sign)->Apply(bench::kernel_sizes);
BENCHMARK(BM_decode_add_sign)->Apply(bench::kernel_sizes);

}  // namespace
