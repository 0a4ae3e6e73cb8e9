#include "train/mlp.hpp"

#include <catch2/catch.hpp>

#include "support/random.hpp"

using namespace greenreduce;

TEST_CASE("the 784-64-32-10 MLP has the expected parameter count", "[train][mlp]") {
  examples::mlp m;
  CHECK(m.parameter_count() == 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10);
  CHECK_THROWS_AS(examples::mlp({5}), config_error);
  std::vector<float> p(10), g(m.parameter_count());
  CHECK_THROWS_AS(m.init(p, 1), config_error);
}

TEST_CASE("backpropagation agrees with finite differences", "[train][mlp]") {
  const auto s = test::seed(20);
  INFO("seed " << s);
  examples::mlp m({6, 5, 4, 3});
  std::vector<float> p(m.parameter_count()), g(p.size()), g2(p.size());
  m.init(p, s);
  for (auto& v : p) v += 0.05F;  // non-zero biases exercise every term
  const std::size_t batch = 4;
  auto x = test::normal_floats(6 * batch, s + 1);
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
  std::vector<float> p(m.parameter_count()), g(p.size());
  m.init(p, s);
  for (std::size_t batch : {1, 7, 64}) {
    auto x = test::normal_floats(784 * batch, s + batch);
    std::vector<std::uint8_t> y(batch);
    for (std::size_t j = 0; j < batch; ++j) y[j] = static_cast<std::uint8_t>((s + 3 * j) % 10);
    const float full = m.loss_and_gradient(p, x.data(), y.data(), batch, g);
    const float fwd = m.loss(p, x.data(), y.data(), batch);
    INFO("batch " << batch);
    CHECK(fwd == full);
    CHECK(fwd > 0);
  }
  std::vector<float> short_p(10);
  CHECK_THROWS_AS(m.loss(short_p, nullptr, nullptr, 0), config_error);
}

TEST_CASE("SGD on the MLP learns a separable problem", "[train][mlp]") {
  const auto s = test::seed(21);
  INFO("seed " << s);
  examples::mlp m({2, 16, 2});
  std::vector<float> p(m.parameter_count()), g(p.size());
  m.init(p, s);
  const std::size_t n = 256;
  auto x = test::normal_floats(2 * n, s + 1);
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
