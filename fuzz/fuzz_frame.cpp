// libFuzzer target: the wire frame parser (core/frame.hpp) under every kind of
// expectation a caller may pass. The first byte picks the expectation.
#include <cstdint>
#include <span>

#include "fuzz_input.hpp"
#include "greenreduce/core/frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace gr = greenreduce;
  auto in = std::as_bytes(std::span(data, size));
  const auto mode = gr::fuzz::take(in, 1);
  gr::frame_expect e;
  if (mode & 1) e.of(static_cast<gr::codec_id>(mode >> 4));
  if (mode & 2) e.count(mode >> 2);
  if (mode & 4) e.at_most(in.size() / 2);
  if (mode & 8) e.prefix();
  gr::fuzz::expect_typed([&] {
    const auto v = gr::parse_frame(in, e);
    // The view lies inside the input, as promised.
    if (v.payload.size() != v.header.payload_bytes || v.frame_bytes() > in.size() ||
        (v.payload.size() > 0 && v.payload.data() != in.data() + gr::frame_header_bytes))
      __builtin_trap();
  });
  return 0;
}
