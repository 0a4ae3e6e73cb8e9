// libFuzzer target: decode and decode_add of every built-in codec (through
// codec/registry.hpp's any_codec) on arbitrary frames. Byte 0 picks the codec
// spec, bytes 1-2 the element count; the rest is the frame.
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

#include "codec_specs.hpp"
#include "fuzz_input.hpp"
#include "greenreduce/codec/registry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace gr = greenreduce;
  static const std::vector<gr::codec::any_codec> codecs = [] {
    std::vector<gr::codec::any_codec> v;
    for (auto s : gr::fuzz::codec_specs) v.push_back(gr::codec::parse_codec(s));
    return v;
  }();
  auto in = std::as_bytes(std::span(data, size));
  const auto& codec = codecs[gr::fuzz::take(in, 1) % codecs.size()];
  const std::size_t n = gr::fuzz::take(in, 2) % 4097;
  std::vector<float> out(n, 0.0F), acc(n, 1.0F);
  std::visit(
      [&](const auto& c) {
        gr::fuzz::expect_typed([&] { c.decode(in, out); });
        gr::fuzz::expect_typed([&] { c.decode_add(in, acc); });
      },
      codec);
  return 0;
}
