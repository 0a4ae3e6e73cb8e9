// Tests of transport/inproc.hpp: matching, order, limits, timeouts, dead ranks, counters.
#include "greenreduce/transport/inproc.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <numeric>
#include <thread>
#include <vector>

#include "greenreduce/transport/tcp/wire.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using transport::inproc;
using transport::inproc_world;
using namespace std::chrono_literals;

namespace {

std::vector<std::byte> bytes_of(std::size_t n, std::uint64_t salt) {
  return test::random_bytes(n, test::seed(salt));
}

// Runs fn(endpoint) on one thread per rank and rethrows the first failure.
template <class Fn>
void run_ranks(inproc_world& world, Fn fn) {
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(world.size()));
  for (int r = 0; r < world.size(); ++r)
    threads.emplace_back([&, r] {
      try {
        auto t = world.rank(r);
        fn(t);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

TEST_CASE("inproc satisfies the transport concept", "[inproc]") {
  STATIC_REQUIRE(transport::transport<inproc>);
}

TEST_CASE("inproc moves messages in order for eager and rendezvous sizes", "[inproc]") {
  const std::size_t eager = 1024;
  inproc_world world(2, {5000ms, eager});
  // 0, below, at and above the eager bound; the receiver posts late and early.
  const std::vector<std::size_t> sizes = {0, 1, 1000, eager, eager + 1, 200000};
  run_ranks(world, [&](inproc& t) {
    if (t.rank() == 0) {
      for (std::size_t i = 0; i < sizes.size(); ++i) t.send(1, bytes_of(sizes[i], i));
      std::vector<std::byte> back(16);
      REQUIRE(t.recv(1, back) == 3);
    } else {
      std::this_thread::sleep_for(20ms);  // let small sends queue up first
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        std::vector<std::byte> buf(sizes[i] + 7);
        const std::size_t n = t.recv(0, buf);
        REQUIRE(n == sizes[i]);
        const auto want = bytes_of(sizes[i], i);
        REQUIRE(std::equal(want.begin(), want.end(), buf.begin()));
      }
      t.send(0, bytes_of(3, 99));
    }
  });
}

TEST_CASE("inproc ring sendrecv for every world size", "[inproc]") {
  for (int p = 2; p <= 6; ++p) {
    inproc_world world(p);
    run_ranks(world, [&](inproc& t) {
      const int r = t.rank();
      for (int round = 0; round < 20; ++round) {
        std::vector<std::byte> out(100000 + static_cast<std::size_t>(r), std::byte(r));
        std::vector<std::byte> in(200000);
        const int left = (r + p - 1) % p;
        const std::size_t n = t.sendrecv((r + 1) % p, out, left, in);
        REQUIRE(n == 100000 + static_cast<std::size_t>(left));
        REQUIRE(in[0] == std::byte(left));
      }
    });
  }
}

TEST_CASE("inproc counts payload plus the per-message header", "[inproc]") {
  STATIC_REQUIRE(transport::inproc_header_bytes == transport::tcp_wire::header_bytes);
  inproc_world world(2);
  run_ranks(world, [&](inproc& t) {
    std::vector<std::byte> buf(5000);
    if (t.rank() == 0) {
      t.send(1, std::span(buf).first(100));
      t.send(1, std::span(buf).first(0));
      REQUIRE(t.bytes_sent() == 100 + 0 + 2 * transport::inproc_header_bytes);
      REQUIRE(t.bytes_received() == 0);
    } else {
      t.recv(0, buf);
      t.recv(0, buf);
      REQUIRE(t.bytes_received() == 100 + 2 * transport::inproc_header_bytes);
      REQUIRE(t.bytes_sent() == 0);
    }
  });
}

TEST_CASE("inproc rejects a message longer than the receive buffer", "[inproc]") {
  for (std::size_t len : {std::size_t{100}, std::size_t{300000}}) {
    inproc_world world(2);
    auto a = world.rank(0);
    auto b = world.rank(1);
    std::vector<std::byte> small(10);
    auto r = b.irecv(0, small);
    auto msg = bytes_of(len, 1);
    auto s = a.isend(1, msg);
    CHECK_THROWS_MATCHES(b.wait(r), peer_error,
                         test::what_has("rank 1", "peer 0", "exceeds the receive buffer of 10"));
    a.wait(s);
    // The endpoint is broken for good and its rank is dead to peers.
    CHECK_THROWS_MATCHES(b.recv(0, small), peer_error, test::what_has("unusable"));
    CHECK(world.is_dead(1));
    CHECK_THROWS_AS(a.send(1, msg), peer_error);
  }
}

TEST_CASE("inproc times out with the configured bound", "[inproc]") {
  inproc_world world(2, {50ms});
  auto a = world.rank(0);
  auto b = world.rank(1);
  std::vector<std::byte> buf(10);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_MATCHES(a.recv(1, buf), timeout_error,
                       test::what_has("rank 0", "recv peer 1", "50 ms"));
  const auto dt = std::chrono::steady_clock::now() - t0;
  CHECK(dt >= 50ms);
  CHECK(dt < 2s);
  // A rendezvous send nobody takes times out too (per-op override).
  b.set_timeout(30ms);
  CHECK(b.timeout() == 30ms);
  std::vector<std::byte> big(1 << 20);
  // a timed out and killed itself: b learns a is dead instead of timing out.
  CHECK_THROWS_MATCHES(b.send(0, big), peer_error, test::what_has("dead"));
}

TEST_CASE("inproc rendezvous send times out when the receiver never posts", "[inproc]") {
  inproc_world world(2, {40ms});
  auto a = world.rank(0);
  auto b = world.rank(1);
  std::vector<std::byte> big(1 << 20);
  CHECK_THROWS_MATCHES(a.send(1, big), timeout_error, test::what_has("not taken within 40 ms"));
}

TEST_CASE("inproc default timeout comes from GREENREDUCE_TIMEOUT_MS", "[inproc]") {
  CHECK(transport::default_timeout(env_source::from_map({})) == 30000ms);
  CHECK(transport::default_timeout(env_source::from_map({{"GREENREDUCE_TIMEOUT_MS", "1234"}})) ==
        1234ms);
  CHECK_THROWS_AS(
      transport::default_timeout(env_source::from_map({{"GREENREDUCE_TIMEOUT_MS", "soon"}})),
      config_error);
}

TEST_CASE("inproc killed rank: peers get peer_error, queued messages stay readable", "[inproc]") {
  inproc_world world(3, {10000ms});
  auto a = world.rank(0);
  auto b = world.rank(1);
  auto c = world.rank(2);
  auto msg = bytes_of(10, 5);
  b.send(0, msg);  // eager: queued
  std::thread killer([&] {
    std::this_thread::sleep_for(30ms);
    world.kill(1);
  });
  std::vector<std::byte> buf(100);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_MATCHES(c.recv(1, buf), peer_error, test::what_has("rank 2", "peer 1", "died"));
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  killer.join();
  CHECK(a.recv(1, buf) == 10);
  CHECK_THROWS_AS(a.recv(1, buf), peer_error);
  CHECK_THROWS_MATCHES(b.send(0, msg), peer_error, test::what_has("killed"));
}

TEST_CASE("inproc argument errors", "[inproc]") {
  CHECK_THROWS_AS(inproc_world(0), config_error);
  CHECK_THROWS_AS(inproc_world(2, {0ms}), config_error);
  inproc_world world(2);
  auto a = world.rank(0);
  CHECK_THROWS_MATCHES(world.rank(0), config_error, test::what_has("already taken"));
  CHECK_THROWS_AS(world.rank(2), config_error);
  std::vector<std::byte> buf(4);
  CHECK_THROWS_AS(a.send(0, buf), config_error);
  CHECK_THROWS_AS(a.send(5, buf), config_error);
  CHECK(a.size() == 2);
  CHECK(a.rank() == 0);
}

TEST_CASE("inproc single-rank world has an endpoint and no peers", "[inproc]") {
  inproc_world world(1);
  auto a = world.rank(0);
  CHECK(a.size() == 1);
  std::vector<std::byte> buf(4);
  CHECK_THROWS_AS(a.send(0, buf), config_error);
}
