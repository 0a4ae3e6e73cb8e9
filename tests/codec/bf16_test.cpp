#include "greenreduce/codec/bf16.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "greenreduce/codec/checks.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;

TEST_CASE("bf16 keeps the codec contract", "[codec][bf16]") {
  const auto problems = codec::check_codec(codec::bf16{}, test::seed(30));
  for (const auto& p : problems) UNSCOPED_INFO(p);
  CHECK(problems.empty());
}

TEST_CASE("bf16 error is within 2^-8 relative in the normal range", "[codec][bf16]") {
  const auto s = test::seed(31);
  INFO("seed " << s);
  for (std::size_t n : {0U, 1U, 7U, 1000003U}) {
    std::mt19937_64 gen(s + n);
    std::uniform_real_distribution<float> e(-126.0F, 127.0F);
    std::vector<float> x(n);
    for (auto& v : x) v = std::exp2(e(gen)) * ((gen() & 1U) ? 1.0F : -1.0F);
    codec::bf16 c;
    byte_buffer out(c.max_encoded_bytes(n));
    rng g(s);
    REQUIRE(c.encode(x, out, g) == frame_header_bytes + 2 * n);
    std::vector<float> y(n);
    c.decode(out, y);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (!(std::abs(x[i] - y[i]) <= 0x1p-8F * std::abs(x[i]))) ++bad;
    CHECK(bad == 0);
  }
}

TEST_CASE("bf16 rejects values that round beyond its range", "[codec][bf16]") {
  codec::bf16 c;
  std::vector<float> x(33, 1.0F);
  byte_buffer out(c.max_encoded_bytes(x.size()));
  rng g(1);
  x[5] = 0x1.fe7p127F;  // rounds down to bf16's largest value
  CHECK_NOTHROW(c.encode(x, out, g));
  x[31] = std::numeric_limits<float>::max();  // rounds up to Inf
  CHECK_THROWS_MATCHES(c.encode(x, out, g), numeric_error,
                       test::what_has("element 31 ", "beyond bf16's finite range"));
}
