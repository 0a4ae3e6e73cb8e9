// tests/support/matchers.hpp — matchers on exceptions for CHECK_THROWS_MATCHES.
//
//   CHECK_THROWS_MATCHES(f(), decode_error, what_has("declares", "expected 7"));
// checks both the exception type and that what() contains every substring.
#pragma once

#include <catch2/catch.hpp>
#include <exception>
#include <initializer_list>
#include <string>
#include <vector>

namespace greenreduce::test {

class what_has_matcher : public Catch::MatcherBase<std::exception> {
 public:
  explicit what_has_matcher(std::vector<std::string> parts) : parts_(std::move(parts)) {}
  bool match(const std::exception& e) const override {
    const std::string what = e.what();
    for (const auto& p : parts_)
      if (what.find(p) == std::string::npos) return false;
    return true;
  }
  std::string describe() const override {
    std::string d = "what() contains";
    for (const auto& p : parts_) d += " \"" + p + "\"";
    return d;
  }

 private:
  std::vector<std::string> parts_;
};

template <class... S>
what_has_matcher what_has(const S&... parts) {
  return what_has_matcher({std::string(parts)...});
}

}  // namespace greenreduce::test
