// Compiles the umbrella header with nvcc and runs the host part: the shared
// host/device math (the Philox rng) must give the same bits from both compilers.
#include <greenreduce/cuda/runtime.cuh>
#include <greenreduce/greenreduce.hpp>

#include <cstdio>

__global__ void philox_kernel(greenreduce::rng g, greenreduce::philox_block* out) {
  out[threadIdx.x] = g.block(threadIdx.x);
}

int main() {
  // Random123's known answer for counter 0, key 0, computed by nvcc's host pass.
  const auto b = greenreduce::philox4x32_10(greenreduce::philox_block{{0, 0, 0, 0}}, 0, 0);
  const bool ok = b[0] == 0x6627e8d5U && b[1] == 0xe169c58dU && b[2] == 0xbc57ac4cU &&
                  b[3] == 0x9b00dbd8U;
  std::printf("greenreduce %s under nvcc: philox %s\n", greenreduce::version_string.data(),
              ok ? "ok" : "WRONG");
  // Without a device the runtime reports 0 devices instead of failing.
  std::printf("visible CUDA devices: %d\n", greenreduce::cuda::device_count());
  return ok ? 0 : 1;
}
