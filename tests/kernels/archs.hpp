// tests/kernels/archs.hpp — runs a check once per instruction set this build
// targets, so the SSE2 path that a consumer built without -march=native gets
// is tested on the same machine as the native one. xsimd::avx (256-bit float,
// no AVX2 integer ops) exercises the generic fallbacks of kernels/lanes.hpp.
#pragma once

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <xsimd/xsimd.hpp>

namespace greenreduce::test {

template <class F>
void for_each_arch(F&& f) {
#if XSIMD_WITH_SSE2
  f(xsimd::sse2{}, std::string("sse2"));
#endif
#if XSIMD_WITH_SSE4_1
  f(xsimd::sse4_1{}, std::string("sse4_1"));
#endif
#if XSIMD_WITH_AVX
  f(xsimd::avx{}, std::string("avx"));
#endif
#if XSIMD_WITH_AVX2
  f(xsimd::avx2{}, std::string("avx2"));
#endif
#if XSIMD_WITH_AVX512F
  f(xsimd::avx512f{}, std::string("avx512f"));
#endif
  f(xsimd::default_arch{}, std::string("default_arch ") + xsimd::default_arch::name());
}

/// memcmp that also accepts the null pointers of empty vectors.
inline bool same_bytes(const void* a, const void* b, std::size_t n) {
  return n == 0 || std::memcmp(a, b, n) == 0;
}

}  // namespace greenreduce::test
