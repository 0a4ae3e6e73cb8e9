#include "greenreduce/kernels/half.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/archs.hpp"
#include "support/random.hpp"

#if defined(__F16C__)
#include <immintrin.h>
#endif

using namespace greenreduce;

namespace {

std::vector<float> from_bits(std::uint64_t first, std::size_t n, std::uint64_t stride) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto u = static_cast<std::uint32_t>(first + i * stride);
    std::memcpy(&v[i], &u, 4);
  }
  return v;
}

template <class Format>
void check_encode_equal(const std::vector<float>& x) {
  std::vector<std::byte> ref(2 * x.size() + 1), got(2 * x.size() + 1);
  const bool ok_ref = kernels::scalar::encode_half<Format>(x, ref.data());
  test::for_each_arch([&]<class Arch>(Arch, const std::string& arch) {
    INFO(Format::name << " on " << arch << ", n = " << x.size());
    std::fill(got.begin(), got.end(), std::byte{0});
    const bool ok = kernels::encode_half<Format, Arch>(x, got.data());
    CHECK(ok == ok_ref);
    CHECK(test::same_bytes(got.data(), ref.data(), 2 * x.size()));
  });
}

template <class Format>
void check_decode_equal(const std::vector<std::byte>& wire, std::uint64_t s) {
  const std::size_t n = wire.size() / 2;
  std::vector<float> ref(n), got(n);
  kernels::scalar::decode_half<Format>(wire.data(), ref);
  auto acc0 = test::normal_floats(n, s);
  auto acc_ref = acc0;
  kernels::scalar::decode_add_half<Format>(wire.data(), acc_ref);
  test::for_each_arch([&]<class Arch>(Arch, const std::string& arch) {
    INFO(Format::name << " on " << arch << ", n = " << n);
    kernels::decode_half<Format, Arch>(wire.data(), got);
    CHECK(test::same_bytes(got.data(), ref.data(), 4 * n));
    auto acc = acc0;
    kernels::decode_add_half<Format, Arch>(wire.data(), acc);
    CHECK(test::same_bytes(acc.data(), acc_ref.data(), 4 * n));
  });
}

template <class Format>
void check_format(std::uint64_t s) {
  INFO("seed " << s);
  // Every 2^16-th... rather: a prime stride over all 2^32 patterns, plus the
  // neighbourhood of every rounding boundary of the low 16 bits.
  check_encode_equal<Format>(from_bits(s & 0xFFFF, 1 << 16, 65521));
  for (std::uint32_t low : {0x0000U, 0x0FFFU, 0x1000U, 0x1001U, 0x2FFFU, 0x3000U, 0x7FFFU, 0x8000U,
                            0x8001U, 0x17FFFU, 0x18000U})
    check_encode_equal<Format>(from_bits(low, 1 << 15, 1U << 17));
  for (std::size_t n : {0U, 1U, 7U, 15U, 16U, 17U, 33U, 1000003U}) {
    auto x = test::normal_floats(n, s + n, 0.0F, 100.0F);
    check_encode_equal<Format>(x);
  }
  std::vector<std::byte> all(2 * 65536);
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const auto v = static_cast<std::uint16_t>(h);
    std::memcpy(&all[2 * h], &v, 2);
  }
  check_decode_equal<Format>(all, s);
  for (std::size_t n : {0U, 1U, 7U, 17U, 1000003U})
    check_decode_equal<Format>(std::vector<std::byte>(all.begin(), all.begin() + 2 * (n % 65536)),
                               s);
}

}  // namespace

TEST_CASE("fp16 SIMD kernels equal the scalar reference bit for bit", "[kernels][half]") {
  check_format<kernels::fp16_format>(test::seed(101));
}

TEST_CASE("bf16 SIMD kernels equal the scalar reference bit for bit", "[kernels][half]") {
  check_format<kernels::bf16_format>(test::seed(102));
}

TEST_CASE("fp16 conversions agree with IEEE-754 at the edges", "[kernels][half]") {
  using kernels::scalar::fp16_from_float;
  using kernels::scalar::fp16_to_float;
  CHECK(fp16_from_float(1.0F) == 0x3C00);
  CHECK(fp16_from_float(-2.0F) == 0xC000);
  CHECK(fp16_from_float(65504.0F) == 0x7BFF);
  CHECK(fp16_from_float(65519.99F) == 0x7BFF);
  CHECK(fp16_from_float(65520.0F) == 0x7C00);  // the tie rounds to even: Inf
  CHECK(fp16_from_float(0x1p-14F) == 0x0400);
  CHECK(fp16_from_float(0x1p-24F) == 0x0001);
  CHECK(fp16_from_float(0x1p-25F) == 0x0000);         // tie to even
  CHECK(fp16_from_float(0x1.000002p-25F) == 0x0001);  // just above the tie
  CHECK(fp16_from_float(1.0F + 0x1p-11F) == 0x3C00);  // tie, even mantissa stays
  CHECK(fp16_from_float(1.0F + 0x3p-11F) == 0x3C02);  // tie, odd mantissa rounds up
  CHECK(fp16_to_float(0x0001) == 0x1p-24F);
  CHECK(fp16_to_float(0x7BFF) == 65504.0F);
  CHECK(std::isinf(fp16_to_float(0xFC00)));
  CHECK(std::isnan(fp16_to_float(0x7E00)));
  using kernels::scalar::bf16_from_float;
  CHECK(bf16_from_float(1.0F) == 0x3F80);
  CHECK(bf16_from_float(1.0F + 0x1p-8F) == 0x3F80);  // tie, even
  CHECK(bf16_from_float(1.0F + 0x3p-8F) == 0x3F82);  // tie, odd rounds up
  CHECK(bf16_from_float(0x1.fep127F) == 0x7F7F);
  CHECK(bf16_from_float(0x1.ffp127F) == 0x7F80);  // rounds to Inf
}

#if defined(__F16C__)
TEST_CASE("the fp16 scalar reference equals the F16C instruction", "[kernels][half]") {
  const auto s = test::seed(103);
  INFO("seed " << s);
  auto x = from_bits(s & 0xFFFFF, 1 << 20, 4093);
  std::size_t bad = 0;
  for (float f : x)
    if (!std::isnan(f) && kernels::scalar::fp16_from_float(f) != _cvtss_sh(f, 0))
      ++bad;  // NaN -> Inf here
  CHECK(bad == 0);
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float hw = _cvtsh_ss(static_cast<unsigned short>(h));
    if (std::isnan(hw)) continue;  // the instruction quiets signaling NaNs
    CHECK(kernels::scalar::fp16_to_float(static_cast<std::uint16_t>(h)) == hw);
  }
}
#endif
