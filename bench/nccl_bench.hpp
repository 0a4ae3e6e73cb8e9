// bench/nccl_bench.hpp — greenreduce-bench's nccl transport, behind a plain C++ interface.
//
// The CLI (greenreduce_bench.cpp) is built by the host compiler and includes
// Boost.Asio, which nvcc cannot parse; the nccl sweep lives in nccl_bench.cu
// and the two meet here, with no CUDA or NCCL type in sight. Built only when
// CUDA and NCCL are found (GREENREDUCE_BENCH_NCCL=1).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "greenreduce/energy/model.hpp"

namespace greenreduce::bench {

struct nccl_bench_config {
  std::vector<std::uint64_t> sizes;      ///< bytes of fp32 per operation
  std::vector<std::string> codec_specs;  ///< parse_codec specs; none also runs ncclAllReduce
  int iters = 20;
  int warmup = 5;
  bool check = false;
  bool average = false;
  std::uint64_t seed = 1;
  int devices = 0;  ///< local GPUs to use, 0 = all visible
  energy::model energy = energy::model("nvlink");
};

struct nccl_bench_row {
  std::uint64_t size = 0, count = 0;
  std::string codec, algo;
  int np = 0;
  double time_us = 0;
  std::uint64_t wire = 0, raw = 0, sent = 0;
  std::int64_t wrong = -1;
  double joules = 0;             ///< all ranks, one operation
  std::string method = "model";  ///< "nvml" when the GPUs' energy counters measured it
};

/// Runs the sweep with one process driving all local GPUs (ncclCommInitAll)
/// and calls `emit` for every row. Throws greenreduce::error (device_error when
/// no GPU is visible, config_error for a codec the device ring cannot carry).
void run_nccl_bench(const nccl_bench_config& c,
                    const std::function<void(const nccl_bench_row&)>& emit);

}  // namespace greenreduce::bench
