// greenreduce/cuda/device_codec.cuh — what every device codec shares.
//
// A device codec mirrors a CPU codec (`host()`: same id, name, wire format
// and bounds) and offers the same entry points on device pointers and the
// caller's stream. device_codec<Derived, Host> supplies them once from three
// members of Derived:
//
//   encode_async(in, n, out, out_bytes, rng&, status, stream) -> frame bytes
//       writes the frame without waiting; a non-finite input lands in status
//   validate(frame, frame_bytes, n, stream)
//       checks the header on the host and the payload on the device (waits),
//       throws decode_error before anything is written
//   apply<Add>(frame, out, n, stream)
//       out (+)= decode(frame), no checks, no wait
//
// A codec with another shape (top-k's data-dependent payload, the dense
// codecs' range errors) defines its own encode/decode members, which hide
// these.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string_view>

#include "greenreduce/core/frame.hpp"
#include "greenreduce/core/rng.hpp"
#include "greenreduce/cuda/frame.cuh"
#include "greenreduce/cuda/math.hpp"

namespace greenreduce::cuda {

template <class Derived, class Host>
class device_codec {
 public:
  using host_codec = Host;

  explicit device_codec(Host c) : c_(c) {}
  const Host& host() const noexcept { return c_; }
  codec_id id() const noexcept { return c_.id(); }
  std::string_view name() const noexcept { return c_.name(); }
  std::size_t max_encoded_bytes(std::size_t n) const noexcept { return c_.max_encoded_bytes(n); }

  /// encode_async, then waits and throws numeric_error naming the first
  /// non-finite element, like the CPU codec.
  std::size_t encode(const float* in, std::size_t n, std::byte* out, std::size_t out_bytes, rng& g,
                     cudaStream_t stream) const {
    const device_status status;
    const std::size_t len = self().encode_async(in, n, out, out_bytes, g, status, stream);
    throw_if_non_finite(name(), status, in, stream);
    return len;
  }

  /// Validates the frame (waits for the stream) and throws decode_error
  /// before writing anything, then acc += decode(frame).
  void decode_add(const std::byte* frame, std::size_t frame_bytes, float* acc, std::size_t n,
                  cudaStream_t stream) const {
    self().validate(frame, frame_bytes, n, stream);
    self().template apply<true>(frame, acc, n, stream);
  }
  /// Validates, then out = decode(frame).
  void decode(const std::byte* frame, std::size_t frame_bytes, float* out, std::size_t n,
              cudaStream_t stream) const {
    self().validate(frame, frame_bytes, n, stream);
    self().template apply<false>(frame, out, n, stream);
  }
  /// acc += decode(frame) with no validation and no wait: only for frames this
  /// codec's encoder wrote for n elements (the device ring's hops).
  void decode_add_trusted(const std::byte* frame, float* acc, std::size_t n,
                          cudaStream_t stream) const {
    self().template apply<true>(frame, acc, n, stream);
  }
  /// out = decode(frame), unvalidated and asynchronous, like decode_add_trusted.
  void decode_trusted(const std::byte* frame, float* out, std::size_t n,
                      cudaStream_t stream) const {
    self().template apply<false>(frame, out, n, stream);
  }

 protected:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }

  Host c_;
};

namespace kernels {

/// The output side of the vectorised decoders: out[4v, 4v + 4) = o, or += o
/// (one rounding each, as the CPU) when Add; `out` is 16-byte aligned.
template <bool Add>
__device__ inline void store_quad(float* __restrict__ out, std::uint64_t v, float4 o) {
  if constexpr (Add) {
    const float4 a = reinterpret_cast<const float4*>(out)[v];
    o = make_float4(math::add_rn(a.x, o.x), math::add_rn(a.y, o.y), math::add_rn(a.z, o.z),
                    math::add_rn(a.w, o.w));
  }
  reinterpret_cast<float4*>(out)[v] = o;
}

}  // namespace kernels

}  // namespace greenreduce::cuda
