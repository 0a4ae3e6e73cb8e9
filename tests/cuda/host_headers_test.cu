// Compiles the umbrella header with nvcc and runs the host part: the shared
// host/device math (the Philox and ARS-5 rngs) must give the same bits from both compilers.
#include <greenreduce/cuda/runtime.cuh>
#include <greenreduce/greenreduce.hpp>

#include <cstdio>

__global__ void philox_kernel(greenreduce::rng g, greenreduce::philox_block* out) {
  out[threadIdx.x] = g.block(threadIdx.x);
}

__global__ void ars_kernel(greenreduce::rng g, greenreduce::philox_block* out) {
  out[threadIdx.x] = greenreduce::ars5_block(g, threadIdx.x);
}

int main() {
  // Random123's known answer for counter 0, key 0, computed by nvcc's host pass.
  const auto b = greenreduce::philox4x32_10(greenreduce::philox_block{{0, 0, 0, 0}}, 0, 0);
  const bool ok = b[0] == 0x6627e8d5U && b[1] == 0xe169c58dU && b[2] == 0xbc57ac4cU &&
                  b[3] == 0x9b00dbd8U;
  // ARS-5 block 7 of rng(0x0123456789abcdef, 5) as g++ computes it (held to
  // AES-NI by tests/kernels/ars_test.cpp), computed by nvcc's host pass.
  const auto a = greenreduce::ars5_block(greenreduce::rng(0x0123456789abcdefULL, 5), 7);
  const bool ars_ok = a[0] == 0x1ce04d37U && a[1] == 0xd4323d8bU && a[2] == 0x7ee420deU &&
                      a[3] == 0xadd9507cU;
  std::printf("greenreduce %s under nvcc: philox %s, ars5 %s\n",
              greenreduce::version_string.data(), ok ? "ok" : "WRONG", ars_ok ? "ok" : "WRONG");
  // Without a device the runtime reports 0 devices instead of failing.
  std::printf("visible CUDA devices: %d\n", greenreduce::cuda::device_count());
  return ok && ars_ok ? 0 : 1;
}
