// The rendezvous store: its protocol rejects every malformed header before it
// reads or allocates, and a misbehaving client never disturbs a good one.
#include "greenreduce/transport/store.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "support/matchers.hpp"

namespace gr = greenreduce;
namespace grt = greenreduce::transport;
namespace sp = greenreduce::transport::store_protocol;
namespace net = boost::asio;
using greenreduce::test::what_has;
using namespace std::chrono_literals;

namespace {
sp::request_header parse(std::array<std::byte, sp::header_bytes> b) {
  return sp::parse_request(b);
}
}  // namespace

TEST_CASE("store: request headers are validated", "[transport][store]") {
  const auto h = parse(sp::encode_request({sp::op::set, 5, 100}));
  CHECK(h.kind == sp::op::set);
  CHECK(h.key_len == 5);
  CHECK(h.value_len == 100);

  auto b = sp::encode_request({sp::op::get, 5, 0});
  b[0] = std::byte{'X'};
  CHECK_THROWS_MATCHES(parse(b), gr::decode_error, what_has("bad magic"));
  b = sp::encode_request({sp::op::get, 5, 0});
  b[4] = std::byte{9};
  CHECK_THROWS_MATCHES(parse(b), gr::decode_error, what_has("unknown op 9"));
  b = sp::encode_request({sp::op::get, 5, 0});
  b[5] = std::byte{1};
  CHECK_THROWS_MATCHES(parse(b), gr::decode_error, what_has("reserved"));
  CHECK_THROWS_MATCHES(parse(sp::encode_request({sp::op::get, 0, 0})), gr::decode_error,
                       what_has("key length 0"));
  CHECK_THROWS_MATCHES(parse(sp::encode_request({sp::op::get, 257, 0})), gr::decode_error,
                       what_has("key length 257", "1..256"));
  CHECK_THROWS_MATCHES(parse(sp::encode_request({sp::op::set, 3, 65537})), gr::decode_error,
                       what_has("value length 65537", "65536"));
  CHECK_THROWS_MATCHES(parse(sp::encode_request({sp::op::get, 3, 1})), gr::decode_error,
                       what_has("get carries 1"));
  CHECK_NOTHROW(sp::validate_key("greenreduce/addr/0"));
  CHECK_THROWS_MATCHES(sp::validate_key("a b"), gr::decode_error, what_has("0x20"));
  CHECK_THROWS_AS(sp::validate_key(std::string("a\0b", 3)), gr::decode_error);
  CHECK_THROWS_AS(sp::validate_key(""), gr::decode_error);
}

TEST_CASE("store: set, get, wait with timeout", "[transport][store]") {
  grt::store_server server("127.0.0.1", 0);
  grt::store_client c("127.0.0.1", server.port(), 5s, 5s);
  CHECK_FALSE(c.try_get("k").has_value());
  c.set("k", "v1");
  CHECK(c.try_get("k") == "v1");
  c.set("k", "");
  CHECK(c.try_get("k") == "");
  c.set("big", std::string(grt::store_limits::max_value_bytes, 'z'));
  CHECK(c.get("big", 1s).size() == grt::store_limits::max_value_bytes);
  CHECK_THROWS_MATCHES(c.get("never", 100ms), gr::timeout_error, what_has("\"never\"", "100 ms"));
  CHECK_THROWS_AS(c.set("k", std::string(grt::store_limits::max_value_bytes + 1, 'z')),
                  gr::config_error);
  CHECK_THROWS_AS(c.set("bad key", "v"), gr::config_error);

  std::thread later([&] {
    std::this_thread::sleep_for(50ms);
    grt::store_client c2("127.0.0.1", server.port(), 5s, 5s);
    c2.set("late", "here");
  });
  CHECK(c.get("late", 5s) == "here");
  later.join();
}

TEST_CASE("store: garbage, oversize and idle clients are dropped, others unaffected",
          "[transport][store]") {
  grt::store_server_options so;
  so.idle_timeout = 300ms;
  so.handshake_timeout = 300ms;  // a fresh connection is idle before its first request
  so.log = [](const std::string&) {};
  grt::store_server server("127.0.0.1", 0, so);
  const net::ip::tcp::endpoint ep(net::ip::make_address_v4("127.0.0.1"), server.port());
  grt::store_client good("127.0.0.1", server.port(), 5s, 5s);
  good.set("a", "1");

  net::io_context io;
  auto reply_status = [&](net::ip::tcp::socket& s) {
    std::array<std::byte, sp::header_bytes> rh{};
    boost::system::error_code ec;
    net::read(s, net::buffer(rh), ec);
    REQUIRE_FALSE(ec);
    return static_cast<sp::status>(rh[4]);
  };
  net::ip::tcp::socket garbage(io), oversize(io), idle(io);
  garbage.connect(ep);
  net::write(garbage, net::buffer(std::string(12, '\x42')));
  CHECK(reply_status(garbage) == sp::status::rejected);

  oversize.connect(ep);  // announces 4 GiB: rejected from the header alone
  auto h = sp::encode_request({sp::op::set, 1, 0});
  gr::store_le<std::uint32_t>(h.data() + 8, 0xFFFFFFFFu);
  net::write(oversize, net::buffer(h));
  CHECK(reply_status(oversize) == sp::status::rejected);

  CHECK(good.try_get("a") == "1");

  idle.connect(ep);
  std::array<char, 1> one{};
  boost::system::error_code ec;
  const auto t0 = std::chrono::steady_clock::now();
  net::read(idle, net::buffer(one), ec);  // the server closes it
  CHECK(ec == net::error::eof);
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);

  grt::store_client fresh("127.0.0.1", server.port(), 5s, 5s);
  CHECK(fresh.try_get("a") == "1");
  CHECK(server.dropped() >= 3);
}
