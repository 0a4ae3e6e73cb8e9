// Consistency changes while the parameter server runs: a change asked for by
// the workers applies at exactly the step they named, on every key and every
// server, and invalid changes are typed errors that leave the mode as it was.
//
// Gradients are small integers and the learning rate 1/4, so every sum the
// servers form is exact in fp32 whatever the arrival order: the final
// parameters tell exactly how many steps ran under each mode.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <latch>
#include <mutex>
#include <random>
#include <thread>

#include "ps/harness.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using test::endpoint;
using namespace std::chrono_literals;

namespace {

constexpr float lr = 0.25F;

/// Worker w's gradient of key k at step t: integers in [-8, 8].
std::vector<float> int_grad(std::uint64_t seed, int w, std::size_t k, int t, std::size_t n) {
  std::mt19937_64 gen(seed ^ (static_cast<std::uint64_t>(w) << 40) ^ (k << 20) ^
                      static_cast<std::uint64_t>(t));
  std::vector<float> g(n);
  for (auto& v : g) v = static_cast<float>(static_cast<int>(gen() % 17) - 8);
  return g;
}

/// The SGD parameters of key k (n elements) after `steps` steps of W workers
/// when each step t < T moves them by rate_before(t) * g and later steps by
/// rate_after * g, for every worker's g: per-push SSP applies lr * g_w, sync
/// lr * mean_w g_w per step.
std::vector<float> expected_params(std::uint64_t seed, int W, std::size_t k, std::size_t n,
                                   int steps, int T, float rate_before, float rate_after) {
  std::vector<float> want(n, 0.0F);
  for (int t = 0; t < steps; ++t)
    for (int w = 0; w < W; ++w) {
      const auto g = int_grad(seed, w, k, t, n);
      for (std::size_t i = 0; i < n; ++i) want[i] -= (t < T ? rate_before : rate_after) * g[i];
    }
  return want;
}

struct run_result {
  std::vector<std::vector<float>> params;  // per key, pulled at the end
  std::uint64_t updates = 0;               // over all servers
  std::uint32_t max_staleness = 0;
  std::vector<std::pair<std::uint64_t, ps::consistency>> schedule;  // of server 0
  bool lockstep_broken = false;       // a push of a sync step returned before all began it
  bool bound_broken = false;          // a push of an SSP step returned beyond the bound
  std::vector<std::uint64_t> agreed;  // the step every worker's change_consistency returned
};

/// W workers, S = 2 servers, keys "a" and "b"; mode `from` at start, every
/// worker asks for `to` from step T before its step `ask` and then runs
/// `steps` steps. Worker 0 is a straggler.
run_result run(ps::consistency from, ps::consistency to, int W, int T, int ask, int steps,
               std::uint64_t seed) {
  const int S = 2;
  const std::vector<ps::key_spec> keys{{"a", 5}, {"b", 7}};
  ps::ps_options opt;
  opt.mode = from;
  opt.timeout = 10000ms;
  test::ps_world world(S + W);
  run_result res;
  res.params.resize(keys.size());
  res.agreed.assign(static_cast<std::size_t>(W), 0);
  std::mutex m;
  std::vector<std::atomic<int>> started(static_cast<std::size_t>(W));
  for (auto& s : started) s = 0;
  std::atomic<bool> lockstep_broken{false}, bound_broken{false};
  std::latch all_pushed(W);  // under SSP the others may still push when one is done
  test::run_ranks(
      world, S, S + W,
      [&](endpoint& t) {
        ps::server<endpoint> srv(t, ps::roles(S, S + W), keys, ps::sgd(lr), opt);
        srv.run();
        std::lock_guard lock(m);
        res.updates += srv.stats().updates;
        res.max_staleness = std::max(res.max_staleness, srv.stats().max_staleness);
        if (t.rank() == 0) res.schedule = srv.schedule();
      },
      [&](endpoint& t) {
        ps::worker<endpoint> wk(t, ps::roles(S, S + W), keys);
        const int w = wk.index();
        for (int step = 0; step < steps; ++step) {
          if (step == ask)
            res.agreed[static_cast<std::size_t>(w)] =
                wk.change_consistency(to, static_cast<std::uint64_t>(T));
          if (w == 0 && step % 3 == 0) std::this_thread::sleep_for(2ms);
          started[static_cast<std::size_t>(w)] = step + 1;
          for (std::size_t k = 0; k < keys.size(); ++k)
            wk.push(keys[k].name, int_grad(seed, w, k, step, keys[k].length));
          const auto mode = step < T ? from : to;
          const std::uint32_t bound = mode.mode == ps::consistency::kind::sync ? 0 : mode.staleness;
          if (mode.mode != ps::consistency::kind::async)
            for (const auto& st : started)
              if (st.load() + static_cast<int>(bound) < step + 1) {
                (bound == 0 ? lockstep_broken : bound_broken) = true;
              }
        }
        all_pushed.arrive_and_wait();
        if (w == 0)
          for (std::size_t k = 0; k < keys.size(); ++k) {
            std::vector<float> p(keys[k].length);
            wk.pull(keys[k].name, p);
            res.params[k] = p;
          }
      });
  res.lockstep_broken = lockstep_broken;
  res.bound_broken = bound_broken;
  return res;
}

}  // namespace

TEST_CASE("ps mode change: ssp:2 -> sync applies from the step the workers named",
          "[ps][mode_change]") {
  const std::uint64_t seed = test::seed(31);
  const int W = 4, T = 9, steps = 16;
  INFO("seed " << seed);
  const auto r =
      run(ps::consistency::bounded_staleness(2), ps::consistency::sync(), W, T, 0, steps, seed);
  // Every push of steps < T was its own update, then one update per step and key.
  CHECK(r.updates == 2 * (static_cast<std::uint64_t>(T) * W + (steps - T)));
  CHECK(r.schedule.size() == 2);
  CHECK(r.schedule.back().first == T);
  CHECK(r.schedule.back().second == ps::consistency::sync());
  CHECK(r.agreed == std::vector<std::uint64_t>(W, T));
  CHECK(r.max_staleness <= 2);
  CHECK_FALSE(r.bound_broken);
  CHECK_FALSE(r.lockstep_broken);
  // SGD: SSP applies lr * g_w per push, sync lr * mean_w g_w per step.
  for (std::size_t k = 0; k < 2; ++k)
    CHECK(r.params[k] == expected_params(seed, W, k, k == 0 ? 5 : 7, steps, T, lr, lr / W));
}

TEST_CASE("ps mode change: sync -> ssp:1 asked mid-run applies from the step the workers named",
          "[ps][mode_change]") {
  const std::uint64_t seed = test::seed(32);
  const int W = 4, T = 8, ask = 5, steps = 15;
  INFO("seed " << seed);
  const auto r =
      run(ps::consistency::sync(), ps::consistency::bounded_staleness(1), W, T, ask, steps, seed);
  CHECK(r.updates == 2 * (static_cast<std::uint64_t>(T) + (steps - T) * W));
  CHECK(r.schedule.size() == 2);
  CHECK(r.schedule.back().first == T);
  CHECK(r.schedule.back().second == ps::consistency::bounded_staleness(1));
  CHECK(r.agreed == std::vector<std::uint64_t>(W, T));
  CHECK(r.max_staleness <= 1);
  CHECK_FALSE(r.bound_broken);
  CHECK_FALSE(r.lockstep_broken);
  for (std::size_t k = 0; k < 2; ++k)
    CHECK(r.params[k] == expected_params(seed, W, k, k == 0 ? 5 : 7, steps, T, lr / W, lr));
}

TEST_CASE("ps mode change: invalid changes are typed errors and leave the mode as it was",
          "[ps][mode_change]") {
  const int S = 2, W = 3;
  const std::vector<ps::key_spec> keys{{"a", 4}, {"b", 4}};
  ps::ps_options opt;
  opt.timeout = 10000ms;
  test::ps_world world(S + W);
  std::latch done_asking(1);
  std::mutex m;
  std::vector<std::vector<std::pair<std::uint64_t, ps::consistency>>> schedules;
  test::run_ranks(
      world, S, S + W,
      [&](endpoint& t) {
        ps::server<endpoint> srv(t, ps::roles(S, S + W), keys, ps::sgd(lr), opt);
        using kind = ps::consistency::kind;
        // One thread asserts at a time (Catch is not thread-safe): server 0
        // before it serves, worker 0 once every worker waits on it.
        if (t.rank() == 0) {
          CHECK_THROWS_MATCHES(srv.change_consistency(ps::consistency{kind::sync, 3}, 5),
                               config_error, test::what_has("sync", "staleness 3", "invalid"));
          CHECK_THROWS_MATCHES(srv.change_consistency(ps::consistency{kind::bounded_staleness, 0}),
                               config_error, test::what_has("ssp:s needs s >= 1"));
          CHECK(srv.schedule().size() == 1);
        }
        srv.run();
        std::lock_guard lock(m);
        schedules.push_back(srv.schedule());
      },
      [&](endpoint& t) {
        ps::worker<endpoint> wk(t, ps::roles(S, S + W), keys);
        const int w = wk.index();
        const std::vector<float> g(4, 1.0F);
        for (int step = 0; step < 6; ++step) {
          wk.push("a", g);
          wk.push("b", g);
        }
        // Sync: once this worker's push of step 5 returned, every worker pushed it.
        if (w == 0) {
          CHECK_THROWS_MATCHES(wk.change_consistency(ps::consistency::bounded_staleness(2), 3),
                               config_error,
                               test::what_has("too late", "pushed step 5",
                                              "earliest step still "
                                              "open is 6"));
          CHECK(wk.change_consistency(ps::consistency::bounded_staleness(2)) == 6);
          // The same change again: accepted as is (every worker may send it).
          CHECK(wk.change_consistency(ps::consistency::bounded_staleness(2), 6) == 6);
          CHECK_THROWS_MATCHES(wk.change_consistency(ps::consistency::async(), 6), mismatch_error,
                               test::what_has("conflicts", "ssp:2 from step 6"));
          CHECK_THROWS_MATCHES(wk.change_consistency(ps::consistency::async(), 4), mismatch_error,
                               test::what_has("conflicts"));
          done_asking.count_down();
        } else {
          done_asking.wait();
        }
        for (int step = 6; step < 9; ++step) {
          wk.push("a", g);
          wk.push("b", g);
        }
      });
  REQUIRE(schedules.size() == 2);
  for (const auto& s : schedules) {
    REQUIRE(s.size() == 2);
    CHECK(s[0] == std::pair<std::uint64_t, ps::consistency>{0, ps::consistency::sync()});
    CHECK(s[1] ==
          std::pair<std::uint64_t, ps::consistency>{6, ps::consistency::bounded_staleness(2)});
  }
}
