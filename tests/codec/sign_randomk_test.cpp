#include <catch2/catch.hpp>
#include <vector>

#include "greenreduce/codec/checks.hpp"
#include "greenreduce/codec/randomk.hpp"
#include "greenreduce/codec/sign.hpp"
#include "support/random.hpp"

using namespace greenreduce;

TEST_CASE("sign and randomk keep the codec contract", "[codec][sign][randomk]") {
  const auto s = test::seed(70);
  for (const auto& problems :
       {codec::check_codec(codec::sign(), s), codec::check_codec(codec::sign(3), s),
        codec::check_codec(codec::randomk::ratio(0.01), s),
        codec::check_codec(codec::randomk::ratio(1.0), s)}) {
    for (const auto& p : problems) UNSCOPED_INFO(p);
    CHECK(problems.empty());
  }
}

TEST_CASE("sign sends mean |x| with the sign of x per bucket", "[codec][sign]") {
  const auto s = test::seed(71);
  INFO("seed " << s);
  const std::size_t n = 1000, b = 128;
  const auto x = test::normal_floats(n, s);
  const codec::sign c(b);
  std::vector<std::byte> out(c.max_encoded_bytes(n));
  rng g;
  out.resize(c.encode(x, out, g));
  std::vector<float> y(n);
  c.decode(out, y);
  for (std::size_t lo = 0; lo < n; lo += b) {
    double sum = 0;
    for (std::size_t i = lo; i < std::min(n, lo + b); ++i) sum += std::abs(x[i]);
    const auto mean = static_cast<float>(sum / static_cast<double>(std::min(n, lo + b) - lo));
    for (std::size_t i = lo; i < std::min(n, lo + b); ++i)
      CHECK(y[i] == (std::signbit(x[i]) ? -mean : mean));
  }
}

TEST_CASE("randomk sends one element per stratum, regenerated from the payload's seed",
          "[codec][randomk]") {
  const auto s = test::seed(72);
  INFO("seed " << s);
  const std::size_t n = 10007;
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(i + 1);
  const auto c = codec::randomk::ratio(0.01);
  const std::size_t k = c.k_of(n);
  std::vector<std::byte> out(c.max_encoded_bytes(n));
  rng g(s, 4);
  out.resize(c.encode(x, out, g));
  CHECK(g.offset == (k + 3) / 4);
  std::vector<float> y(n);
  c.decode(out, y);
  std::size_t sent = 0;
  for (std::size_t j = 0; j < k; ++j) {
    std::size_t hits = 0;
    for (std::size_t i = j * n / k; i < (j + 1) * n / k; ++i)
      if (y[i] != 0.0F) {
        ++hits;
        CHECK(y[i] == x[i]);
      }
    CHECK(hits == 1);
    sent += hits;
  }
  CHECK(sent == k);
  // Each element is chosen with probability ~k/n: over many draws every stratum
  // member turns up, and no position is favoured beyond 5 sigma.
  const std::size_t small = 64, kk = 4, trials = 4000;
  std::vector<std::size_t> count(small, 0);
  rng g2(s, 5);
  for (std::size_t t = 0; t < trials; ++t) {
    for (std::size_t j = 0; j < kk; ++j) ++count[codec::randomk::index_of(g2, j, kk, small)];
    g2.advance(1);
  }
  const double p = static_cast<double>(kk) / small, mean = p * trials;
  for (std::size_t i = 0; i < small; ++i)
    CHECK(std::abs(static_cast<double>(count[i]) - mean) <= 5 * std::sqrt(mean * (1 - p)));
}
