// libFuzzer target: the parameter server's request and reply parsers
// (ps/protocol.hpp), and a push's payload the way the server takes it: a
// codec frame of the key's length decoded into the key's aggregate.
#include <cstdint>
#include <span>
#include <variant>
#include <vector>

#include "fuzz_input.hpp"
#include "greenreduce/codec/registry.hpp"
#include "greenreduce/core/frame.hpp"
#include "greenreduce/ps/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace gr = greenreduce;
  static const std::vector<gr::codec::any_codec> codecs = {
      gr::codec::parse_codec("none"), gr::codec::parse_codec("int8"),
      gr::codec::parse_codec("ternary"), gr::codec::parse_codec("topk:k=4")};
  auto in = std::as_bytes(std::span(data, size));
  const auto mode = gr::fuzz::take(in, 1);
  gr::fuzz::expect_typed([&] {
    if (mode & 1) {
      gr::ps::parse_reply(in);
      return;
    }
    const auto m = gr::ps::parse_request(in);
    if (m.header.kind != gr::ps::request_kind::push) return;
    // The server holds keys of bounded length; a declared length is checked
    // against the key, never used to allocate.
    const std::size_t key_length = 1 + (mode >> 1) % 1024;
    if (m.header.length != key_length) return;
    std::vector<float> agg(key_length, 0.0F);
    std::visit([&](const auto& c) { c.decode_add(m.payload, agg); },
               codecs[(mode >> 5) % codecs.size()]);
  });
  return 0;
}
