// Tests of --balance's pieces (examples/train/balance.hpp): the batch shares,
// and the rates riding in the gradient's fp32 ring allreduce.
#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "greenreduce/codec/none.hpp"
#include "greenreduce/collective/ring_allreduce.hpp"
#include "greenreduce/transport/inproc.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"
#include "train/balance.hpp"

using namespace greenreduce;
using namespace greenreduce::examples;

TEST_CASE("balanced batches are proportional to the rates and keep the global batch",
          "[train][balance]") {
  std::mt19937_64 gen(test::seed(1));
  std::uniform_int_distribution<int> world_d(1, 16), batch_d(8, 512);
  std::uniform_real_distribution<double> rate_d(1e3, 1e5);
  for (int trial = 0; trial < 200; ++trial) {
    const int world = world_d(gen), batch = batch_d(gen);
    std::vector<double> rates(static_cast<std::size_t>(world));
    for (auto& r : rates) r = rate_d(gen);
    const auto b = balanced_batches(rates, batch, std::vector<std::size_t>(rates.size(), 7));
    const double sum = std::accumulate(rates.begin(), rates.end(), 0.0);
    const double global = static_cast<double>(batch) * world;
    std::size_t total = 0;
    for (std::size_t q = 0; q < b.size(); ++q) {
      INFO("world " << world << " batch " << batch << " rank " << q);
      CHECK(b[q] >= 1);
      // Each share is the rate's share of the global batch, rounded.
      CHECK(std::abs(static_cast<double>(b[q]) - std::max(1.0, global * rates[q] / sum)) <= 0.5);
      total += b[q];
    }
    // Rounding moves the total by at most half a sample per rank.
    CHECK(std::abs(static_cast<double>(total) - global) <= 0.5 * world + 1e-9);
  }
  // A rank twice as slow gets half the batch of the others.
  const std::vector<double> straggler = {2000, 1000, 2000, 2000};
  CHECK(balanced_batches(straggler, 32, {32, 32, 32, 32}) ==
        std::vector<std::size_t>{37, 18, 37, 37});
}

TEST_CASE("balanced batches: unmeasured rates keep the batches, bad sizes are named",
          "[train][balance]") {
  const std::vector<std::size_t> now = {30, 34};
  CHECK(balanced_batches(std::vector<double>{0.0, 5.0}, 32, now) == now);
  CHECK(balanced_batches(std::vector<double>{NAN, 5.0}, 32, now) == now);
  CHECK(balanced_batches(std::vector<double>{INFINITY, 5.0}, 32, now) == now);
  CHECK(balanced_batches(std::vector<double>{-1.0, 5.0}, 32, now) == now);
  CHECK_THROWS_MATCHES(balanced_batches(std::vector<double>{1.0}, 32, now), config_error,
                       test::what_has("1 rates but 2 batch sizes"));
  CHECK_THROWS_MATCHES(balanced_batches(std::vector<double>{1.0, 1.0}, 0, now), config_error,
                       test::what_has("batch must be >= 1, got 0"));
  std::vector<float> slots(3);
  CHECK_THROWS_MATCHES(put_rate(slots, 3, 1.0), config_error,
                       test::what_has("rank 3 has no slot among 3"));
  std::vector<double> rates(2);
  CHECK_THROWS_MATCHES(take_rates(slots, 3, rates), config_error,
                       test::what_has("3 slots but 2 rates"));
}

TEST_CASE("the rates ride in the fp32 gradient allreduce: every rank gets every rate",
          "[train][balance]") {
  const std::uint64_t s = test::seed(2);
  for (const int world : {1, 2, 3, 4, 5}) {
    for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1000}}) {
      INFO("world " << world << " gradient length " << n << " seed " << s);
      transport::inproc_world w(world);
      std::vector<std::vector<float>> grads, out(static_cast<std::size_t>(world));
      std::vector<double> rate(static_cast<std::size_t>(world));
      std::mt19937_64 gen(s + static_cast<std::uint64_t>(world) * 31 + n);
      std::uniform_real_distribution<double> rate_d(1e2, 2e5);
      for (int q = 0; q < world; ++q) {
        grads.push_back(test::normal_floats(n, s + static_cast<std::uint64_t>(q) + n));
        rate[static_cast<std::size_t>(q)] = rate_d(gen);
      }
      std::vector<std::vector<double>> got(static_cast<std::size_t>(world));
      std::vector<std::string> errors(static_cast<std::size_t>(world));
      std::vector<std::thread> threads;
      for (int q = 0; q < world; ++q)
        threads.emplace_back([&, q] {
          const auto i = static_cast<std::size_t>(q);
          try {
            auto t = w.rank(q);
            const auto slots = static_cast<std::size_t>(world);
            collective::ring_allreduce<codec::none, transport::inproc> ring(t, n + slots);
            std::vector<float> wide(grads[i]);
            wide.resize(n + slots);
            put_rate(std::span<float>(wide).subspan(n), q, rate[i]);
            ring.run(wide, collective::reduce_op::average);
            got[i].resize(slots);
            take_rates(std::span<const float>(wide).subspan(n), world, got[i]);
            out[i].assign(wide.begin(), wide.begin() + static_cast<std::ptrdiff_t>(n));
          } catch (const std::exception& e) {
            errors[i] = e.what();
          }
        });
      for (auto& th : threads) th.join();
      for (int q = 0; q < world; ++q) {
        const auto i = static_cast<std::size_t>(q);
        REQUIRE(errors[i].empty());
        for (std::size_t p = 0; p < static_cast<std::size_t>(world); ++p)
          CHECK(got[i][p] == Approx(rate[p]).epsilon(1e-6));  // float rounding only
        for (std::size_t k = 0; k < n; ++k) {
          double mean = 0;
          for (const auto& g : grads) mean += g[k];
          mean /= world;
          CHECK(out[i][k] == Approx(mean).margin(1e-5));  // the gradient is averaged as before
        }
      }
    }
  }
}
