// The pollable capability (test, wait_any, cancel) and per-peer failure
// isolation of transport::inproc.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>
#include <vector>

#include "greenreduce/transport/inproc.hpp"

using namespace greenreduce;
using namespace std::chrono_literals;

namespace {
std::vector<std::byte> bytes_of(std::initializer_list<int> v) {
  std::vector<std::byte> b;
  for (int x : v) b.push_back(static_cast<std::byte>(x));
  return b;
}
}  // namespace

TEST_CASE("inproc pollable: test and wait_any find the peer that sent first", "[transport][poll]") {
  transport::inproc_options o;
  o.isolate_peer_failures = true;
  transport::inproc_world world(3, o);
  auto server = world.rank(0);
  auto a = world.rank(1);
  auto b = world.rank(2);
  std::vector<std::byte> ba(8), bb(8);
  auto ra = server.irecv(1, ba);
  auto rb = server.irecv(2, bb);
  CHECK_FALSE(server.test(ra).has_value());
  std::vector<transport::inproc::recv_request*> reqs{&ra, &rb};
  CHECK_FALSE(server.wait_any(reqs, 20ms).has_value());  // idle peers are no error
  const auto msg = bytes_of({7, 8, 9});
  b.send(0, msg);
  const auto i = server.wait_any(reqs, 1000ms);
  REQUIRE(i.has_value());
  CHECK(*i == 1);
  const auto n = server.test(rb);
  REQUIRE(n.has_value());
  CHECK(*n == 3);
  CHECK(bb[2] == std::byte{9});
  CHECK_FALSE(server.test(ra).has_value());
  server.cancel(ra);
  a.send(0, msg);  // waits for the next irecv, not the cancelled one
  std::vector<std::byte> again(8);
  CHECK(server.recv(1, again) == 3);
  CHECK(ba[0] == std::byte{0});
}

TEST_CASE("inproc isolation: a dead peer fails only its own operations", "[transport][poll]") {
  transport::inproc_options o;
  o.isolate_peer_failures = true;
  transport::inproc_world world(3, o);
  auto server = world.rank(0);
  auto b = world.rank(2);
  CHECK(server.isolates_peer_failures());
  std::vector<std::byte> ba(8), bb(8);
  auto ra = server.irecv(1, ba);
  auto rb = server.irecv(2, bb);
  world.kill(1);
  std::vector<transport::inproc::recv_request*> reqs{&ra, &rb};
  const auto i = server.wait_any(reqs, 1000ms);
  REQUIRE(i.has_value());
  CHECK(*i == 0);
  CHECK_THROWS_AS(server.test(ra), peer_error);
  CHECK(server.peer_failed(1));
  CHECK_FALSE(server.peer_failed(2));
  CHECK_THROWS_AS(server.send(1, bytes_of({1})), peer_error);
  // Rank 2 is untouched: both directions still work.
  b.send(0, bytes_of({4, 5}));
  CHECK(server.wait(rb) == 2);
  server.send(2, bytes_of({6}));
  std::vector<std::byte> in(4);
  CHECK(b.recv(0, in) == 1);
  CHECK_FALSE(world.is_dead(0));
}

TEST_CASE("inproc without isolation: a dead peer still breaks the endpoint", "[transport][poll]") {
  transport::inproc_world world(3);
  auto server = world.rank(0);
  CHECK_FALSE(server.isolates_peer_failures());
  std::vector<std::byte> ba(8);
  auto ra = server.irecv(1, ba);
  world.kill(1);
  CHECK_THROWS_AS(server.test(ra), peer_error);
  CHECK(world.is_dead(0));
  CHECK_THROWS_AS(server.irecv(2, ba), peer_error);
}

TEST_CASE("inproc isolation: a wait that times out fails that peer only", "[transport][poll]") {
  transport::inproc_options o;
  o.isolate_peer_failures = true;
  o.timeout = 50ms;
  transport::inproc_world world(3, o);
  auto server = world.rank(0);
  auto b = world.rank(2);
  std::vector<std::byte> buf(8);
  CHECK_THROWS_AS(server.recv(1, buf), timeout_error);
  CHECK(server.peer_failed(1));
  b.send(0, bytes_of({1, 2}));
  CHECK(server.recv(2, buf) == 2);
}
