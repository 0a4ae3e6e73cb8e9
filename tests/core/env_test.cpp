#include "greenreduce/core/env.hpp"

#include <catch2/catch.hpp>

#include "support/matchers.hpp"

using namespace greenreduce;
using greenreduce::test::what_has;

namespace {
env_source one(const std::string& name, const std::string& value) {
  return env_source::from_map({{name, value}});
}
}  // namespace

TEST_CASE("env_int parses integers in range and rejects the rest naming the variable", "[core][env]") {
  CHECK(env_int(one("X", "42"), "X", 7) == 42);
  CHECK(env_int(one("X", " -3 "), "X", 7) == -3);
  CHECK(env_int(env_source::from_map({}), "X", 7) == 7);
  CHECK(env_int(one("X", ""), "X", 7) == 7);  // empty counts as unset
  for (const char* bad : {"abc", "12ms", "1.5", "99999999999999999999999", "-"}) {
    INFO(bad);
    CHECK_THROWS_MATCHES(env_int(one("GREENREDUCE_TIMEOUT_MS", bad), "GREENREDUCE_TIMEOUT_MS", 1, 1,
                                 100000),
                         config_error, what_has("GREENREDUCE_TIMEOUT_MS", bad));
  }
  CHECK_THROWS_MATCHES(env_int(one("X", "0"), "X", 1, 1, 10), config_error,
                       what_has("an integer in [1, 10]"));
}

TEST_CASE("env_double accepts finite numbers in range only", "[core][env]") {
  CHECK(env_double(one("X", "2.5e-3"), "X", 0) == Approx(2.5e-3));
  for (const char* bad : {"nan", "inf", "1e999", "x1", "1.0.0"}) {
    INFO(bad);
    CHECK_THROWS_AS(env_double(one("X", bad), "X", 0), config_error);
  }
  CHECK_THROWS_AS(env_double(one("X", "-1"), "X", 0, 0, 1), config_error);
}

TEST_CASE("env_bytes understands decimal and binary suffixes", "[core][env]") {
  CHECK(env_bytes(one("B", "4096"), "B", 0) == 4096);
  CHECK(env_bytes(one("B", "64KiB"), "B", 0) == 65536);
  CHECK(env_bytes(one("B", "64k"), "B", 0) == 64000);
  CHECK(env_bytes(one("B", "2MiB"), "B", 0) == 2 * 1024 * 1024);
  CHECK(env_bytes(one("B", "1G"), "B", 0) == 1000000000ULL);
  CHECK(env_bytes(one("B", "3gib"), "B", 0) == 3ULL << 30);
  for (const char* bad : {"-1", "12 parsecs", "KiB", "20000000000GiB"}) {
    INFO(bad);
    CHECK_THROWS_MATCHES(env_bytes(one("B", bad), "B", 0), config_error, what_has("B=\""));
  }
  CHECK_THROWS_AS(env_bytes(one("B", "2KiB"), "B", 0, 1024), config_error);
}

TEST_CASE("env_bool and env_choice accept only their words", "[core][env]") {
  CHECK(env_bool(one("F", "yes"), "F", false));
  CHECK_FALSE(env_bool(one("F", "OFF"), "F", true));
  CHECK(env_bool(env_source::from_map({}), "F", true));
  CHECK_THROWS_MATCHES(env_bool(one("F", "maybe"), "F", false), config_error,
                       what_has("F=\"maybe\""));
  CHECK(env_choice(one("C", "int8"), "C", "none", {"none", "int8"}) == "int8");
  CHECK_THROWS_MATCHES(env_choice(one("C", "int9"), "C", "none", {"none", "int8"}), config_error,
                       what_has("one of none, int8"));
  CHECK(env_string(one("S", "eth0"), "S") == "eth0");
}

TEST_CASE("env_source::process reads the real environment", "[core][env]") {
  ::setenv("GREENREDUCE_TEST_ENV_VAR", "17", 1);
  CHECK(env_int(env_source::process(), "GREENREDUCE_TEST_ENV_VAR", 0) == 17);
  ::unsetenv("GREENREDUCE_TEST_ENV_VAR");
  CHECK(env_int(env_source::process(), "GREENREDUCE_TEST_ENV_VAR", 5) == 5);
}
