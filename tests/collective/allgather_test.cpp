// Tests of collective/allgather.hpp, barrier.hpp and broadcast.hpp over inproc.
#include <catch2/catch.hpp>
#include <cstring>
#include <string>

#include "collective/ranks.hpp"
#include "greenreduce/collective/allgather.hpp"
#include "greenreduce/collective/barrier.hpp"
#include "greenreduce/collective/broadcast.hpp"
#include "support/random.hpp"

using namespace greenreduce;

TEST_CASE("allgather collects variable-size blocks on every rank", "[allgather]") {
  for (int p = 1; p <= 6; ++p) {
    auto errors = test::on_ranks(p, [&](transport::inproc& t) {
      collective::allgather<transport::inproc> ag(t, 100);
      for (int round = 0; round < 3; ++round) {
        const std::size_t mine_len = static_cast<std::size_t>((t.rank() * 17 + round) % 101);
        auto mine = test::random_bytes(mine_len, static_cast<std::uint64_t>(t.rank() * 10 + round));
        auto all = ag.run(mine);
        REQUIRE(all.size() == static_cast<std::size_t>(p));
        for (int q = 0; q < p; ++q) {
          const std::size_t len = static_cast<std::size_t>((q * 17 + round) % 101);
          auto want = test::random_bytes(len, static_cast<std::uint64_t>(q * 10 + round));
          REQUIRE(all[static_cast<std::size_t>(q)].size() == len);
          REQUIRE(std::equal(want.begin(), want.end(), all[static_cast<std::size_t>(q)].begin()));
        }
      }
      std::vector<std::byte> too_big(101);
      REQUIRE_THROWS_AS(ag.run(too_big), config_error);
    });
    test::rethrow_any(errors);
  }
}

TEST_CASE("barrier returns only after every rank arrived", "[barrier]") {
  for (int p = 1; p <= 5; ++p) {
    std::atomic<int> arrived{0};
    auto errors = test::on_ranks(p, [&](transport::inproc& t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5 * t.rank()));
      ++arrived;
      collective::barrier(t);
      REQUIRE(arrived.load() == p);
    });
    test::rethrow_any(errors);
  }
}

TEST_CASE("broadcast copies the root's bytes to every rank", "[broadcast]") {
  for (int p = 1; p <= 5; ++p)
    for (std::size_t len : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, std::size_t{70001}})
      for (int root = 0; root < p; root += 2) {
        auto want = test::random_bytes(len, len + static_cast<std::size_t>(root));
        auto errors = test::on_ranks(p, [&](transport::inproc& t) {
          std::vector<std::byte> buf(len);
          if (t.rank() == root) buf = want;
          collective::broadcast(t, std::span(buf), root, 4096);
          REQUIRE(buf == want);
        });
        test::rethrow_any(errors);
      }
  auto errors = test::on_ranks(2, [&](transport::inproc& t) {
    std::vector<std::byte> buf(4);
    REQUIRE_THROWS_AS(collective::broadcast(t, std::span(buf), 2), config_error);
  });
  test::rethrow_any(errors);
}
