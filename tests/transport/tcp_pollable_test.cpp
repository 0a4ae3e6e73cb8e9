// The pollable capability (test, wait_any, cancel) and per-peer failure
// isolation of transport::tcp, with ranks as processes on 127.0.0.1.
#include <catch2/catch.hpp>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "greenreduce/transport/tcp.hpp"
#include "transport/tcp_harness.hpp"

namespace gr = greenreduce;
namespace grt = greenreduce::transport;
using greenreduce::test::expect;
using greenreduce::test::rank_group;
using namespace std::chrono_literals;

namespace {

grt::tcp make(int rank, int p, std::uint16_t port, bool isolate) {
  auto vars = greenreduce::test::launcher_env("torchrun", rank, p, port);
  auto o = grt::tcp_options::from_env(greenreduce::env_source::from_map(vars));
  o.isolate_peer_failures = isolate;
  o.timeout = 20000ms;
  return grt::tcp(o);
}

void check_ok(const std::vector<std::optional<rank_group::line>>& lines, std::vector<int> ranks,
              const char* what) {
  for (int r : ranks) {
    INFO(what << ": rank " << r << ": " << (lines[r] ? lines[r]->text : "<no report>"));
    CHECK((lines[r] && lines[r]->text == "ok"));
  }
}

}  // namespace

TEST_CASE("tcp pollable: wait_any serves whichever peer sends first; idle is no error",
          "[transport][tcp][poll]") {
  const auto port = greenreduce::test::free_port();
  rank_group g(3, [&](int rank, rank_group::reporter&) {
    auto t = make(rank, 3, port, true);
    expect(t.isolates_peer_failures(), "isolation off");
    if (rank == 0) {
      std::vector<std::byte> b1(16), b2(16);
      auto r1 = t.irecv(1, b1);
      auto r2 = t.irecv(2, b2);
      std::vector<grt::tcp::recv_request*> reqs{&r1, &r2};
      expect(!t.wait_any(reqs, 50ms).has_value(), "wait_any without a message returned");
      expect(!t.test(r1).has_value(), "test without a message returned");
      t.send(2, std::vector<std::byte>(1));  // go
      auto i = t.wait_any(reqs, 10000ms);
      expect(i && *i == 1, "wait_any did not find rank 2's message");
      auto n = t.test(r2);
      expect(n && *n == 3 && b2[2] == std::byte{9}, "rank 2's message");
      t.cancel(r1);
      t.send(1, std::vector<std::byte>(1));  // go
      std::vector<std::byte> b3(16);
      expect(t.recv(1, b3) == 2, "rank 1's message after the cancel");
      expect(b1[0] == std::byte{0}, "the cancelled buffer was written");
      return;
    }
    std::vector<std::byte> go(1);
    t.recv(0, go);
    if (rank == 2) t.send(0, std::vector<std::byte>{std::byte{7}, std::byte{8}, std::byte{9}});
    if (rank == 1) t.send(0, std::vector<std::byte>{std::byte{5}, std::byte{6}});
  });
  check_ok(g.collect(30s), {0, 1, 2}, "wait_any");
}

TEST_CASE("tcp isolation: a SIGKILLed peer fails only its operations", "[transport][tcp][poll]") {
  const auto port = greenreduce::test::free_port();
  rank_group g(3, [&](int rank, rank_group::reporter& report) {
    auto t = make(rank, 3, port, true);
    report("up");
    if (rank == 1) {
      while (true) ::pause();  // killed by the test
    }
    if (rank == 0) {
      std::vector<std::byte> b1(16), b2(16);
      auto r1 = t.irecv(1, b1);
      auto r2 = t.irecv(2, b2);
      std::vector<grt::tcp::recv_request*> reqs{&r1, &r2};
      auto i = t.wait_any(reqs, 15000ms);
      expect(i && *i == 0, "wait_any did not report rank 1's failure");
      try {
        (void)t.test(r1);
        report("no error");
        return;
      } catch (const gr::peer_error& e) {
        expect(std::string(e.what()).find("rank 1") != std::string::npos,
               std::string("error does not name rank 1: ") + e.what());
      }
      expect(t.peer_failed(1) && !t.peer_failed(2), "peer_failed");
      bool threw = false;
      try {
        t.send(1, std::vector<std::byte>(4));
      } catch (const gr::peer_error&) {
        threw = true;
      }
      expect(threw, "a send to the dead rank did not fail");
      t.send(2, std::vector<std::byte>(1));  // rank 2 still works, both ways
      expect(t.wait(r2) == 4, "rank 2's message");
      report("ok");
      return;
    }
    std::vector<std::byte> go(1);
    t.recv(0, go);
    t.send(0, std::vector<std::byte>(4));
    report("ok");
  });
  const auto up = g.collect(30s);
  for (int r = 0; r < 3; ++r) REQUIRE((up[r] && up[r]->text == "up"));
  ::kill(g.pid(1), SIGKILL);
  check_ok(g.collect(30s, {0, 2}), {0, 2}, "isolation");
}
