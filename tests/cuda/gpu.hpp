// Shared by the GPU tests: skip without a device, move vectors to and from it.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "greenreduce/cuda/buffer.cuh"

namespace greenreduce::test::gpu {

/// ctest's SKIP_RETURN_CODE for the gpu-labelled tests.
inline constexpr int skip_code = 77;

/// Without a visible device, ends the process with a message and exit code
/// 77 (ctest reports the test as skipped). Each GPU test file calls it from a
/// namespace-scope initializer, so it runs before Catch's main.
inline bool skip_without_device() {
  if (greenreduce::cuda::device_count() == 0) {
    std::printf("SKIP: no CUDA device is visible; the gpu tests need one (built, not run)\n");
    std::fflush(stdout);
    std::exit(skip_code);
  }
  return true;
}

template <class T>
greenreduce::cuda::device_buffer<T> upload(const std::vector<T>& h, std::size_t extra = 0,
                                           int poison = -1) {
  greenreduce::cuda::device_buffer<T> d(h.size() + extra + 1);  // never 0 bytes
  if (poison >= 0) GREENREDUCE_CUDA_CHECK(cudaMemset(d.data(), poison, d.bytes()));
  if (!h.empty())
    GREENREDUCE_CUDA_CHECK(
        cudaMemcpy(d.data(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

template <class T>
std::vector<T> download(const T* d, std::size_t n) {
  std::vector<T> h(n);
  if (n > 0) GREENREDUCE_CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

}  // namespace greenreduce::test::gpu
