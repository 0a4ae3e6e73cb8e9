// fuzz/fuzz_input.hpp — helpers shared by the libFuzzer targets.
//
// A target gets arbitrary bytes. It takes its few choices (which codec, which
// length) from the front with `take`, hands the rest to the parser under test,
// and accepts exactly greenreduce's typed errors: any other exception, a crash,
// or a sanitizer report is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>

#include "greenreduce/core/error.hpp"

namespace greenreduce::fuzz {

/// Reads an integer of `bytes` bytes from the front of `in` (zero when short).
inline std::uint64_t take(std::span<const std::byte>& in, std::size_t bytes) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < bytes && !in.empty(); ++i) {
    v |= std::uint64_t(static_cast<unsigned char>(in[0])) << (8 * i);
    in = in.subspan(1);
  }
  return v;
}

/// Runs `f`; greenreduce::error is an expected outcome of bad bytes, anything
/// else aborts so that libFuzzer records the input.
template <class F>
void expect_typed(F&& f) {
  try {
    f();
  } catch (const greenreduce::error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "untyped exception: %s\n", e.what());
    std::abort();
  }
}

}  // namespace greenreduce::fuzz
