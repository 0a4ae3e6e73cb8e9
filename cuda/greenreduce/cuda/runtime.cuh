// greenreduce/cuda/runtime.cuh — CUDA runtime calls that fail as greenreduce errors.
//
// Every CUDA API call of the device code goes through GREENREDUCE_CUDA_CHECK,
// which turns a cudaError_t into a greenreduce::device_error naming the call,
// the file and line, and CUDA's own description, like every other failure of
// the library: a typed exception, never an abort.
#pragma once

#include <cuda_runtime.h>

#include "greenreduce/core/error.hpp"

namespace greenreduce {

/// A CUDA runtime or driver call failed.
class device_error : public error {
 public:
  explicit device_error(const std::string& what) : error("device_error: " + what) {}
};

namespace cuda {

inline void check(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess)
    throw device_error(detail::str(call, " failed at ", file, ":", line, ": ", cudaGetErrorName(e),
                                   " (", cudaGetErrorString(e), ")"));
}

/// Number of visible CUDA devices; 0 (not an error) when there is no driver or device.
inline int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

}  // namespace cuda
}  // namespace greenreduce

#define GREENREDUCE_CUDA_CHECK(call) ::greenreduce::cuda::check((call), #call, __FILE__, __LINE__)
