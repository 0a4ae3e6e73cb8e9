#include "greenreduce/codec/fp16.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "greenreduce/codec/checks.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;

TEST_CASE("fp16 keeps the codec contract", "[codec][fp16]") {
  const auto problems = codec::check_codec(codec::fp16{}, test::seed(20));
  for (const auto& p : problems) UNSCOPED_INFO(p);
  CHECK(problems.empty());
}

TEST_CASE("fp16 error is within 2^-11 relative in the normal range", "[codec][fp16]") {
  const auto s = test::seed(21);
  INFO("seed " << s);
  for (std::size_t n : {0U, 1U, 7U, 1000003U}) {
    // Log-uniform magnitudes over the whole normal range, random signs.
    std::mt19937_64 gen(s + n);
    std::uniform_real_distribution<float> e(-14.0F, 15.99F);
    std::vector<float> x(n);
    for (auto& v : x) v = std::exp2(e(gen)) * ((gen() & 1U) ? 1.0F : -1.0F);
    codec::fp16 c;
    byte_buffer out(c.max_encoded_bytes(n));
    rng g(s);
    REQUIRE(c.encode(x, out, g) == frame_header_bytes + 2 * n);
    std::vector<float> y(n);
    c.decode(out, y);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (!(std::abs(x[i] - y[i]) <= 0x1p-11F * std::abs(x[i]))) ++bad;
    CHECK(bad == 0);
  }
  // Subnormal range: absolute error at most half the smallest subnormal.
  std::vector<float> tiny = test::normal_floats(4096, s, 0.0F, 1e-5F);
  codec::fp16 c;
  byte_buffer out(c.max_encoded_bytes(tiny.size()));
  rng g(s);
  c.encode(tiny, out, g);
  std::vector<float> y(tiny.size());
  c.decode(out, y);
  for (std::size_t i = 0; i < tiny.size(); ++i)
    if (std::abs(tiny[i]) < 0x1p-14F) CHECK(std::abs(tiny[i] - y[i]) <= 0x1p-25F);
}

TEST_CASE("fp16 rejects values beyond its range, naming the element", "[codec][fp16]") {
  codec::fp16 c;
  std::vector<float> x(100, 1.0F);
  byte_buffer out(c.max_encoded_bytes(x.size()));
  rng g(1);
  x[42] = 65519.0F;  // rounds to 65504: accepted
  CHECK_NOTHROW(c.encode(x, out, g));
  x[57] = -65520.0F;  // rounds to -Inf
  CHECK_THROWS_MATCHES(c.encode(x, out, g), numeric_error,
                       test::what_has("element 57 ", "beyond fp16's finite range", "65504"));
  x[80] = std::nanf("");  // the first bad element is named, whatever its kind
  CHECK_THROWS_MATCHES(c.encode(x, out, g), numeric_error, test::what_has("element 57 "));
  x[3] = INFINITY;
  CHECK_THROWS_MATCHES(c.encode(x, out, g), numeric_error,
                       test::what_has("element 3 ", "inf", "must be finite"));
}

TEST_CASE("fp16 decode checks the payload length", "[codec][fp16]") {
  codec::fp16 c;
  std::vector<float> x(1000, 0.5F), y(1000);
  byte_buffer out(c.max_encoded_bytes(x.size()));
  rng g(1);
  c.encode(x, out, g);
  auto bad = out;
  store_le<std::uint64_t>(bad.data() + 16, 2001);  // payload_bytes
  bad.push_back(std::byte{0});
  CHECK_THROWS_MATCHES(c.decode(bad, y), decode_error,
                       test::what_has("fp16 frame declares 1000 elements but carries 2001 "
                                      "payload bytes (needs 2000)"));
}
