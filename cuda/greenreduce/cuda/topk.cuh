// greenreduce/cuda/topk.cuh — codec::topk (with its fused error feedback) on device memory.
//
// Selection runs on the device with the CPU's exact rules (codec/topk.hpp):
//   keys     one pass forms e = x (+ r) and key(e) = |e| bits, and flags the
//            first non-finite element;
//   exact    cub::DeviceRadixSort::SortPairsDescending of (key, index): the
//            sort is stable, so among equal keys the lower indices come first —
//            the CPU's tie rule — and the first k pairs are the selection; their
//            indices are sorted ascending (cub::DeviceRadixSort::SortKeys);
//   sampled  the sample of Deep Gradient Compression at the CPU's positions
//            and rank (kernels::topk::sample_plan), sorted on the device;
//            the threshold key T is its rank-th largest; cub::DeviceSelect::Flagged compacts every
//            index with key >= T in index order; more than k candidates are cut
//            to the exact top-k of the candidates (same stable sort), and the
//            CPU's fallbacks to exact selection apply unchanged;
//   residual r = e with the sent entries zeroed, after the values are gathered.
// The k survivors (indices and values) then go to the host, where
// codec::topk::write_selected writes the payload — the same index coding
// choice and bytes as the CPU encoder — and the frame is copied back to `out`.
// So GPU and CPU frames are equal byte for byte for the same input; the
// dense, n-sized work is on the device, the k-sized frame writing on the host.
//
// decode / decode_add copy the frame to the host, validate and read it with
// codec::topk::decode_entries (the CPU's checks and messages), and scatter
// the values on the device (indices are distinct: no atomics).
//
// Calls are synchronous (they return the frame size, which depends on the
// data). A topk_codec owns device scratch that grows to the largest n seen:
// use one object per stream. Indices are 32-bit: n must be below 2^32.
#pragma once

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_select.cuh>

#include <algorithm>
#include <vector>

#include "greenreduce/codec/topk.hpp"
#include "greenreduce/cuda/device_codec.cuh"
#include "greenreduce/cuda/frame.cuh"
#include "greenreduce/cuda/math.hpp"

namespace greenreduce::cuda {

namespace kernels {

/// keys[i] = key(x[i] (+ r[i])), iota[i] = i; the first non-finite e in status.
template <unsigned Threads>
__global__ void topk_keys(const float* __restrict__ x, const float* __restrict__ r, std::uint64_t n,
                          std::uint32_t* __restrict__ keys, std::uint32_t* __restrict__ iota,
                          unsigned long long* status) {
  for (std::uint64_t i = blockIdx.x * Threads + threadIdx.x; i < n;
       i += static_cast<std::uint64_t>(gridDim.x) * Threads) {
    const float e = r != nullptr ? math::add_rn(x[i], r[i]) : x[i];
    const std::uint32_t k = math::topk_key(e);
    if (k >= math::inf_bits) atomicMin(status, static_cast<unsigned long long>(i));
    keys[i] = k;
    iota[i] = static_cast<std::uint32_t>(i);
  }
}

template <unsigned Threads>
__global__ void topk_sample(const std::uint32_t* __restrict__ keys,
                            greenreduce::kernels::topk::sample_plan plan,
                            std::uint32_t* __restrict__ sample) {
  for (std::uint64_t j = blockIdx.x * Threads + threadIdx.x; j < plan.m;
       j += static_cast<std::uint64_t>(gridDim.x) * Threads)
    sample[j] = keys[plan.position(j)];
}

template <unsigned Threads>
__global__ void topk_flag(const std::uint32_t* __restrict__ keys, std::uint64_t n,
                          const std::uint32_t* __restrict__ threshold,
                          std::uint8_t* __restrict__ flags) {
  const std::uint32_t t = *threshold;
  for (std::uint64_t i = blockIdx.x * Threads + threadIdx.x; i < n;
       i += static_cast<std::uint64_t>(gridDim.x) * Threads)
    flags[i] = keys[i] >= t ? 1 : 0;
}

/// cand_keys[j] = keys[cand[j]].
template <unsigned Threads>
__global__ void topk_gather_keys(const std::uint32_t* __restrict__ keys,
                                 const std::uint32_t* __restrict__ cand, std::uint64_t c,
                                 std::uint32_t* __restrict__ out) {
  for (std::uint64_t j = blockIdx.x * Threads + threadIdx.x; j < c;
       j += static_cast<std::uint64_t>(gridDim.x) * Threads)
    out[j] = keys[cand[j]];
}

/// val[j] = e[idx[j]].
template <unsigned Threads>
__global__ void topk_values(const float* __restrict__ x, const float* __restrict__ r,
                            const std::uint32_t* __restrict__ idx, std::uint64_t count,
                            float* __restrict__ val) {
  for (std::uint64_t j = blockIdx.x * Threads + threadIdx.x; j < count;
       j += static_cast<std::uint64_t>(gridDim.x) * Threads) {
    const std::uint32_t i = idx[j];
    val[j] = r != nullptr ? math::add_rn(x[i], r[i]) : x[i];
  }
}

/// r = x + r everywhere (the error-feedback sum), before the sent entries are zeroed.
template <unsigned Threads>
__global__ void topk_residual_sum(const float* __restrict__ x, float* __restrict__ r,
                                  std::uint64_t n) {
  for (std::uint64_t i = blockIdx.x * Threads + threadIdx.x; i < n;
       i += static_cast<std::uint64_t>(gridDim.x) * Threads)
    r[i] = math::add_rn(x[i], r[i]);
}

/// out[idx[j]] = val[j] (Add: +=), or 0 when val is null.
template <bool Add, unsigned Threads>
__global__ void topk_scatter(const std::uint32_t* __restrict__ idx, const float* __restrict__ val,
                             std::uint64_t count, float* __restrict__ out) {
  for (std::uint64_t j = blockIdx.x * Threads + threadIdx.x; j < count;
       j += static_cast<std::uint64_t>(gridDim.x) * Threads) {
    const float v = val != nullptr ? val[j] : 0.0F;
    out[idx[j]] = Add ? math::add_rn(out[idx[j]], v) : v;
  }
}

}  // namespace kernels

/// codec::topk on device memory (see the header comment).
class topk_codec : public device_codec<topk_codec, codec::topk> {
 public:
  static constexpr unsigned threads = 256;

  explicit topk_codec(codec::topk c) : device_codec<topk_codec, codec::topk>(c) {}

  std::size_t encode(const float* in, std::size_t n, std::byte* out, std::size_t out_bytes,
                     rng& /*unused*/, cudaStream_t stream) const {
    return encode_impl(in, nullptr, n, out, out_bytes, stream);
  }
  /// e = in + residual; sends top-k of e; residual = e with the sent entries
  /// zeroed. On numeric_error the residual is left exactly as it was.
  std::size_t encode_with_residual(const float* in, float* residual, std::size_t n, std::byte* out,
                                   std::size_t out_bytes, rng& /*unused*/,
                                   cudaStream_t stream) const {
    return encode_impl(in, residual, n, out, out_bytes, stream);
  }

  void decode_add(const std::byte* frame, std::size_t frame_bytes, float* acc, std::size_t n,
                  cudaStream_t stream) const {
    apply<true>(frame, frame_bytes, acc, n, stream);
  }
  void decode(const std::byte* frame, std::size_t frame_bytes, float* out, std::size_t n,
              cudaStream_t stream) const {
    apply<false>(frame, frame_bytes, out, n, stream);
  }

 private:
  struct scratch {
    device_buffer<std::uint32_t> keys, iota, keys2, idx2, sel;
    device_buffer<std::uint8_t> flags, temp;
    device_buffer<float> val;
    device_buffer<std::uint64_t> count;
  };

  template <class F>
  void cub_call(F f, cudaStream_t stream) const {
    std::size_t need = 0;
    GREENREDUCE_CUDA_CHECK(f(static_cast<void*>(nullptr), need));
    s_.temp.reserve(need > 0 ? need : 1);  // a null pointer would be a size query again
    GREENREDUCE_CUDA_CHECK(f(static_cast<void*>(s_.temp.data()), need));
    (void)stream;
  }

  /// Sorts (keys[0, c), vals[0, c)) by key descending, stably, into
  /// (keys2, idx2).
  void sort_desc(const std::uint32_t* keys, const std::uint32_t* vals, std::size_t c,
                 cudaStream_t stream) const {
    cub_call(
        [&](void* t, std::size_t& b) {
          return cub::DeviceRadixSort::SortPairsDescending(t, b, keys, s_.keys2.data(), vals,
                                                           s_.idx2.data(), c, 0, 32, stream);
        },
        stream);
  }
  /// Sorts the first c of idx2 ascending into sel.
  void sort_indices(std::size_t c, cudaStream_t stream) const {
    cub_call(
        [&](void* t, std::size_t& b) {
          return cub::DeviceRadixSort::SortKeys(t, b, s_.idx2.data(), s_.sel.data(), c, 0, 32,
                                                stream);
        },
        stream);
  }

  std::size_t encode_impl(const float* in, float* r, std::size_t n, std::byte* out,
                          std::size_t out_bytes, cudaStream_t stream) const {
    const std::size_t k = c_.k_of(n);
    codec::require_output(name(), max_encoded_bytes(n), out_bytes);
    if (n >= (std::uint64_t{1} << 32))
      throw config_error(detail::str("device topk supports fewer than 2^32 elements, got ", n));
    std::size_t count = 0;
    if (n > 0) {
      s_.keys.reserve(n);
      s_.iota.reserve(n);
      s_.keys2.reserve(n);
      s_.idx2.reserve(n);
      s_.sel.reserve(n);
      const device_status status;
      kernels::topk_keys<threads><<<grid_for(n, threads), threads, 0, stream>>>(
          in, r, n, s_.keys.data(), s_.iota.data(), status.data());
      check_launch("topk_keys");
      if (const std::uint64_t bad = status.read(stream); bad != device_status::ok)
        fail_non_finite(in, r, bad);
      count = select(n, k, stream);
    }
    std::vector<std::uint32_t> idx32(count);
    std::vector<float> val(count);
    if (count > 0) {
      s_.val.reserve(count);
      kernels::topk_values<threads><<<grid_for(count, threads), threads, 0, stream>>>(
          in, r, s_.sel.data(), count, s_.val.data());
      check_launch("topk_values");
      GREENREDUCE_CUDA_CHECK(
          cudaMemcpyAsync(idx32.data(), s_.sel.data(), 4 * count, cudaMemcpyDeviceToHost, stream));
      GREENREDUCE_CUDA_CHECK(
          cudaMemcpyAsync(val.data(), s_.val.data(), 4 * count, cudaMemcpyDeviceToHost, stream));
    }
    if (r != nullptr && n > 0) {
      kernels::topk_residual_sum<threads><<<grid_for(n, threads), threads, 0, stream>>>(in, r, n);
      check_launch("topk_residual_sum");
      if (count > 0) {
        kernels::topk_scatter<false, threads>
            <<<grid_for(count, threads), threads, 0, stream>>>(s_.sel.data(), nullptr, count, r);
        check_launch("topk_scatter");
      }
    }
    GREENREDUCE_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<std::uint64_t> idx(idx32.begin(), idx32.end());
    std::vector<std::byte> frame(max_encoded_bytes(n));
    const std::size_t len = c_.write_selected(idx.data(), val.data(), count, n, frame);
    GREENREDUCE_CUDA_CHECK(cudaMemcpyAsync(out, frame.data(), len, cudaMemcpyHostToDevice, stream));
    GREENREDUCE_CUDA_CHECK(cudaStreamSynchronize(stream));
    return len;
  }

  /// The selection into s_.sel (ascending indices); returns its size.
  std::size_t select(std::size_t n, std::size_t k, cudaStream_t stream) const {
    if (k == 0) return 0;
    if (c_.mode() == codec::topk::selection::sampled && n >= codec::topk::sampled_min_n &&
        k <= n / 8) {
      const auto plan = greenreduce::kernels::topk::plan_sample(n, k);
      const std::size_t m = plan.m;
      const std::uint64_t rank = plan.rank;
      kernels::topk_sample<threads>
          <<<grid_for(m, threads), threads, 0, stream>>>(s_.keys.data(), plan, s_.keys2.data());
      check_launch("topk_sample");
      // Sort the sample (in keys2) descending into idx2, as keys only.
      cub_call(
          [&](void* t, std::size_t& b) {
            return cub::DeviceRadixSort::SortKeysDescending(t, b, s_.keys2.data(), s_.idx2.data(),
                                                            m, 0, 32, stream);
          },
          stream);
      s_.flags.reserve(n);
      s_.count.reserve(1);
      kernels::topk_flag<threads><<<grid_for(n, threads), threads, 0, stream>>>(
          s_.keys.data(), n, s_.idx2.data() + (rank - 1), s_.flags.data());
      check_launch("topk_flag");
      cub_call(
          [&](void* t, std::size_t& b) {
            return cub::DeviceSelect::Flagged(t, b, s_.iota.data(), s_.flags.data(), s_.sel.data(),
                                              s_.count.data(), n, stream);
          },
          stream);
      std::uint64_t c = 0;
      GREENREDUCE_CUDA_CHECK(
          cudaMemcpyAsync(&c, s_.count.data(), 8, cudaMemcpyDeviceToHost, stream));
      GREENREDUCE_CUDA_CHECK(cudaStreamSynchronize(stream));
      if (c <= 2 * k && c >= (k + 1) / 2) {
        if (c <= k) return static_cast<std::size_t>(c);
        // The exact top-k of the candidates (which is the exact top-k of all).
        kernels::topk_gather_keys<threads><<<grid_for(c, threads), threads, 0, stream>>>(
            s_.keys.data(), s_.sel.data(), c, s_.keys2.data());
        check_launch("topk_gather_keys");
        // keys2 -> sorted into keys (reused as output), candidates -> idx2.
        cub_call(
            [&](void* t, std::size_t& b) {
              return cub::DeviceRadixSort::SortPairsDescending(
                  t, b, s_.keys2.data(), s_.keys.data() /*unused after*/, s_.sel.data(),
                  s_.idx2.data(), c, 0, 32, stream);
            },
            stream);
        sort_indices(k, stream);
        return k;
      }
    }
    sort_desc(s_.keys.data(), s_.iota.data(), n, stream);
    sort_indices(k, stream);
    return k;
  }

  [[noreturn]] void fail_non_finite(const float* in, const float* r, std::uint64_t i) const {
    float x = 0.0F, rv = 0.0F;
    GREENREDUCE_CUDA_CHECK(cudaMemcpy(&x, in + i, 4, cudaMemcpyDeviceToHost));
    if (r == nullptr)
      throw numeric_error(
          detail::str(name(), " encode: element ", i, " is ", x, "; gradients must be finite"));
    GREENREDUCE_CUDA_CHECK(cudaMemcpy(&rv, r + i, 4, cudaMemcpyDeviceToHost));
    throw numeric_error(detail::str(name(), " encode: element ", i, " of input + residual is ",
                                    x + rv, "; gradients must be finite (residual unchanged)"));
  }

  template <bool Add>
  void apply(const std::byte* frame, std::size_t frame_bytes, float* out, std::size_t n,
             cudaStream_t stream) const {
    if (n >= (std::uint64_t{1} << 32))
      throw config_error(detail::str("device topk supports fewer than 2^32 elements, got ", n));
    const std::vector<std::byte> host = copy_to_host(frame, frame_bytes, stream);
    std::vector<std::uint32_t> idx;
    std::vector<float> val;
    c_.decode_entries(host, n, [&](std::size_t i, float v) {
      idx.push_back(static_cast<std::uint32_t>(i));
      val.push_back(v);
    });
    if (!Add && n > 0) GREENREDUCE_CUDA_CHECK(cudaMemsetAsync(out, 0, 4 * n, stream));
    if (idx.empty()) return;
    device_buffer<std::uint32_t> d_idx(idx.size());
    device_buffer<float> d_val(val.size());
    GREENREDUCE_CUDA_CHECK(
        cudaMemcpyAsync(d_idx.data(), idx.data(), 4 * idx.size(), cudaMemcpyHostToDevice, stream));
    GREENREDUCE_CUDA_CHECK(
        cudaMemcpyAsync(d_val.data(), val.data(), 4 * val.size(), cudaMemcpyHostToDevice, stream));
    kernels::topk_scatter<Add, threads><<<grid_for(idx.size(), threads), threads, 0, stream>>>(
        d_idx.data(), d_val.data(), idx.size(), out);
    check_launch("topk_scatter");
    GREENREDUCE_CUDA_CHECK(cudaStreamSynchronize(stream));  // before d_idx, d_val are freed
  }

  mutable scratch s_;
};

}  // namespace greenreduce::cuda
