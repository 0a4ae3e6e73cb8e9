// model_averaging over inproc ranks: period 1 with fp32 is synchronous SGD
// with momentum, every average leaves bit-identical parameters equal to the
// ranks' mean, the period follows the controller's staleness on every rank
// alike, and bad input leaves the caller's parameters as they were.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "collective/ranks.hpp"
#include "greenreduce/adaptive/model_averaging.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using adaptive::adaptive_allreduce_options;
using adaptive::model_averaging;
using transport::inproc;

namespace {

// Rank r's gradient at step s: reproducible from (seed, r, s).
std::vector<float> gradient(std::uint64_t seed, int r, std::uint64_t s, std::size_t n) {
  std::mt19937_64 g(seed ^ (static_cast<std::uint64_t>(r) << 40) ^ (s * 0x9e3779b97f4a7c15ULL));
  std::normal_distribution<float> d(0.0F, 1.0F);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

adaptive_allreduce_options fp32_options() {
  adaptive_allreduce_options o;
  o.policy.with_ladder(adaptive::ladder::parse("none")).with_staleness_ladder({0});
  o.with_probe(0, 1);
  return o;
}

}  // namespace

TEST_CASE("model_averaging: period 1 in fp32 is synchronous SGD with momentum", "[adaptive]") {
  const int p = GENERATE(2, 3);
  const std::uint64_t seed = test::seed(300 + static_cast<std::uint64_t>(p));
  const std::size_t n = 200 + seed % 800;
  INFO("p=" << p << " n=" << n << " seed=" << seed);
  const int steps = 30;
  const float lr = 0.01F, m = 0.9F;
  std::vector<float> init(n);
  std::mt19937_64 g(seed);
  for (auto& x : init) x = std::normal_distribution<float>(0, 1)(g);
  std::vector<std::vector<float>> out(static_cast<std::size_t>(p));
  std::vector<int> exchanged(static_cast<std::size_t>(p), 0);
  auto errors = test::on_ranks(p, [&](inproc& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    std::vector<float> w = init, v(n, 0.0F);
    model_averaging<inproc> avg(t, w, fp32_options());
    for (int s = 0; s < steps; ++s) {
      const auto gr = gradient(seed, t.rank(), static_cast<std::uint64_t>(s), n);
      for (std::size_t i = 0; i < n; ++i) {
        v[i] = m * v[i] + gr[i];
        w[i] -= lr * v[i];
      }
      exchanged[r] += avg.step(w) ? 1 : 0;
    }
    avg.finish(w);
    out[r] = w;
  });
  test::rethrow_any(errors);
  // The synchronous reference in double: v = m v + mean(g); w -= lr v.
  std::vector<double> w(init.begin(), init.end()), v(n, 0.0);
  for (int s = 0; s < steps; ++s) {
    std::vector<double> mean(n, 0.0);
    for (int r = 0; r < p; ++r) {
      const auto gr = gradient(seed, r, static_cast<std::uint64_t>(s), n);
      for (std::size_t i = 0; i < n; ++i) mean[i] += gr[i] / p;
    }
    for (std::size_t i = 0; i < n; ++i) {
      v[i] = m * v[i] + mean[i];
      w[i] -= lr * v[i];
    }
  }
  double worst = 0;
  for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(out[0][i] - w[i]));
  CHECK(worst < 1e-4);  // 30 steps of fp32 rounding on values of order 1
  for (int r = 0; r < p; ++r) {
    CHECK(exchanged[static_cast<std::size_t>(r)] == steps);
    CHECK(test::bit_equal(out[static_cast<std::size_t>(r)], out[0]));
  }
}

TEST_CASE("model_averaging: the period follows the staleness on every rank alike", "[adaptive]") {
  const int p = GENERATE(2, 4);
  const std::uint64_t seed = test::seed(400 + static_cast<std::uint64_t>(p));
  const std::size_t n = 500 + seed % 1500;
  INFO("p=" << p << " n=" << n << " seed=" << seed);
  // Any communication counts as congestion (spread off): the staleness climbs
  // 0 -> 1 -> 3, so the period goes 1 -> 2 -> 4.
  adaptive_allreduce_options o;
  o.policy.with_ladder(adaptive::ladder::parse("none,int8"))
      .with_minimum_energy()
      .with_warmup_steps(4)
      .with_window_steps(2)
      .with_hysteresis(2, 2)
      .with_spread_thresholds(1e9, 1e9)
      .with_comm_fraction_thresholds(1e-12, 0)
      .with_staleness_ladder({0, 1, 3});
  o.with_probe(0, 1);
  o.ring.error_feedback = true;
  const int steps = 120;
  struct round {
    int step;
    std::vector<float> before, after;
  };
  std::vector<std::vector<round>> rounds(static_cast<std::size_t>(p));
  std::vector<std::vector<std::uint64_t>> periods(static_cast<std::size_t>(p));
  std::vector<std::string> logs(static_cast<std::size_t>(p));
  std::size_t congestion = 0;
  bool finished = false;
  auto errors = test::on_ranks(p, [&](inproc& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    std::vector<float> w(n, 0.5F);
    model_averaging<inproc> avg(t, w, o);
    for (int s = 0; s < steps; ++s) {
      const auto gr = gradient(seed, t.rank(), static_cast<std::uint64_t>(s), n);
      for (std::size_t i = 0; i < n; ++i) w[i] -= 0.01F * gr[i];
      periods[r].push_back(avg.period());
      const auto before = w;
      if (avg.step(w)) rounds[r].push_back({s, before, w});
    }
    // finish() averages the steps since the last average (if any).
    const bool pending = avg.pending_steps() > 0;
    const auto before = w;
    const report last = avg.finish(w);
    if (r == 0) finished = pending ? last.raw_bytes > 0 : last.raw_bytes == 0;
    if (pending) rounds[r].push_back({steps, before, w});
    for (const auto& d : avg.policy().log()) {
      logs[r] += d.to_json() + "\n";
      if (r == 0) congestion += d.why == adaptive::reason::congestion ? 1 : 0;
    }
  });
  test::rethrow_any(errors);
  // The same exchanges at the same steps on every rank, at the periods the
  // policy set: 1 during the warm-up, then 2, then 4.
  for (int r = 1; r < p; ++r) {
    REQUIRE(rounds[static_cast<std::size_t>(r)].size() == rounds[0].size());
    CHECK(periods[static_cast<std::size_t>(r)] == periods[0]);
  }
  CHECK(periods[0].front() == 1);
  CHECK(periods[0].back() == 4);
  CHECK(std::is_sorted(periods[0].begin(), periods[0].end()));
  int last = -1;
  for (std::size_t k = 0; k < rounds[0].size(); ++k) {
    const int s = rounds[0][k].step;
    if (s == steps) break;  // finish()'s average
    CHECK(static_cast<std::uint64_t>(s - last) == periods[0][static_cast<std::size_t>(s)]);
    last = s;
  }
  // After each average: every rank holds the same bits, within int8's
  // rounding of the ranks' mean (all ranks share the anchor).
  for (std::size_t k = 0; k < rounds[0].size(); ++k) {
    INFO("round " << k << " at step " << rounds[0][k].step);
    double worst = 0, scale = 0;
    for (std::size_t i = 0; i < n; ++i) {
      double mean = 0;
      for (int r = 0; r < p; ++r) mean += rounds[static_cast<std::size_t>(r)][k].before[i];
      mean /= p;
      worst = std::max(worst, std::fabs(rounds[0][k].after[i] - mean));
      scale = std::max(scale, std::fabs(mean - 0.5));
    }
    for (int r = 1; r < p; ++r)
      CHECK(test::bit_equal(rounds[static_cast<std::size_t>(r)][k].after, rounds[0][k].after));
    CHECK(worst <= 0.05 * scale + 1e-6);  // the delta's int8 error is a fraction of its size
  }
  // The log says why: the same decisions on every rank, two congestion moves.
  for (int r = 1; r < p; ++r) CHECK(logs[static_cast<std::size_t>(r)] == logs[0]);
  CHECK(congestion == 2);
  CHECK(finished);
}

TEST_CASE("model_averaging: bad input is refused and leaves the parameters as they were",
          "[adaptive]") {
  SECTION("a parameter span of another length") {
    auto errors = test::on_ranks(1, [&](inproc& t) {
      std::vector<float> w(100, 1.0F);
      model_averaging<inproc> avg(t, w, fp32_options());
      std::vector<float> other(99, 2.0F);
      try {
        avg.step(other);
        FAIL_CHECK("no error");
      } catch (const config_error& e) {
        const std::string what = e.what();
        if (what.find("99 parameters given, constructed for 100") == std::string::npos)
          throw std::runtime_error("wrong message: " + what);
      }
      if (std::any_of(other.begin(), other.end(), [](float x) { return x != 2.0F; }))
        throw std::runtime_error("parameters changed");
    });
    test::rethrow_any(errors);
  }
  SECTION("ranks with different lengths: mismatch_error, parameters unchanged") {
    std::vector<std::vector<float>> after(2);
    auto errors = test::on_ranks(2, [&](inproc& t) {
      const std::size_t n = t.rank() == 0 ? 64 : 65;
      std::vector<float> w(n, 0.0F);
      model_averaging<inproc> avg(t, w, fp32_options());
      for (std::size_t i = 0; i < n; ++i) w[i] = static_cast<float>(i + 1);
      try {
        avg.step(w);
      } catch (...) {
        after[static_cast<std::size_t>(t.rank())] = w;
        throw;
      }
    });
    for (int r = 0; r < 2; ++r) {
      REQUIRE(errors[static_cast<std::size_t>(r)]);
      CHECK_THROWS_AS(std::rethrow_exception(errors[static_cast<std::size_t>(r)]), mismatch_error);
      const auto& w = after[static_cast<std::size_t>(r)];
      for (std::size_t i = 0; i < w.size(); ++i) CHECK(w[i] == static_cast<float>(i + 1));
    }
  }
}

TEST_CASE("model_averaging: the policy sees each exchange's costs per training step",
          "[adaptive]") {
  const int p = GENERATE(2, 3);
  const std::size_t n = 777;
  // Joules from wire bytes only (no timing in the figures), fp32 throughout;
  // any communication counts as congestion, so the period goes 1 -> 4 -> 8.
  const energy::model wire_only(energy::coefficients{1.0, 0.0, 0.0, 0.0});
  adaptive_allreduce_options o;
  o.policy.with_ladder(adaptive::ladder::parse("none"))
      .with_model(wire_only)
      .with_warmup_steps(2)
      .with_window_steps(2)
      .with_hysteresis(1, 1)
      .with_spread_thresholds(1e9, 1e9)
      .with_comm_fraction_thresholds(1e-12, 0)
      .with_staleness_ladder({0, 3, 7});
  o.ring.energy = wire_only;
  o.with_probe(0, 1);
  std::vector<double> joules(static_cast<std::size_t>(p), 0);  // of one exchange, per rank
  std::vector<std::vector<adaptive::decision>> logs(static_cast<std::size_t>(p));
  auto errors = test::on_ranks(p, [&](inproc& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    std::vector<float> w(n, 1.0F);
    model_averaging<inproc> avg(t, w, o);
    for (int s = 0; s < 200; ++s) {
      w[static_cast<std::size_t>(s) % n] += 0.25F * static_cast<float>(t.rank() + 1);
      if (auto rep = avg.step(w)) {
        const double j = rep->energy.total_j();
        if (joules[r] != 0 && j != joules[r]) throw std::runtime_error("exchange joules vary");
        joules[r] = j;
      }
    }
    logs[r] = avg.policy().log();
  });
  test::rethrow_any(errors);
  double job = 0;  // the job-wide joules of one exchange (the sum over ranks)
  for (double j : joules) job += j;
  REQUIRE(job > 0);
  std::vector<double> seen;  // window joules per step behind each congestion move
  for (const auto& d : logs[0])
    if (d.why == adaptive::reason::congestion) seen.push_back(d.measured.joules);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == Approx(job).epsilon(1e-12));      // measured at period 1
  CHECK(seen[1] == Approx(job / 4).epsilon(1e-12));  // at period 4: a quarter per step
}
