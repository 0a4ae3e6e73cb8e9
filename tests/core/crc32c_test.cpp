#include "greenreduce/core/crc32c.hpp"

#include <catch2/catch.hpp>
#include <string_view>
#include <vector>

#include "support/random.hpp"

using namespace greenreduce;

namespace {
std::span<const std::byte> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
// Bitwise reference: one bit at a time, straight from the polynomial.
std::uint32_t crc32c_bitwise(std::span<const std::byte> d) {
  std::uint32_t c = ~0U;
  for (auto b : d) {
    c ^= static_cast<std::uint8_t>(b);
    for (int k = 0; k < 8; ++k) c = (c & 1U) ? (c >> 1) ^ 0x82F63B78U : c >> 1;
  }
  return ~c;
}
}  // namespace

TEST_CASE("crc32c matches the published check values", "[core][crc32c]") {
  CHECK(crc32c(bytes_of("123456789")) == 0xE3069283U);
  CHECK(crc32c(bytes_of("")) == 0U);
  // RFC 3720 (iSCSI) B.4: 32 bytes of zeros.
  std::vector<std::byte> zeros(32, std::byte{0});
  CHECK(crc32c(zeros) == 0x8A9136AAU);
  std::vector<std::byte> ones(32, std::byte{0xFF});
  CHECK(crc32c(ones) == 0x62A8AB43U);
}

TEST_CASE("crc32c agrees with the bitwise reference and composes", "[core][crc32c]") {
  const auto s = test::seed(1);
  INFO("seed " << s);
  for (std::size_t n : {1U, 7U, 8U, 9U, 63U, 1000U}) {
    auto d = test::random_bytes(n, s + n);
    CHECK(crc32c(d) == crc32c_bitwise(d));
    const std::size_t cut = n / 3;
    const std::span<const std::byte> all(d);
    CHECK(crc32c(all.subspan(cut), crc32c(all.first(cut))) == crc32c(all));
  }
}
