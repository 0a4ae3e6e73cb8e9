// codec::encode_error_bound and collective::ring_error_bound: every built-in
// codec stays within its stated bound on fresh random inputs of several
// magnitudes, the tight bounds are nearly reached (so a bound that grew
// loose by mistake fails too), a codec's own member bound wins, and bad
// arguments are config_errors.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "greenreduce/codec/error_bound.hpp"
#include "greenreduce/codec/registry.hpp"
#include "greenreduce/collective/error_bound.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;

namespace {

// Worst |x - decode(encode(x))| over x uniform in [-m, m], plus +-m exactly.
double worst_error(const codec::any_codec& any, double m, std::uint64_t seed, std::size_t n) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(-m, m);
  std::vector<float> x(n);
  for (auto& v : x) v = static_cast<float>(u(gen));
  x[0] = static_cast<float>(m);
  x[1] = static_cast<float>(-m);
  for (auto& v : x) v = std::clamp(v, static_cast<float>(-m), static_cast<float>(m));
  return std::visit(
      [&](const auto& c) {
        std::vector<std::byte> frame(c.max_encoded_bytes(n));
        rng g(seed, 5);
        frame.resize(c.encode(x, frame, g));
        std::vector<float> y(n);
        c.decode(frame, y);
        double w = 0;
        for (std::size_t i = 0; i < n; ++i)
          w = std::max(w, std::fabs(static_cast<double>(x[i]) - static_cast<double>(y[i])));
        return w;
      },
      any);
}

struct own_codec : codec::none {
  double encode_error_bound(double m) const { return m / 1000; }
};

}  // namespace

TEST_CASE("encode_error_bound holds for every built-in codec", "[codec][bound]") {
  const std::uint64_t seed = test::seed(9100);
  for (const char* spec : {"none", "fp16", "bf16", "int8", "int8:stochastic", "int8:64", "ternary",
                           "ternary:256", "topk", "topk:exact", "randomk", "sign", "fp8:e4m3",
                           "fp8:e5m2", "qsgd", "qsgd:levels=1", "qsgd:levels=127:bucket=64"}) {
    const auto c = codec::parse_codec(spec);
    for (double m : {0x1p-10, 1.0, 3.5, 16384.0}) {
      const double bound = codec::encode_error_bound(c, m);
      const double got = worst_error(c, m, seed + static_cast<std::uint64_t>(m * 1000), 20000);
      INFO(spec << " m=" << m << " worst " << got << " bound " << bound);
      CHECK(got <= bound);
      // qsgd's levels are fractions of the bucket's norm, which exceeds m.
      if (std::string(spec).rfind("qsgd", 0) != 0) CHECK(bound <= 2 * m + 0x1p-25);
    }
  }
}

TEST_CASE("encode_error_bound is tight where the codec promises a rounding", "[codec][bound]") {
  // Uniform inputs over [-m, m] come within a small factor of the worst case
  // of a rounding quantiser; a bound twice as loose as stated would fail here.
  const std::uint64_t seed = test::seed(9101);
  for (const auto& [spec, reach] : std::vector<std::pair<std::string, double>>{
           {"fp16", 0.45}, {"bf16", 0.45}, {"int8:stochastic", 0.6}, {"int8", 0.45}}) {
    const auto c = codec::parse_codec(spec);
    const double m = 3.0;
    const double bound = codec::encode_error_bound(c, m);
    const double got = worst_error(c, m, seed, 200000);
    INFO(spec << " worst " << got << " bound " << bound);
    CHECK(got >= reach * bound);
  }
  CHECK(codec::encode_error_bound(codec::none{}, 5.0) == 0.0);
}

TEST_CASE("a codec's own encode_error_bound member is used", "[codec][bound]") {
  CHECK(codec::encode_error_bound(own_codec{}, 2.0) == Approx(0.002));
  const collective::ring_error_bound b(own_codec{}, 3, 1.0, false);
  CHECK(b.per_encode() == Approx(1.1 / 1000));
}

TEST_CASE("ring_error_bound: the sum and average forms, and bad arguments", "[codec][bound]") {
  const double u = 0x1p-24;
  const int p = 4;
  const collective::ring_error_bound sum(codec::int8{}, p, 3.0, false);
  const double d = 1.1 * 3.0 / 127;
  CHECK(sum.per_encode() == Approx(d));
  const double gamma = 2.0 * p * u / (1 - 2.0 * p * u);
  CHECK(sum(2.0, 1.0) == Approx(gamma * (2.0 + p * d) + p * d));
  const collective::ring_error_bound avg(codec::int8{}, p, 3.0, true);
  CHECK(avg(2.0, 0.25) == Approx((gamma * (2.0 + p * d) + p * d) / p + u * 0.25));
  const collective::ring_error_bound exact(codec::none{}, p, 3.0, false);
  CHECK(exact(2.0, 1.0) == Approx(gamma * 2.0));
  CHECK_THROWS_MATCHES(collective::ring_error_bound(codec::none{}, 0, 1.0, false), config_error,
                       test::what_has("p = 0"));
  CHECK_THROWS_MATCHES(collective::ring_error_bound(codec::none{}, 2, NAN, false), config_error,
                       test::what_has("max_magnitude_sum"));
  CHECK_THROWS_MATCHES(collective::ring_error_bound(codec::none{}, 2, -1.0, false), config_error,
                       test::what_has("max_magnitude_sum"));
}
