#include "greenreduce/codec/int8.hpp"

#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "greenreduce/codec/checks.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;

namespace {

std::vector<codec::int8> configs() {
  std::vector<codec::int8> cs;
  for (std::size_t b : {512U, 1U, 7U, 64U, 100U, 4096U}) {
    cs.push_back(codec::int8::nearest(b));
    cs.push_back(codec::int8::stochastic(b));
  }
  return cs;
}

std::vector<float> scales_of(const codec::int8& c, const byte_buffer& frame, std::size_t n) {
  std::vector<float> s(c.buckets(n));
  for (std::size_t b = 0; b < s.size(); ++b)
    s[b] = load_le<float>(frame.data() + frame_header_bytes + 4 + 4 * b);
  return s;
}

}  // namespace

TEST_CASE("int8 keeps the codec contract in every configuration", "[codec][int8]") {
  const auto s = test::seed(40);
  for (const auto& c : configs()) {
    const std::size_t b = c.bucket();
    std::vector<std::size_t> lengths{0, 1, 7, 511, 512, 513, 4099};
    for (std::size_t n : {b - 1, b, b + 1}) lengths.push_back(n);
    const auto problems = codec::check_codec(c, s + b, lengths);
    INFO(c.name() << " bucket " << b);
    for (const auto& p : problems) UNSCOPED_INFO(p);
    CHECK(problems.empty());
  }
}

TEST_CASE("int8 error is within half a scale (nearest) or one scale (stochastic)",
          "[codec][int8]") {
  const auto s = test::seed(41);
  INFO("seed " << s);
  for (const auto& c : configs())
    for (std::size_t n : {c.bucket() - 1, c.bucket() + 1, std::size_t{100003}}) {
      INFO(c.name() << " bucket " << c.bucket() << " n " << n);
      // Buckets of very different magnitudes, as in real gradients.
      auto x = test::normal_floats(n, s + n);
      for (std::size_t i = 0; i < n; ++i)
        x[i] *= std::exp2(static_cast<float>((i / 997) % 40) - 20);
      byte_buffer out(c.max_encoded_bytes(n));
      rng g(s);
      c.encode(x, out, g);
      std::vector<float> y(n);
      c.decode(out, y);
      const auto sc = scales_of(c, out, n);
      const float bound = c.mode() == codec::rounding::nearest ? 0.5F : 1.0F;
      std::size_t bad = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const float scale = sc[i / c.bucket()];
        const float slack = 0x1p-16F * scale + 0x1p-22F * std::abs(x[i]);
        if (!(std::abs(x[i] - y[i]) <= bound * scale + slack)) ++bad;
      }
      CHECK(bad == 0);
    }
}

TEST_CASE("stochastic int8 is unbiased within 5 sigma", "[codec][int8]") {
  const auto s = test::seed(42);
  INFO("seed " << s);
  const std::size_t n = 300, draws = 4000;
  const auto c = codec::int8::stochastic(128);
  const auto x = test::normal_floats(n, s);
  byte_buffer out(c.max_encoded_bytes(n));
  rng g(s, 3);
  std::vector<double> sum(n, 0.0);
  std::vector<float> y(n);
  std::vector<float> sc;
  for (std::size_t k = 0; k < draws; ++k) {
    c.encode(x, out, g);  // g advances: every draw reads fresh blocks
    c.decode(out, y);
    for (std::size_t i = 0; i < n; ++i) sum[i] += y[i];
    if (k == 0) sc = scales_of(c, out, n);
  }
  double total_bias = 0.0, total_var = 0.0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    // x' = scale * (floor(v) + Bernoulli(p)), p = frac(v): Var = scale^2 p (1 - p).
    const double scale = sc[i / c.bucket()];
    const double v = x[i] / scale, p = v - std::floor(v);
    const double var = scale * scale * p * (1.0 - p);
    const double mean = sum[i] / draws;
    const double slack = 1e-6 * scale;  // 2^-24 rounding grid and fp32 rounding
    if (!(std::abs(mean - x[i]) <= 5.0 * std::sqrt(var / draws) + slack)) {
      ++bad;
      UNSCOPED_INFO("element " << i << ": x " << x[i] << " mean " << mean << " sd "
                               << std::sqrt(var / draws));
    }
    total_bias += mean - x[i];
    total_var += var / draws;
  }
  CHECK(bad == 0);
  // All elements together: a systematic bias would show here first.
  CHECK(std::abs(total_bias) <= 5.0 * std::sqrt(total_var) + 1e-6 * n);
}

TEST_CASE("int8 rng use follows the group rule", "[codec][int8]") {
  const auto s = test::seed(43);
  std::vector<float> x = test::normal_floats(130, s);
  byte_buffer out(codec::int8{}.max_encoded_bytes(x.size()));
  rng g(s);
  codec::int8::nearest().encode(x, out, g);
  CHECK(g.offset == 0);
  codec::int8::stochastic().encode(x, out, g);
  CHECK(g.offset == 48);  // 16 blocks per started group of 64
  byte_buffer again(out.size());
  rng g2(s);
  g2.offset = 48;
  codec::int8::stochastic().encode(x, again, g2);
  CHECK(again != out);  // fresh blocks, other roundings
}

TEST_CASE("int8 configuration and hash", "[codec][int8]") {
  CHECK_THROWS_AS(codec::int8(0), config_error);
  CHECK_THROWS_AS(codec::int8(codec::int8::max_bucket + 1), config_error);
  CHECK(codec::int8{}.bucket() == 512);
  CHECK(codec::int8{}.mode() == codec::rounding::nearest);
  CHECK(codec::int8(256).config_hash() != codec::int8(512).config_hash());
  // Rounding does not change the wire format, so it does not change the hash.
  CHECK(codec::int8::stochastic().config_hash() == codec::int8::nearest().config_hash());
  CHECK(codec::int8::stochastic().name() == "int8_stochastic");
  CHECK(codec::int8{}.max_encoded_bytes(1000) == frame_header_bytes + 4 + 8 + 1000);
}

TEST_CASE("int8 decode rejects bad scales, buckets and lengths before touching acc",
          "[codec][int8]") {
  const auto s = test::seed(44);
  INFO("seed " << s);
  const std::size_t n = 1000;
  const codec::int8 c;
  const auto x = test::normal_floats(n, s);
  byte_buffer frame(c.max_encoded_bytes(n));
  rng g(s);
  c.encode(x, frame, g);
  std::vector<float> acc(n, 1.0F);
  auto untouched = [&] {
    for (float v : acc)
      if (v != 1.0F) return false;
    return true;
  };
  for (float bad : {std::nanf(""), INFINITY, -1.0F, -std::numeric_limits<float>::min()}) {
    auto f = frame;
    store_le<float>(f.data() + frame_header_bytes + 4 + 4, bad);  // bucket 1
    CHECK_THROWS_MATCHES(c.decode_add(f, acc), decode_error,
                         test::what_has("bucket 1 has scale", "expected finite and >= 0"));
    CHECK(untouched());
    std::vector<float> out(n);
    CHECK_THROWS_AS(c.decode(f, out), decode_error);
  }
  {
    auto f = frame;
    store_le<float>(f.data() + frame_header_bytes + 4, -0.0F);  // -0 is a zero scale: fine
    std::vector<float> out(n);
    CHECK_NOTHROW(c.decode(f, out));
  }
  CHECK_THROWS_MATCHES(codec::int8(256).decode_add(frame, acc), decode_error,
                       test::what_has("encoded with buckets of 512 elements, this codec uses 256"));
  CHECK(untouched());
  auto longer = frame;
  longer.insert(longer.end(), 3, std::byte{0});
  store_le<std::uint64_t>(longer.data() + 16, 4 + 8 + 1000 + 3);
  CHECK_THROWS_MATCHES(c.decode_add(longer, acc), decode_error,
                       test::what_has("int8 frame declares 1000 elements but carries 1015 "
                                      "payload bytes (needs 1012)"));
  CHECK(untouched());
}

TEST_CASE("int8 keeps zero, tiny and huge buckets", "[codec][int8]") {
  for (float mag : {0.0F, 1e-40F, 1e-30F, 1e30F, 3e38F, std::numeric_limits<float>::max()}) {
    INFO("magnitude " << mag);
    std::vector<float> x(700);
    for (std::size_t i = 0; i < x.size(); ++i)
      x[i] = mag * ((static_cast<float>(i % 255) - 127.0F) / 127.0F);
    codec::int8 c(512);
    byte_buffer out(c.max_encoded_bytes(x.size()));
    rng g(1);
    c.encode(x, out, g);
    std::vector<float> y(x.size());
    c.decode(out, y);
    const auto sc = scales_of(c, out, x.size());
    for (float v : sc) REQUIRE((std::bit_cast<std::uint32_t>(v) & 0xFFU) == 0);  // 16-bit scales
    for (std::size_t i = 0; i < x.size(); ++i) {
      REQUIRE(std::isfinite(y[i]));
      const float tol = 0.5F * sc[i / 512] * (1.0F + 1e-4F) + 1e-44F;
      REQUIRE(std::abs(x[i] - y[i]) <= tol);
    }
  }
}
