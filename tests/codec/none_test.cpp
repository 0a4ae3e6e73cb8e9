#include "greenreduce/codec/none.hpp"

#include <catch2/catch.hpp>

#include "greenreduce/codec/checks.hpp"
#include "support/random.hpp"

using namespace greenreduce;

TEST_CASE("none keeps the codec contract", "[codec][none]") {
  const auto s = test::seed(10);
  const auto problems = codec::check_codec(codec::none{}, s);
  for (const auto& p : problems) UNSCOPED_INFO(p);
  CHECK(problems.empty());
}

TEST_CASE("none round-trips bit for bit and its kernels equal the scalar reference",
          "[codec][none]") {
  const auto s = test::seed(11);
  INFO("seed " << s);
  for (std::size_t n : {0U, 1U, 7U, 15U, 16U, 17U, 1000003U}) {
    auto x = test::normal_floats(n, s + n);
    codec::none c;
    byte_buffer out(c.max_encoded_bytes(n));
    rng g(s);
    CHECK(c.encode(x, out, g) == frame_header_bytes + 4 * n);
    std::vector<float> y(n);
    c.decode(out, y);
    CHECK((n == 0 || std::memcmp(x.data(), y.data(), 4 * n) == 0));

    auto acc_simd = test::normal_floats(n, s + 1);
    auto acc_ref = acc_simd;
    kernels::add_from_le(out.data() + frame_header_bytes, std::span<float>(acc_simd));
    kernels::scalar::add_from_le(out.data() + frame_header_bytes, std::span<float>(acc_ref));
    CHECK((n == 0 || std::memcmp(acc_simd.data(), acc_ref.data(), 4 * n) == 0));
  }
}
