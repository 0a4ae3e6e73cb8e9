#include "greenreduce/codec/ternary.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <vector>

#include "greenreduce/codec/checks.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
namespace kt = greenreduce::kernels::ternary;

namespace {

struct encoded {
  std::vector<std::byte> scales;
  std::vector<std::uint8_t> codes;
  bool ok = false;
};

template <class Arch>
encoded simd_encode(const std::vector<float>& x, std::size_t bucket, float clip, const rng& g) {
  const codec::ternary c(bucket, clip);
  encoded e{std::vector<std::byte>(4 * c.buckets(x.size())),
            std::vector<std::uint8_t>(kt::code_bytes(x.size()), 0xEE), false};
  e.ok = kt::encode<Arch>(x.data(), x.size(), bucket, clip, g, e.scales.data(), e.codes.data());
  return e;
}

encoded scalar_encode(const std::vector<float>& x, std::size_t bucket, float clip, const rng& g) {
  const codec::ternary c(bucket, clip);
  encoded e{std::vector<std::byte>(4 * c.buckets(x.size())),
            std::vector<std::uint8_t>(kt::code_bytes(x.size())), false};
  e.ok = kt::scalar::encode(x.data(), x.size(), bucket, clip, g, e.scales.data(), e.codes.data());
  return e;
}

template <class Arch>
void check_arch_matches_scalar(std::uint64_t s, bool with_clip) {
  // Bucket sizes below and at the encoder's prefetch distance (4096 elements)
  // and per tensor, so the statistics run one bucket ahead across several
  // buckets and a partial last one; rng offsets at 0, mid-way and just before
  // the 64-bit counter wraps (inside the longer calls).
  for (std::size_t bucket : {std::size_t{256}, std::size_t{512}, std::size_t{4096}, std::size_t{0}})
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, bucket - 1, bucket,
                          bucket + 1, 3 * bucket + 300, std::size_t{1000003}}) {
      if (n > 1000003) continue;
      rng g(s, 3);
      g.offset = bucket == 256 ? ~std::uint64_t{0} - 1000 : bucket == 4096 ? s % 100003 : 0;
      INFO("seed " << s << " n " << n << " bucket " << bucket << " clip " << with_clip
                   << " rng offset " << g.offset);
      const auto x = test::normal_floats(n, s + n, 0.1F, 2.0F);
      const float clip = with_clip ? 2.5F : 0.0F;
      const auto a = simd_encode<Arch>(x, bucket, clip, g);
      const auto b = scalar_encode(x, bucket, clip, g);
      REQUIRE(a.ok);
      REQUIRE(b.ok);
      CHECK(a.scales == b.scales);
      CHECK(a.codes == b.codes);
      auto acc1 = test::normal_floats(n, s + 7), acc2 = acc1;
      std::vector<float> d1(n), d2(n);
      kt::decode<true, Arch>(a.scales.data(), a.codes.data(), n, bucket, acc1.data());
      kt::scalar::decode<true>(a.scales.data(), a.codes.data(), n, bucket, acc2.data());
      kt::decode<false, Arch>(a.scales.data(), a.codes.data(), n, bucket, d1.data());
      kt::scalar::decode<false>(a.scales.data(), a.codes.data(), n, bucket, d2.data());
      CHECK((n == 0 || std::memcmp(acc1.data(), acc2.data(), 4 * n) == 0));
      CHECK((n == 0 || std::memcmp(d1.data(), d2.data(), 4 * n) == 0));
    }
}

}  // namespace

TEST_CASE("ternary keeps the codec contract", "[codec][ternary]") {
  const auto s = test::seed(40);
  for (const auto& c : {codec::ternary(), codec::ternary::unclipped(), codec::ternary(256, 1.0F),
                        codec::ternary::per_tensor(), codec::ternary::per_tensor(0.0F)}) {
    const auto problems = codec::check_codec(c, s);
    for (const auto& p : problems) UNSCOPED_INFO(p);
    CHECK(problems.empty());
  }
}

TEST_CASE("ternary bad configurations are config_errors", "[codec][ternary]") {
  CHECK_THROWS_MATCHES(codec::ternary(100), config_error, test::what_has("multiple of 256"));
  CHECK_THROWS_AS(codec::ternary(512, -1.0F), config_error);
  CHECK_THROWS_AS(codec::ternary(512, NAN), config_error);
}

TEST_CASE("ternary SIMD kernels equal the scalar reference bit for bit", "[codec][ternary]") {
  const auto s = test::seed(41);
  check_arch_matches_scalar<xsimd::default_arch>(s, true);
  check_arch_matches_scalar<xsimd::default_arch>(s, false);
  // Non-native widths: 4 lanes without FMA (quantizer only: the clipping
  // moments use fma, which SSE2 lacks), 4 lanes with FMA, 8 lanes.
  check_arch_matches_scalar<xsimd::sse2>(s, false);
#if XSIMD_WITH_FMA3_SSE
  check_arch_matches_scalar<xsimd::fma3<xsimd::sse4_2>>(s, true);
#endif
#if XSIMD_WITH_AVX2
  check_arch_matches_scalar<xsimd::avx2>(s, false);
#endif
}

TEST_CASE("ternary decodes to exactly {-s, 0, s} per bucket", "[codec][ternary]") {
  const auto s = test::seed(42);
  INFO("seed " << s);
  for (const auto& c : {codec::ternary(), codec::ternary::unclipped(1024)}) {
    const std::size_t n = 4099;
    const auto x = test::normal_floats(n, s);
    byte_buffer out(c.max_encoded_bytes(n));
    rng g(s);
    const std::size_t len = c.encode(x, out, g);
    CHECK(g.offset == kt::blocks_for(n));
    std::vector<float> y(n);
    c.decode(std::span<const std::byte>(out.data(), len), y);
    const std::size_t b = c.bucket();
    for (std::size_t k = 0; k * b < n; ++k) {
      float sc;
      std::memcpy(&sc, out.data() + frame_header_bytes + 4 + 4 * k, 4);
      float amax = 0;
      for (std::size_t i = k * b; i < std::min(n, (k + 1) * b); ++i) {
        amax = std::max(amax, std::abs(x[i]));
        CHECK((y[i] == 0.0F || y[i] == sc || y[i] == -sc));
        if (y[i] != 0.0F) CHECK(std::signbit(y[i]) == std::signbit(x[i]));
      }
      CHECK(sc <= amax);
      if (c.clip() == 0.0F) CHECK(sc == amax);
    }
  }
}

TEST_CASE("unclipped ternary is unbiased within 5 sigma of the Bernoulli variance",
          "[codec][ternary]") {
  const auto s = test::seed(43);
  INFO("seed " << s);
  const std::size_t n = 777, trials = 2000;
  const auto c = codec::ternary::unclipped(256);
  const auto x = test::normal_floats(n, s);
  std::vector<double> sum(n, 0.0);
  byte_buffer out(c.max_encoded_bytes(n));
  std::vector<float> y(n);
  rng g(s, 11);
  for (std::size_t t = 0; t < trials; ++t) {
    const std::size_t len = c.encode(x, out, g);  // advances g: fresh bits each time
    c.decode(std::span<const std::byte>(out.data(), len), y);
    for (std::size_t i = 0; i < n; ++i) sum[i] += y[i];
  }
  std::size_t outside = 0;
  for (std::size_t i = 0; i < n; ++i) {
    float sc = 0;
    for (std::size_t j = i / 256 * 256; j < std::min(n, i / 256 * 256 + 256); ++j)
      sc = std::max(sc, std::abs(x[j]));
    const double p = std::abs(x[i]) / sc;
    const double sd = sc * std::sqrt(p * (1 - p) / static_cast<double>(trials));
    const double bias_bound = sc / 65536.0 + 1e-6 * sc;
    const double mean = sum[i] / static_cast<double>(trials);
    if (std::abs(mean - x[i]) > 5 * sd + bias_bound) {
      ++outside;
      UNSCOPED_INFO("element " << i << " x " << x[i] << " mean " << mean << " sd " << sd);
    }
  }
  CHECK(outside == 0);
}

TEST_CASE("ternary rejects bad scales, invalid codes and a foreign bucket size before writing",
          "[codec][ternary]") {
  const auto s = test::seed(44);
  INFO("seed " << s);
  const auto c = codec::ternary();
  const std::size_t n = 1000;
  const auto x = test::normal_floats(n, s);
  byte_buffer out(c.max_encoded_bytes(n));
  rng g(s);
  const std::size_t len = c.encode(x, out, g);
  auto expect_reject = [&](std::vector<std::byte> f, const char* what) {
    std::vector<float> acc(n, 1.0F);
    CHECK_THROWS_MATCHES(c.decode_add(f, acc), decode_error, test::what_has(what));
    CHECK(std::all_of(acc.begin(), acc.end(), [](float v) { return v == 1.0F; }));
  };
  const std::vector<std::byte> frame(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(len));
  for (float bad : {NAN, INFINITY, -1.0F, -0.0F}) {
    auto f = frame;
    std::memcpy(f.data() + frame_header_bytes + 4 + 4, &bad, 4);
    expect_reject(f, "expected a finite value >= 0");
  }
  {
    auto f = frame;
    f[len - 100] = std::byte{0xFF};  // four 0b11 codes
    expect_reject(f, "0b11");
  }
  {
    auto f = frame;  // n = 1000 fills the last byte exactly; use a 1001-element frame instead
    const auto x2 = test::normal_floats(n + 1, s + 1);
    byte_buffer o2(c.max_encoded_bytes(n + 1));
    const std::size_t l2 = c.encode(x2, o2, g);
    std::vector<std::byte> f2(o2.begin(), o2.begin() + static_cast<std::ptrdiff_t>(l2));
    f2[l2 - 1] |= std::byte{0x10};  // a padding bit past element 1000
    std::vector<float> acc(n + 1, 1.0F);
    CHECK_THROWS_MATCHES(c.decode_add(f2, acc), decode_error, test::what_has("padding"));
  }
  {
    std::vector<float> acc(n, 1.0F);
    CHECK_THROWS_MATCHES(codec::ternary(1024).decode_add(frame, acc), decode_error,
                         test::what_has("bucket size 512", "expects 1024"));
  }
}

TEST_CASE("ternary names the first non-finite element", "[codec][ternary]") {
  std::vector<float> x(3000, 1.0F);
  x[2100] = INFINITY;
  x[2900] = NAN;
  const auto c = codec::ternary();
  byte_buffer out(c.max_encoded_bytes(x.size()));
  rng g(1);
  CHECK_THROWS_MATCHES(c.encode(x, out, g), numeric_error, test::what_has("element 2100 "));
}
