#include "greenreduce/kernels/int8.hpp"

#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "greenreduce/kernels/philox.hpp"
#include "kernels/archs.hpp"
#include "support/random.hpp"

using namespace greenreduce;

TEST_CASE("vectorized Philox equals core/rng.hpp and the group rule", "[kernels][philox]") {
  const auto s = test::seed(201);
  INFO("seed " << s);
  // An offset just below 2^32 blocks makes the counter carry into its high word.
  for (std::uint64_t offset : {std::uint64_t{0}, (std::uint64_t{1} << 32) - 20, s >> 3}) {
    rng g(s, s * 3 + 1);
    g.offset = offset;
    for (std::size_t group : {0U, 1U, 2U, 77U}) {
      std::uint32_t ref[64], by_element[64];
      kernels::scalar::philox_group_words(g, group, ref);
      for (std::size_t k = 0; k < 64; ++k)
        by_element[k] = kernels::scalar::philox_word(g, 64 * group + k);
      CHECK(test::same_bytes(ref, by_element, sizeof ref));
      test::for_each_arch([&]<class Arch>(Arch, const std::string& arch) {
        INFO(arch << " offset " << offset << " group " << group);
        std::uint32_t got[64];
        kernels::philox_group_words<Arch>(g, group, got);
        CHECK(test::same_bytes(ref, got, sizeof ref));
      });
    }
  }
  CHECK(kernels::philox_blocks_for(0) == 0);
  CHECK(kernels::philox_blocks_for(1) == 16);
  CHECK(kernels::philox_blocks_for(64) == 16);
  CHECK(kernels::philox_blocks_for(65) == 32);
}

namespace {

void check_int8(std::size_t n, std::size_t bucket, bool stochastic, std::uint64_t s) {
  INFO("n = " << n << ", bucket = " << bucket << (stochastic ? ", stochastic" : ", nearest")
              << ", seed " << s);
  auto x = test::normal_floats(n, s);
  // A few buckets with extreme magnitudes: all zero, tiny (pre-scaled), huge.
  if (n > 3 * bucket) {
    for (std::size_t i = 0; i < bucket; ++i) x[i] = 0.0F;
    for (std::size_t i = bucket; i < 2 * bucket; ++i) x[i] *= 0x1p-100F;
    for (std::size_t i = 2 * bucket; i < 3 * bucket; ++i) x[i] *= 0x1p100F;
  }
  const std::size_t nb = (n + bucket - 1) / bucket;
  rng g(s, 7);
  g.offset = s >> 40;
  std::vector<std::byte> sc_ref(4 * nb), q_ref(n), sc(4 * nb), q(n);
  REQUIRE(kernels::scalar::encode_int8(x, bucket, stochastic ? &g : nullptr, sc_ref.data(),
                                       q_ref.data()));
  std::vector<float> dec_ref(n);
  kernels::scalar::decode_int8(sc_ref.data(), q_ref.data(), bucket, dec_ref);
  auto acc0 = test::normal_floats(n, s + 1);
  auto acc_ref = acc0;
  kernels::scalar::decode_add_int8(sc_ref.data(), q_ref.data(), bucket, acc_ref);
  test::for_each_arch([&]<class Arch>(Arch, const std::string& arch) {
    INFO(arch);
    REQUIRE(kernels::encode_int8<Arch>(x, bucket, stochastic ? &g : nullptr, sc.data(), q.data()));
    CHECK(test::same_bytes(sc.data(), sc_ref.data(), sc.size()));
    CHECK(test::same_bytes(q.data(), q_ref.data(), n));
    std::vector<float> dec(n);
    kernels::decode_int8<Arch>(sc_ref.data(), q_ref.data(), bucket, dec);
    CHECK(test::same_bytes(dec.data(), dec_ref.data(), 4 * n));
    auto acc = acc0;
    kernels::decode_add_int8<Arch>(sc_ref.data(), q_ref.data(), bucket, acc);
    CHECK(test::same_bytes(acc.data(), acc_ref.data(), 4 * n));
  });
}

}  // namespace

TEST_CASE("int8 SIMD kernels equal the scalar reference bit for bit", "[kernels][int8]") {
  const auto s = test::seed(202);
  for (bool stochastic : {false, true})
    for (std::size_t bucket : {512U, 7U, 64U, 100U, 4096U})
      for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, bucket - 1, bucket,
                            bucket + 1, 3 * bucket + 5, std::size_t{1000003}})
        check_int8(n, bucket, stochastic, s + n);
}

TEST_CASE("int8 kernels report NaN and Inf input", "[kernels][int8]") {
  std::vector<float> x(1000, 1.0F);
  std::vector<std::byte> sc(4 * 2), q(1000);
  rng g(1);
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    x[777] = bad;
    CHECK_FALSE(kernels::encode_int8(x, 512, nullptr, sc.data(), q.data()));
    CHECK_FALSE(kernels::encode_int8(x, 512, &g, sc.data(), q.data()));
    CHECK_FALSE(kernels::scalar::encode_int8(x, 512, nullptr, sc.data(), q.data()));
  }
}
