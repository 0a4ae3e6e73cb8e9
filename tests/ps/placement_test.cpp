#include "greenreduce/ps/placement.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <random>

#include "greenreduce/ps/options.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using greenreduce::test::what_has;

TEST_CASE("placement: greedy largest-first balances bytes and is deterministic",
          "[ps][placement]") {
  std::mt19937_64 gen(test::seed(1));
  for (int trial = 0; trial < 50; ++trial) {
    const int S = 1 + static_cast<int>(gen() % 5);
    std::vector<ps::key_spec> keys;
    const std::size_t nk = gen() % 20;
    for (std::size_t k = 0; k < nk; ++k)
      keys.push_back({detail::str("k", k), static_cast<std::size_t>(gen() % 1000)});
    const auto p = ps::place(keys, S);
    const auto q = ps::place(keys, S);
    CHECK(p.owner == q.owner);
    REQUIRE(p.servers() == S);
    std::uint64_t total = 0, biggest = 0;
    std::vector<std::uint64_t> bytes(static_cast<std::size_t>(S), 0);
    for (std::size_t k = 0; k < nk; ++k) {
      REQUIRE(p.owner[k] >= 0);
      REQUIRE(p.owner[k] < S);
      bytes[static_cast<std::size_t>(p.owner[k])] += 4 * keys[k].length;
      total += 4 * keys[k].length;
      biggest = std::max<std::uint64_t>(biggest, 4 * keys[k].length);
      const auto& ks = p.keys_of[static_cast<std::size_t>(p.owner[k])];
      CHECK(std::find(ks.begin(), ks.end(), k) != ks.end());
    }
    CHECK(bytes == p.bytes);
    // LPT bound: the fullest server holds at most the mean plus one key.
    const auto mx = *std::max_element(bytes.begin(), bytes.end());
    CHECK(mx <= total / static_cast<std::uint64_t>(S) + biggest);
  }
}

TEST_CASE("placement: a known case", "[ps][placement]") {
  const auto p = ps::place({{"a", 10}, {"b", 40}, {"c", 30}, {"d", 20}, {"e", 0}}, 2);
  // b -> 0, c -> 1, d -> 1, a -> 0, e -> 0 (tie goes to the lower server)
  CHECK(p.owner == std::vector<int>{0, 0, 1, 1, 0});
  CHECK(p.bytes == std::vector<std::uint64_t>{200, 200});
}

TEST_CASE("placement: bad arguments", "[ps][placement]") {
  CHECK_THROWS_MATCHES(ps::place({{"a", 1}}, 0), config_error, what_has("at least 1 server"));
  CHECK_THROWS_MATCHES(ps::place({{"a", 1}, {"a", 2}}, 1), config_error,
                       what_has("'a'", "declared twice"));
}

TEST_CASE("options: consistency modes parse and print", "[ps][options]") {
  CHECK(ps::consistency::parse("sync") == ps::consistency::sync());
  CHECK(ps::consistency::parse("async") == ps::consistency::async());
  CHECK(ps::consistency::parse("ssp:3") == ps::consistency::bounded_staleness(3));
  CHECK(ps::consistency::parse("ssp:0") == ps::consistency::sync());
  CHECK(ps::consistency::parse("ssp:3").to_string() == "ssp:3");
  for (const char* bad : {"", "ssp", "ssp:", "ssp:-1", "ssp:x", "Sync", "ssp:1x"})
    CHECK_THROWS_MATCHES(ps::consistency::parse(bad), config_error,
                         what_has("sync, async or ssp:K"));
}

TEST_CASE("options: roles and environment", "[ps][options]") {
  const ps::roles r(2, 5);
  CHECK(r.workers() == 3);
  CHECK(r.is_server(1));
  CHECK(r.is_worker(2));
  CHECK(r.worker_index(4) == 2);
  CHECK(r.worker_rank(0) == 2);
  CHECK_THROWS_AS(ps::roles(0, 4), config_error);
  CHECK_THROWS_AS(ps::roles(4, 4), config_error);
  const auto env = env_source::from_map({{"GREENREDUCE_PS_SERVERS", "3"},
                                         {"GREENREDUCE_PS_MODE", "ssp:2"},
                                         {"GREENREDUCE_TIMEOUT_MS", "900"}});
  CHECK(ps::roles::from_env(env, 8).servers == 3);
  CHECK(ps::roles::from_env(env_source::from_map({}), 8).servers == 1);
  CHECK_THROWS_MATCHES(ps::roles::from_env(env, 3), config_error,
                       what_has("GREENREDUCE_PS_SERVERS"));
  const auto o = ps::ps_options::from_env(env);
  CHECK(o.mode == ps::consistency::bounded_staleness(2));
  CHECK(o.timeout.count() == 900);
  CHECK_THROWS_AS(ps::ps_options::from_env(env_source::from_map({{"GREENREDUCE_PS_MODE", "fast"}})),
                  config_error);
}
