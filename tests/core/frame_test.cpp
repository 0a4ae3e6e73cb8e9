#include "greenreduce/core/frame.hpp"

#include <catch2/catch.hpp>

#include "support/matchers.hpp"
#include <vector>

#include "support/random.hpp"

using namespace greenreduce;
using greenreduce::test::what_has;

namespace {
std::vector<std::byte> make_frame(std::size_t payload, bool crc, std::uint64_t seed) {
  auto bytes = test::random_bytes(frame_header_bytes + payload, seed);
  finish_frame(bytes, codec_id::int8, 1000, payload, crc);
  return bytes;
}
}  // namespace

TEST_CASE("a written frame parses back to the same header and payload", "[core][frame]") {
  const auto s = test::seed(2);
  INFO("seed " << s);
  for (bool crc : {false, true}) {
    for (std::size_t payload : {0U, 1U, 31U, 4096U}) {
      auto f = make_frame(payload, crc, s + payload);
      auto v = parse_frame(f, frame_expect{}.of(codec_id::int8).count(1000));
      CHECK(v.header.codec == codec_id::int8);
      CHECK(v.header.elements == 1000);
      CHECK(v.header.payload_bytes == payload);
      CHECK(v.payload.data() == f.data() + frame_header_bytes);
      CHECK(v.payload.size() == payload);
      CHECK(v.frame_bytes() == f.size());
      CHECK(bool(v.header.flags & frame_flag_crc32c) == crc);
    }
  }
}

TEST_CASE("the header layout is the documented one", "[core][frame]") {
  std::vector<std::byte> f(frame_header_bytes + 2);
  finish_frame(f, codec_id::ternary, 0x0102030405060708ULL, 2);
  CHECK(f[0] == std::byte{'G'});
  CHECK(f[1] == std::byte{'R'});
  CHECK(f[2] == std::byte{'F'});
  CHECK(f[3] == std::byte{'1'});
  CHECK(f[4] == std::byte{1});
  CHECK(f[5] == std::byte{4});
  CHECK(load_le<std::uint64_t>(f.data() + 8) == 0x0102030405060708ULL);
  CHECK(load_le<std::uint64_t>(f.data() + 16) == 2);
}

TEST_CASE("every truncation of a valid frame is a decode_error", "[core][frame]") {
  auto f = make_frame(100, true, test::seed(3));
  const std::span<const std::byte> all(f);
  for (std::size_t n = 0; n < f.size(); ++n) {
    INFO("truncated to " << n);
    // A heap copy of exactly n bytes, so ASan sees any read past the end.
    std::vector<std::byte> cut(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n));
    CHECK_THROWS_AS(parse_frame(cut), decode_error);
    CHECK_THROWS_AS(parse_frame(cut, frame_expect{}.prefix()), decode_error);
  }
}

TEST_CASE("corrupt headers are rejected with a message naming the field", "[core][frame]") {
  auto good = make_frame(16, true, test::seed(4));
  auto with = [&](std::size_t off, std::byte b) {
    auto f = good;
    f[off] = b;
    return f;
  };
  CHECK_THROWS_MATCHES(parse_frame(with(0, std::byte{'X'})), decode_error, what_has("magic"));
  CHECK_THROWS_MATCHES(parse_frame(with(4, std::byte{2})), decode_error, what_has("version is 2"));
  CHECK_THROWS_MATCHES(parse_frame(with(6, std::byte{0x83})), decode_error, what_has("unknown bits"));
  CHECK_THROWS_MATCHES(parse_frame(with(29, std::byte{1})), decode_error, what_has("reserved"));
  CHECK_THROWS_MATCHES(parse_frame(with(40, good[40] ^ std::byte{1})), decode_error,
                       what_has("CRC-32C"));
  CHECK_THROWS_MATCHES(parse_frame(good, frame_expect{}.of(codec_id::ternary)), decode_error,
                       what_has("holds codec int8", "expected ternary"));
  CHECK_THROWS_MATCHES(parse_frame(good, frame_expect{}.count(999)), decode_error,
                       what_has("declares 1000 elements, expected 999"));
  CHECK_THROWS_MATCHES(parse_frame(good, frame_expect{}.at_most(15)), decode_error,
                       what_has("bound of 15"));
  auto longer = good;
  longer.push_back(std::byte{0});
  CHECK_THROWS_MATCHES(parse_frame(longer), decode_error, what_has("1 trailing bytes"));
  CHECK(parse_frame(longer, frame_expect{}.prefix()).frame_bytes() == good.size());
  // A checksum without its flag.
  auto noflag = good;
  store_le<std::uint16_t>(noflag.data() + 6, 0);
  CHECK_THROWS_MATCHES(parse_frame(noflag), decode_error, what_has("flag is clear"));
}

TEST_CASE("payload lengths that would overflow are rejected", "[core][frame]") {
  auto f = make_frame(8, false, test::seed(5));
  for (std::uint64_t len : {~0ULL, ~0ULL - 31, 1ULL << 63, 9ULL}) {
    INFO("payload_bytes " << len);
    store_le<std::uint64_t>(f.data() + 16, len);
    CHECK_THROWS_MATCHES(parse_frame(f), decode_error, what_has("only 8 follow"));
  }
}

TEST_CASE("random bytes never parse as a frame by accident and never crash", "[core][frame]") {
  const auto s = test::seed(6);
  INFO("seed " << s);
  for (std::size_t i = 0; i < 2000; ++i) {
    auto junk = test::random_bytes(i % 97, s + i);
    if (junk.size() >= 4 && i % 2 == 0) store_le<std::uint32_t>(junk.data(), frame_magic);
    CHECK_THROWS_AS(parse_frame(junk), decode_error);
  }
}

TEST_CASE("finish_frame refuses an output span that is too small", "[core][frame]") {
  std::vector<std::byte> small(frame_header_bytes + 3);
  CHECK_THROWS_AS(finish_frame(small, codec_id::none, 1, 4), config_error);
  CHECK_THROWS_AS(write_frame_header(std::span<std::byte>(small).first(31), {}), config_error);
  CHECK(codec_name(codec_id{200}) == "user");
  CHECK(codec_name(codec_id{100}) == "unknown");
}
