// tests/collective/ranks.hpp — run one function per rank on threads over inproc.
#pragma once

#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#include "greenreduce/transport/inproc.hpp"

namespace greenreduce::test {

/// Runs fn(endpoint) on p threads; returns each rank's exception (or null).
template <class Fn>
std::vector<std::exception_ptr> on_ranks(transport::inproc_world& world, Fn fn) {
  const int p = world.size();
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(p));
  for (int r = 0; r < p; ++r)
    threads.emplace_back([&, r] {
      try {
        auto t = world.rank(r);
        fn(t);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

template <class Fn>
std::vector<std::exception_ptr> on_ranks(
    int p, Fn fn, std::chrono::milliseconds timeout = std::chrono::milliseconds(20000)) {
  transport::inproc_world world(p, {timeout});
  return on_ranks(world, fn);
}

inline void rethrow_any(const std::vector<std::exception_ptr>& errors) {
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

inline bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

}  // namespace greenreduce::test
