// greenreduce/cuda/buffer.cuh — device memory the CUDA codecs and the ring own.
//
// `device_buffer<T>`: cudaMalloc'd storage with value ownership (moves, no
// copies), freed in the destructor. `device_status`: one 64-bit word in device
// memory that kernels lower with atomicMin to report the first element that
// broke a rule (a non-finite input, an invalid code); UINT64_MAX means "all
// good". Kernels never throw: the host reads the status after the stream
// reaches it and throws the typed error there.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "greenreduce/cuda/runtime.cuh"

namespace greenreduce::cuda {

template <class T>
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t count) : count_(count) {
    if (count > 0)
      GREENREDUCE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), count * sizeof(T)));
  }
  device_buffer(device_buffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  ~device_buffer() { release(); }

  T* data() const noexcept { return ptr_; }
  std::size_t size() const noexcept { return count_; }
  std::size_t bytes() const noexcept { return count_ * sizeof(T); }
  /// Grows (never shrinks) to at least `count` elements; contents are not kept.
  void reserve(std::size_t count) {
    if (count > count_) *this = device_buffer(count);
  }

 private:
  void release() noexcept {
    if (ptr_ != nullptr) (void)cudaFree(ptr_);
    ptr_ = nullptr;
  }
  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

/// The first offending element index a kernel saw (see the header comment).
class device_status {
 public:
  static constexpr std::uint64_t ok = ~std::uint64_t{0};

  device_status() : word_(1) { GREENREDUCE_CUDA_CHECK(cudaMemset(word_.data(), 0xFF, 8)); }

  unsigned long long* data() const noexcept {
    return reinterpret_cast<unsigned long long*>(word_.data());
  }
  /// Back to `ok`, in stream order.
  void reset(cudaStream_t stream) const {
    GREENREDUCE_CUDA_CHECK(cudaMemsetAsync(word_.data(), 0xFF, 8, stream));
  }
  /// Waits for the stream and returns the word (`ok` when no kernel reported).
  std::uint64_t read(cudaStream_t stream) const {
    std::uint64_t v = ok;
    GREENREDUCE_CUDA_CHECK(cudaMemcpyAsync(&v, word_.data(), 8, cudaMemcpyDeviceToHost, stream));
    GREENREDUCE_CUDA_CHECK(cudaStreamSynchronize(stream));
    return v;
  }

 private:
  device_buffer<std::uint64_t> word_;
};

/// Blocks of `threads` threads for `work` items, at least 1 and at most `cap`
/// (grid-stride loops cover the rest).
inline unsigned grid_for(std::uint64_t work, unsigned threads, std::uint64_t cap = 65535ULL * 32) {
  const std::uint64_t b = (work + threads - 1) / threads;
  return static_cast<unsigned>(b == 0 ? 1 : (b > cap ? cap : b));
}

/// Checks the launch that just happened (bad configuration, missing kernel image).
inline void check_launch(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw device_error(detail::str("launch of ", kernel, " failed: ", cudaGetErrorName(e), " (",
                                   cudaGetErrorString(e), ")"));
}

}  // namespace greenreduce::cuda
