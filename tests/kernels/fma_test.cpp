// kernels/lanes.hpp's fused multiply-add: fma_by_double (the form for an
// instruction set without FMA) and fused_fma on every instruction set equal
// std::fma bit for bit, on random bit patterns (subnormals, overflow, NaN and
// Inf included) and on products whose exact sum with the addend sits next to
// a float rounding midpoint, where a multiply-add rounded twice goes wrong.
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "greenreduce/kernels/lanes.hpp"
#include "kernels/archs.hpp"
#include "support/random.hpp"

using namespace greenreduce;
namespace lanes = greenreduce::kernels::lanes;

namespace {

struct triple {
  float a, b, c;
};

/// a and b with 12-bit mantissas (their exact product has up to 25 bits, so
/// its 25th bit is a float rounding midpoint half the time) and an addend
/// 2^-30 .. 2^-60 of the product, of either sign: the exact sum is just off the
/// midpoint, and a double rounded to nearest lands on it.
std::vector<triple> near_midpoints(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<std::uint32_t> mant(0, 4095);
  std::uniform_int_distribution<int> ex(-20, 20), tiny(30, 60);
  std::vector<triple> v(n);
  for (auto& t : v) {
    const float a = std::ldexp(1.0F + static_cast<float>(mant(gen)) / 4096.0F, ex(gen));
    const float b = std::ldexp(1.0F + static_cast<float>(mant(gen)) / 4096.0F, ex(gen));
    const float c = std::ldexp(a * b, -tiny(gen)) * (gen() % 2 == 0 ? 1.0F : -1.0F);
    t = {gen() % 2 == 0 ? a : -a, b, c};
  }
  return v;
}

/// Uniform random bit patterns: every exponent, subnormals, Inf and NaN.
std::vector<triple> any_bits(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<triple> v(n);
  for (auto& t : v) {
    const auto w = gen();
    t = {std::bit_cast<float>(static_cast<std::uint32_t>(w)),
         std::bit_cast<float>(static_cast<std::uint32_t>(w >> 32)),
         std::bit_cast<float>(static_cast<std::uint32_t>(gen()))};
  }
  return v;
}

/// Products near 1 with addends of every nearby exponent (cancellation too).
std::vector<triple> cancelling(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> u(0.5F, 2.0F);
  std::uniform_int_distribution<int> ex(-30, 2);
  std::vector<triple> v(n);
  for (auto& t : v) {
    const float a = u(gen), b = u(gen);
    const float c = gen() % 4 == 0 ? -(a * b) : std::ldexp(u(gen), ex(gen)) * (gen() % 2 ? 1 : -1);
    t = {a, b, c};
  }
  return v;
}

bool same(float got, float want) {
  if (std::isnan(want)) return std::isnan(got);
  return std::bit_cast<std::uint32_t>(got) == std::bit_cast<std::uint32_t>(want);
}

}  // namespace

TEST_CASE("fma_by_double is std::fma bit for bit, where a double multiply-add is not",
          "[kernels][fma]") {
  const auto seed = test::seed(931);
  INFO("seed " << seed);
  std::size_t double_rounded_wrong = 0;
  for (const auto& set :
       {near_midpoints(200000, seed), any_bits(200000, seed + 1), cancelling(200000, seed + 2)}) {
    for (const auto& t : set) {
      const float want = std::fma(t.a, t.b, t.c);
      INFO(std::hexfloat << t.a << " * " << t.b << " + " << t.c << " = " << want);
      REQUIRE(same(lanes::fma_by_double(t.a, t.b, t.c), want));
      const double naive = static_cast<double>(t.a) * static_cast<double>(t.b) + t.c;
      if (!same(static_cast<float>(naive), want)) ++double_rounded_wrong;
    }
  }
  // The inputs do reach the cases a plain double multiply-add rounds wrong.
  CHECK(double_rounded_wrong > 1000);
}

TEST_CASE("fused_fma rounds once on every instruction set", "[kernels][fma]") {
  const auto seed = test::seed(932);
  INFO("seed " << seed);
  std::vector<triple> all = near_midpoints(50000, seed);
  const auto more = any_bits(50000, seed + 1);
  all.insert(all.end(), more.begin(), more.end());
  test::for_each_arch([&](auto arch, const std::string& name) {
    using Arch = decltype(arch);
    using fb = xsimd::batch<float, Arch>;
    INFO(name);
    constexpr std::size_t w = fb::size;
    alignas(64) float a[w], b[w], c[w], r[w];
    for (std::size_t i = 0; i + w <= all.size(); i += w) {
      for (std::size_t l = 0; l < w; ++l) {
        a[l] = all[i + l].a;
        b[l] = all[i + l].b;
        c[l] = all[i + l].c;
      }
      lanes::fused_fma<Arch>(fb::load_aligned(a), fb::load_aligned(b), fb::load_aligned(c))
          .store_aligned(r);
      for (std::size_t l = 0; l < w; ++l) {
        INFO(std::hexfloat << a[l] << " * " << b[l] << " + " << c[l]);
        REQUIRE(same(r[l], std::fma(a[l], b[l], c[l])));
      }
    }
  });
}
