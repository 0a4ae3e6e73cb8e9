// greenreduce/cuda/int8.cuh — codec::int8 on device memory: one fused pass per bucket.
//
// Same math, rng rule and wire payload as codec/int8.hpp (kernels/int8.hpp):
// a frame encoded here decodes on a CPU to the same floats, and the same seed
// gives the same bytes as the CPU encoder (nearest rounding is deterministic;
// stochastic rounding draws from the same Philox words, kernels/philox.hpp's
// group rule, restated in cuda/math.hpp).
//
// Encode kernel: one thread block per bucket (grid-stride over buckets). The
// block reads its bucket once for the absmax (cub::BlockReduce over |x| bit
// patterns, which also detects NaN/Inf), thread 0 derives and stores the
// scale, then the block quantizes and packs the bucket — the second read hits
// L1/L2 for the default 512-element bucket. Stochastic rounding: thread j of a
// group of 64 elements evaluates Philox block 16g + j once and rounds the four
// elements 64g + 16k + j that its four words feed.
//
// Very large buckets (up to the codec's 2^30) are correct but run on one
// thread block each; the default (512) keeps every SM busy. Nearest rounding
// with buckets of up to 2048 elements (a multiple of 4) and a 16-byte aligned
// input takes int8_encode_nearest_vec instead: the bucket is read once, as
// float4s kept in registers, and the codes are stored as packed 4-byte words.
// Stochastic rounding with buckets of a multiple of 64 elements, up to 2048,
// takes int8_encode_stochastic_reg: each thread keeps the four elements its
// Philox block rounds in registers, so the bucket is read once.
#pragma once

#include <cub/block/block_reduce.cuh>
#include <cuda/functional>

#include "greenreduce/codec/int8.hpp"
#include "greenreduce/cuda/device_codec.cuh"
#include "greenreduce/cuda/frame.cuh"
#include "greenreduce/cuda/math.hpp"

namespace greenreduce::cuda {

namespace kernels {

/// The block-wide step of every int8 encoder, in __shared__ memory: the
/// block's maximum of the threads' |x| bit patterns `m`, from which thread 0
/// derives the bucket's parameters and writes its scale; every thread gets
/// them back, with `bad` set when the bucket holds a NaN or Inf.
template <unsigned Threads>
struct int8_bucket {
  using reduce = cub::BlockReduce<std::uint32_t, Threads>;
  typename reduce::TempStorage tmp;
  math::int8_params p;
  bool bad;

  __device__ math::int8_params scale(std::uint32_t m, std::uint32_t* scale_out, bool& bad_out) {
    const std::uint32_t am = reduce(tmp).Reduce(m, ::cuda::maximum<>{});
    if (threadIdx.x == 0) {
      bad = am >= math::inf_bits;
      p = math::int8_params_of(math::float_of(bad ? 0U : am));
      *scale_out = math::bits_of(p.scale);
    }
    __syncthreads();
    bad_out = bad;
    return p;
  }
};

/// m = max(m, |v| as bits): NaN and Inf compare above every finite value.
__device__ inline void max_abs_bits(std::uint32_t& m, float v) {
  const std::uint32_t a = math::bits_of(v) & math::abs_mask;
  m = a > m ? a : m;
}

template <unsigned Threads>
__global__ void __launch_bounds__(Threads)
    int8_encode(const float* __restrict__ x, std::uint64_t n, std::uint64_t bucket, bool stochastic,
                rng g, std::uint32_t* __restrict__ scales, std::int8_t* __restrict__ q,
                unsigned long long* status) {
  __shared__ int8_bucket<Threads> bucket_state;
  for (std::uint64_t b = blockIdx.x; b * bucket < n; b += gridDim.x) {
    const std::uint64_t s = b * bucket, e = s + bucket < n ? s + bucket : n;
    std::uint32_t m = 0;
    for (std::uint64_t i = s + threadIdx.x; i < e; i += Threads) max_abs_bits(m, x[i]);
    bool bad = false;
    const math::int8_params p = bucket_state.scale(m, scales + b, bad);
    if (bad) {
      for (std::uint64_t i = s + threadIdx.x; i < e; i += Threads)
        if ((math::bits_of(x[i]) & math::abs_mask) >= math::inf_bits)
          atomicMin(status, static_cast<unsigned long long>(i));
    } else if (!stochastic) {
      for (std::uint64_t i = s + threadIdx.x; i < e; i += Threads)
        q[i] = static_cast<std::int8_t>(math::int8_nearest(x[i], p));
    } else {
      const std::uint64_t g0 = s / math::philox_group, g1 = (e - 1) / math::philox_group;
      const std::uint64_t items = (g1 - g0 + 1) * math::philox_group_blocks;
      for (std::uint64_t it = threadIdx.x; it < items; it += Threads)
        math::int8_stochastic_item(x, g0 + it / math::philox_group_blocks,
                                   static_cast<std::uint32_t>(it % math::philox_group_blocks), s, e,
                                   p, g, q);
    }
    __syncthreads();  // bucket_state is rewritten by the next bucket
  }
}

/// Nearest rounding, buckets of at most 4 x Threads x K elements (a multiple
/// of 4) and 16-byte aligned input: each thread loads its (up to K) float4s
/// of the bucket once into registers, the block reduces the absmax, and the
/// same registers are quantized and stored as packed 4-byte words — one read
/// of the input instead of two, vector loads and stores.
template <unsigned Threads, unsigned K>
__global__ void __launch_bounds__(Threads)
    int8_encode_nearest_vec(const float* __restrict__ x, std::uint64_t n, std::uint64_t bucket,
                            std::uint32_t* __restrict__ scales, std::int8_t* __restrict__ q,
                            unsigned long long* status) {
  __shared__ int8_bucket<Threads> bucket_state;
  for (std::uint64_t b = blockIdx.x; b * bucket < n; b += gridDim.x) {
    const std::uint64_t s = b * bucket, e = s + bucket < n ? s + bucket : n;
    float v[K][4];
    std::uint32_t m = 0;
    for (unsigned k = 0; k < K; ++k) {
      const std::uint64_t i = s + 4 * (threadIdx.x + k * Threads);
      if (i + 4 <= e) {
        const float4 f = reinterpret_cast<const float4*>(x + i)[0];
        v[k][0] = f.x;
        v[k][1] = f.y;
        v[k][2] = f.z;
        v[k][3] = f.w;
      } else {
        for (unsigned c = 0; c < 4; ++c) v[k][c] = i + c < e ? x[i + c] : 0.0F;
      }
      for (unsigned c = 0; c < 4; ++c) max_abs_bits(m, v[k][c]);
    }
    bool bad = false;
    const math::int8_params p = bucket_state.scale(m, scales + b, bad);
    for (unsigned k = 0; k < K; ++k) {
      const std::uint64_t i = s + 4 * (threadIdx.x + k * Threads);
      if (i >= e) break;
      if (bad) {
        for (unsigned c = 0; c < 4 && i + c < e; ++c)
          if ((math::bits_of(v[k][c]) & math::abs_mask) >= math::inf_bits)
            atomicMin(status, static_cast<unsigned long long>(i + c));
        continue;
      }
      std::uint32_t w = 0;
      for (unsigned c = 0; c < 4; ++c)
        w |= (static_cast<std::uint32_t>(math::int8_nearest(v[k][c], p)) & 0xFFU) << (8 * c);
      if (i + 4 <= e) {
        reinterpret_cast<std::uint32_t*>(q + i)[0] = w;
      } else {
        for (unsigned c = 0; i + c < e; ++c) q[i + c] = static_cast<std::int8_t>(w >> (8 * c));
      }
    }
    __syncthreads();  // bucket_state is rewritten by the next bucket
  }
}

/// Stochastic rounding, buckets of a multiple of 64 elements (whole Philox
/// groups) and at most 4 x Threads x K: work item `it` of a bucket — Philox
/// block 16 grp + j, whose word c rounds element 64 grp + 16 c + j — loads its
/// four elements into registers for the absmax, then draws the block once and
/// rounds them: one read of the input, every thread busy in both phases.
template <unsigned Threads, unsigned K>
__global__ void __launch_bounds__(Threads)
    int8_encode_stochastic_reg(const float* __restrict__ x, std::uint64_t n, std::uint64_t bucket,
                               rng g, std::uint32_t* __restrict__ scales,
                               std::int8_t* __restrict__ q, unsigned long long* status) {
  __shared__ int8_bucket<Threads> bucket_state;
  const std::uint64_t items = bucket / 4;
  for (std::uint64_t b = blockIdx.x; b * bucket < n; b += gridDim.x) {
    const std::uint64_t s = b * bucket, e = s + bucket < n ? s + bucket : n;
    float v[K][4];
    std::uint32_t m = 0;
    for (unsigned k = 0; k < K; ++k) {
      const std::uint64_t it = threadIdx.x + k * Threads;
      const std::uint64_t grp = s / math::philox_group + it / math::philox_group_blocks;
      const auto j = static_cast<std::uint32_t>(it % math::philox_group_blocks);
      for (std::uint32_t c = 0; c < 4; ++c) {
        const std::uint64_t i = math::int8_element(grp, j, c);
        v[k][c] = it < items && i < e ? x[i] : 0.0F;
        max_abs_bits(m, v[k][c]);
      }
    }
    bool bad = false;
    const math::int8_params p = bucket_state.scale(m, scales + b, bad);
    for (unsigned k = 0; k < K; ++k) {
      const std::uint64_t it = threadIdx.x + k * Threads;
      if (it >= items) break;
      const std::uint64_t grp = s / math::philox_group + it / math::philox_group_blocks;
      const auto j = static_cast<std::uint32_t>(it % math::philox_group_blocks);
      if (math::int8_element(grp, j, 0) >= e) continue;  // past a partial last bucket
      if (bad) {
        for (std::uint32_t c = 0; c < 4; ++c) {
          const std::uint64_t i = math::int8_element(grp, j, c);
          if (i < e && (math::bits_of(v[k][c]) & math::abs_mask) >= math::inf_bits)
            atomicMin(status, static_cast<unsigned long long>(i));
        }
        continue;
      }
      const auto words = g.block(math::philox_group_blocks * grp + j);
      for (std::uint32_t c = 0; c < 4; ++c) {
        const std::uint64_t i = math::int8_element(grp, j, c);
        if (i < e) q[i] = static_cast<std::int8_t>(math::int8_stochastic(v[k][c], p, words[c]));
      }
    }
    __syncthreads();  // bucket_state is rewritten by the next bucket
  }
}

/// Scales must be finite and >= 0 (-0 included), as the CPU decoder requires.
template <unsigned Threads>
__global__ void int8_check_scales(const std::uint32_t* scales, std::uint64_t nb,
                                  unsigned long long* status) {
  for (std::uint64_t b = blockIdx.x * Threads + threadIdx.x; b < nb;
       b += static_cast<std::uint64_t>(gridDim.x) * Threads) {
    const std::uint32_t s = scales[b];
    if (!(s < math::inf_bits || s == 0x80000000U)) atomicMin(status, b);
  }
}

template <bool Add, bool Vector, unsigned Threads>
__global__ void int8_decode(const std::uint32_t* __restrict__ scales,
                            const std::int8_t* __restrict__ q, std::uint64_t n,
                            std::uint64_t bucket, float* __restrict__ out) {
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * Threads;
  std::uint64_t quads = 0;
  if constexpr (Vector) {
    // Four elements a thread: one 4-byte load of codes, float4 loads and
    // stores of the output; one scale lookup when the bucket is a multiple of 4.
    quads = n / 4;
    const bool shared_scale = bucket % 4 == 0;
    for (std::uint64_t v = blockIdx.x * Threads + threadIdx.x; v < quads; v += stride) {
      const std::uint32_t c = reinterpret_cast<const std::uint32_t*>(q)[v];
      const std::uint64_t i = 4 * v;
      float sc[4];
      sc[0] = math::float_of(scales[i / bucket]);
      for (int k = 1; k < 4; ++k)
        sc[k] = shared_scale ? sc[0] : math::float_of(scales[(i + k) / bucket]);
      float e[4];
      for (int k = 0; k < 4; ++k)
        e[k] = math::mul_rn(static_cast<float>(static_cast<std::int8_t>((c >> (8 * k)) & 0xFFU)),
                            sc[k]);
      store_quad<Add>(out, v, make_float4(e[0], e[1], e[2], e[3]));
    }
  }
  for (std::uint64_t i = 4 * quads + blockIdx.x * Threads + threadIdx.x; i < n; i += stride) {
    const float v = math::mul_rn(static_cast<float>(q[i]), math::float_of(scales[i / bucket]));
    out[i] = Add ? math::add_rn(out[i], v) : v;
  }
}

}  // namespace kernels

/// codec::int8 on device memory. Pointers are device pointers; `out` and
/// frames must be 4-byte aligned. Calls run on the caller's stream.
class int8_codec : public device_codec<int8_codec, codec::int8> {
 public:
  static constexpr unsigned threads = 256;
  /// The vectorised nearest-rounding encoder: buckets up to 4 x 128 x 4 = 2048
  /// elements (the default 512 is one float4 per thread).
  static constexpr unsigned vec_threads = 128, vec_k = 4;

  explicit int8_codec(codec::int8 c = codec::int8{}) : device_codec<int8_codec, codec::int8>(c) {}

  /// Encodes without waiting: returns the frame size; a non-finite input is
  /// reported in `status` (the first index), the frame is then unspecified.
  /// Advances `g` as the CPU encoder does.
  std::size_t encode_async(const float* in, std::size_t n, std::byte* out, std::size_t out_bytes,
                           rng& g, const device_status& status, cudaStream_t stream) const {
    const std::size_t payload = c_.payload_bytes(n);
    codec::require_output(name(), frame_header_bytes + payload, out_bytes);
    require_aligned(out, 4, "int8 device frame");
    write_header_async(out, id(), n, payload, stream, static_cast<std::uint32_t>(c_.bucket()));
    std::byte* p = out + frame_header_bytes;
    const bool stochastic = c_.mode() == codec::rounding::stochastic;
    if (n > 0) {
      auto* scales = reinterpret_cast<std::uint32_t*>(p + 4);
      auto* q = reinterpret_cast<std::int8_t*>(p + 4 + 4 * c_.buckets(n));
      if (!stochastic && c_.bucket() % 4 == 0 && c_.bucket() <= 4 * vec_threads * vec_k &&
          reinterpret_cast<std::uintptr_t>(in) % 16 == 0 &&
          reinterpret_cast<std::uintptr_t>(q) % 4 == 0) {
        kernels::int8_encode_nearest_vec<vec_threads, vec_k>
            <<<grid_for(c_.buckets(n), 1), vec_threads, 0, stream>>>(in, n, c_.bucket(), scales, q,
                                                                     status.data());
        check_launch("int8_encode_nearest_vec");
      } else if (stochastic && c_.bucket() % math::philox_group == 0 &&
                 c_.bucket() <= 4 * vec_threads * vec_k) {
        kernels::int8_encode_stochastic_reg<vec_threads, vec_k>
            <<<grid_for(c_.buckets(n), 1), vec_threads, 0, stream>>>(in, n, c_.bucket(), g, scales,
                                                                     q, status.data());
        check_launch("int8_encode_stochastic_reg");
      } else {
        kernels::int8_encode<threads><<<grid_for(c_.buckets(n), 1), threads, 0, stream>>>(
            in, n, c_.bucket(), stochastic, g, scales, q, status.data());
        check_launch("int8_encode");
      }
    }
    if (stochastic) g.advance(greenreduce::kernels::philox_blocks_for(n));
    return frame_header_bytes + payload;
  }

 private:
  friend class device_codec<int8_codec, codec::int8>;

  void validate(const std::byte* frame, std::size_t frame_bytes, std::size_t n,
                cudaStream_t stream) const {
    require_aligned(frame, 4, "int8 device frame");
    const frame_header h =
        read_header(frame, frame_bytes, frame_expect{}.of(id()).count(n), stream);
    const std::size_t need = c_.payload_bytes(n);
    if (h.payload_bytes >= 4) {
      std::uint32_t got = 0;
      GREENREDUCE_CUDA_CHECK(
          cudaMemcpy(&got, frame + frame_header_bytes, 4, cudaMemcpyDeviceToHost));
      if (got != c_.bucket())
        throw decode_error(detail::str("int8 frame was encoded with buckets of ", got,
                                       " elements, this codec uses ", c_.bucket()));
    }
    if (h.payload_bytes != need)
      throw decode_error(detail::str("int8 frame declares ", n, " elements but carries ",
                                     h.payload_bytes, " payload bytes (needs ", need, ")"));
    const std::size_t nb = c_.buckets(n);
    if (nb == 0) return;
    const device_status status;
    const auto* scales = reinterpret_cast<const std::uint32_t*>(frame + frame_header_bytes + 4);
    kernels::int8_check_scales<threads>
        <<<grid_for(nb, threads), threads, 0, stream>>>(scales, nb, status.data());
    check_launch("int8_check_scales");
    const std::uint64_t bad = status.read(stream);
    if (bad != device_status::ok) {
      float s = 0.0F;
      GREENREDUCE_CUDA_CHECK(cudaMemcpy(&s, scales + bad, 4, cudaMemcpyDeviceToHost));
      throw decode_error(
          detail::str("int8 frame: bucket ", bad, " has scale ", s, ", expected finite and >= 0"));
    }
  }

  template <bool Add>
  void apply(const std::byte* frame, float* out, std::size_t n, cudaStream_t stream) const {
    if (n == 0) return;
    const std::byte* p = frame + frame_header_bytes;
    const auto* scales = reinterpret_cast<const std::uint32_t*>(p + 4);
    const auto* q = reinterpret_cast<const std::int8_t*>(p + 4 + 4 * c_.buckets(n));
    // Codes start 4-byte aligned (the frame is); the output must be 16-byte aligned.
    if (reinterpret_cast<std::uintptr_t>(q) % 4 == 0 &&
        reinterpret_cast<std::uintptr_t>(out) % 16 == 0)
      kernels::int8_decode<Add, true, threads>
          <<<grid_for((n + 3) / 4, threads), threads, 0, stream>>>(scales, q, n, c_.bucket(), out);
    else
      kernels::int8_decode<Add, false, threads>
          <<<grid_for(n, threads), threads, 0, stream>>>(scales, q, n, c_.bucket(), out);
    check_launch("int8_decode");
  }
};

}  // namespace greenreduce::cuda
