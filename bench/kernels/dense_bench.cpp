// Dense codecs, single thread, fp32 input bytes per second (read as ratios to
// BM_stream_read / BM_stream_axpy of the same run):
//   BM_encode_<codec>/<n>:      codec.encode(x, frame, rng) of n floats
//   BM_decode_add_<codec>/<n>:  codec.decode_add(frame, acc) of n floats
// for none, fp16, bf16, int8 (nearest, buckets of 512), int8_stochastic,
// fp8_e4m3 and fp8_e5m2 (buckets of 512) and qsgd (7 levels, 4-bit codes, buckets of 512).
#include <benchmark/benchmark.h>

#include <string>

#include "greenreduce/codec/bf16.hpp"
#include "greenreduce/codec/fp16.hpp"
#include "greenreduce/codec/fp8.hpp"
#include "greenreduce/codec/int8.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/codec/qsgd.hpp"
#include "greenreduce/core/buffer.hpp"
#include "sizes.hpp"

namespace {

namespace gr = greenreduce;

gr::aligned_vector<float> gradient(std::size_t n) {
  gr::aligned_vector<float> x(n);
  std::uint32_t s = 12345;
  for (auto& v : x) {  // a cheap, deterministic spread of magnitudes and signs
    s = s * 1664525U + 1013904223U;
    v = static_cast<float>(static_cast<std::int32_t>(s)) * 0x1p-31F;
  }
  return x;
}

template <class C>
void encode(benchmark::State& state, const C& c) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto x = gradient(n);
  gr::byte_buffer out(c.max_encoded_bytes(n));
  gr::rng g(42);
  for (auto _ : state) {
    benchmark::DoNotOptimize(c.encode(x, out, g));
    benchmark::ClobberMemory();
  }
  gr::bench::set_fp32_bytes(state);
}

template <class C>
void decode_add(benchmark::State& state, const C& c) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto x = gradient(n);
  gr::byte_buffer frame(c.max_encoded_bytes(n));
  gr::rng g(42);
  frame.resize(c.encode(x, frame, g));
  gr::aligned_vector<float> acc(n, 0.0F);
  for (auto _ : state) {
    c.decode_add(frame, acc);
    benchmark::DoNotOptimize(acc.data());
    benchmark::ClobberMemory();
  }
  gr::bench::set_fp32_bytes(state);
}

template <class C>
void register_codec(const std::string& name, const C& c) {
  benchmark::RegisterBenchmark(("BM_encode_" + name).c_str(),
                               [c](benchmark::State& st) { encode(st, c); })
      ->Apply(gr::bench::kernel_sizes);
  benchmark::RegisterBenchmark(("BM_decode_add_" + name).c_str(),
                               [c](benchmark::State& st) { decode_add(st, c); })
      ->Apply(gr::bench::kernel_sizes);
}

const bool registered = [] {
  register_codec("none", gr::codec::none{});
  register_codec("fp16", gr::codec::fp16{});
  register_codec("bf16", gr::codec::bf16{});
  register_codec("int8", gr::codec::int8::nearest());
  register_codec("int8_stochastic", gr::codec::int8::stochastic());
  register_codec("fp8_e4m3", gr::codec::fp8(gr::codec::fp8_format::e4m3));
  register_codec("fp8_e5m2", gr::codec::fp8(gr::codec::fp8_format::e5m2));
  register_codec("qsgd", gr::codec::qsgd());
  return true;
}();

}  // namespace
