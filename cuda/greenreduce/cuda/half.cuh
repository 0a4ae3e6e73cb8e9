// greenreduce/cuda/half.cuh — codec::fp16, codec::bf16 and codec::none on device memory.
//
// One element in, one 16-bit (fp16, bf16) or 32-bit (none) little-endian
// value out, converted by cuda/math.hpp's restatement of kernels/half.hpp
// (round to nearest even in integer arithmetic), so the bytes equal the CPU
// encoder's. Encode flags the first element that is NaN/Inf or rounds beyond
// the format's range and, like the CPU codec, throws numeric_error naming it.
// decode_add is acc + x' in fp32 (one rounding), as on the CPU.
//
// Each thread handles four consecutive elements (one float4 load, one 8- or
// 16-byte store) when the input is 16-byte aligned and the frame starts on a
// 16-byte boundary; otherwise one element at a time. decode and decode_add
// likewise: one 8- or 16-byte frame load and float4 loads and stores of the
// output when both allow it.
#pragma once

#include <cmath>

#include "greenreduce/codec/bf16.hpp"
#include "greenreduce/codec/fp16.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/cuda/device_codec.cuh"
#include "greenreduce/cuda/frame.cuh"
#include "greenreduce/cuda/math.hpp"

namespace greenreduce::cuda {

/// The per-element rules of the dense 1:1 codecs.
struct fp16_rule {
  using host_codec = codec::fp16;
  using word = std::uint16_t;
  static constexpr std::uint32_t first_bad = math::fp16_first_bad;
  static constexpr double max_finite = greenreduce::kernels::fp16_format::max_finite;
  GREENREDUCE_HD static word encode(float x) { return math::fp16_from_float(x); }
  GREENREDUCE_HD static float decode(word h) { return math::fp16_to_float(h); }
};
struct bf16_rule {
  using host_codec = codec::bf16;
  using word = std::uint16_t;
  static constexpr std::uint32_t first_bad = math::bf16_first_bad;
  static constexpr double max_finite = greenreduce::kernels::bf16_format::max_finite;
  GREENREDUCE_HD static word encode(float x) { return math::bf16_from_float(x); }
  GREENREDUCE_HD static float decode(word h) { return math::bf16_to_float(h); }
};
struct fp32_rule {
  using host_codec = codec::none;
  using word = std::uint32_t;
  static constexpr std::uint32_t first_bad = math::inf_bits;
  static constexpr double max_finite = 3.4028234663852886e38;
  GREENREDUCE_HD static word encode(float x) { return math::bits_of(x); }
  GREENREDUCE_HD static float decode(word h) { return math::float_of(h); }
};

namespace kernels {

template <class Rule, bool Vector, unsigned Threads>
__global__ void dense_encode(const float* __restrict__ x, std::uint64_t n,
                             typename Rule::word* __restrict__ out, unsigned long long* status) {
  using word = typename Rule::word;
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * Threads;
  std::uint64_t quads = 0;
  if constexpr (Vector) {
    quads = n / 4;
    for (std::uint64_t v = blockIdx.x * Threads + threadIdx.x; v < quads; v += stride) {
      const float4 f = reinterpret_cast<const float4*>(x)[v];
      const float e[4] = {f.x, f.y, f.z, f.w};
      word w[4];
      for (int c = 0; c < 4; ++c) {
        if ((math::bits_of(e[c]) & math::abs_mask) >= Rule::first_bad)
          atomicMin(status, static_cast<unsigned long long>(4 * v + c));
        w[c] = Rule::encode(e[c]);
      }
      if constexpr (sizeof(word) == 2) {
        reinterpret_cast<uint2*>(out)[v] =
            make_uint2(w[0] | (static_cast<std::uint32_t>(w[1]) << 16),
                       w[2] | (static_cast<std::uint32_t>(w[3]) << 16));
      } else {
        reinterpret_cast<uint4*>(out)[v] = make_uint4(w[0], w[1], w[2], w[3]);
      }
    }
  }
  for (std::uint64_t i = 4 * quads + blockIdx.x * Threads + threadIdx.x; i < n; i += stride) {
    if ((math::bits_of(x[i]) & math::abs_mask) >= Rule::first_bad)
      atomicMin(status, static_cast<unsigned long long>(i));
    out[i] = Rule::encode(x[i]);
  }
}

template <class Rule, bool Add, bool Vector, unsigned Threads>
__global__ void dense_decode(const typename Rule::word* __restrict__ in, std::uint64_t n,
                             float* __restrict__ out) {
  using word = typename Rule::word;
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * Threads;
  std::uint64_t quads = 0;
  if constexpr (Vector) {
    // Four elements a thread: one 8-byte (16-bit words) or 16-byte load of the
    // frame, one float4 load and store of the output.
    quads = n / 4;
    for (std::uint64_t v = blockIdx.x * Threads + threadIdx.x; v < quads; v += stride) {
      word w[4];
      if constexpr (sizeof(word) == 2) {
        const uint2 u = reinterpret_cast<const uint2*>(in)[v];
        w[0] = static_cast<word>(u.x & 0xFFFFU);
        w[1] = static_cast<word>(u.x >> 16);
        w[2] = static_cast<word>(u.y & 0xFFFFU);
        w[3] = static_cast<word>(u.y >> 16);
      } else {
        const uint4 u = reinterpret_cast<const uint4*>(in)[v];
        w[0] = u.x;
        w[1] = u.y;
        w[2] = u.z;
        w[3] = u.w;
      }
      store_quad<Add>(out, v,
                      make_float4(Rule::decode(w[0]), Rule::decode(w[1]), Rule::decode(w[2]),
                                  Rule::decode(w[3])));
    }
  }
  for (std::uint64_t i = 4 * quads + blockIdx.x * Threads + threadIdx.x; i < n; i += stride) {
    const float v = Rule::decode(in[i]);
    out[i] = Add ? math::add_rn(out[i], v) : v;
  }
}

}  // namespace kernels

/// A dense 1:1 codec on device memory: fp16_codec, bf16_codec, none_codec.
/// Frames must be aligned to the word size (2 or 4 bytes).
template <class Rule>
class dense_codec : public device_codec<dense_codec<Rule>, typename Rule::host_codec> {
  using base = device_codec<dense_codec<Rule>, typename Rule::host_codec>;

 public:
  static constexpr unsigned threads = 256;
  using host_codec = typename Rule::host_codec;
  using word = typename Rule::word;
  using base::id;
  using base::name;

  explicit dense_codec(host_codec c = host_codec{}) : base(c) {}

  std::size_t encode_async(const float* in, std::size_t n, std::byte* out, std::size_t out_bytes,
                           rng& /*unused*/, const device_status& status,
                           cudaStream_t stream) const {
    const std::size_t payload = sizeof(word) * n;
    codec::require_output(name(), frame_header_bytes + payload, out_bytes);
    require_aligned(out, sizeof(word), "dense device frame");
    write_header_async(out, id(), n, payload, stream);
    if (n > 0) {
      auto* w = reinterpret_cast<word*>(out + frame_header_bytes);
      const bool vector = reinterpret_cast<std::uintptr_t>(in) % 16 == 0 &&
                          reinterpret_cast<std::uintptr_t>(w) % (4 * sizeof(word)) == 0;
      if (vector)
        kernels::dense_encode<Rule, true, threads>
            <<<grid_for((n + 3) / 4, threads), threads, 0, stream>>>(in, n, w, status.data());
      else
        kernels::dense_encode<Rule, false, threads>
            <<<grid_for(n, threads), threads, 0, stream>>>(in, n, w, status.data());
      check_launch("dense_encode");
    }
    return frame_header_bytes + payload;
  }
  std::size_t encode(const float* in, std::size_t n, std::byte* out, std::size_t out_bytes, rng& g,
                     cudaStream_t stream) const {
    const device_status status;
    const std::size_t len = encode_async(in, n, out, out_bytes, g, status, stream);
    const std::uint64_t bad = status.read(stream);
    if (bad == device_status::ok) return len;
    float v = 0.0F;
    GREENREDUCE_CUDA_CHECK(cudaMemcpy(&v, in + bad, 4, cudaMemcpyDeviceToHost));
    if (!std::isfinite(v))
      throw numeric_error(
          detail::str(name(), " encode: element ", bad, " is ", v, "; gradients must be finite"));
    throw numeric_error(detail::str(name(), " encode: element ", bad, " is ", v, ", beyond ",
                                    name(), "'s finite range (largest ", Rule::max_finite,
                                    "); scale the gradient or choose a wider codec"));
  }

 private:
  friend base;

  void validate(const std::byte* frame, std::size_t frame_bytes, std::size_t n,
                cudaStream_t stream) const {
    require_aligned(frame, sizeof(word), "dense device frame");
    const frame_header h =
        read_header(frame, frame_bytes, frame_expect{}.of(id()).count(n), stream);
    if (h.payload_bytes != sizeof(word) * n)
      throw decode_error(detail::str(name(), " frame declares ", n, " elements but carries ",
                                     h.payload_bytes, " payload bytes (needs ", sizeof(word) * n,
                                     ")"));
  }
  template <bool Add>
  void apply(const std::byte* frame, float* out, std::size_t n, cudaStream_t stream) const {
    if (n == 0) return;
    const auto* w = reinterpret_cast<const word*>(frame + frame_header_bytes);
    if (reinterpret_cast<std::uintptr_t>(w) % (4 * sizeof(word)) == 0 &&
        reinterpret_cast<std::uintptr_t>(out) % 16 == 0)
      kernels::dense_decode<Rule, Add, true, threads>
          <<<grid_for((n + 3) / 4, threads), threads, 0, stream>>>(w, n, out);
    else
      kernels::dense_decode<Rule, Add, false, threads>
          <<<grid_for(n, threads), threads, 0, stream>>>(w, n, out);
    check_launch("dense_decode");
  }
};

using fp16_codec = dense_codec<fp16_rule>;
using bf16_codec = dense_codec<bf16_rule>;
using none_codec = dense_codec<fp32_rule>;

}  // namespace greenreduce::cuda
