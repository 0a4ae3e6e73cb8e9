#include "greenreduce/ps/protocol.hpp"

#include <catch2/catch.hpp>
#include <random>
#include <vector>

#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using greenreduce::test::what_has;

namespace {
std::vector<std::byte> request(const ps::request_header& h, std::size_t payload) {
  std::vector<std::byte> m(ps::request_header_bytes + payload, std::byte{7});
  ps::write_request(m, h);
  return m;
}
}  // namespace

TEST_CASE("protocol: requests and replies round-trip", "[ps][protocol]") {
  std::mt19937_64 gen(test::seed(2));
  for (int i = 0; i < 100; ++i) {
    ps::request_header h;
    h.kind = ps::request_kind::push;
    h.key = static_cast<std::uint32_t>(gen());
    h.samples = static_cast<std::uint32_t>(gen());
    h.step = gen();
    h.length = gen();
    h.codec_hash = gen();
    h.compute_ns = gen();
    h.payload_bytes = gen() % 64;
    h.flags = i % 3 == 0   ? 0
              : i % 3 == 1 ? ps::request_flags::with_params
                           : ps::request_flags::with_params | ps::request_flags::encoded_params;
    const auto m = request(h, h.payload_bytes);
    const auto v = ps::parse_request(m);
    CHECK(v.header.flags == h.flags);
    CHECK(v.header.key == h.key);
    CHECK(v.header.samples == h.samples);
    CHECK(v.header.step == h.step);
    CHECK(v.header.length == h.length);
    CHECK(v.header.codec_hash == h.codec_hash);
    CHECK(v.header.compute_ns == h.compute_ns);
    CHECK(v.payload.size() == h.payload_bytes);

    ps::reply_header r;
    r.kind = ps::request_kind::pull;
    r.status = static_cast<ps::reply_status>(gen() % 8);
    r.key = static_cast<std::uint32_t>(gen());
    r.step = gen();
    r.length = gen();
    r.payload_bytes = gen() % 64;
    std::vector<std::byte> rm(ps::reply_header_bytes + r.payload_bytes);
    ps::write_reply(rm, r);
    const auto rv = ps::parse_reply(rm);
    CHECK(rv.header.status == r.status);
    CHECK(rv.header.key == r.key);
    CHECK(rv.header.step == r.step);
    CHECK(rv.header.length == r.length);
    CHECK(rv.payload.size() == r.payload_bytes);
  }
}

TEST_CASE("protocol: every malformed request is a decode_error", "[ps][protocol]") {
  ps::request_header h;
  h.kind = ps::request_kind::push;
  h.payload_bytes = 8;
  const auto good = request(h, 8);
  for (std::size_t n = 0; n < good.size(); ++n)
    CHECK_THROWS_AS(ps::parse_request(std::span(good).first(n)), decode_error);
  auto longer = good;
  longer.push_back(std::byte{0});
  CHECK_THROWS_MATCHES(ps::parse_request(longer), decode_error, what_has("declares 8", "9 follow"));
  auto m = good;
  m[0] = std::byte{'X'};
  CHECK_THROWS_MATCHES(ps::parse_request(m), decode_error, what_has("magic"));
  m = good;
  m[4] = std::byte{2};
  CHECK_THROWS_MATCHES(ps::parse_request(m), decode_error, what_has("version is 2"));
  for (std::uint8_t k : {0, 7, 255}) {
    m = good;
    m[5] = std::byte{k};
    CHECK_THROWS_MATCHES(ps::parse_request(m), decode_error, what_has("kind is"));
  }
  // Flags: with_params (0x1) and with_params | encoded_params (0x3), on a push only.
  for (std::uint16_t f : {1, 3}) {
    m = good;
    store_le<std::uint16_t>(m.data() + 6, f);
    CHECK(ps::parse_request(m).header.flags == f);
  }
  for (std::uint16_t f : {2, 4, 5, 0x8001}) {
    m = good;
    store_le<std::uint16_t>(m.data() + 6, f);
    CHECK_THROWS_MATCHES(ps::parse_request(m), decode_error,
                         what_has("flags are 0x", "on a push, 0x1 or 0x3"));
  }
  {
    ps::request_header pl;
    pl.kind = ps::request_kind::pull;
    pl.flags = ps::request_flags::with_params;
    CHECK_THROWS_MATCHES(ps::parse_request(request(pl, 0)), decode_error,
                         what_has("flags are 0x1"));
  }
  m = good;
  store_le<std::uint64_t>(m.data() + 48, ~0ULL);  // a huge declared payload is never trusted
  CHECK_THROWS_AS(ps::parse_request(m), decode_error);
  h.kind = ps::request_kind::pull;
  CHECK_THROWS_MATCHES(ps::parse_request(request(h, 8)), decode_error,
                       what_has("pull", "expected none"));
  // Random bytes: rejected or parsed, never a crash (run under the sanitizers).
  for (int i = 0; i < 200; ++i) {
    auto junk = test::random_bytes(static_cast<std::size_t>(i % 90), test::seed(100 + i));
    try {
      (void)ps::parse_request(junk);
    } catch (const decode_error&) {
    }
  }
}

TEST_CASE("protocol: malformed replies and error mapping", "[ps][protocol]") {
  std::vector<std::byte> m(ps::reply_header_bytes);
  ps::write_reply(m, {});
  CHECK_NOTHROW(ps::parse_reply(m));
  for (std::size_t n = 0; n < m.size(); ++n)
    CHECK_THROWS_AS(ps::parse_reply(std::span(m).first(n)), decode_error);
  auto b = m;
  b[6] = std::byte{9};
  CHECK_THROWS_MATCHES(ps::parse_reply(b), decode_error, what_has("status is 9"));
  b = m;
  b[12] = std::byte{1};
  CHECK_THROWS_MATCHES(ps::parse_reply(b), decode_error, what_has("reserved"));
  b = m;
  b[5] = std::byte{4};  // bye is never answered
  CHECK_THROWS_AS(ps::parse_reply(b), decode_error);
  CHECK_THROWS_AS(ps::throw_reply_error(ps::reply_status::bad_request, "x"), decode_error);
  CHECK_THROWS_AS(ps::throw_reply_error(ps::reply_status::unknown_key, "x"), config_error);
  CHECK_THROWS_AS(ps::throw_reply_error(ps::reply_status::invalid_change, "x"), config_error);
  CHECK_THROWS_AS(ps::throw_reply_error(ps::reply_status::wrong_length, "x"), mismatch_error);
  CHECK_THROWS_AS(ps::throw_reply_error(ps::reply_status::wrong_codec, "x"), mismatch_error);
  CHECK_THROWS_AS(ps::throw_reply_error(ps::reply_status::out_of_step, "x"), mismatch_error);
  CHECK_THROWS_MATCHES(ps::throw_reply_error(ps::reply_status::peer_failed, "gone"), peer_error,
                       what_has("peer_error: gone"));
}
