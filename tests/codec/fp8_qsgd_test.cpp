#include <algorithm>
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "greenreduce/codec/checks.hpp"
#include "greenreduce/codec/fp8.hpp"
#include "greenreduce/codec/qsgd.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using codec::fp8_format;

namespace {

std::vector<std::byte> encoded(const auto& c, const std::vector<float>& x, rng g = rng(1)) {
  std::vector<std::byte> out(c.max_encoded_bytes(x.size()));
  out.resize(c.encode(x, out, g));
  return out;
}

// The value nearest to y among all finite codes of a format; ties to the
// code with an even mantissa (its lowest bit clear).
std::uint8_t nearest_code(float y, fp8_format f) {
  const auto t = codec::fp8_detail::of(f);
  int best = -1;
  double best_d = INFINITY;
  for (int q = 0; q < 256; ++q) {
    const auto c = static_cast<std::uint8_t>(q);
    if (codec::fp8_detail::invalid(c, t)) continue;
    const float v = codec::fp8_detail::value(c, t);
    if (std::signbit(v) != std::signbit(y)) continue;  // keep the sign, also of zero
    const double d = std::fabs(static_cast<double>(v) - static_cast<double>(y));
    if (d < best_d || (d == best_d && (q & 1) == 0 && (best & 1) == 1)) {
      best = q;
      best_d = d;
    }
  }
  return static_cast<std::uint8_t>(best);
}

}  // namespace

TEST_CASE("fp8 and qsgd keep the codec contract", "[codec][fp8][qsgd]") {
  const auto s = test::seed(90);
  for (const auto& problems :
       {codec::check_codec(codec::fp8(), s), codec::check_codec(codec::fp8(fp8_format::e5m2), s),
        codec::check_codec(codec::fp8(fp8_format::e4m3, 3), s),
        codec::check_codec(codec::fp8(fp8_format::e5m2, 1), s),
        codec::check_codec(codec::qsgd(), s), codec::check_codec(codec::qsgd(1, 5), s),
        codec::check_codec(codec::qsgd(127, 64), s), codec::check_codec(codec::qsgd(3, 1), s)}) {
    for (const auto& p : problems) UNSCOPED_INFO(p);
    CHECK(problems.empty());
  }
}

TEST_CASE("fp8 rounds to the nearest representable value, ties to even", "[codec][fp8]") {
  const auto s = test::seed(91);
  INFO("seed " << s);
  std::mt19937_64 gen(s);
  for (auto f : {fp8_format::e4m3, fp8_format::e5m2}) {
    const auto t = codec::fp8_detail::of(f);
    std::vector<float> ys;
    // Every representable value, every midpoint between neighbours (the ties),
    // and random values across the whole range including subnormals.
    std::vector<float> grid;
    for (int q = 0; q < 128; ++q)
      if (!codec::fp8_detail::invalid(static_cast<std::uint8_t>(q), t))
        grid.push_back(codec::fp8_detail::value(static_cast<std::uint8_t>(q), t));
    for (std::size_t i = 0; i < grid.size(); ++i) {
      ys.push_back(grid[i]);
      if (i + 1 < grid.size()) ys.push_back((grid[i] + grid[i + 1]) / 2);  // exact in fp32
    }
    std::uniform_real_distribution<float> exp(-20.0F, std::log2(t.max));
    std::uniform_real_distribution<float> mant(1.0F, 2.0F);
    for (int i = 0; i < 20000; ++i) ys.push_back(std::min(t.max, mant(gen) * std::exp2(exp(gen))));
    for (float y : ys)
      for (float v : {y, -y}) {
        const auto got = f == fp8_format::e4m3
                             ? codec::fp8_detail::encode_one<3, 7, -6>(v, t.max)
                             : codec::fp8_detail::encode_one<2, 15, -14>(v, t.max);
        const auto want = nearest_code(v, f);
        INFO(t.name << " y=" << v << " got 0x" << std::hex << unsigned{got} << " want 0x"
                    << unsigned{want});
        REQUIRE(got == want);
      }
    // The SIMD kernel equals the scalar rule lane by lane (whole batches and the tail).
    std::vector<float> all;
    for (float y : ys) {
      all.push_back(y);
      all.push_back(-y);
      all.push_back(y * 1.07F);  // past the max: saturates
    }
    std::vector<std::uint8_t> simd(all.size());
    if (f == fp8_format::e4m3)
      codec::fp8_detail::encode_codes<3, 7, -6>(all.data(), simd.data(), all.size(), 1.0F, 1.0F,
                                                t.max);
    else
      codec::fp8_detail::encode_codes<2, 15, -14>(all.data(), simd.data(), all.size(), 1.0F, 1.0F,
                                                  t.max);
    for (std::size_t i = 0; i < all.size(); ++i) {
      INFO(t.name << " simd lane " << i << " y=" << all[i]);
      REQUIRE(simd[i] == nearest_code(std::clamp(all[i], -t.max, t.max), f));
    }
    // Decoding by bit placement equals the table of values for every valid code.
    std::vector<std::uint8_t> codes;
    for (int q = 0; q < 256; ++q)
      if (!codec::fp8_detail::invalid(static_cast<std::uint8_t>(q), t))
        codes.push_back(static_cast<std::uint8_t>(q));
    std::vector<float> dec(codes.size());
    if (f == fp8_format::e4m3)
      codec::fp8_detail::decode_codes<3, 7, false>(codes.data(), dec.data(), codes.size(), 1.0F);
    else
      codec::fp8_detail::decode_codes<2, 15, false>(codes.data(), dec.data(), codes.size(), 1.0F);
    for (std::size_t i = 0; i < codes.size(); ++i)
      REQUIRE(std::bit_cast<std::uint32_t>(dec[i]) ==
              std::bit_cast<std::uint32_t>(codec::fp8_detail::value(codes[i], t)));
  }
  // The formats' extremes, from the OCP FP8 specification.
  const auto e4 = codec::fp8_detail::of(fp8_format::e4m3);
  const auto e5 = codec::fp8_detail::of(fp8_format::e5m2);
  CHECK(codec::fp8_detail::value(0x7E, e4) == 448.0F);
  CHECK(codec::fp8_detail::value(0x01, e4) == std::ldexp(1.0F, -9));
  CHECK(codec::fp8_detail::value(0x7B, e5) == 57344.0F);
  CHECK(codec::fp8_detail::value(0x01, e5) == std::ldexp(1.0F, -16));
}

TEST_CASE("fp8 error stays within half a step of its mantissa per bucket", "[codec][fp8]") {
  const auto s = test::seed(92);
  INFO("seed " << s);
  for (auto f : {fp8_format::e4m3, fp8_format::e5m2})
    for (std::size_t b : {std::size_t{1}, std::size_t{64}, std::size_t{512}}) {
      const codec::fp8 c(f, b);
      auto x = test::normal_floats(4099, s + b);
      // Buckets of very different magnitudes, tiny and huge included.
      for (std::size_t i = 0; i < x.size(); ++i)
        x[i] *= std::ldexp(1.0F, static_cast<int>((i / b) % 7) * 20 - 70);
      x[5] = 3.0e38F;
      x[6] = -1.0e-40F;
      const auto frame = encoded(c, x);
      std::vector<float> y(x.size());
      c.decode(frame, y);
      const double m = std::ldexp(1.0, -(c.mantissa_bits() + 1));
      for (std::size_t lo = 0; lo < x.size(); lo += b) {
        const std::size_t hi = std::min(x.size(), lo + b);
        double amax = 0;
        for (std::size_t i = lo; i < hi; ++i) amax = std::max(amax, std::fabs(double{x[i]}));
        const double scale = amax / c.max_value();
        for (std::size_t i = lo; i < hi; ++i) {
          REQUIRE(std::isfinite(y[i]));
          const double bound =
              std::fabs(double{x[i]}) * m * (1 + 1e-5) +
              scale * (1 + 1e-4) * std::ldexp(1.0, c.min_exponent() - c.mantissa_bits() - 1);
          INFO(c.name() << " bucket " << b << " element " << i << " x=" << x[i] << " y=" << y[i]);
          REQUIRE(std::fabs(double{x[i]} - y[i]) <= bound);
        }
      }
    }
}

TEST_CASE("fp8 rejects NaN/Inf codes and non-finite input by index", "[codec][fp8]") {
  for (auto f : {fp8_format::e4m3, fp8_format::e5m2}) {
    const codec::fp8 c(f, 8);
    std::vector<float> x(20, 0.5F);
    auto frame = encoded(c, x);
    std::vector<float> acc(20, 1.0F);
    frame[frame_header_bytes + 4 + 4 * 3 + 13] =
        static_cast<std::byte>(f == fp8_format::e4m3 ? 0xFF : 0x7C);
    CHECK_THROWS_MATCHES(c.decode_add(frame, acc), decode_error, test::what_has("element 13"));
    CHECK(acc == std::vector<float>(20, 1.0F));
    x[11] = std::numeric_limits<float>::quiet_NaN();
    std::vector<std::byte> out(c.max_encoded_bytes(20));
    rng g;
    CHECK_THROWS_MATCHES(c.encode(x, out, g), numeric_error, test::what_has("element 11"));
  }
  CHECK_THROWS_MATCHES(codec::fp8(fp8_format::e4m3, 0), config_error, test::what_has("bucket"));
  // Frames of one format are not decoded as the other.
  const auto frame = encoded(codec::fp8(fp8_format::e4m3), std::vector<float>(10, 1.0F));
  std::vector<float> y(10);
  CHECK_THROWS_AS(codec::fp8(fp8_format::e5m2).decode(frame, y), decode_error);
}

TEST_CASE("qsgd sends levels of the bucket norm with the input's sign", "[codec][qsgd]") {
  const auto s = test::seed(93);
  INFO("seed " << s);
  for (unsigned levels : {1U, 7U, 127U}) {
    const codec::qsgd c(levels, 100);
    const auto x = test::normal_floats(1000, s + levels);
    const auto frame = encoded(c, x, rng(s));
    CHECK(frame.size() == c.max_encoded_bytes(x.size()));
    CHECK(c.code_bytes(1000) == (1000 * c.code_bits() + 7) / 8);
    std::vector<float> y(x.size());
    c.decode(frame, y);
    for (std::size_t lo = 0; lo < x.size(); lo += 100) {
      double sq = 0;
      for (std::size_t i = lo; i < lo + 100; ++i) sq += double{x[i]} * x[i];
      const float unit = static_cast<float>(std::sqrt(sq)) / static_cast<float>(levels);
      for (std::size_t i = lo; i < lo + 100; ++i) {
        const float l = y[i] / unit;
        INFO("levels " << levels << " element " << i << " x=" << x[i] << " y=" << y[i]);
        REQUIRE(std::fabs(l - std::round(l)) < 1e-3F);
        REQUIRE(std::fabs(l) <= static_cast<float>(levels) + 1e-3F);
        REQUIRE((y[i] == 0.0F || std::signbit(y[i]) == std::signbit(x[i])));
        // Stochastic rounding moves a value to one of its two neighbouring levels.
        REQUIRE(std::fabs(y[i] - x[i]) <= unit * 1.001F);
      }
    }
  }
}

TEST_CASE("qsgd is unbiased: the mean of many encodings converges to the input",
          "[codec][qsgd][stats]") {
  const auto s = test::seed(94);
  INFO("seed " << s);
  const codec::qsgd c(3, 64);
  const std::size_t n = 256, T = 4000;
  const auto x = test::normal_floats(n, s);
  std::vector<double> mean(n, 0.0);
  std::vector<float> y(n);
  rng g(s, 3);
  std::vector<std::byte> out(c.max_encoded_bytes(n));
  for (std::size_t t = 0; t < T; ++t) {
    const auto len = c.encode(x, out, g);  // advances g: fresh randomness each time
    c.decode(std::span<const std::byte>(out.data(), len), y);
    for (std::size_t i = 0; i < n; ++i) mean[i] += y[i];
  }
  for (std::size_t lo = 0; lo < n; lo += 64) {
    double sq = 0;
    for (std::size_t i = lo; i < lo + 64; ++i) sq += double{x[i]} * x[i];
    const double unit = std::sqrt(sq) / 3;
    // Each encoding errs by a Bernoulli step of at most `unit`: sd <= unit / 2.
    const double five_sigma = 5 * unit / 2 / std::sqrt(static_cast<double>(T));
    for (std::size_t i = lo; i < lo + 64; ++i) {
      INFO("element " << i);
      CHECK(std::fabs(mean[i] / T - x[i]) <= five_sigma + 1e-6);
    }
  }
}

TEST_CASE("qsgd rejects levels above s, padding bits and bad norms", "[codec][qsgd]") {
  const codec::qsgd c(5, 4);  // 4-bit codes
  std::vector<float> x(7, 0.25F);
  const auto good = encoded(c, x);
  const std::size_t codes = frame_header_bytes + 8 + 4 * c.buckets(7);
  std::vector<float> acc(7, 2.0F);
  auto bad = good;
  bad[codes + 1] = std::byte{0x06};  // element 2: level 6 > 5
  CHECK_THROWS_MATCHES(c.decode_add(bad, acc), decode_error, test::what_has("element 2"));
  bad = good;
  bad[codes + 3] |= std::byte{0x10};  // the nibble past element 6
  CHECK_THROWS_MATCHES(c.decode_add(bad, acc), decode_error, test::what_has("padding"));
  bad = good;
  store_le<std::uint32_t>(bad.data() + frame_header_bytes + 8, 0xFF800000U);  // -Inf norm
  CHECK_THROWS_MATCHES(c.decode_add(bad, acc), decode_error, test::what_has("norm 0"));
  CHECK(acc == std::vector<float>(7, 2.0F));
  std::vector<float> y(7);
  CHECK_THROWS_MATCHES(codec::qsgd(7, 4).decode(good, y), decode_error, test::what_has("levels"));
  CHECK_THROWS_MATCHES(codec::qsgd(0), config_error, test::what_has("levels"));
  x[4] = INFINITY;
  std::vector<std::byte> out(c.max_encoded_bytes(7));
  rng g;
  CHECK_THROWS_MATCHES(c.encode(x, out, g), numeric_error, test::what_has("element 4"));
}
