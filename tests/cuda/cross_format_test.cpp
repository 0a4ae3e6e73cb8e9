// The CPU half of the CPU <-> GPU format agreement, run on every machine:
//  - cuda/math.hpp (the per-element math the CUDA kernels run) against the CPU
//    kernels it restates, bit for bit;
//  - the CUDA encoders' work decomposition replayed on the host with the same
//    per-item functions the kernels call (one bucket at a time, Philox / ARS-5
//    blocks per thread item, bytes of packed ternary words, top-k by a stable
//    descending sort) must write the CPU codecs' payloads byte for byte;
//  - golden frames written by the CPU codecs, checked into this file: the
//    wire format the GPU codecs must keep producing and reading.
#include <algorithm>
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "greenreduce/codec/bf16.hpp"
#include "greenreduce/codec/fp16.hpp"
#include "greenreduce/codec/int8.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/codec/ternary.hpp"
#include "greenreduce/codec/topk.hpp"
#include "greenreduce/cuda/math.hpp"
#include "support/random.hpp"

using namespace greenreduce;
namespace gm = greenreduce::cuda::math;

namespace {

std::vector<float> mixed_floats(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.0F, 1.0F);
  std::uniform_int_distribution<int> expo(-80, 60);
  std::vector<float> x(n);
  for (auto& v : x) v = std::ldexp(normal(gen), gen() % 4 == 0 ? expo(gen) : 0);
  return x;
}

std::vector<std::byte> payload_of(const std::vector<std::byte>& frame, std::size_t len) {
  return {frame.begin() + frame_header_bytes, frame.begin() + static_cast<std::ptrdiff_t>(len)};
}

// ---- replays of the CUDA encoders (cuda/int8.cuh, cuda/ternary.cuh)

std::vector<std::byte> replay_int8(const codec::int8& c, const std::vector<float>& x,
                                   const rng& g) {
  const std::size_t n = x.size(), nb = c.buckets(n), bucket = c.bucket();
  std::vector<std::byte> p(c.payload_bytes(n), std::byte{0xA5});
  const auto bw = static_cast<std::uint32_t>(bucket);
  std::memcpy(p.data(), &bw, 4);
  auto* q = reinterpret_cast<std::int8_t*>(p.data() + 4 + 4 * nb);
  for (std::size_t b = 0; b < nb; ++b) {
    const std::size_t s = b * bucket, e = std::min(n, s + bucket);
    std::uint32_t am = 0;
    for (std::size_t i = s; i < e; ++i) am = std::max(am, gm::bits_of(x[i]) & gm::abs_mask);
    const gm::int8_params prm = gm::int8_params_of(gm::float_of(am));
    const std::uint32_t sb = gm::bits_of(prm.scale);
    std::memcpy(p.data() + 4 + 4 * b, &sb, 4);
    if (c.mode() == codec::rounding::nearest) {
      for (std::size_t i = s; i < e; ++i)
        q[i] = static_cast<std::int8_t>(gm::int8_nearest(x[i], prm));
    } else {
      const std::uint64_t g0 = s / gm::philox_group, g1 = (e - 1) / gm::philox_group;
      for (std::uint64_t it = 0; it < (g1 - g0 + 1) * 16; ++it)
        gm::int8_stochastic_item(x.data(), g0 + it / 16, static_cast<std::uint32_t>(it % 16), s, e,
                                 prm, g, q);
    }
  }
  return p;
}

std::vector<std::byte> replay_ternary(const codec::ternary& c, const std::vector<float>& x,
                                      const rng& g) {
  const std::size_t n = x.size(), nb = c.buckets(n);
  const std::size_t bucket = c.bucket() == 0 ? n : c.bucket();
  std::vector<std::byte> p(c.payload_bytes(n), std::byte{0xA5});
  const auto bw = static_cast<std::uint32_t>(c.bucket());
  std::memcpy(p.data(), &bw, 4);
  auto* codes = reinterpret_cast<std::uint8_t*>(p.data() + 4 + 4 * nb);
  const std::size_t full = n / 256 * 256;
  for (std::size_t k = 0; k < nb; ++k) {
    const std::size_t lo = k * bucket, hi = std::min(n, lo + bucket);
    std::uint32_t am = 0;
    for (std::size_t i = lo; i < hi; ++i) am = std::max(am, gm::bits_of(x[i]) & gm::abs_mask);
    float sum[16] = {}, sq[16] = {};
    if (c.clip() > 0.0F)
      for (unsigned l = 0; l < 16; ++l) gm::ternary_lane_sums(x.data(), lo, hi, l, sum[l], sq[l]);
    const float s = gm::ternary_scale(gm::float_of(am), sum, sq, hi - lo, c.clip());
    const std::uint32_t sb = gm::bits_of(s);
    std::memcpy(p.data() + 4 + 4 * k, &sb, 4);
    const float f = gm::ternary_threshold_factor(s);
    const std::size_t tiles_end = std::min(hi, full);
    const std::size_t per_tile = gm::ternary_items_per_tile;
    for (std::size_t it = 0; it < (tiles_end > lo ? tiles_end - lo : 0) / 256 * per_tile; ++it) {
      const std::size_t t = lo / 256 + it / per_tile;
      const auto P = static_cast<unsigned>((it % per_tile) / 4), k = static_cast<unsigned>(it % 4);
      const std::uint32_t bytes = gm::ternary_tile_item(x.data(), t, P, k, s, f, g);
      for (unsigned m = 0; m < 4; ++m)
        codes[64 * t + 4 * (4 * k + m) + P] = static_cast<std::uint8_t>(bytes >> (8 * m));
    }
    if (hi > tiles_end)
      for (std::size_t j = 0; j < (hi - tiles_end + 3) / 4; ++j)
        codes[tiles_end / 4 + j] = gm::ternary_tail_byte(x.data(), tiles_end, j, hi, s, f, g);
  }
  return p;
}

// The device top-k selection (cuda/topk.cuh) with std::stable_sort in place of
// CUB's stable radix sort; returns ascending indices. e = x (+ r).
std::vector<std::uint64_t> replay_topk_select(const codec::topk& c, const std::vector<float>& e) {
  const std::size_t n = e.size(), k = c.k_of(n);
  std::vector<std::uint32_t> keys(n);
  for (std::size_t i = 0; i < n; ++i) keys[i] = gm::topk_key(e[i]);
  auto top_of = [&](std::vector<std::uint32_t> cand, std::size_t take) {
    std::stable_sort(cand.begin(), cand.end(),
                     [&](std::uint32_t a, std::uint32_t b) { return keys[a] > keys[b]; });
    cand.resize(take);
    std::sort(cand.begin(), cand.end());
    return std::vector<std::uint64_t>(cand.begin(), cand.end());
  };
  std::vector<std::uint32_t> all(n);
  std::iota(all.begin(), all.end(), 0U);
  if (k == 0) return {};
  if (c.mode() == codec::topk::selection::sampled && n >= codec::topk::sampled_min_n &&
      k <= n / 8) {
    const auto plan = kernels::topk::plan_sample(n, k);
    std::vector<std::uint32_t> sample(plan.m);
    for (std::size_t j = 0; j < plan.m; ++j) sample[j] = keys[plan.position(j)];
    std::sort(sample.begin(), sample.end(), std::greater<>());
    const std::uint32_t t = sample[plan.rank - 1];
    std::vector<std::uint32_t> cand;
    for (std::size_t i = 0; i < n; ++i)
      if (keys[i] >= t) cand.push_back(static_cast<std::uint32_t>(i));
    if (cand.size() <= 2 * k && cand.size() >= (k + 1) / 2)
      return cand.size() <= k ? std::vector<std::uint64_t>(cand.begin(), cand.end())
                              : top_of(cand, k);
  }
  return top_of(all, k);
}

// Written by the CPU encoder (ARS-5 random bits); a GPU must write the same.
const std::vector<std::pair<codec::ternary, std::string>> golden_ternary_300 = {
    {codec::ternary(256),
     "47524631010400002c0100000000000057000000000000000000000000000000000100000000483f"
     "0000443f06a005606a015a00015881161680418088154800112a805a1a210488a006a2050560055860"
     "004a80a01681565688016868012a84815a8052062816a0880560040194698248900412048104"},
    {codec::ternary::unclipped(512),
     "47524631010400002c0100000000000053000000000000000000000000000000000200000000483f"
     "06a005606a015a00015881161680418088154800112a805a1a210488a006a2050560055860004a80a0"
     "1681565688016868012a84815a8052062816a0880560040194698248900412048104"},
};

}  // namespace

TEST_CASE("cuda math: int8 bucket parameters and quantizers equal the CPU kernels",
          "[cuda][host]") {
  const auto seed = test::seed(801);
  std::mt19937_64 gen(seed);
  const std::vector<float> x = mixed_floats(20000, seed);
  std::vector<float> absmaxes = {0.0F, 1e-45F, 0x1p-70F, 0x1p-64F,
                                 1.0F, 127.0F, 3.4e38F,  std::numeric_limits<float>::max()};
  for (float v : x) absmaxes.push_back(std::abs(v));
  for (float am : absmaxes) {
    const auto cpu = kernels::int8_bucket::of(am);
    const auto gpu = gm::int8_params_of(am);
    INFO("absmax " << am << " seed " << seed);
    REQUIRE(std::bit_cast<std::uint32_t>(gpu.scale) == std::bit_cast<std::uint32_t>(cpu.scale));
    REQUIRE(gpu.pre == cpu.pre);
    REQUIRE(std::bit_cast<std::uint32_t>(gpu.inv) == std::bit_cast<std::uint32_t>(cpu.inv));
    for (int t = 0; t < 8; ++t) {
      const float v =
          std::ldexp(static_cast<float>(static_cast<std::int64_t>(gen() % 2001) - 1000) / 1000.0F,
                     0) *
          am;
      const auto w = static_cast<std::uint32_t>(gen());
      REQUIRE(gm::int8_nearest(v, gpu) == kernels::scalar::int8_nearest(v, cpu));
      REQUIRE(gm::int8_stochastic(v, gpu, w) == kernels::scalar::int8_stochastic(v, cpu, w));
    }
  }
  const rng g(seed, 3);
  for (std::uint64_t i = 0; i < 5000; i += 1 + gen() % 7)
    REQUIRE(gm::int8_word(g, i) == kernels::scalar::philox_word(g, i));
}

TEST_CASE("cuda math: ternary rng layout, codes, positions and clipped scale equal the CPU",
          "[cuda][host]") {
  namespace kt = kernels::ternary;
  const auto seed = test::seed(802);
  std::mt19937_64 gen(seed);
  rng g(seed, 9);
  g.advance(gen() % 1000);
  for (std::uint64_t i = 0; i < 3000; ++i)
    REQUIRE(gm::ternary_random16(g, i) == kt::scalar::random16(g, i));
  for (std::size_t n : {1U, 5U, 255U, 256U, 257U, 1000U, 1024U}) {
    for (std::size_t i = 0; i < n; ++i) {
      unsigned a = 0, b = 0;
      REQUIRE(gm::ternary_code_byte(i, n, a) == kt::scalar::code_position(i, n, b));
      REQUIRE(a == b);
    }
  }
  const std::vector<float> x = mixed_floats(4096, seed);
  for (int t = 0; t < 2000; ++t) {
    const float v = x[gen() % x.size()], s = std::abs(x[gen() % x.size()]);
    const auto r = static_cast<std::uint32_t>(gen() & 0xFFFFU);
    const float f = kt::threshold_factor(s);
    REQUIRE(gm::ternary_threshold_factor(s) == f);
    REQUIRE(gm::ternary_code(v, r, s, f) == kt::code_of(v, r, s, f));
  }
  for (std::size_t m : {1U, 17U, 256U, 512U, 4096U}) {
    const auto st = kt::scalar::bucket_stats(x.data(), m, true);
    float sum[16], sq[16];
    for (unsigned l = 0; l < 16; ++l) {
      gm::ternary_lane_sums(x.data(), 0, m, l, sum[l], sq[l]);
      REQUIRE(std::bit_cast<std::uint32_t>(sum[l]) == std::bit_cast<std::uint32_t>(st.sum[l]));
      REQUIRE(std::bit_cast<std::uint32_t>(sq[l]) == std::bit_cast<std::uint32_t>(st.sumsq[l]));
    }
    for (float clip : {0.0F, 0.5F, 2.5F})
      REQUIRE(std::bit_cast<std::uint32_t>(
                  gm::ternary_scale(std::bit_cast<float>(st.absmax_bits), sum, sq, m, clip)) ==
              std::bit_cast<std::uint32_t>(kt::scale_of(st, m, clip)));
  }
}

TEST_CASE("cuda math: fp16 and bf16 conversions equal the CPU over a sweep of all exponents",
          "[cuda][host]") {
  const auto seed = test::seed(803);
  std::mt19937_64 gen(seed);
  for (std::uint64_t b = 0; b < (std::uint64_t{1} << 32); b += 0x1000 + gen() % 64) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(b));
    REQUIRE(gm::fp16_from_float(f) == kernels::scalar::fp16_from_float(f));
    if (!std::isnan(f)) REQUIRE(gm::bf16_from_float(f) == kernels::scalar::bf16_from_float(f));
  }
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto w = static_cast<std::uint16_t>(h);
    REQUIRE(std::bit_cast<std::uint32_t>(gm::fp16_to_float(w)) ==
            std::bit_cast<std::uint32_t>(kernels::scalar::fp16_to_float(w)));
    REQUIRE(std::bit_cast<std::uint32_t>(gm::bf16_to_float(w)) ==
            std::bit_cast<std::uint32_t>(kernels::scalar::bf16_to_float(w)));
  }
  // The range bounds the device encoder checks are the CPU codec's.
  REQUIRE(gm::fp16_first_bad == static_cast<std::uint32_t>(kernels::fp16_format::first_bad));
  REQUIRE(gm::bf16_first_bad == static_cast<std::uint32_t>(kernels::bf16_format::first_bad));
}

TEST_CASE("cuda replay: the int8 and ternary kernels' work split writes the CPU payload",
          "[cuda][host]") {
  const auto seed = test::seed(804);
  for (std::size_t n :
       {0U, 1U, 7U, 63U, 64U, 65U, 255U, 256U, 257U, 511U, 512U, 513U, 4099U, 65536U, 70001U, 1048579U}) {
    const std::vector<float> x = mixed_floats(n, seed + n);
    for (const auto& c :
         {codec::int8::nearest(512), codec::int8::stochastic(512), codec::int8::stochastic(100),
          codec::int8::nearest(1), codec::int8::stochastic(4096)}) {
      rng g(seed, n);
      g.advance(n % 5);
      const rng before = g;
      std::vector<std::byte> out(c.max_encoded_bytes(n));
      const std::size_t len = c.encode(x, out, g);
      INFO(c.name() << " bucket " << c.bucket() << " n " << n << " seed " << seed);
      REQUIRE(replay_int8(c, x, before) == payload_of(out, len));
    }
    for (const auto& c :
         {codec::ternary(512), codec::ternary::unclipped(256), codec::ternary::per_tensor(),
          codec::ternary::per_tensor(0.0F), codec::ternary(1024, 1.0F)}) {
      rng g(seed, n + 1);
      const rng before = g;
      std::vector<std::byte> out(c.max_encoded_bytes(n));
      const std::size_t len = c.encode(x, out, g);
      INFO("ternary bucket " << c.bucket() << " clip " << c.clip() << " n " << n << " seed "
                             << seed);
      REQUIRE(replay_ternary(c, x, before) == payload_of(out, len));
    }
  }
}

TEST_CASE("cuda replay: top-k selection by stable sort, then write_selected, is the CPU frame",
          "[cuda][host]") {
  const auto seed = test::seed(805);
  std::mt19937_64 gen(seed);
  for (std::size_t n : {0U, 1U, 10U, 1000U, 65536U, 200000U}) {
    std::vector<float> x = mixed_floats(n, seed + n), r = mixed_floats(n, seed + 2 * n + 1);
    // Ties: repeat some magnitudes so the lower-index rule matters.
    for (std::size_t i = 0; i + 7 < n; i += 7) x[i + 3] = -x[i];
    for (const auto& c :
         {codec::topk::ratio(0.01), codec::topk::ratio(0.01).sampled(), codec::topk::count(3),
          codec::topk::ratio(0.3).sampled(),
          codec::topk::ratio(0.001).sampled().indices(codec::topk::indices_as::u32)}) {
      INFO("n " << n << " k " << c.k_of(n) << " sampled "
                << (c.mode() == codec::topk::selection::sampled) << " seed " << seed);
      for (bool ef : {false, true}) {
        std::vector<float> e(n), res = r;
        for (std::size_t i = 0; i < n; ++i) e[i] = ef ? x[i] + r[i] : x[i];
        const auto idx = replay_topk_select(c, e);
        std::vector<float> val;
        for (auto i : idx) val.push_back(e[i]);
        std::vector<std::byte> want(c.max_encoded_bytes(n)), got(c.max_encoded_bytes(n));
        rng g(seed);
        const std::size_t wl = ef ? c.encode_with_residual(x, res, want, g) : c.encode(x, want, g);
        const std::size_t gl = c.write_selected(idx.data(), val.data(), idx.size(), n, got);
        REQUIRE(gl == wl);
        REQUIRE(
            std::equal(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(wl), got.begin()));
        if (ef) {  // the device residual: e with the sent entries zeroed
          std::vector<float> dev = e;
          for (auto i : idx) dev[i] = 0.0F;
          REQUIRE(dev == res);
        }
        // decode_entries (the device decoder's host half) walks the same pairs.
        std::vector<std::uint64_t> seen;
        c.decode_entries(std::span<const std::byte>(want.data(), wl), n,
                         [&](std::size_t i, float v) {
                           seen.push_back(i);
                           REQUIRE(v == e[i]);
                         });
        REQUIRE(seen == idx);
      }
    }
  }
}

TEST_CASE("golden frames: the CPU codecs still write and read the checked-in bytes",
          "[cuda][host]") {
  const std::vector<float> x = {0.5F, -1.25F, 3.0F, 0.0F, 1e-3F, -7.5F, 2.25F};
  auto hex = [](std::span<const std::byte> b) {
    std::string s;
    for (std::byte v : b) {
      static const char* d = "0123456789abcdef";
      s += d[static_cast<unsigned>(v) >> 4];
      s += d[static_cast<unsigned>(v) & 15];
    }
    return s;
  };
  auto check = [&](const auto& c, const std::string& golden, const std::vector<float>& decoded) {
    std::vector<std::byte> out(c.max_encoded_bytes(x.size()));
    rng g(42, 7);
    const std::size_t len = c.encode(x, out, g);
    INFO(c.name());
    REQUIRE(hex(std::span<const std::byte>(out.data(), len)) == golden);
    std::vector<float> y(x.size());
    c.decode(std::span<const std::byte>(out.data(), len), y);
    REQUIRE(y == decoded);
  };
#include "golden_frames.inc"
}

TEST_CASE("golden frames: ternary over full tiles and a partial one keeps the checked-in bytes",
          "[cuda][host]") {
  // 300 elements: one full 256-element tile (ARS-5 tile layout) and a linear tail.
  std::vector<float> x(300);
  for (std::size_t i = 0; i < x.size(); ++i)
    x[i] = std::ldexp(static_cast<float>(static_cast<int>((37 * i) % 101) - 50), -6);
  for (const auto& [c, golden] : golden_ternary_300) {
    std::vector<std::byte> out(c.max_encoded_bytes(x.size()));
    rng g(42, 7);
    const std::size_t len = c.encode(x, out, g);
    std::string hex;
    for (std::size_t i = 0; i < len; ++i) {
      static const char* d = "0123456789abcdef";
      hex += d[static_cast<unsigned>(out[i]) >> 4];
      hex += d[static_cast<unsigned>(out[i]) & 15];
    }
    INFO("ternary bucket " << c.bucket() << " clip " << c.clip());
    REQUIRE(hex == golden);
    REQUIRE(g.offset == kernels::ternary::blocks_for(x.size()));
  }
}
