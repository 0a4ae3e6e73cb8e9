#include "greenreduce/codec/error_feedback.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "greenreduce/codec/none.hpp"
#include "greenreduce/codec/randomk.hpp"
#include "greenreduce/codec/sign.hpp"
#include "greenreduce/codec/ternary.hpp"
#include "greenreduce/codec/topk.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;

namespace {

/// After T steps, sum of decoded frames + residual == sum of inputs (to rounding).
template <class C>
void check_conservation(const C& c, std::uint64_t s) {
  INFO(c.name() << " seed " << s);
  for (std::size_t n : {1U, 7U, 513U, 70001U}) {
    INFO("n " << n);
    codec::error_feedback<C> ef(c);
    std::vector<double> sum_x(n, 0.0), sum_y(n, 0.0), bound(n, 0.0);
    std::vector<std::byte> out(c.max_encoded_bytes(n));
    std::vector<float> y(n);
    rng g(s, 1);
    const int steps = 12;
    for (int t = 0; t < steps; ++t) {
      const auto x = test::normal_floats(n, s + static_cast<std::uint64_t>(t));
      const std::size_t len = ef.encode(x, out, g);
      c.decode(std::span<const std::byte>(out.data(), len), y);
      for (std::size_t i = 0; i < n; ++i) {
        sum_x[i] += x[i];
        sum_y[i] += y[i];
        // e = x + r and r = e - y each round once: a few ulps of |e| per step.
        bound[i] += 4e-7 * (std::abs(x[i]) + std::abs(y[i]) + std::abs(ef.residual()[i]) + 1.0);
      }
    }
    REQUIRE(ef.residual().size() == n);
    for (std::size_t i = 0; i < n; ++i) {
      const double lhs = sum_y[i] + ef.residual()[i];
      if (!(std::abs(lhs - sum_x[i]) <= bound[i])) {
        FAIL_CHECK("element " << i << ": decoded + residual " << lhs << ", inputs " << sum_x[i]);
        break;
      }
    }
  }
}

}  // namespace

TEST_CASE("error feedback conserves the gradient: decoded + residual == inputs",
          "[codec][error_feedback]") {
  const auto s = test::seed(60);
  check_conservation(codec::topk::ratio(0.05), s);
  check_conservation(codec::topk::ratio(0.01).sampled(), s);
  check_conservation(codec::ternary(), s);
  check_conservation(codec::sign(), s);
  check_conservation(codec::randomk::ratio(0.1), s);
  check_conservation(codec::none{}, s);
}

TEST_CASE("fused top-k error feedback equals the unfused definition bit for bit",
          "[codec][error_feedback]") {
  const auto s = test::seed(61);
  INFO("seed " << s);
  const std::size_t n = 100003;
  const auto c = codec::topk::ratio(0.01).sampled();
  codec::error_feedback<codec::topk> ef(c, n);
  std::vector<float> r(n, 0.0F), e(n), d(n);
  std::vector<std::byte> out(c.max_encoded_bytes(n)), out2(out.size());
  rng g(s);
  for (int t = 0; t < 5; ++t) {
    const auto x = test::normal_floats(n, s + static_cast<std::uint64_t>(t));
    const std::size_t len = ef.encode(x, out, g);
    for (std::size_t i = 0; i < n; ++i) e[i] = x[i] + r[i];
    const std::size_t len2 = c.encode(e, out2, g);
    REQUIRE(len == len2);
    CHECK(std::equal(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(len), out2.begin()));
    c.decode(std::span<const std::byte>(out2.data(), len2), d);
    for (std::size_t i = 0; i < n; ++i) r[i] = e[i] - d[i];
    CHECK(std::equal(r.begin(), r.end(), ef.residual().begin()));
  }
}

TEST_CASE("error feedback fixes its length and keeps the residual on a non-finite input",
          "[codec][error_feedback]") {
  codec::error_feedback<codec::ternary> ef(codec::ternary{});
  CHECK_FALSE(ef.size().has_value());
  std::vector<std::byte> out(ef.codec().max_encoded_bytes(1000));
  rng g(3);
  auto x = test::normal_floats(1000, 9);
  ef.encode(x, out, g);
  CHECK(ef.size() == std::size_t{1000});
  const std::vector<float> before(ef.residual().begin(), ef.residual().end());
  std::vector<float> shorter(999, 1.0F);
  CHECK_THROWS_MATCHES(ef.encode(shorter, out, g), config_error,
                       test::what_has("1000 elements", "999"));
  x[321] = NAN;
  CHECK_THROWS_MATCHES(ef.encode(x, out, g), numeric_error, test::what_has("element 321 "));
  CHECK(std::equal(before.begin(), before.end(), ef.residual().begin()));
  ef.reset();
  for (float v : ef.residual()) CHECK(v == 0.0F);
  codec::error_feedback<codec::topk> fixed(codec::topk::count(3), 10);
  CHECK_THROWS_AS(fixed.encode(x, out, g), config_error);
}
