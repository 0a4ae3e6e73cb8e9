// adaptive_allreduce over inproc ranks: every rank switches at the same step,
// results stay within the active codec's bound and bit-identical on all ranks,
// the error-feedback residual is flushed across a switch, and ranks whose
// policies diverge get a mismatch_error before any data moves.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "check.hpp"
#include "collective/ranks.hpp"
#include "greenreduce/adaptive/adaptive_allreduce.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using adaptive::adaptive_allreduce;
using adaptive::adaptive_allreduce_options;
using adaptive::reason;
using collective::reduce_op;
using transport::inproc;

namespace {

// Joules from wire bytes only: decisions that do not depend on timing.
energy::model wire_only() {
  return energy::model(energy::coefficients{1.0, 0.0, 0.0, 0.0});
}

// Both the rings' reports (the observed joules) and the policy's predictions
// use wire_only(): with the default model the observed joules include static
// power x measured time, so the calibration, and with it the switch steps,
// would follow the machine's speed (a sanitizer build's, a loaded machine's).
void time_free(adaptive_allreduce_options& o) {
  o.policy.with_model(wire_only());
  o.ring.energy = wire_only();
}

std::string log_of(const adaptive::controller& c) {
  std::string s;
  for (const auto& d : c.log()) s += d.to_json() + "\n";
  return s;
}

}  // namespace

TEST_CASE("adaptive_allreduce: ranks switch together and stay within the active codec's bound",
          "[adaptive]") {
  const int p = GENERATE(2, 3, 4);
  const std::size_t n = 1000 + test::seed(p) % 3000;
  const std::uint64_t seed = test::seed(100 + static_cast<std::uint64_t>(p));
  INFO("p=" << p << " n=" << n << " seed=" << seed);
  const int steps = 40;
  // Unattainable budget: none -> ternary (predicted cheapest in wire bytes);
  // ternary's error trips the guard -> int8, capped there and held.
  adaptive_allreduce_options o;
  o.policy.with_ladder(adaptive::ladder::parse("none,fp16,int8,ternary"))
      .with_warmup_steps(4)
      .with_window_steps(2)
      .with_hysteresis(1, 1)
      .with_energy_budget(1e-12)
      .with_model(wire_only())
      .with_max_compression_error(0.1);
  o.with_probe(512, 1);
  time_free(o);
  o.ring.segment_bytes = 1024;  // several segments per chunk
  std::vector<std::vector<std::size_t>> levels(static_cast<std::size_t>(p));
  std::vector<std::vector<std::vector<float>>> results(static_cast<std::size_t>(p));
  std::vector<std::string> logs(static_cast<std::size_t>(p));
  std::vector<std::uint64_t> wrong(static_cast<std::size_t>(p), 0), bad_reports(wrong);
  auto errors = test::on_ranks(p, [&](inproc& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    adaptive_allreduce<inproc> ar(t, n, o);
    std::vector<float> x(n);
    for (int s = 0; s < steps; ++s) {
      bench::fill_input(x, seed + static_cast<std::uint64_t>(s), t.rank());
      const report rep = ar.run(x, reduce_op::average);
      const auto& lvl = ar.policy().options().ladder[ar.last_level()];
      // Catch's assertions are not thread-safe: count here, check below.
      if (rep.codec != codec::codec_display_name(lvl.codec)) ++bad_reports[r];
      if (rep.energy.method != energy_method::model) ++bad_reports[r];
      wrong[r] += std::visit(
          [&](const auto& c) {
            return bench::count_wrong(c, x, seed + static_cast<std::uint64_t>(s), p, true);
          },
          lvl.codec);
      levels[r].push_back(ar.last_level());
      results[r].push_back(x);
    }
    logs[r] = log_of(ar.policy());
  });
  test::rethrow_any(errors);
  for (int r = 0; r < p; ++r) {
    INFO("rank " << r);
    CHECK(wrong[static_cast<std::size_t>(r)] == 0);
    CHECK(bad_reports[static_cast<std::size_t>(r)] == 0);
    CHECK(levels[static_cast<std::size_t>(r)] == levels[0]);
    CHECK(logs[static_cast<std::size_t>(r)] == logs[0]);
    for (int s = 0; s < steps; ++s)
      CHECK(test::bit_equal(results[static_cast<std::size_t>(r)][static_cast<std::size_t>(s)],
                            results[0][static_cast<std::size_t>(s)]));
  }
  // The path the policy took: warm-up on none, ternary, then int8 by the guard.
  INFO(logs[0]);
  const auto& lv = levels[0];
  CHECK(std::all_of(lv.begin(), lv.begin() + 5, [](std::size_t l) { return l == 0; }));
  CHECK(std::find(lv.begin(), lv.end(), 3) != lv.end());
  CHECK(lv.back() == 2);
  CHECK(logs[0].find("\"reason\":\"accuracy_error\"") != std::string::npos);
  CHECK(logs[0].find("\"reason\":\"budget_unattainable\"") != std::string::npos);
}

TEST_CASE("adaptive_allreduce: the error-feedback residual is flushed into the step after a switch",
          "[adaptive]") {
  const int p = GENERATE(2, 3);
  const std::size_t n = 700 + test::seed(7 + static_cast<std::uint64_t>(p)) % 500;
  const std::uint64_t seed = test::seed(200 + static_cast<std::uint64_t>(p));
  INFO("p=" << p << " n=" << n << " seed=" << seed);
  // The observation of step s decides the level of step s + 2 (it rides on
  // step s + 1's agreement). Warm-up: steps 0 and 1 (two windows, more than the
  // hysteresis, so the last one decides); step 1's observation (budget,
  // int8 cheaper in wire bytes) moves step 3 to int8; step 2's (made on none)
  // is not fed; step 3's compression error above 1e-9 moves step 5 back to
  // none, which must carry int8's residual of step 4.
  adaptive_allreduce_options o;
  o.policy.with_ladder(adaptive::ladder::parse("none,int8"))
      .with_warmup_steps(2)
      .with_window_steps(1)
      .with_hysteresis(1, 1)
      .with_energy_budget(1e-12)
      .with_model(wire_only())
      .with_max_compression_error(1e-9);
  o.with_probe(256, 1);
  time_free(o);
  o.ring.error_feedback = true;
  std::vector<float> residual(n, 0.0F);  // step 4's residual, assembled from the owners
  std::vector<std::vector<float>> out5(static_cast<std::size_t>(p));
  std::vector<std::vector<std::size_t>> levels(static_cast<std::size_t>(p));
  std::mutex mu;
  auto errors = test::on_ranks(p, [&](inproc& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    adaptive_allreduce<inproc> ar(t, n, o);
    std::vector<float> x(n);
    for (int s = 0; s < 6; ++s) {
      bench::fill_input(x, seed + static_cast<std::uint64_t>(s), t.rank());
      ar.run(x, reduce_op::average);
      levels[r].push_back(ar.last_level());
      if (s == 4) {
        const auto res = ar.residual();
        const std::lock_guard<std::mutex> lock(mu);
        std::copy(res.begin(), res.end(),
                  residual.begin() + static_cast<std::ptrdiff_t>(ar.residual_offset()));
      }
    }
    out5[r] = x;
  });
  test::rethrow_any(errors);
  // The exact path, on every rank, however fast the machine runs.
  for (int r = 0; r < p; ++r)
    CHECK(levels[static_cast<std::size_t>(r)] == std::vector<std::size_t>{0, 0, 0, 1, 1, 0});
  float rmax = 0;
  for (float v : residual) rmax = std::max(rmax, std::fabs(v));
  CHECK(rmax > 1e-4F);  // int8 left something to flush
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double mean = 0;
    for (int q = 0; q < p; ++q) mean += bench::input_value(seed + 5, q, i);
    mean /= p;
    const double want = mean + residual[i];
    if (std::fabs(out5[0][i] - want) > 1e-5 * (1 + std::fabs(want))) ++bad;
  }
  CHECK(bad == 0);
}

TEST_CASE("adaptive_allreduce: ranks whose policies diverge fail before data moves", "[adaptive]") {
  const int p = 3;
  const std::size_t n = 300;
  std::vector<std::vector<float>> before(p), after(p);
  auto errors = test::on_ranks(p, [&](inproc& t) {
    adaptive_allreduce_options o;
    o.policy.with_window_steps(1).with_warmup_steps(t.rank() == 1 ? 3 : 1);
    adaptive_allreduce<inproc> ar(t, n, o);
    std::vector<float> x(n);
    for (int s = 0; s < 5; ++s) {
      bench::fill_input(x, 9 + static_cast<std::uint64_t>(s), t.rank());
      before[static_cast<std::size_t>(t.rank())] = x;
      try {
        ar.run(x, reduce_op::sum);
      } catch (...) {
        after[static_cast<std::size_t>(t.rank())] = x;
        throw;
      }
    }
  });
  for (int r = 0; r < p; ++r) {
    INFO("rank " << r);
    REQUIRE(errors[static_cast<std::size_t>(r)]);
    CHECK_THROWS_MATCHES(
        std::rethrow_exception(errors[static_cast<std::size_t>(r)]), mismatch_error,
        test::what_has("disagree on the policy", "rank 1", "input left unchanged"));
    CHECK(test::bit_equal(after[static_cast<std::size_t>(r)], before[static_cast<std::size_t>(r)]));
  }
}

TEST_CASE("adaptive_allreduce: one rank, and bad input", "[adaptive]") {
  auto errors = test::on_ranks(1, [&](inproc& t) {
    adaptive_allreduce_options o;
    o.policy.with_warmup_steps(2).with_window_steps(1);
    adaptive_allreduce<inproc> ar(t, 16, o);
    std::vector<float> x(16, 1.5F);
    for (int s = 0; s < 4; ++s) ar.run(x);
    CHECK(x == std::vector<float>(16, 1.5F));
    CHECK(ar.steps() == 4);
    CHECK(ar.policy().steps_observed() == 3);
    CHECK_THROWS_MATCHES(ar.set_validation_loss(NAN), config_error, test::what_has("not finite"));
    std::vector<float> big(17);
    CHECK_THROWS_MATCHES(ar.run(big), config_error, test::what_has("exceeds the max_count 16"));
  });
  test::rethrow_any(errors);
}

TEST_CASE("adaptive_allreduce: a validation loss set on one rank drives every rank's guard",
          "[adaptive]") {
  const int p = GENERATE(2, 3);
  const std::size_t n = 600;
  // Warm-up steps 0 and 1 on none; step 1's observation, the warm-up's last,
  // moves step 3 to int8 (budget; an observation decides the level two steps later); rank 0 alone
  // reports a validation loss after each step from step 1 on; step 2's (made on none) is not fed,
  // but its loss carries; the one after step 4 is 50% above the best, so from step 6 every rank
  // runs none again, capped there.
  adaptive_allreduce_options o;
  o.policy.with_ladder(adaptive::ladder::parse("none,int8"))
      .with_warmup_steps(2)
      .with_window_steps(1)
      .with_hysteresis(1, 1)
      .with_energy_budget(1e-12)
      .with_accuracy_guard(0.1);
  o.with_probe(0, 1);
  time_free(o);
  const std::vector<double> loss{0.0, 1.0, 1.0, 1.0, 1.5, 1.5, 1.5, 1.5};  // [0] unused
  std::vector<std::vector<std::size_t>> levels(static_cast<std::size_t>(p));
  std::vector<std::string> logs(static_cast<std::size_t>(p));
  std::vector<std::size_t> ceiling(static_cast<std::size_t>(p));
  auto errors = test::on_ranks(p, [&](inproc& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    adaptive_allreduce<inproc> ar(t, n, o);
    std::vector<float> x(n);
    for (std::size_t s = 0; s < loss.size(); ++s) {
      bench::fill_input(x, 40 + s, t.rank());
      ar.run(x, reduce_op::average);
      levels[r].push_back(ar.last_level());
      if (t.rank() == 0 && s >= 1) ar.set_validation_loss(loss[s]);
    }
    logs[r] = log_of(ar.policy());
    ceiling[r] = ar.policy().ceiling();
  });
  test::rethrow_any(errors);
  INFO(logs[0]);
  for (int r = 0; r < p; ++r) {
    CHECK(levels[static_cast<std::size_t>(r)] == levels[0]);
    CHECK(logs[static_cast<std::size_t>(r)] == logs[0]);
    CHECK(ceiling[static_cast<std::size_t>(r)] == 0);
  }
  CHECK(levels[0] == std::vector<std::size_t>{0, 0, 0, 1, 1, 1, 0, 0});
  CHECK(logs[0].find("\"reason\":\"accuracy_loss\"") != std::string::npos);
  CHECK(logs[0].find("\"val_loss\":1.5") != std::string::npos);
}
