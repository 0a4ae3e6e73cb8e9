// Consistency modes, update rules, shares and reports of the parameter server.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <latch>
#include <random>
#include <string>
#include <thread>
#include <utility>

#include "greenreduce/codec/int8.hpp"
#include "greenreduce/energy/model.hpp"
#include "ps/harness.hpp"
#include "ps/reference.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using test::endpoint;
using test::grad_of;
using namespace std::chrono_literals;

namespace {

/// A consistent least-squares problem: rows of A split over W workers, b = A x*.
struct least_squares {
  std::size_t d = 6, rows_per_worker = 12;
  std::vector<std::vector<float>> A, b;  // per worker, row-major
  std::vector<float> x_star;

  least_squares(int W, std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    std::normal_distribution<float> nd;
    x_star.resize(d);
    for (auto& v : x_star) v = nd(gen);
    for (int w = 0; w < W; ++w) {
      std::vector<float> a(rows_per_worker * d), bb(rows_per_worker);
      for (auto& v : a) v = nd(gen);
      for (std::size_t r = 0; r < rows_per_worker; ++r) {
        float s = 0;
        for (std::size_t c = 0; c < d; ++c) s += a[r * d + c] * x_star[c];
        bb[r] = s;
      }
      A.push_back(a);
      b.push_back(bb);
    }
  }
  /// Gradient of (1/2m)||A_w x - b_w||^2.
  std::vector<float> grad(int w, const std::vector<float>& x) const {
    std::vector<float> g(d, 0.0F);
    const auto& a = A[static_cast<std::size_t>(w)];
    for (std::size_t r = 0; r < rows_per_worker; ++r) {
      float res = -b[static_cast<std::size_t>(w)][r];
      for (std::size_t c = 0; c < d; ++c) res += a[r * d + c] * x[c];
      for (std::size_t c = 0; c < d; ++c)
        g[c] += res * a[r * d + c] / static_cast<float>(rows_per_worker);
    }
    return g;
  }
};

/// Runs the least-squares problem split into two keys ("x0", "x1") on S=2
/// servers; returns the final x and the largest staleness the servers saw.
std::pair<std::vector<float>, std::uint32_t> solve(ps::consistency mode, int W, int steps,
                                                   std::uint64_t seed) {
  const least_squares ls(W, seed);
  const std::vector<ps::key_spec> keys{{"x0", 3}, {"x1", 3}};
  const int S = 2;
  ps::ps_options opt;
  opt.mode = mode;
  opt.timeout = 5000ms;
  test::ps_world world(S + W);
  std::vector<float> x(6);
  std::atomic<std::uint32_t> max_stale{0};
  // started[w]: the highest step whose push worker w has begun (+1).
  std::vector<std::atomic<std::uint64_t>> started(static_cast<std::size_t>(W));
  for (auto& s : started) s = 0;
  std::atomic<bool> bound_broken{false};
  test::run_ranks(
      world, S, S + W,
      [&](endpoint& t) {
        ps::server<endpoint> srv(t, ps::roles(S, S + W), keys, ps::sgd(0.2F), opt);
        srv.run();
        max_stale = std::max(max_stale.load(), srv.stats().max_staleness);
      },
      [&](endpoint& t) {
        ps::worker<endpoint> wk(t, ps::roles(S, S + W), keys);
        const int w = wk.index();
        std::vector<float> x0(3), x1(3), xx(6);
        for (int step = 0; step < steps; ++step) {
          wk.pull("x0", x0);
          wk.pull("x1", x1);
          std::copy(x0.begin(), x0.end(), xx.begin());
          std::copy(x1.begin(), x1.end(), xx.begin() + 3);
          const auto g = ls.grad(w, xx);
          if (w == 0 && step % 7 == 0) std::this_thread::sleep_for(1ms);  // a straggler
          started[static_cast<std::size_t>(w)] = static_cast<std::uint64_t>(step) + 1;
          wk.push("x0", std::span(g).first(3));
          wk.push("x1", std::span(g).subspan(3));
          if (mode.mode == ps::consistency::kind::bounded_staleness) {
            // Released from step `step`: every worker has begun step - s.
            for (const auto& st : started)
              if (st.load() + mode.staleness < static_cast<std::uint64_t>(step) + 1)
                bound_broken = true;
          }
        }
        if (w == 0) {
          wk.pull("x0", x0);
          wk.pull("x1", x1);
          std::copy(x0.begin(), x0.end(), x.begin());
          std::copy(x1.begin(), x1.end(), x.begin() + 3);
        }
      });
  CHECK_FALSE(bound_broken);
  float err = 0;
  for (std::size_t c = 0; c < 6; ++c) err = std::max(err, std::abs(x[c] - ls.x_star[c]));
  INFO("mode " << mode.to_string() << " max |x - x*| = " << err);
  CHECK(err < 2e-3F);
  return {x, max_stale.load()};
}

}  // namespace

TEST_CASE("ps sync: equals single-process momentum SGD on the same gradients", "[ps][sync]") {
  const std::uint64_t seed = test::seed(10);
  const int S = 2, W = 3, steps = 6;
  const std::vector<ps::key_spec> keys{
      {"w1", 257}, {"b1", 3}, {"w2", 100}, {"one", 1}, {"empty", 0}};
  const float lr = 0.05F, mom = 0.9F;
  const test::sync_reference reference(keys, W, steps, lr, mom, seed, seed + 99);
  const auto& init = reference.init;
  const auto& ref = reference.last();
  test::ps_world world(S + W);
  std::mutex m;
  std::vector<std::vector<std::vector<float>>> pulled(static_cast<std::size_t>(W));
  std::vector<ps::server_stats> stats(static_cast<std::size_t>(S));
  test::run_ranks(
      world, S, S + W,
      [&](endpoint& t) {
        ps::server<endpoint> srv(t, ps::roles(S, S + W), keys, ps::sgd(lr, mom));
        for (std::size_t k : srv.layout().keys_of[static_cast<std::size_t>(t.rank())])
          srv.init(keys[k].name, init[k]);
        srv.run();
        std::lock_guard lock(m);
        stats[static_cast<std::size_t>(t.rank())] = srv.stats();
      },
      [&](endpoint& t) {
        ps::worker<endpoint> wk(t, ps::roles(S, S + W), keys);
        const int w = wk.index();
        std::vector<char> contacted(S, 0);
        auto first_contact = [&](std::size_t k) {
          const auto s = static_cast<std::size_t>(wk.layout().owner[k]);
          return !std::exchange(contacted[s], 1);
        };
        for (int step = 0; step < steps; ++step)
          for (std::size_t k = 0; k < keys.size(); ++k) {
            const auto g = grad_of(seed, w, k, static_cast<std::uint64_t>(step), keys[k].length);
            const auto rep = wk.push(keys[k].name, g);
            CHECK(rep.op == "push");
            CHECK(rep.algo == "ps");
            CHECK(rep.codec == "none");
            CHECK(rep.raw_bytes == 4 * keys[k].length);
            // The first request to a server also carries the hello exchange.
            const std::uint64_t hello = step == 0 && first_contact(k) ? 1 : 0;
            // inproc counts tcp's frame header with every message.
            constexpr auto H = transport::inproc_header_bytes;
            CHECK(rep.bytes_sent == ps::request_header_bytes + frame_header_bytes +
                                        4 * keys[k].length + hello * ps::request_header_bytes +
                                        (1 + hello) * H);
            CHECK(rep.bytes_received == (ps::reply_header_bytes + H) * (1 + hello));
            CHECK(rep.memory_bytes == codec::none{}.encode_work(keys[k].length).memory_bytes);
            CHECK(rep.seconds >= 0);
          }
        std::vector<std::vector<float>> mine;
        for (const auto& key : keys) {
          std::vector<float> p(key.length);
          const auto rep = wk.pull(key.name, p);
          CHECK(rep.op == "pull");
          CHECK(rep.bytes_received == ps::reply_header_bytes + frame_header_bytes + 4 * key.length +
                                          transport::inproc_header_bytes);
          mine.push_back(p);
        }
        pulled[static_cast<std::size_t>(w)] = mine;
      });
  for (int w = 0; w < W; ++w)
    for (std::size_t k = 0; k < keys.size(); ++k)
      for (std::size_t i = 0; i < keys[k].length; ++i) {
        const float got = pulled[static_cast<std::size_t>(w)][k][i];
        INFO("worker " << w << " key " << keys[k].name << " element " << i << " seed " << seed);
        REQUIRE(std::abs(got - ref[k][i]) <= 1e-5F * (1.0F + std::abs(ref[k][i])));
      }
  std::uint64_t updates = 0;
  for (const auto& s : stats) {
    updates += s.updates;
    CHECK(s.rejected == 0);
    CHECK(s.dropped.empty());
  }
  CHECK(updates == steps * keys.size());
}

TEST_CASE("ps push_pull: every sync step's parameters in the push's reply", "[ps][sync]") {
  // The same reference as above, checked after every step: push_pull returns
  // what a pull right after the completed step returns, in one round trip.
  const std::uint64_t seed = test::seed(11);
  const int S = 2, W = 3, steps = 5;
  const std::vector<ps::key_spec> keys{{"w1", 257}, {"b1", 3}, {"one", 1}, {"empty", 0}};
  const float lr = 0.05F, mom = 0.9F;
  const test::sync_reference reference(keys, W, steps, lr, mom, seed, seed + 99);
  const auto& init = reference.init;
  const auto& after = reference.after;
  test::ps_world world(S + W);
  std::mutex m;
  std::vector<ps::server_stats> stats(static_cast<std::size_t>(S));
  // Per worker, step and key: what push_pull returned and its report (checked
  // below, on this thread: Catch's assertions are not for worker threads).
  struct got {
    std::vector<float> params;
    report rep;
    std::uint64_t step_after = 0, hello = 0;
  };
  std::vector<got> results(static_cast<std::size_t>(W * steps) * keys.size());
  auto slot = [&](int w, int step, std::size_t k) -> got& {
    return results[(static_cast<std::size_t>(w * steps + step)) * keys.size() + k];
  };
  test::run_ranks(
      world, S, S + W,
      [&](endpoint& t) {
        ps::server<endpoint> srv(t, ps::roles(S, S + W), keys, ps::sgd(lr, mom));
        for (std::size_t k : srv.layout().keys_of[static_cast<std::size_t>(t.rank())])
          srv.init(keys[k].name, init[k]);
        srv.run();
        std::lock_guard lock(m);
        stats[static_cast<std::size_t>(t.rank())] = srv.stats();
      },
      [&](endpoint& t) {
        ps::worker<endpoint> wk(t, ps::roles(S, S + W), keys);
        const int w = wk.index();
        std::vector<char> contacted(S, 0);
        for (int step = 0; step < steps; ++step)
          for (std::size_t k = 0; k < keys.size(); ++k) {
            const auto g = grad_of(seed, w, k, static_cast<std::uint64_t>(step), keys[k].length);
            got& r = slot(w, step, k);
            r.params.assign(keys[k].length, -1.0F);
            r.rep = wk.push_pull(keys[k].name, g, r.params);
            r.step_after = wk.step(keys[k].name);
            const auto s = static_cast<std::size_t>(wk.layout().owner[k]);
            r.hello = std::exchange(contacted[s], 1) == 0 ? 1 : 0;
          }
      });
  constexpr auto H = transport::inproc_header_bytes;
  for (int w = 0; w < W; ++w)
    for (int step = 0; step < steps; ++step)
      for (std::size_t k = 0; k < keys.size(); ++k) {
        INFO("worker " << w << " step " << step << " key " << keys[k].name << " seed " << seed);
        const got& r = slot(w, step, k);
        CHECK(r.rep.op == "push_pull");
        CHECK(r.rep.raw_bytes == 8 * keys[k].length);
        CHECK(r.step_after == static_cast<std::uint64_t>(step) + 1);
        // One request and one reply (plus the first contact's hello): the
        // reply carries the parameters as a plain pull's would.
        CHECK(r.rep.bytes_received == ps::reply_header_bytes + frame_header_bytes +
                                          4 * keys[k].length + H +
                                          r.hello * (ps::reply_header_bytes + H));
        const auto& want = after[static_cast<std::size_t>(step)][k];
        REQUIRE(r.params.size() == want.size());
        for (std::size_t i = 0; i < want.size(); ++i) {
          INFO("element " << i);
          REQUIRE(std::abs(r.params[i] - want[i]) <= 1e-5F * (1.0F + std::abs(want[i])));
        }
      }
  for (const auto& st : stats) {
    CHECK(st.rejected == 0);
    CHECK(st.dropped.empty());
  }
}

TEST_CASE("ps push_pull: SSP answers with the parameters after the push; encoded, a pull first",
          "[ps][ssp][codec]") {
  // One worker, so SSP applies each push at once: the reply holds exactly the
  // parameters after it (fp32), or those through the int8 pull codec.
  const std::uint64_t seed = test::seed(12);
  const std::vector<ps::key_spec> keys{{"w", 300}};
  const float lr = 0.1F, mom = 0.5F;
  const int steps = 4;
  for (bool encoded : {false, true}) {
    INFO("encoded " << encoded << " seed " << seed);
    auto ref = test::normal_floats(300, seed + 1);
    const auto init = ref;
    std::vector<float> vel(300, 0.0F);
    std::vector<std::vector<float>> want, got(steps);
    std::vector<report> reps(steps);
    std::uint64_t rejected = 1;
    for (int step = 0; step < steps; ++step) {
      const auto g = grad_of(seed, 0, 0, static_cast<std::uint64_t>(step), 300);
      for (std::size_t i = 0; i < 300; ++i) {
        vel[i] = mom * vel[i] + g[i];
        ref[i] -= lr * vel[i];
      }
      want.push_back(ref);
    }
    test::ps_world world(2);
    test::run_ranks(
        world, 1, 2,
        [&](endpoint& t) {
          ps::ps_options o;
          o.mode = ps::consistency::bounded_staleness(2);
          ps::server<endpoint, codec::none, codec::int8> srv(
              t, ps::roles(1, 2), keys, ps::sgd(lr, mom), o, codec::none{}, codec::int8());
          srv.init("w", init);
          srv.run();
          rejected = srv.stats().rejected;
        },
        [&](endpoint& t) {
          ps::worker_options wo;
          wo.encoded_pull = encoded;
          ps::worker<endpoint, codec::none, codec::int8> wk(t, ps::roles(1, 2), keys, wo,
                                                            codec::none{}, codec::int8());
          for (int step = 0; step < steps; ++step) {
            auto& p = got[static_cast<std::size_t>(step)];
            p.resize(300);
            reps[static_cast<std::size_t>(step)] =
                wk.push_pull("w", grad_of(seed, 0, 0, static_cast<std::uint64_t>(step), 300), p);
          }
        });
    CHECK(rejected == 0);
    const std::uint64_t plain_params = ps::reply_header_bytes + frame_header_bytes + 1200;
    for (int step = 0; step < steps; ++step) {
      INFO("step " << step);
      const auto& rep = reps[static_cast<std::size_t>(step)];
      if (!encoded)
        CHECK(rep.bytes_received >= plain_params);
      else  // int8: about a quarter of the bytes; the first call also pulled once
        CHECK(rep.bytes_received < (step == 0 ? 2 : 1) * plain_params / 2);
      const auto& w = want[static_cast<std::size_t>(step)];
      float scale = 0.0F;
      for (float v : w) scale = std::max(scale, std::abs(v));
      const float tol = encoded ? scale / 127.0F : 1e-6F * (1.0F + scale);
      for (std::size_t i = 0; i < 300; ++i) {
        INFO("element " << i);
        REQUIRE(std::abs(got[static_cast<std::size_t>(step)][i] - w[i]) <= tol);
      }
    }
  }
}

TEST_CASE("ps async: converges to the least-squares optimum", "[ps][async]") {
  solve(ps::consistency::async(), 3, 400, test::seed(11));
}

TEST_CASE("ps ssp: converges and never exceeds the staleness bound", "[ps][ssp]") {
  for (std::uint32_t s : {1U, 3U}) {
    const auto [x, stale] =
        solve(ps::consistency::bounded_staleness(s), 3, 400, test::seed(12 + s));
    INFO("staleness bound " << s);
    CHECK(stale <= s);
  }
  // s = 0 is sync, which averages: same optimum.
  solve(ps::consistency::parse("ssp:0"), 2, 400, test::seed(15));
}

namespace {

// Shares a late-joining reader sees after W async workers each pushed `steps`
// times; `slow(w, wk)` makes worker w slower (by sleeping or by stating it).
template <class Slow>
std::vector<double> shares_after(int W, int steps, Slow slow) {
  const int S = 1;
  const std::vector<ps::key_spec> keys{{"p", 16}};
  test::ps_world world(S + W);
  ps::ps_options opt;
  opt.mode = ps::consistency::async();
  std::vector<std::vector<double>> seen(static_cast<std::size_t>(W));
  std::latch all_started(W), all_pushed(W), all_pushed_twice(W);
  test::run_ranks(
      world, S, S + W,
      [&](endpoint& t) {
        ps::server<endpoint> srv(t, ps::roles(S, S + W), keys, ps::sgd(0.01F), opt);
        srv.run();
      },
      [&](endpoint& t) {
        ps::worker<endpoint> wk(t, ps::roles(S, S + W), keys);
        const int w = wk.index();
        wk.set_samples(32);
        const std::vector<float> g(16, 0.0F);
        const auto initial = wk.shares();
        for (double s : initial) CHECK(s == Approx(1.0 / W));
        all_started.arrive_and_wait();  // no push changes the shares before all have read them
        for (int step = 0; step < steps; ++step) {
          slow(w, wk);
          wk.push("p", g);
        }
        all_pushed.arrive_and_wait();
        seen[static_cast<std::size_t>(w)] = wk.shares();
        all_pushed_twice.arrive_and_wait();  // nobody leaves before everyone asked
      });
  for (const auto& s : seen) CHECK(s == seen[0]);  // one server, one answer
  return seen[0];
}

}  // namespace

TEST_CASE("ps shares: proportional to the workers' stated compute times", "[ps][shares]") {
  // Worker w states (w + 1) x 4 ms per step of 32 samples: rates 1 : 1/2 : 1/3
  // exactly, so shares 6/11, 3/11, 2/11 whatever the host's timing.
  std::atomic<int> refused{0};
  const auto sh = shares_after(3, 12, [&](int w, ps::worker<endpoint>& wk) {
    try {
      wk.set_compute_time(std::chrono::nanoseconds(-1));
    } catch (const config_error& e) {
      if (std::string(e.what()).find("cannot be negative") != std::string::npos) ++refused;
    }
    wk.set_compute_time(std::chrono::milliseconds(4 * (w + 1)));
  });
  CHECK(refused == 3 * 12);
  INFO("shares " << sh[0] << " " << sh[1] << " " << sh[2]);
  REQUIRE(sh.size() == 3);
  CHECK(sh[0] == Approx(6.0 / 11).epsilon(1e-12));
  CHECK(sh[1] == Approx(3.0 / 11).epsilon(1e-12));
  CHECK(sh[2] == Approx(2.0 / 11).epsilon(1e-12));
}

TEST_CASE("ps shares: follow the workers' measured throughput", "[ps][shares]") {
  // Measured: worker w sleeps 2 x 5^w ms per step outside the library, so its
  // rate is about 1 / 5^w of worker 0's. On a loaded host a sleep overshoots
  // by up to tens of milliseconds (the sanitizers slow everyone alike), so only
  // the order and a loose ratio are checked here; the exact arithmetic is the
  // stated-time case above.
  const auto sh = shares_after(3, 8, [](int w, ps::worker<endpoint>&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(w == 0 ? 2 : w == 1 ? 10 : 50));
  });
  INFO("shares " << sh[0] << " " << sh[1] << " " << sh[2]);
  REQUIRE(sh.size() == 3);
  CHECK(sh[0] + sh[1] + sh[2] == Approx(1.0));
  CHECK(sh[0] > sh[1]);
  CHECK(sh[1] > sh[2]);
  CHECK(sh[0] / sh[2] > 2.5);  // 25 expected
}

TEST_CASE("ps: encoded pull and pushes with another codec", "[ps][codec]") {
  const int S = 1, W = 2;
  const std::vector<ps::key_spec> keys{{"p", 33}};
  const auto init = test::normal_floats(33, test::seed(20));
  test::ps_world world(S + W);
  ps::worker_options wo;
  wo.encoded_pull = true;
  test::run_ranks(
      world, S, S + W,
      [&](endpoint& t) {
        ps::server<endpoint, test::doubled, test::doubled> srv(t, ps::roles(S, S + W), keys,
                                                               ps::sgd(0.5F));
        srv.init("p", init);
        srv.run();
      },
      [&](endpoint& t) {
        ps::worker<endpoint, test::doubled, test::doubled> wk(t, ps::roles(S, S + W), keys, wo);
        std::vector<float> p(33);
        const auto r = wk.pull("p", p);
        CHECK(r.codec == "doubled");
        CHECK(p == init);
        const std::vector<float> g(33, 1.0F);
        CHECK(wk.push("p", g).codec == "doubled");
        wk.pull("p", p);
        for (std::size_t i = 0; i < 33; ++i) CHECK(p[i] == Approx(init[i] - 0.5F));
      });
}

TEST_CASE("ps: error feedback keeps a lossy codec's error bounded", "[ps][codec]") {
  // A constant gradient of 0.3 sent with a 1/8-step codec: without the
  // residual every push sends 0.25; with it the sum tracks 0.3 * steps.
  const int S = 1, W = 1, steps = 40;
  const std::vector<ps::key_spec> keys{{"p", 5}};
  for (bool ef : {true, false}) {
    test::ps_world world(S + W);
    ps::worker_options wo;
    wo.error_feedback = ef;
    std::vector<float> p(5);
    test::run_ranks(
        world, S, S + W,
        [&](endpoint& t) {
          ps::server<endpoint, test::coarse> srv(t, ps::roles(S, S + W), keys, ps::sgd(1.0F));
          srv.run();
        },
        [&](endpoint& t) {
          ps::worker<endpoint, test::coarse> wk(t, ps::roles(S, S + W), keys, wo);
          const std::vector<float> g(5, 0.3F);
          for (int i = 0; i < steps; ++i) wk.push("p", g);
          wk.pull("p", p);
        });
    const float want = -0.3F * steps;
    INFO("error feedback " << ef << ": " << p[0] << " vs " << want);
    if (ef)
      CHECK(std::abs(p[0] - want) <= 0.0625F + 1e-4F);
    else
      CHECK(std::abs(p[0] - want) > 1.0F);
  }
}

TEST_CASE("ps: a refused push restores the error-feedback residual", "[ps][codec]") {
  // 3e38 * 8 overflows in the 1/8-step codec: the server decodes inf and
  // refuses the push. Were the residual committed it would hold -inf and every
  // later push would fail; restored, the sum still tracks 0.3 * steps.
  const int S = 1, W = 1, steps = 20;
  const std::vector<ps::key_spec> keys{{"p", 5}};
  test::ps_world world(S + W);
  std::vector<float> p(5);
  test::run_ranks(
      world, S, S + W,
      [&](endpoint& t) {
        ps::server<endpoint, test::coarse> srv(t, ps::roles(S, S + W), keys, ps::sgd(1.0F), {}, {},
                                               {}, [](std::string_view) {});
        srv.run();
      },
      [&](endpoint& t) {
        ps::worker<endpoint, test::coarse> wk(t, ps::roles(S, S + W), keys);
        const std::vector<float> g(5, 0.3F), huge(5, 3e38F);
        for (int i = 0; i < steps; ++i) {
          wk.push("p", g);
          if (i == steps / 2) CHECK_THROWS_AS(wk.push("p", huge), decode_error);
        }
        wk.pull("p", p);
      });
  CHECK(std::abs(p[0] - (-0.3F * steps)) <= 0.0625F + 1e-4F);
}

TEST_CASE("ps: worker_options::annotate sees every push and pull report", "[ps][energy]") {
  const int S = 1, W = 1;
  const std::vector<ps::key_spec> keys{{"p", 64}};
  test::ps_world world(S + W);
  int calls = 0;
  const energy::model m;
  test::run_ranks(
      world, S, S + W,
      [&](endpoint& t) {
        ps::server<endpoint> srv(t, ps::roles(S, S + W), keys, ps::sgd(0.1F));
        srv.run();
      },
      [&](endpoint& t) {
        ps::worker_options wo;
        wo.annotate = [&](report& r) {
          ++calls;
          m.annotate(r);
        };
        ps::worker<endpoint> wk(t, ps::roles(S, S + W), keys, wo);
        std::vector<float> g(64, 1.0F), p(64);
        const auto a = wk.push("p", g);
        const auto b = wk.pull("p", p);
        CHECK(a.energy.method == energy_method::model);
        CHECK(a.energy.total_j() > 0);
        CHECK(b.energy.total_j() > 0);
      });
  CHECK(calls == 2);
  // Default: none.
  CHECK_FALSE(ps::worker_options{}.annotate);
}

TEST_CASE("ps: reports carry the energy estimate by default; server totals count its work",
          "[ps][energy]") {
  const int S = 1, W = 2;
  const std::size_t n = 513;
  const std::vector<ps::key_spec> keys{{"p", n}};
  test::ps_world world(S + W);
  const energy::model m("loopback");
  report server_total;
  std::vector<std::uint64_t> worker_wire(W, 0);
  test::run_ranks(
      world, S, S + W,
      [&](endpoint& t) {
        ps::server<endpoint, codec::int8> srv(t, ps::roles(S, S + W), keys, ps::sgd(0.1F), {},
                                              codec::int8{});
        srv.run();
        server_total = srv.totals(m);
      },
      [&](endpoint& t) {
        ps::worker<endpoint, codec::int8> wk(t, ps::roles(S, S + W), keys, {}, codec::int8{});
        std::vector<float> g(n, 0.5F), p(n);
        for (int step = 0; step < 3; ++step) {
          const auto a = wk.push("p", g);
          const auto b = wk.pull("p", p);
          for (const auto* r : {&a, &b}) {
            const auto want = energy::default_model().estimate(*r);
            CHECK(r->energy.method == energy_method::model);
            CHECK(r->energy.network_j == want.network_j);
            CHECK(r->energy.memory_j == want.memory_j);
            CHECK(r->energy.total_j() > 0);
          }
          worker_wire[static_cast<std::size_t>(wk.index())] += a.wire_bytes() + b.wire_bytes();
        }
        wk.finish();
      });
  CHECK(server_total.op == "ps_server");
  CHECK(server_total.codec == "int8");
  // The server received every push and sent every pull: at least what the
  // workers' push/pull reports counted, minus nothing (hello/bye come on top).
  const auto workers_total = worker_wire[0] + worker_wire[1];
  CHECK(server_total.wire_bytes() >= workers_total);
  CHECK(server_total.wire_bytes() <= workers_total + 4096);
  // 6 pushes decoded (int8 decode work) plus aggregation and 3 updates of sgd.
  CHECK(server_total.memory_bytes >= 6 * codec::int8{}.decode_work(n).memory_bytes);
  CHECK(server_total.compute_ops >= 6 * n);
  CHECK(server_total.seconds > 0);
  const auto want = m.estimate(server_total);
  CHECK(server_total.energy.method == energy_method::model);
  CHECK(server_total.energy.network_j == want.network_j);
  CHECK(server_total.energy.memory_j == want.memory_j);
}
