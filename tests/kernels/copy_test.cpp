#include "greenreduce/kernels/copy.hpp"

#include <bit>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/archs.hpp"
#include "support/random.hpp"

using namespace greenreduce;

namespace {
// Every float of `buf` outside [off, off + n) still holds the -1 it was filled with.
void check_untouched_outside(const std::vector<float>& buf, std::size_t off, std::size_t n) {
  for (std::size_t k = 0; k < buf.size(); ++k)
    if (k < off || k >= off + n) CHECK(buf[k] == -1.0F);
}
}  // namespace

// The saving kernels store with streaming stores from the first aligned
// element on, so every start offset of the target (0..7 floats) is checked.
TEST_CASE("add_from_le_saving saves the accumulator and adds like add_from_le, bit for bit",
          "[kernels][copy]") {
  const auto s = test::seed(40);
  INFO("seed " << s);
  for (std::size_t n : {0U, 1U, 3U, 7U, 8U, 9U, 16U, 17U, 100003U}) {
    const auto acc0 = test::normal_floats(n, s + n);
    const auto in = test::normal_floats(n, s + n + 1);
    std::vector<std::byte> wire(4 * n + 1);
    if (n > 0) std::memcpy(wire.data() + 1, in.data(), 4 * n);  // wire bytes need no alignment
    auto ref = acc0;
    kernels::scalar::add_from_le(wire.data() + 1, std::span<float>(ref));
    for (std::size_t off = 0; off < 8; ++off) {
      test::for_each_arch([&]<class Arch>(Arch, const std::string& arch) {
        INFO(arch << ", n = " << n << ", target offset " << off);
        auto acc = acc0;
        auto scalar_acc = acc0;
        std::vector<float> saved(n + 9, -1.0F), scalar_saved(n + 9, -1.0F);
        kernels::add_from_le_saving<Arch>(wire.data() + 1, std::span<float>(acc),
                                          saved.data() + off);
        kernels::scalar::add_from_le_saving(wire.data() + 1, std::span<float>(scalar_acc),
                                            scalar_saved.data() + off);
        CHECK(test::same_bytes(acc.data(), ref.data(), 4 * n));
        CHECK(test::same_bytes(scalar_acc.data(), ref.data(), 4 * n));
        CHECK(test::same_bytes(saved.data() + off, acc0.data(), 4 * n));
        CHECK(test::same_bytes(scalar_saved.data() + off, acc0.data(), 4 * n));
        check_untouched_outside(saved, off, n);
      });
    }
  }
}

TEST_CASE("copy_streaming copies bit for bit and writes nothing outside the target",
          "[kernels][copy]") {
  const auto s = test::seed(41);
  INFO("seed " << s);
  for (std::size_t n : {0U, 1U, 5U, 8U, 15U, 16U, 33U, 100003U}) {
    const auto x = test::normal_floats(n + 1, s + n);
    for (std::size_t off = 0; off < 8; ++off) {
      test::for_each_arch([&]<class Arch>(Arch, const std::string& arch) {
        INFO(arch << ", n = " << n << ", target offset " << off);
        std::vector<float> out(n + 9, -1.0F);
        kernels::copy_streaming<Arch>(x.data() + 1, out.data() + off, n);  // unaligned source
        CHECK(test::same_bytes(out.data() + off, x.data() + 1, 4 * n));
        check_untouched_outside(out, off, n);
      });
    }
  }
}

TEST_CASE("save_and_zero saves bit for bit, zeroes the source and writes nothing else",
          "[kernels][copy]") {
  const auto s = test::seed(42);
  INFO("seed " << s);
  for (std::size_t n : {0U, 1U, 5U, 8U, 15U, 16U, 33U, 100003U}) {
    const auto x0 = test::normal_floats(n + 2, s + n);
    for (std::size_t off = 0; off < 8; ++off) {
      test::for_each_arch([&]<class Arch>(Arch, const std::string& arch) {
        INFO(arch << ", n = " << n << ", target offset " << off);
        for (bool simd : {true, false}) {
          INFO("simd " << simd);
          auto x = x0;
          std::vector<float> saved(n + 9, -1.0F);
          const std::span<float> src = std::span<float>(x).subspan(1, n);  // unaligned source
          if (simd)
            kernels::save_and_zero<Arch>(src, saved.data() + off);
          else
            kernels::scalar::save_and_zero(src, saved.data() + off);
          CHECK(test::same_bytes(saved.data() + off, x0.data() + 1, 4 * n));
          for (std::size_t k = 0; k < n; ++k) CHECK(std::bit_cast<std::uint32_t>(src[k]) == 0U);
          CHECK(x.front() == x0.front());  // neighbours of the source untouched
          CHECK(x.back() == x0.back());
          check_untouched_outside(saved, off, n);
        }
      });
    }
  }
}

namespace {
// Sorted distinct indices below n, about one in `every`, plus their values.
void sparse_entries(std::size_t n, std::size_t every, std::uint64_t s,
                    std::vector<std::uint64_t>& idx, std::vector<float>& val) {
  std::mt19937_64 g(s);
  idx.clear();
  for (std::size_t i = 0; i < n; ++i)
    if (g() % every == 0) idx.push_back(i);
  val = test::normal_floats(idx.size(), s + 1);
}
}  // namespace

TEST_CASE("expand_streaming writes zeros and the entries like the scalar expand, bit for bit",
          "[kernels][copy]") {
  const auto s = test::seed(43);
  INFO("seed " << s);
  for (std::size_t n : {0U, 1U, 5U, 8U, 15U, 16U, 33U, 100003U})
    for (std::size_t every : {1U, 3U, 100U}) {
      std::vector<std::uint64_t> idx;
      std::vector<float> val;
      sparse_entries(n, every, s + n + every, idx, val);
      std::vector<float> ref(n + 2, -1.0F);
      kernels::scalar::expand(idx.data(), val.data(), idx.size(),
                              std::span<float>(ref).subspan(1, n));
      for (std::size_t k = 0; k < idx.size(); ++k) REQUIRE(ref[idx[k] + 1] == val[k]);
      std::size_t zeros = 0;
      for (std::size_t k = 1; k <= n; ++k) zeros += std::bit_cast<std::uint32_t>(ref[k]) == 0U;
      REQUIRE(zeros + idx.size() >= n);  // everything else is +0
      for (std::size_t off = 0; off < 8; ++off) {
        test::for_each_arch([&]<class Arch>(Arch, const std::string& arch) {
          INFO(arch << ", n = " << n << ", one in " << every << ", target offset " << off);
          std::vector<float> out(n + 9, -1.0F);
          kernels::expand_streaming<Arch>(idx.data(), val.data(), idx.size(),
                                          std::span<float>(out).subspan(off, n));
          CHECK(test::same_bytes(out.data() + off, ref.data() + 1, 4 * n));
          check_untouched_outside(out, off, n);
        });
      }
    }
}

TEST_CASE("scatter_add_saving_prefetched adds and saves like the scalar kernel, bit for bit",
          "[kernels][copy]") {
  const auto s = test::seed(44);
  INFO("seed " << s);
  for (std::size_t n : {0U, 1U, 17U, 100003U})
    for (std::size_t every : {1U, 7U, 100U}) {
      INFO("n = " << n << ", one in " << every);
      std::vector<std::uint64_t> idx;
      std::vector<float> val;
      sparse_entries(n, every, s + n + every, idx, val);
      const auto x0 = test::normal_floats(n, s + 7 * n);
      auto x = x0, xs = x0;
      std::vector<float> old(idx.size() + 1, -1.0F), olds(idx.size() + 1, -1.0F);
      kernels::scatter_add_saving_prefetched(idx.data(), val.data(), idx.size(), x.data(),
                                             old.data());
      kernels::scalar::scatter_add_saving(idx.data(), val.data(), idx.size(), xs.data(),
                                          olds.data());
      CHECK(test::same_bytes(x.data(), xs.data(), 4 * n));
      CHECK(test::same_bytes(old.data(), olds.data(), 4 * old.size()));
      CHECK(old.back() == -1.0F);
      for (std::size_t k = 0; k < idx.size(); ++k) {
        REQUIRE(std::bit_cast<std::uint32_t>(old[k]) == std::bit_cast<std::uint32_t>(x0[idx[k]]));
        REQUIRE(x[idx[k]] == x0[idx[k]] + val[k]);
      }
    }
}
