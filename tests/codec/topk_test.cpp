#include "greenreduce/codec/topk.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "greenreduce/codec/checks.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
namespace kk = greenreduce::kernels::topk;

namespace {

/// The reference selection: sort by (|x| descending, index ascending), take k.
std::vector<std::size_t> reference_topk(const std::vector<float>& x, std::size_t k) {
  std::vector<std::size_t> order(x.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return kk::key(x[a]) > kk::key(x[b]); });
  order.resize(std::min(k, x.size()));
  std::sort(order.begin(), order.end());
  return order;
}

std::vector<std::size_t> sent_indices(const std::vector<float>& dense) {
  std::vector<std::size_t> s;
  for (std::size_t i = 0; i < dense.size(); ++i)
    if (dense[i] != 0.0F) s.push_back(i);
  return s;
}

std::vector<std::byte> encode(const codec::topk& c, const std::vector<float>& x) {
  std::vector<std::byte> out(c.max_encoded_bytes(x.size()));
  rng g(0);
  out.resize(c.encode(x, out, g));
  return out;
}

std::uint64_t frame_count(const std::vector<std::byte>& f) {
  return load_le<std::uint64_t>(f.data() + frame_header_bytes + 4);
}

/// Integers in [-3, 3] without 0: many ties, no zeros (so sent == non-zero after decode).
std::vector<float> tied_values(std::size_t n, std::uint64_t s) {
  std::mt19937_64 gen(s);
  std::vector<float> x(n);
  for (auto& v : x) {
    const int m = static_cast<int>(gen() % 3) + 1;
    v = static_cast<float>(gen() % 2 ? m : -m);
  }
  return x;
}

}  // namespace

TEST_CASE("topk keeps the codec contract", "[codec][topk]") {
  const auto s = test::seed(50);
  using ia = codec::topk::indices_as;
  for (const auto& c :
       {codec::topk::ratio(0.01), codec::topk::ratio(0.01).sampled(), codec::topk::count(5),
        codec::topk::ratio(0.5), codec::topk::ratio(1.0), codec::topk::ratio(0.1).indices(ia::u32),
        codec::topk::ratio(0.1).indices(ia::bitmap), codec::topk::ratio(0.3).indices(ia::varint)}) {
    const auto problems = codec::check_codec(c, s);
    for (const auto& p : problems) UNSCOPED_INFO(p);
    CHECK(problems.empty());
  }
  CHECK_THROWS_AS(codec::topk::ratio(0.0), config_error);
  CHECK_THROWS_AS(codec::topk::ratio(1.5), config_error);
  CHECK_THROWS_AS(codec::topk::count(0), config_error);
}

TEST_CASE("exact topk sends the k largest magnitudes, ties to the lower index", "[codec][topk]") {
  const auto s = test::seed(51);
  INFO("seed " << s);
  for (std::size_t n : {1U, 7U, 100U, 4099U, 100000U})
    for (std::size_t k : {1U, 3U, 50U, 1000U}) {
      INFO("n " << n << " k " << k);
      for (int tied = 0; tied < 2; ++tied) {
        const auto x = tied ? tied_values(n, s + n + k) : test::normal_floats(n, s + n + k);
        const auto c = codec::topk::count(k);
        const auto f = encode(c, x);
        std::vector<float> y(n);
        c.decode(f, y);
        const auto want = reference_topk(x, k);
        CHECK(sent_indices(y) == want);
        for (std::size_t i : want) CHECK(y[i] == x[i]);
      }
    }
}

TEST_CASE("sampled topk sends between ceil(k/2) and k elements, always the largest ones",
          "[codec][topk]") {
  const auto s = test::seed(52);
  INFO("seed " << s);
  for (double ratio : {0.001, 0.01, 0.1}) {
    const std::size_t n = (1U << 20) + 3;
    const auto c = codec::topk::ratio(ratio).sampled();
    const std::size_t k = c.k_of(n);
    INFO("ratio " << ratio << " k " << k);
    std::vector<std::vector<float>> inputs = {test::normal_floats(n, s), tied_values(n, s + 1)};
    inputs.push_back(test::normal_floats(n, s + 2));
    for (std::size_t i = 0; i < n; i += 97) inputs.back()[i] *= 1000.0F;  // structured outliers
    for (const auto& x : inputs) {
      const auto f = encode(c, x);
      const std::size_t sent = frame_count(f);
      CHECK(sent >= (k + 1) / 2);
      CHECK(sent <= k);
      std::vector<float> y(n);
      c.decode(f, y);
      CHECK(sent_indices(y) == reference_topk(x, sent));
    }
  }
}

TEST_CASE("topk kth_largest: the k-th largest key and its ties, against a sort", "[codec][topk]") {
  // Keys spread over many buckets, keys crowded into one bucket (the branchless
  // bucket scan), and few distinct keys (ties at the boundary); every k from
  // the largest to the smallest end.
  const auto s = test::seed(62);
  INFO("seed " << s);
  std::mt19937_64 gen(s);
  for (std::size_t n : {1U, 2U, 17U, 1000U, 65537U}) {
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<std::uint32_t> keys(n);
      for (auto& key : keys) {
        const auto r = static_cast<std::uint32_t>(gen());
        key = kind == 0 ? r & kk::abs_mask : kind == 1 ? 0x3F800000U | (r & 0xFFFFFU) : 1 + r % 5;
      }
      std::vector<std::uint32_t> sorted = keys;
      std::sort(sorted.begin(), sorted.end(), std::greater<>());
      for (std::uint64_t k : {std::uint64_t{1}, std::uint64_t{n / 3 + 1}, std::uint64_t{n / 2 + 1},
                              std::uint64_t{n}, std::uint64_t{1 + gen() % n}}) {
        INFO("n " << n << " kind " << kind << " k " << k);
        const auto t = kk::kth_largest(n, k, [&](std::size_t i) { return keys[i]; });
        REQUIRE(t.key == sorted[k - 1]);
        const auto greater = static_cast<std::uint64_t>(
            std::count_if(keys.begin(), keys.end(), [&](std::uint32_t v) { return v > t.key; }));
        CHECK(t.ties == k - greater);
        CHECK(t.ties >= 1);
      }
    }
  }
}

TEST_CASE("topk sample plan: runs of 16 spread over the data, DGC's m and rank", "[codec][topk]") {
  const auto s = test::seed(58);
  INFO("seed " << s);
  std::mt19937_64 gen(s);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> nk = {
      {65536, 1}, {65536, 8192}, {65537, 655}, {(1U << 20) + 3, 10486}, {16000000 / 16, 2500}};
  for (int i = 0; i < 20; ++i) {
    const std::uint64_t n = 65536 + gen() % (1U << 22);
    nk.emplace_back(n, 1 + gen() % (n / 8));
  }
  for (const auto& [n, k] : nk) {
    INFO("n " << n << " k " << k);
    const auto p = kk::plan_sample(n, k);
    const std::uint64_t m0 =
        std::min<std::uint64_t>(n, std::max<std::uint64_t>(4096, (512 * n + k - 1) / k));
    CHECK(p.stride == 16 * (n / m0));
    CHECK(p.m % 16 == 0);
    // As many samples as DGC's one-every-n/m0 sample, up to one run.
    CHECK(p.m + 16 > n / (n / m0));
    CHECK(p.m <= n / (n / m0) + 16);
    CHECK(p.rank == std::clamp<std::uint64_t>((5 * k * p.m + 4 * n - 1) / (4 * n), 1, p.m));
    CHECK(p.position(0) < p.stride);
    CHECK(p.position(p.m - 1) < n);
    CHECK(n - p.m / 16 * p.stride < p.stride);  // the runs' stretches cover all but the tail
    for (std::uint64_t j = 1; j < p.m; ++j) {
      const std::uint64_t a = p.position(j - 1), b = p.position(j);
      REQUIRE(b == (j % 16 == 0 ? a + p.stride - 15 : a + 1));
    }
  }
}

TEST_CASE("topk sample keys are key(x (+ r)) at the plan's positions", "[codec][topk]") {
  const auto s = test::seed(59);
  INFO("seed " << s);
  for (std::uint64_t n : {65536U, 70001U, 1048579U}) {
    for (std::uint64_t k : {std::uint64_t{1}, n / 100, n / 8}) {
      INFO("n " << n << " k " << k);
      const auto x = test::normal_floats(n, s + n + k);
      const auto r = test::normal_floats(n, s + n + k + 1, 0.0F, 0.1F);
      const auto p = kk::plan_sample(n, k);
      std::vector<std::uint32_t> a(p.m), b(p.m);
      kk::sample_keys(p, x.data(), nullptr, a.data());
      kk::sample_keys(p, x.data(), r.data(), b.data());
      for (std::uint64_t j = 0; j < p.m; ++j) {
        REQUIRE(a[j] == kk::key(x[p.position(j)]));
        REQUIRE(b[j] == kk::key(x[p.position(j)] + r[p.position(j)]));
      }
    }
  }
}

TEST_CASE("topk sampled threshold keeps between k and 2k candidates on gradient-like data",
          "[codec][topk]") {
  // The estimate's quality: the threshold should select about 1.25 k (never
  // below k, which would send fewer than k, nor above 2k, the fallback), also
  // when the scale changes from layer to layer and with sparse outliers.
  const auto s = test::seed(60);
  INFO("seed " << s);
  const std::size_t n = (1U << 20) + 3;
  for (double ratio : {0.001, 0.01, 0.1}) {
    const std::size_t k = codec::topk::ratio(ratio).k_of(n);
    auto layered = test::normal_floats(n, s + 1);
    std::mt19937_64 gen(s + 2);
    std::normal_distribution<float> d;
    float scale = 1.0F;
    for (std::size_t i = 0; i < n; ++i) {
      if (i % 4096 == 0) scale = std::exp(d(gen));
      layered[i] *= scale;
    }
    auto outliers = test::normal_floats(n, s + 3);
    for (std::size_t i = 0; i < n; i += 97) outliers[i] *= 1000.0F;
    for (const auto& x : {test::normal_floats(n, s), layered, outliers}) {
      const auto p = kk::plan_sample(n, k);
      std::vector<std::uint32_t> sample(p.m);
      kk::sample_keys(p, x.data(), nullptr, sample.data());
      const auto t = kk::kth_largest(p.m, p.rank, [&](std::size_t j) { return sample[j]; });
      const auto count = static_cast<std::size_t>(
          std::count_if(x.begin(), x.end(), [&](float v) { return kk::key(v) >= t.key; }));
      INFO("ratio " << ratio << " k " << k << " candidates " << count);
      CHECK(count >= k);
      CHECK(count <= 2 * k);
    }
  }
}

TEST_CASE("topk decode_validated_entries hands out what decode_entries does", "[codec][topk]") {
  const auto s = test::seed(61);
  INFO("seed " << s);
  using ia = codec::topk::indices_as;
  for (std::size_t n : {1U, 9U, 1000U, 70001U}) {
    const auto x = test::normal_floats(n, s + n);
    for (auto coding : {ia::automatic, ia::varint, ia::bitmap, ia::u32})
      for (double ratio : {0.01, 0.3, 1.0}) {
        INFO("n " << n << " ratio " << ratio << " coding " << static_cast<int>(coding));
        const auto c = codec::topk::ratio(ratio).sampled().indices(coding);
        const auto f = encode(c, x);
        c.validate(f, n);
        std::vector<std::pair<std::size_t, float>> a, b;
        c.decode_entries(f, n, [&](std::size_t i, float v) { a.emplace_back(i, v); });
        c.decode_validated_entries(f, n, [&](std::size_t i, float v) { b.emplace_back(i, v); });
        CHECK(a.size() >= (c.k_of(n) + 1) / 2);
        CHECK(a.size() <= c.k_of(n));
        CHECK(a == b);
      }
  }
}

TEST_CASE("topk gather kernels equal the scalar reference", "[codec][topk]") {
  const auto s = test::seed(53);
  INFO("seed " << s);
  auto run = [&](auto arch) {
    using A = decltype(arch);
    for (std::size_t n : {0U, 1U, 7U, 511U, 512U, 513U, 1000003U}) {
      const auto x = test::normal_floats(n, s + n);
      const auto r0 = test::normal_floats(n, s + n + 1, 0.0F, 0.5F);
      for (auto src : {kk::source::input, kk::source::input_plus_r, kk::source::r_in_place}) {
        auto r1 = r0, r2 = r0;
        std::vector<std::uint64_t> i1(n + 1), i2(n + 1);
        std::vector<float> v1(n + 1), v2(n + 1);
        const auto a =
            kk::gather<A>(src, x.data(), r1.data(), n, 2.0F, n + 1, i1.data(), v1.data());
        const auto b =
            kk::scalar::gather(src, x.data(), r2.data(), 0, n, 2.0F, n + 1, i2.data(), v2.data());
        REQUIRE(a.count == b.count);
        CHECK(!a.overflow);
        CHECK(a.finite);
        CHECK(
            std::equal(i1.begin(), i1.begin() + static_cast<std::ptrdiff_t>(a.count), i2.begin()));
        CHECK((a.count == 0 || std::memcmp(v1.data(), v2.data(), 4 * a.count) == 0));
        CHECK((n == 0 || std::memcmp(r1.data(), r2.data(), 4 * n) == 0));
      }
    }
  };
  run(xsimd::default_arch{});
  run(xsimd::sse2{});
#if XSIMD_WITH_AVX2
  run(xsimd::avx2{});
#endif
}

TEST_CASE("topk chooses the smallest index coding", "[codec][topk]") {
  const auto s = test::seed(54);
  const std::size_t n = 10000;
  const auto x = test::normal_floats(n, s);
  CHECK(encode(codec::topk::ratio(0.5), x)[frame_header_bytes] == std::byte{1});   // bitmap
  CHECK(encode(codec::topk::ratio(0.01), x)[frame_header_bytes] == std::byte{0});  // varint
  std::vector<float> sparse_far(1U << 20, 0.0F);
  sparse_far[5] = 1.0F;
  sparse_far[(1U << 20) - 1] = 2.0F;  // a gap of 2^20 costs 3 varint bytes; u32 is 4
  CHECK(encode(codec::topk::count(2), sparse_far)[frame_header_bytes] == std::byte{0});
}

TEST_CASE("topk rejects malformed indices and values before writing", "[codec][topk]") {
  const auto s = test::seed(55);
  INFO("seed " << s);
  const std::size_t n = 1000;
  const auto x = test::normal_floats(n, s);
  using ia = codec::topk::indices_as;
  const auto c = codec::topk::count(10);
  auto reject = [&](const std::vector<std::byte>& f, const char* what) {
    std::vector<float> acc(n, 1.0F);
    CHECK_THROWS_MATCHES(c.decode_add(f, acc), decode_error, test::what_has(what));
    CHECK(std::all_of(acc.begin(), acc.end(), [](float v) { return v == 1.0F; }));
  };
  const std::size_t idx_at = frame_header_bytes + 12 + 40;
  {
    const auto f = encode(c.indices(ia::u32), x);
    auto g = f;
    store_le<std::uint32_t>(g.data() + idx_at + 36, static_cast<std::uint32_t>(n));
    reject(g, "out of range");
    g = f;  // unsorted: swap the first two indices
    std::swap_ranges(g.begin() + static_cast<std::ptrdiff_t>(idx_at),
                     g.begin() + static_cast<std::ptrdiff_t>(idx_at + 4),
                     g.begin() + static_cast<std::ptrdiff_t>(idx_at + 4));
    reject(g, "not above");
    g = f;  // duplicate
    std::copy_n(g.begin() + static_cast<std::ptrdiff_t>(idx_at), 4,
                g.begin() + static_cast<std::ptrdiff_t>(idx_at + 4));
    reject(g, "not above");
    g = f;
    const float nan = NAN;
    std::memcpy(g.data() + frame_header_bytes + 12 + 8, &nan, 4);
    reject(g, "expected finite");
    g = f;
    g[frame_header_bytes] = std::byte{3};
    reject(g, "index coding is 3");
    g = f;
    store_le<std::uint64_t>(g.data() + frame_header_bytes + 4, 11);
    reject(g, "at most k = 10");
  }
  {
    const auto f = encode(c.indices(ia::varint), x);
    // A gap of 2^64 - 2 after the first index wraps around below it.
    std::vector<std::byte> g(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(idx_at));
    const std::uint64_t first = 3;
    g.push_back(static_cast<std::byte>(first));
    for (int b = 0; b < 9; ++b) g.push_back(std::byte{0xFF});
    g.push_back(std::byte{0x01});
    for (int j = 2; j < 10; ++j) g.push_back(std::byte{0});
    store_le<std::uint64_t>(g.data() + 16, g.size() - frame_header_bytes);
    reject(g, "wraps around");
    auto h = f;  // an overlong varint for the first index: 0x80 | v, 0x00
    h.insert(h.begin() + static_cast<std::ptrdiff_t>(idx_at) + 1, std::byte{0});
    h[idx_at] |= std::byte{0x80};
    store_le<std::uint64_t>(h.data() + 16, h.size() - frame_header_bytes);
    reject(h, "not minimally encoded");
  }
  {
    const auto f = encode(c.indices(ia::bitmap), x);
    auto g = f;
    const auto x3 = test::normal_floats(n + 3, s + 3);
    auto p = encode(c.indices(ia::bitmap), x3);
    p.back() |= std::byte{0x80};  // bit 1007: past n = 1003
    std::vector<float> acc(n + 3, 1.0F);
    CHECK_THROWS_MATCHES(c.decode_add(p, acc), decode_error, test::what_has("past 1003"));
    CHECK(std::all_of(acc.begin(), acc.end(), [](float v) { return v == 1.0F; }));
    g[idx_at] ^= std::byte{0xFF};  // flips 8 bits: the count no longer matches
    reject(g, "bitmap sets");
  }
}

TEST_CASE("topk with a residual names the first non-finite element and restores the residual",
          "[codec][topk]") {
  for (auto c : {codec::topk::ratio(0.01), codec::topk::ratio(0.01).sampled()}) {
    const std::size_t n = 200000;
    auto x = test::normal_floats(n, 5);
    std::vector<float> r = test::normal_floats(n, 6, 0.0F, 0.25F), r0 = r;
    x[123457] = INFINITY;
    x[150000] = NAN;
    std::vector<std::byte> out(c.max_encoded_bytes(n));
    rng g(0);
    CHECK_THROWS_MATCHES(c.encode_with_residual(x, r, out, g), numeric_error,
                         test::what_has("element 123457 "));
    for (std::size_t i = 0; i < n; ++i) {
      if (i == 123457 || i == 150000) {
        CHECK(r[i] == 0.0F);
      } else if (!(std::abs(r[i] - r0[i]) <= 1e-6F * (std::abs(x[i]) + std::abs(r0[i])))) {
        FAIL_CHECK("residual " << i << " is " << r[i] << ", was " << r0[i]);
        break;
      }
    }
  }
}
