// The parameter server over transport::tcp with every rank a process on
// 127.0.0.1: sync equals single-process SGD, async converges, a SIGKILLed
// worker is dropped in async mode, and in sync mode the other workers get
// peer_error within 2x the timeout (killed or stopped worker).
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "greenreduce/ps/server.hpp"
#include "greenreduce/ps/worker.hpp"
#include "greenreduce/transport/tcp.hpp"
#include "ps/reference.hpp"
#include "support/random.hpp"
#include "transport/tcp_harness.hpp"

namespace gr = greenreduce;
namespace grt = greenreduce::transport;
using gr::test::expect;
using gr::test::grad_of;
using gr::test::rank_group;
using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

grt::tcp connect(int rank, int p, std::uint16_t port) {
  auto o = grt::tcp_options::from_env(
      gr::env_source::from_map(gr::test::launcher_env("torchrun", rank, p, port)));
  o.isolate_peer_failures = true;
  o.timeout = 60000ms;  // liveness is the parameter server's own rule
  o.log = [](const std::string&) {};
  return grt::tcp(o);
}

void check_all(const std::vector<std::optional<rank_group::line>>& lines, const char* what) {
  for (std::size_t r = 0; r < lines.size(); ++r) {
    INFO(what << ": rank " << r << ": " << (lines[r] ? lines[r]->text : "<no report>"));
    CHECK((lines[r] && lines[r]->text == "ok"));
  }
}

long long ms_since(clk::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clk::now() - t0).count();
}

}  // namespace

TEST_CASE("ps over tcp, sync: equals single-process momentum SGD", "[ps][tcp]") {
  const std::uint64_t seed = gr::test::seed(40);
  const int S = 2, W = 2, P = S + W, steps = 5;
  const std::vector<gr::ps::key_spec> keys{{"w", 300}, {"b", 7}, {"c", 1}};
  const float lr = 0.05F, mom = 0.9F;
  const gr::test::sync_reference reference(keys, W, steps, lr, mom, seed, seed + 7);
  const auto& init = reference.init;
  const auto& ref = reference.last();
  const auto port = gr::test::free_port();
  rank_group g(P, [&](int rank, rank_group::reporter&) {
    auto t = connect(rank, P, port);
    const gr::ps::roles roles(S, P);
    if (roles.is_server(rank)) {
      gr::ps::server<grt::tcp> srv(t, roles, keys, gr::ps::sgd(lr, mom));
      for (std::size_t k : srv.layout().keys_of[static_cast<std::size_t>(rank)])
        srv.init(keys[k].name, init[k]);
      srv.run();
      return;
    }
    gr::ps::worker<grt::tcp> wk(t, roles, keys);
    for (int step = 0; step < steps; ++step)
      for (std::size_t k = 0; k < keys.size(); ++k)
        wk.push(keys[k].name,
                grad_of(seed, wk.index(), k, static_cast<std::uint64_t>(step), keys[k].length));
    for (std::size_t k = 0; k < keys.size(); ++k) {
      std::vector<float> p(keys[k].length);
      wk.pull(keys[k].name, p);
      for (std::size_t i = 0; i < p.size(); ++i)
        expect(
            std::fabs(p[i] - ref[k][i]) <= 1e-5F * (1 + std::fabs(ref[k][i])),
            gr::detail::str("key ", keys[k].name, " element ", i, ": ", p[i], " vs ", ref[k][i]));
    }
  });
  check_all(g.collect(60s), "sync");
}

TEST_CASE("ps over tcp, async: converges on a shared quadratic", "[ps][tcp]") {
  const int S = 1, W = 3, P = S + W;
  const std::vector<gr::ps::key_spec> keys{{"x", 16}};
  std::vector<float> target(16);
  for (std::size_t i = 0; i < target.size(); ++i) target[i] = static_cast<float>(i) * 0.25F - 1.0F;
  const auto port = gr::test::free_port();
  rank_group g(P, [&](int rank, rank_group::reporter&) {
    auto t = connect(rank, P, port);
    const gr::ps::roles roles(S, P);
    gr::ps::ps_options o;
    o.mode = gr::ps::consistency::async();
    if (roles.is_server(rank)) {
      gr::ps::server<grt::tcp> srv(t, roles, keys, gr::ps::sgd(0.1F), o);
      srv.run();
      return;
    }
    gr::ps::worker<grt::tcp> wk(t, roles, keys);
    std::vector<float> x(16), gr_(16);
    for (int step = 0; step < 80; ++step) {
      wk.pull("x", x);
      for (std::size_t i = 0; i < x.size(); ++i) gr_[i] = x[i] - target[i];
      wk.push("x", gr_);
    }
    wk.pull("x", x);
    for (std::size_t i = 0; i < x.size(); ++i)
      expect(std::fabs(x[i] - target[i]) < 1e-3F,
             gr::detail::str("element ", i, " is ", x[i], ", target ", target[i]));
  });
  check_all(g.collect(60s), "async");
}

TEST_CASE("ps over tcp, async: a SIGKILLed worker is dropped, the others finish",
          "[ps][tcp][fault]") {
  const int S = 1, W = 3, P = S + W;
  const std::vector<gr::ps::key_spec> keys{{"x", 64}};
  const auto port = gr::test::free_port();
  rank_group g(P, [&](int rank, rank_group::reporter& report) {
    auto t = connect(rank, P, port);
    const gr::ps::roles roles(S, P);
    gr::ps::ps_options o;
    o.mode = gr::ps::consistency::async();
    o.timeout = 2000ms;
    if (roles.is_server(rank)) {
      std::vector<std::string> logs;
      gr::ps::server<grt::tcp> srv(t, roles, keys, gr::ps::sgd(0.01F), o, {}, {},
                                   [&](std::string_view l) { logs.emplace_back(l); });
      report("up");
      srv.run();
      const auto st = srv.stats();
      expect(st.dropped == std::vector<int>{2}, "dropped workers are not {2}");
      expect(logs.size() == 1 && logs[0].find("worker 2") != std::string::npos,
             "the drop was not logged");
      expect(st.pushes_applied[0] >= 20 && st.pushes_applied[1] >= 20, "survivors stalled");
      report("ok");  // "up" was reported, so returning alone reports nothing
      return;
    }
    gr::ps::worker<grt::tcp> wk(t, roles, keys);
    const std::vector<float> grad(64, 1.0F);
    wk.push("x", grad);
    report("up");
    if (wk.index() == 2)
      while (true) ::pause();  // killed by the test
    const auto t0 = clk::now();
    int n = 0;
    while (ms_since(t0) < 2500 || n < 20) {
      wk.push("x", grad);
      ++n;
      std::this_thread::sleep_for(20ms);
    }
    report("ok");
  });
  const auto up = g.collect(60s);
  for (int r = 0; r < P; ++r) REQUIRE((up[r] && up[r]->text == "up"));
  ::kill(g.pid(3), SIGKILL);
  const auto lines = g.collect(60s, {0, 1, 2});
  for (int r : {0, 1, 2}) {
    INFO("rank " << r << ": " << (lines[r] ? lines[r]->text : "<no report>"));
    CHECK((lines[r] && lines[r]->text == "ok"));
  }
}

TEST_CASE("ps over tcp, sync: a killed or stopped worker -> peer_error within 2x the timeout",
          "[ps][tcp][fault]") {
  const int S = 1, W = 3, P = S + W;
  const auto timeout = 2000ms;
  const std::vector<gr::ps::key_spec> keys{{"x", 32}};
  for (const int sig : {SIGKILL, SIGSTOP}) {
    const auto port = gr::test::free_port();
    rank_group g(P, [&](int rank, rank_group::reporter& report) {
      auto t = connect(rank, P, port);
      const gr::ps::roles roles(S, P);
      gr::ps::ps_options o;
      o.timeout = timeout;
      if (roles.is_server(rank)) {
        gr::ps::server<grt::tcp> srv(t, roles, keys, gr::ps::sgd(0.01F), o, {}, {},
                                     [](std::string_view) {});
        report("up");
        srv.run();
        expect(srv.stats().dropped == std::vector<int>{2}, "dropped workers are not {2}");
        report("ok");
        return;
      }
      gr::ps::worker<grt::tcp> wk(t, roles, keys);
      const std::vector<float> grad(32, 1.0F);
      wk.push("x", grad);  // step 0, everyone
      report("up");
      if (wk.index() == 2)
        while (true) ::pause();  // killed or stopped by the test
      std::this_thread::sleep_for(100ms);
      const auto t0 = clk::now();
      try {
        wk.push("x", grad);
        report("no error");
      } catch (const gr::peer_error& e) {
        const std::string w = e.what();
        const auto waited = ms_since(t0);
        expect(w.find("sync step cannot complete") != std::string::npos &&
                   w.find("worker 2") != std::string::npos,
               "error does not name the step and worker 2: " + w);
        expect(waited < 2 * timeout.count(),
               gr::detail::str("peer_error after ", waited, " ms, timeout ", timeout.count()));
        report("ok");
      }
    });
    const auto up = g.collect(60s);
    for (int r = 0; r < P; ++r) REQUIRE((up[r] && up[r]->text == "up"));
    ::kill(g.pid(3), sig);
    // A stopped worker keeps its connection: the server serves it (refusing
    // its requests) until it leaves, so only the workers report here.
    const std::vector<int> ranks =
        sig == SIGKILL ? std::vector<int>{0, 1, 2} : std::vector<int>{1, 2};
    const auto lines = g.collect(60s, ranks);
    for (int r : ranks) {
      INFO("signal " << sig << " rank " << r << ": "
                     << (lines[r] ? lines[r]->text : "<no report>"));
      CHECK((lines[r] && lines[r]->text == "ok"));
    }
  }
}
