// libFuzzer target: what the rendezvous store and the TCP mesh parse from a
// stranger before anything else: the store's request header and key, the
// mesh hello and the authentication challenge. Byte 0 picks the parser.
#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "fuzz_input.hpp"
#include "greenreduce/transport/auth.hpp"
#include "greenreduce/transport/store.hpp"
#include "greenreduce/transport/tcp/wire.hpp"

namespace {
template <std::size_t N>
std::array<std::byte, N> first(std::span<const std::byte> in) {
  std::array<std::byte, N> b{};
  for (std::size_t i = 0; i < N && i < in.size(); ++i) b[i] = in[i];
  return b;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace gr = greenreduce;
  namespace grt = greenreduce::transport;
  auto in = std::as_bytes(std::span(data, size));
  const auto which = gr::fuzz::take(in, 1) % 3;
  gr::fuzz::expect_typed([&] {
    if (which == 0) {
      // A store request as the server reads it: header, then key and value.
      const auto h =
          grt::store_protocol::parse_request(first<grt::store_protocol::header_bytes>(in));
      const auto body = in.size() > grt::store_protocol::header_bytes
                            ? in.subspan(grt::store_protocol::header_bytes)
                            : std::span<const std::byte>{};
      if (body.size() < h.key_len) return;
      grt::store_protocol::validate_key(
          std::string_view(reinterpret_cast<const char*>(body.data()), h.key_len));
      if (std::size_t{h.key_len} + h.value_len >
          grt::store_limits::max_key_bytes + grt::store_limits::max_value_bytes)
        __builtin_trap();  // the bound the server allocates by
    } else if (which == 1) {
      const auto size_and_token = gr::fuzz::take(in, 1);
      grt::tcp_wire::parse_hello(first<grt::tcp_wire::hello_bytes>(in),
                                 static_cast<std::uint32_t>(size_and_token % 8 + 1),
                                 size_and_token);
    } else {
      const auto role =
          gr::fuzz::take(in, 1) & 1 ? grt::auth_wire::role::mesh : grt::auth_wire::role::store;
      grt::auth_wire::parse_challenge(first<grt::auth_wire::challenge_bytes>(in), role);
    }
  });
  return 0;
}
