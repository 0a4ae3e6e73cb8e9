// greenreduce/cuda/ternary.cuh — codec::ternary (TernGrad) on device memory.
//
// Same scale, random bits, codes and 2-bit packing as codec/ternary.hpp
// (kernels/ternary.hpp, restated in cuda/math.hpp): the same seed gives the
// same bytes as the CPU encoder, and frames cross between CPU and GPU.
//
// Encode kernel: one thread block per bucket (grid-stride over buckets).
//   1. absmax of the bucket by cub::BlockReduce over |x| bit patterns (which
//      also flags NaN/Inf). With clipping, 16 threads form the canonical lane
//      sums — lane l adds elements l, l + 16, ... in increasing order, sum x
//      and fma-sum x^2 in fp32 — and thread 0 combines them in double exactly
//      as the CPU does; this order is what makes the scale bit-identical.
//   2. Full 256-element tiles: thread (t, P, k) evaluates ARS-5 blocks
//      32t + 8P + k and 32t + 8P + 4 + k once (software AES rounds,
//      core/ars.hpp), draws the 16-bit numbers of rows 4P..4P+3 of lanes
//      4k..4k+3 from them, and writes byte P of packed words 4k..4k+3. The
//      last partial tile (linear layout) is one thread per output byte.
// Every code byte is written whole, so the output needs no clearing.
//
// Cost note: per-tensor scaling (bucket 0) runs the whole tensor in one
// thread block, and with clipping its lane sums are 16 sequential chains of
// n/16 adds: correct and bit-exact, but slow for large tensors. Prefer the
// default buckets (512) on the GPU.
#pragma once

#include <cub/block/block_reduce.cuh>
#include <cuda/functional>

#include "greenreduce/codec/ternary.hpp"
#include "greenreduce/cuda/device_codec.cuh"
#include "greenreduce/cuda/frame.cuh"
#include "greenreduce/cuda/math.hpp"

namespace greenreduce::cuda {

namespace kernels {

template <unsigned Threads>
__global__ void __launch_bounds__(Threads)
    ternary_encode(const float* __restrict__ x, std::uint64_t n, std::uint64_t bucket, float clip,
                   rng g, std::uint32_t* __restrict__ scales, std::uint8_t* __restrict__ codes,
                   unsigned long long* status) {
  static_assert(Threads >= 16);
  using reduce = cub::BlockReduce<std::uint32_t, Threads>;
  __shared__ typename reduce::TempStorage tmp;
  __shared__ float lane_sum[16], lane_sq[16];
  __shared__ float shared_s;
  __shared__ bool shared_bad;
  const std::uint64_t full = n / math::ternary_tile * math::ternary_tile;
  for (std::uint64_t k = blockIdx.x; k * bucket < n; k += gridDim.x) {
    const std::uint64_t lo = k * bucket, hi = lo + bucket < n ? lo + bucket : n;
    std::uint32_t m = 0;
    for (std::uint64_t i = lo + threadIdx.x; i < hi; i += Threads) {
      const std::uint32_t a = math::bits_of(x[i]) & math::abs_mask;
      m = a > m ? a : m;
    }
    const std::uint32_t am = reduce(tmp).Reduce(m, ::cuda::maximum<>{});
    if (threadIdx.x == 0) shared_bad = am >= math::inf_bits;
    __syncthreads();
    if (shared_bad) {
      for (std::uint64_t i = lo + threadIdx.x; i < hi; i += Threads)
        if ((math::bits_of(x[i]) & math::abs_mask) >= math::inf_bits)
          atomicMin(status, static_cast<unsigned long long>(i));
      __syncthreads();
      continue;
    }
    if (clip > 0.0F && threadIdx.x < 16)
      math::ternary_lane_sums(x, lo, hi, threadIdx.x, lane_sum[threadIdx.x], lane_sq[threadIdx.x]);
    __syncthreads();
    if (threadIdx.x == 0) {
      shared_s = math::ternary_scale(math::float_of(am), lane_sum, lane_sq, hi - lo, clip);
      scales[k] = math::bits_of(shared_s);
    }
    __syncthreads();
    const float s = shared_s, f = math::ternary_threshold_factor(s);
    const std::uint64_t tiles_end = hi < full ? hi : full;
    constexpr unsigned per_tile = math::ternary_items_per_tile;
    const std::uint64_t items =
        (tiles_end > lo ? tiles_end - lo : 0) / math::ternary_tile * per_tile;
    for (std::uint64_t it = threadIdx.x; it < items; it += Threads) {
      const std::uint64_t t = lo / math::ternary_tile + it / per_tile;
      const auto P = static_cast<unsigned>((it % per_tile) / 4), k = static_cast<unsigned>(it % 4);
      const std::uint32_t bytes = math::ternary_tile_item(x, t, P, k, s, f, g);
      for (unsigned m = 0; m < 4; ++m)
        codes[64 * t + 4 * (4 * k + m) + P] = static_cast<std::uint8_t>(bytes >> (8 * m));
    }
    if (hi > tiles_end) {  // the last partial tile: linear layout, one thread per byte
      const std::uint64_t bytes = (hi - tiles_end + 3) / 4;
      for (std::uint64_t j = threadIdx.x; j < bytes; j += Threads)
        codes[tiles_end / 4 + j] = math::ternary_tail_byte(x, tiles_end, j, hi, s, f, g);
    }
    __syncthreads();
  }
}

/// Scales below Inf's bit pattern (finite, >= +0) and codes without 0b11 or
/// padding bits, as the CPU decoder requires; status = 0 for a bad scale, 1
/// for a bad code (which one is not needed for the message).
template <unsigned Threads>
__global__ void ternary_check(const std::uint32_t* scales, std::uint64_t nb,
                              const std::uint8_t* codes, std::uint64_t n,
                              unsigned long long* status) {
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * Threads;
  const std::uint64_t start = blockIdx.x * Threads + threadIdx.x;
  for (std::uint64_t b = start; b < nb; b += stride)
    if (scales[b] >= math::inf_bits) atomicMin(status, 0ULL);
  const std::uint64_t bytes = (n + 3) / 4;
  for (std::uint64_t j = start; j < bytes; j += stride) {
    std::uint32_t v = codes[j];
    std::uint32_t bad = v & (v >> 1) & 0x55U;
    if (j == bytes - 1 && n % 4 != 0) bad |= v >> (2 * (n % 4));
    if (bad != 0) atomicMin(status, 1ULL);
  }
}

template <bool Add, bool Vector, unsigned Threads>
__global__ void ternary_decode(const std::uint32_t* __restrict__ scales,
                               const std::uint8_t* __restrict__ codes, std::uint64_t n,
                               std::uint64_t bucket, float* __restrict__ out) {
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * Threads;
  auto value = [](std::uint32_t c, float s) {
    return math::mul_rn(static_cast<float>(static_cast<int>(c & 1U) - static_cast<int>(c >> 1)), s);
  };
  std::uint64_t quads = 0;
  if constexpr (Vector) {
    // Four consecutive elements a thread (a float4 of the output). Buckets
    // are whole tiles, so the four share a scale; in a full tile they are
    // lanes l..l+3 of one row (bytes 4 apart, same shift), in the last,
    // partial one a single byte.
    quads = n / 4;
    for (std::uint64_t v = blockIdx.x * Threads + threadIdx.x; v < quads; v += stride) {
      const std::uint64_t i = 4 * v;
      const float s = math::float_of(scales[bucket == 0 ? 0 : i / bucket]);
      const std::uint64_t t = i / math::ternary_tile;
      std::uint32_t c[4];
      if ((t + 1) * math::ternary_tile <= n) {
        const std::uint64_t e = i % math::ternary_tile, row = e / math::ternary_lanes,
                            l = e % math::ternary_lanes;
        const std::uint8_t* b = codes + t * (math::ternary_tile / 4) + 4 * l + row / 4;
        const unsigned sh = static_cast<unsigned>(2 * (row % 4));
        for (int k = 0; k < 4; ++k) c[k] = (b[4 * k] >> sh) & 3U;
      } else {
        const std::uint32_t byte = codes[i / 4];
        for (int k = 0; k < 4; ++k) c[k] = (byte >> (2 * k)) & 3U;
      }
      store_quad<Add>(out, v,
                      make_float4(value(c[0], s), value(c[1], s), value(c[2], s), value(c[3], s)));
    }
  }
  for (std::uint64_t i = 4 * quads + blockIdx.x * Threads + threadIdx.x; i < n; i += stride) {
    unsigned sh = 0;
    const std::uint32_t c = (codes[math::ternary_code_byte(i, n, sh)] >> sh) & 3U;
    const float s = math::float_of(scales[bucket == 0 ? 0 : i / bucket]);
    out[i] = Add ? math::add_rn(out[i], value(c, s)) : value(c, s);
  }
}

}  // namespace kernels

/// codec::ternary on device memory (pointers are device pointers, frames
/// 4-byte aligned, calls on the caller's stream).
class ternary_codec : public device_codec<ternary_codec, codec::ternary> {
 public:
  static constexpr unsigned threads = 256;

  explicit ternary_codec(codec::ternary c = codec::ternary{})
      : device_codec<ternary_codec, codec::ternary>(c) {}

  /// See int8_codec::encode_async. Advances `g` by kernels::ternary::blocks_for(n).
  std::size_t encode_async(const float* in, std::size_t n, std::byte* out, std::size_t out_bytes,
                           rng& g, const device_status& status, cudaStream_t stream) const {
    const std::size_t payload = c_.payload_bytes(n);
    codec::require_output(name(), frame_header_bytes + payload, out_bytes);
    require_aligned(out, 4, "ternary device frame");
    write_header_async(out, id(), n, payload, stream, static_cast<std::uint32_t>(c_.bucket()));
    std::byte* p = out + frame_header_bytes;
    if (n > 0) {
      const std::size_t nb = c_.buckets(n);
      kernels::ternary_encode<threads><<<grid_for(nb, 1), threads, 0, stream>>>(
          in, n, c_.bucket() == 0 ? n : c_.bucket(), c_.clip(), g,
          reinterpret_cast<std::uint32_t*>(p + 4), reinterpret_cast<std::uint8_t*>(p + 4 + 4 * nb),
          status.data());
      check_launch("ternary_encode");
    }
    g.advance(greenreduce::kernels::ternary::blocks_for(n));
    return frame_header_bytes + payload;
  }

 private:
  friend class device_codec<ternary_codec, codec::ternary>;

  void validate(const std::byte* frame, std::size_t frame_bytes, std::size_t n,
                cudaStream_t stream) const {
    require_aligned(frame, 4, "ternary device frame");
    const frame_header h =
        read_header(frame, frame_bytes, frame_expect{}.of(id()).count(n), stream);
    if (h.payload_bytes >= 4) {
      std::uint32_t got = 0;
      GREENREDUCE_CUDA_CHECK(
          cudaMemcpy(&got, frame + frame_header_bytes, 4, cudaMemcpyDeviceToHost));
      if (got != c_.bucket())
        throw decode_error(detail::str("ternary frame has bucket size ", got,
                                       ", this codec expects ", c_.bucket()));
    }
    const std::size_t need = c_.payload_bytes(n);
    if (h.payload_bytes != need)
      throw decode_error(detail::str("ternary frame declares ", n, " elements but carries ",
                                     h.payload_bytes, " payload bytes (needs ", need, ")"));
    if (n == 0) return;
    const std::size_t nb = c_.buckets(n);
    const device_status status;
    const std::byte* p = frame + frame_header_bytes;
    kernels::ternary_check<threads><<<grid_for((n + 3) / 4, threads), threads, 0, stream>>>(
        reinterpret_cast<const std::uint32_t*>(p + 4), nb,
        reinterpret_cast<const std::uint8_t*>(p + 4 + 4 * nb), n, status.data());
    check_launch("ternary_check");
    const std::uint64_t bad = status.read(stream);
    if (bad == 0) throw decode_error("ternary frame holds a scale that is not finite and >= 0");
    if (bad == 1)
      throw decode_error("ternary payload holds the invalid code 0b11 or non-zero padding bits");
  }

  template <bool Add>
  void apply(const std::byte* frame, float* out, std::size_t n, cudaStream_t stream) const {
    if (n == 0) return;
    const std::byte* p = frame + frame_header_bytes;
    const std::size_t nb = c_.buckets(n);
    const auto* scales = reinterpret_cast<const std::uint32_t*>(p + 4);
    const auto* codes = reinterpret_cast<const std::uint8_t*>(p + 4 + 4 * nb);
    if (reinterpret_cast<std::uintptr_t>(out) % 16 == 0)
      kernels::ternary_decode<Add, true, threads>
          <<<grid_for((n + 3) / 4, threads), threads, 0, stream>>>(scales, codes, n, c_.bucket(),
                                                                   out);
    else
      kernels::ternary_decode<Add, false, threads>
          <<<grid_for(n, threads), threads, 0, stream>>>(scales, codes, n, c_.bucket(), out);
    check_launch("ternary_decode");
  }
};

}  // namespace greenreduce::cuda
