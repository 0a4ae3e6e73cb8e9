#include "greenreduce/core/error.hpp"

#include <catch2/catch.hpp>
#include <type_traits>

using namespace greenreduce;

TEMPLATE_TEST_CASE("every error kind derives from greenreduce::error and names itself", "[core][error]",
                   config_error, numeric_error, decode_error, mismatch_error, timeout_error,
                   peer_error) {
  STATIC_REQUIRE(std::is_base_of_v<error, TestType>);
  STATIC_REQUIRE(std::is_base_of_v<std::runtime_error, TestType>);
  const TestType e("what was expected, what was found");
  const std::string what = e.what();
  CHECK(what.find("what was expected, what was found") != std::string::npos);
  CHECK(what.find("_error: ") != std::string::npos);
}

TEST_CASE("error messages start with their kind", "[core][error]") {
  CHECK(std::string(decode_error("x").what()) == "decode_error: x");
  CHECK(std::string(timeout_error("y").what()) == "timeout_error: y");
  CHECK(detail::str("a", 1, ' ', 2.5) == "a1 2.5");
}
