// greenreduce/cuda/frame.cuh — the wire frame (core/frame.hpp) in device memory.
//
// Encoders build the 32-byte header on the host with core/frame.hpp's
// write_frame_header and hand it to a one-warp kernel as a by-value argument,
// so the whole encode stays asynchronous on the caller's stream and the header
// bytes are exactly the CPU's. Device encoders write frames without the
// optional payload CRC-32C (flag bit 0 clear), as the CPU codecs do by
// default. Decoders copy only the header to the host and validate it with
// parse_frame_header (the same checks and messages as the CPU's parse_frame);
// a frame that carries a CRC has its payload copied to the host and checked
// there, with the CPU's crc32c.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "greenreduce/core/frame.hpp"
#include "greenreduce/cuda/buffer.cuh"

namespace greenreduce::cuda {

/// A frame header, plus up to 16 leading payload bytes (a codec's bucket
/// word), as kernel-argument words.
struct header_words {
  std::uint32_t w[12];
  std::uint32_t bytes;
};

inline header_words make_header(codec_id codec, std::uint64_t elements, std::uint64_t payload) {
  std::byte b[frame_header_bytes];
  frame_header h;
  h.codec = codec;
  h.elements = elements;
  h.payload_bytes = payload;
  write_frame_header(std::span<std::byte>(b, frame_header_bytes), h);
  header_words w{};
  std::memcpy(w.w, b, frame_header_bytes);
  w.bytes = frame_header_bytes;
  return w;
}

namespace kernels {
// A template, like every kernel of these headers: one definition per program
// however many translation units include it.
template <unsigned Threads = 64>
__global__ void write_header(header_words h, std::byte* out) {
  const unsigned t = threadIdx.x;
  if (t < h.bytes) out[t] = static_cast<std::byte>((h.w[t / 4] >> (8 * (t % 4))) & 0xFFU);
}
}  // namespace kernels

/// Writes the header of a frame whose payload is (or will be) at out + 32,
/// followed by the payload's first word when `first_word` is given.
inline void write_header_async(std::byte* out, codec_id codec, std::uint64_t elements,
                               std::uint64_t payload, cudaStream_t stream,
                               std::optional<std::uint32_t> first_word = std::nullopt) {
  header_words h = make_header(codec, elements, payload);
  if (first_word) {
    h.w[8] = *first_word;  // little-endian hosts and devices: the word's bytes in order
    h.bytes += 4;
  }
  kernels::write_header<><<<1, 64, 0, stream>>>(h, out);
  check_launch("write_header");
}

/// Copies the header of the device frame [frame, frame + frame_bytes) to the
/// host (waiting for `stream`) and validates it; checks the CRC when present.
inline frame_header read_header(const std::byte* frame, std::size_t frame_bytes,
                                const frame_expect& expect, cudaStream_t stream) {
  std::byte h[frame_header_bytes] = {};
  const std::size_t got = frame_bytes < frame_header_bytes ? frame_bytes : frame_header_bytes;
  if (got > 0)
    GREENREDUCE_CUDA_CHECK(cudaMemcpyAsync(h, frame, got, cudaMemcpyDeviceToHost, stream));
  GREENREDUCE_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::uint64_t available = frame_bytes - got;
  const frame_header hdr =
      parse_frame_header(std::span<const std::byte>(h, got), available, expect);
  if (hdr.flags & frame_flag_crc32c) {
    std::vector<std::byte> payload(static_cast<std::size_t>(hdr.payload_bytes));
    if (!payload.empty())
      GREENREDUCE_CUDA_CHECK(cudaMemcpy(payload.data(), frame + frame_header_bytes, payload.size(),
                                        cudaMemcpyDeviceToHost));
    const std::uint32_t crc = crc32c(payload);
    if (crc != hdr.payload_crc32c)
      throw decode_error(detail::str("frame payload CRC-32C is 0x", std::hex, crc,
                                     ", header says 0x", hdr.payload_crc32c));
  }
  return hdr;
}

/// Throws config_error unless `p` is aligned to `a` bytes (payload words are
/// read and written whole).
inline void require_aligned(const void* p, std::size_t a, const char* what) {
  if (reinterpret_cast<std::uintptr_t>(p) % a != 0)
    throw config_error(detail::str(what, " must be ", a, "-byte aligned (cudaMalloc memory is)"));
}

}  // namespace greenreduce::cuda

namespace greenreduce::cuda {

/// After an encode: waits for `stream`, and when a kernel reported element i
/// of `in` as non-finite, throws the CPU codecs' numeric_error naming it.
inline void throw_if_non_finite(std::string_view codec_name, const device_status& status,
                                const float* in, cudaStream_t stream) {
  const std::uint64_t bad = status.read(stream);
  if (bad == device_status::ok) return;
  float v = 0.0F;
  GREENREDUCE_CUDA_CHECK(cudaMemcpy(&v, in + bad, 4, cudaMemcpyDeviceToHost));
  throw numeric_error(
      detail::str(codec_name, " encode: element ", bad, " is ", v, "; gradients must be finite"));
}

/// Copies `bytes` bytes at device address `p` to the host (waiting for `stream`).
inline std::vector<std::byte> copy_to_host(const std::byte* p, std::size_t bytes,
                                           cudaStream_t stream) {
  std::vector<std::byte> h(bytes);
  if (bytes > 0) {
    GREENREDUCE_CUDA_CHECK(cudaMemcpyAsync(h.data(), p, bytes, cudaMemcpyDeviceToHost, stream));
    GREENREDUCE_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  return h;
}

}  // namespace greenreduce::cuda
