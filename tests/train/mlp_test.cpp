#include "train/mlp.hpp"

#include <catch2/catch.hpp>

#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using examples::fvec;

namespace {
fvec aligned(const std::vector<float>& v) {
  return fvec(v.begin(), v.end());
}
}  // namespace

TEST_CASE("the 784-64-32-10 MLP has the expected parameter count", "[train][mlp]") {
  examples::mlp m;
  CHECK(m.parameter_count() == 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10);
  CHECK_THROWS_AS(examples::mlp({5}), config_error);
  fvec p(10), g(m.parameter_count());
  CHECK_THROWS_AS(m.init(p, 1), config_error);
}

TEST_CASE("backpropagation agrees with finite differences", "[train][mlp]") {
  const auto s = test::seed(20);
  INFO("seed " << s);
  examples::mlp m({6, 5, 4, 3});
  fvec p(m.parameter_count()), g(p.size()), g2(p.size());
  m.init(p, s);
  for (auto& v : p) v += 0.05F;  // non-zero biases exercise every term
  const std::size_t batch = 4;
  const fvec x = aligned(test::normal_floats(6 * batch, s + 1));
  const std::uint8_t y[batch] = {0, 2, 1, 2};
  m.loss_and_gradient(p, x.data(), y, batch, g);
  // Central differences at two step sizes: where they agree the loss is smooth
  // around p[i] (no ReLU kink crossed) and the analytic gradient must match.
  auto numeric = [&](std::size_t i, float h) {
    const float keep = p[i];
    p[i] = keep + h;
    const float up = m.loss_and_gradient(p, x.data(), y, batch, g2);
    p[i] = keep - h;
    const float down = m.loss_and_gradient(p, x.data(), y, batch, g2);
    p[i] = keep;
    return (up - down) / (2 * h);
  };
  std::size_t smooth = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const float a = numeric(i, 4e-3F), b = numeric(i, 2e-3F);
    if (std::abs(a - b) > 1e-3F + 0.02F * std::abs(b)) continue;  // a kink nearby
    ++smooth;
    INFO("parameter " << i);
    CHECK(g[i] == Approx(b).margin(1e-3).epsilon(0.02));
  }
  CHECK(smooth >= p.size() * 8 / 10);
}

TEST_CASE("the forward-only loss equals loss_and_gradient's, bit for bit", "[train][mlp]") {
  const auto s = test::seed(21);
  INFO("seed " << s);
  examples::mlp m;
  fvec p(m.parameter_count()), g(p.size());
  m.init(p, s);
  for (std::size_t batch : {1, 7, 64}) {
    const fvec x = aligned(test::normal_floats(784 * batch, s + batch));
    std::vector<std::uint8_t> y(batch);
    for (std::size_t j = 0; j < batch; ++j) y[j] = static_cast<std::uint8_t>((s + 3 * j) % 10);
    const float full = m.loss_and_gradient(p, x.data(), y.data(), batch, g);
    const float fwd = m.loss(p, x.data(), y.data(), batch);
    INFO("batch " << batch);
    CHECK(fwd == full);
    CHECK(fwd > 0);
  }
  fvec short_p(10);
  CHECK_THROWS_AS(m.loss(short_p, nullptr, nullptr, 0), config_error);
}

TEST_CASE("SGD on the MLP learns a separable problem", "[train][mlp]") {
  const auto s = test::seed(21);
  INFO("seed " << s);
  examples::mlp m({2, 16, 2});
  fvec p(m.parameter_count()), g(p.size());
  m.init(p, s);
  const std::size_t n = 256;
  const fvec x = aligned(test::normal_floats(2 * n, s + 1));
  std::vector<std::uint8_t> y(n);
  for (std::size_t i = 0; i < n; ++i) y[i] = x[2 * i] + x[2 * i + 1] > 0 ? 1 : 0;
  const float first = m.loss_and_gradient(p, x.data(), y.data(), n, g);
  float last = first;
  for (int step = 0; step < 300; ++step) {
    last = m.loss_and_gradient(p, x.data(), y.data(), n, g);
    for (std::size_t i = 0; i < p.size(); ++i) p[i] -= 0.5F * g[i];
  }
  CHECK(last < 0.5F * first);
  std::vector<std::uint8_t> pred(n);
  m.predict(p, x.data(), n, pred.data());
  std::size_t right = 0;
  for (std::size_t i = 0; i < n; ++i) right += pred[i] == y[i];
  CHECK(right >= n * 9 / 10);
}

TEST_CASE("the MLP takes aligned buffers only, and gives the same bits wherever they are",
          "[train][mlp]") {
  const auto s = test::seed(22);
  INFO("seed " << s);
  examples::mlp m;
  const std::size_t batch = 32;
  fvec p(m.parameter_count()), g(p.size());
  m.init(p, s);
  const fvec x = aligned(test::normal_floats(784 * batch, s + 1));
  std::vector<std::uint8_t> y(batch);
  for (std::size_t j = 0; j < batch; ++j) y[j] = static_cast<std::uint8_t>((s + j) % 10);
  const float loss = m.loss_and_gradient(p, x.data(), y.data(), batch, g);
  // The same values in buffers allocated elsewhere (other heap positions).
  std::vector<fvec> keep;
  for (int k = 0; k < 4; ++k) keep.emplace_back(static_cast<std::size_t>(1000 * k + 3));
  const fvec p2 = p, x2 = x;
  fvec g2(p.size());
  CHECK(m.loss_and_gradient(p2, x2.data(), y.data(), batch, g2) == loss);
  CHECK(g2 == g);
  // A buffer that is not aligned is refused, naming what and the alignment.
  fvec wide(p.size() + 1);
  const std::span<const float> shifted(wide.data() + 1, p.size());
  CHECK_THROWS_MATCHES(m.loss(shifted, x.data(), y.data(), batch), config_error,
                       test::what_has("MLP parameters", "-byte aligned (use fvec)"));
  CHECK_THROWS_MATCHES(m.loss(p, x.data() + 1, y.data(), batch), config_error,
                       test::what_has("MLP input batch"));
  CHECK_THROWS_MATCHES(m.loss_and_gradient(p, x.data(), y.data(), batch,
                                           std::span<float>(wide.data() + 1, p.size())),
                       config_error, test::what_has("MLP gradient"));
}
