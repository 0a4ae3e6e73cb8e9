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

#include "fuzz_input.hpp"
#include "greenreduce/codec/registry.hpp"

namespace {
constexpr std::array<std::string_view, 18> specs = {"none",
                                                    "fp16",
                                                    "bf16",
                                                    "int8",
                                                    "int8:bucket=64",
                                                    "int8:stochastic",
                                                    "ternary",
                                                    "ternary:bucket=0",
                                                    "ternary:bucket=256:clip=2.5",
                                                    "topk",
                                                    "topk:k=3",
                                                    "randomk",
                                                    "sign",
                                                    "sign:bucket=32",
                                                    "fp8",
                                                    "fp8:e5m2:bucket=64",
                                                    "qsgd",
                                                    "qsgd:levels=1:bucket=8"};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace gr = greenreduce;
  static const std::vector<gr::codec::any_codec> codecs = [] {
    std::vector<gr::codec::any_codec> v;
    for (auto s : specs) v.push_back(gr::codec::parse_codec(s));
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
