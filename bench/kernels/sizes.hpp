// bench/kernels/sizes.hpp — the element counts every kernel benchmark runs at.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>

namespace greenreduce::bench {

/// 64 KB (L2-resident), 4 MB (last-level cache), 64 MB (DRAM) of fp32.
inline void kernel_sizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {16384, 1048576, 16777216}) b->Arg(n);
}

/// Reports fp32 input bytes per second, the unit all kernel figures share.
inline void set_fp32_bytes(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0) * 4);
}

}  // namespace greenreduce::bench
