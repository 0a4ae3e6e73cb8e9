// Ring allreduce with every built-in codec: results within the codec's bound,
// bit-identical on all ranks, and the compression the report claims.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <tuple>
#include "check.hpp"

#include "collective/ranks.hpp"
#include "greenreduce/codec/registry.hpp"
#include "greenreduce/collective/error_bound.hpp"
#include "greenreduce/collective/ring_allreduce.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using collective::reduce_op;
using collective::ring_options;
using transport::inproc;

namespace {

// Worst error of one encode: the bound table greenreduce-bench --check uses.

template <class Codec>
void check_codec_ring(const Codec& c, int p, std::size_t n, reduce_op op, ring_options opts,
                      std::uint64_t salt, bool lossless = false, std::string_view want_algo = {}) {
  INFO("codec=" << c.name() << " p=" << p << " n=" << n << " op=" << collective::to_string(op)
                << " segment_bytes=" << opts.segment_bytes << " ef=" << opts.error_feedback
                << " salt=" << salt);
  std::vector<std::vector<float>> in(static_cast<std::size_t>(p)), out(in.size());
  std::vector<report> reps(in.size());
  for (int r = 0; r < p; ++r)
    in[static_cast<std::size_t>(r)] =
        test::normal_floats(n, test::seed(salt + static_cast<std::uint64_t>(r)));
  auto errors = test::on_ranks(p, [&](inproc& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    auto o = opts;
    o.seed = salt;
    collective::ring_allreduce<Codec, inproc> ring(t, n, c, o);
    out[r] = in[r];
    reps[r] = ring.run(out[r], op);
  });
  test::rethrow_any(errors);
  double mmax = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double mag = 0;
    for (auto& x : in) mag += std::fabs(x[i]);
    mmax = std::max(mmax, mag);
  }
  // lossless: a path that must not lose anything, whatever the codec.
  const collective::ring_error_bound bound =
      lossless ? collective::ring_error_bound(codec::none{}, p, mmax, op == reduce_op::average)
               : collective::ring_error_bound(c, p, mmax, op == reduce_op::average);
  for (std::size_t i = 0; i < n; ++i) {
    double exact = 0, mag = 0;
    for (auto& x : in) {
      exact += x[i];
      mag += std::fabs(x[i]);
    }
    if (op == reduce_op::average) exact /= p;
    if (!(std::fabs(out[0][i] - exact) <= bound(mag, exact))) {
      INFO("element " << i << " got " << out[0][i] << " exact " << exact << " bound "
                      << bound(mag, exact));
      REQUIRE(std::fabs(out[0][i] - exact) <= bound(mag, exact));
    }
  }
  for (int r = 1; r < p; ++r) REQUIRE(test::bit_equal(out[0], out[static_cast<std::size_t>(r)]));
  for (const auto& rep : reps) {
    REQUIRE(rep.codec == std::string(c.name()));
    if (!want_algo.empty()) REQUIRE(rep.algo == want_algo);
  }
}

const std::vector<std::string> dense_specs = {
    "none", "fp16", "bf16", "int8", "int8:bucket=64:stochastic", "fp8", "fp8:e5m2:bucket=64"};

const std::vector<std::string> sparse_specs = {"ternary",
                                               "ternary:0:clip=0",
                                               "topk:0.1",
                                               "topk:k=5",
                                               "topk:0.1:sampled",
                                               "randomk:0.2",
                                               "sign:64",
                                               "qsgd",
                                               "qsgd:levels=127:bucket=64",
                                               "qsgd:1"};

}  // namespace

TEST_CASE("ring allreduce with every quantizing and sparsifying codec", "[ring][codecs]") {
  std::uint64_t salt = 5000;
  for (const auto& spec : sparse_specs) {
    std::visit(
        [&](const auto& c) {
          for (int p : {2, 3, 5})
            for (std::size_t n :
                 {std::size_t{0}, std::size_t{1}, std::size_t(p + 1), std::size_t{1003}})
              for (auto op : {reduce_op::sum, reduce_op::average})
                for (bool ef : {false, true}) {
                  ring_options opts;
                  opts.segment_bytes = 1024;
                  opts.error_feedback = ef;
                  check_codec_ring(c, p, n, op, opts, ++salt);
                }
        },
        codec::parse_codec(spec));
  }
}

TEST_CASE("sparse path: lossless top-k is exact on both algorithms", "[ring][codecs][sparse]") {
  const auto all = codec::topk::ratio(1.0);  // k = n: nothing dropped
  std::uint64_t salt = 9000;
  for (auto algo : {collective::algorithm::ring, collective::algorithm::allgather_sparse})
    for (int p : {2, 3, 4, 7})
      for (std::size_t n : {std::size_t{1}, std::size_t(p - 1), std::size_t{1003}}) {
        ring_options opts;
        opts.algo = algo;
        opts.segment_bytes = 512;
        check_codec_ring(all, p, n, reduce_op::sum, opts, ++salt, true,
                         collective::to_string(algo));
        check_codec_ring(all, p, n, reduce_op::average, opts, ++salt, true,
                         collective::to_string(algo));
      }
}

TEST_CASE("sparse path is chosen when it moves fewer bytes", "[ring][codecs][sparse]") {
  // The choice is a pure function of (n, p, codec): the same on every rank.
  auto errors = test::on_ranks(4, [&](inproc& tr) {
    collective::ring_allreduce<codec::topk, inproc> fixed_k(tr, 1 << 16, codec::topk::count(100));
    collective::ring_allreduce<codec::topk, inproc> ratio(tr, 1 << 16, codec::topk::ratio(0.01));
    // A fixed k per segment costs the ring 2(p-1) p k pairs against the allgather's p(p-1) k.
    REQUIRE(fixed_k.algorithm_for(1 << 16) == collective::algorithm::allgather_sparse);
    // A ratio scales with the chunk: the ring moves 2(p-1)/p of it, the allgather p-1 times it.
    REQUIRE(ratio.algorithm_for(1 << 16) == collective::algorithm::ring);
    REQUIRE(ratio.algorithm_for(0) == collective::algorithm::ring);
  });
  test::rethrow_any(errors);
}

TEST_CASE("ring allreduce with every dense codec stays within its bound", "[ring][codecs]") {
  std::uint64_t salt = 100;
  for (const auto& spec : dense_specs) {
    const auto any = codec::parse_codec(spec);
    std::visit(
        [&](const auto& c) {
          for (int p : {2, 3, 5, 8})
            for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t(p - 1),
                                  std::size_t(p + 1), std::size_t{1003}})
              for (auto op : {reduce_op::sum, reduce_op::average})
                for (std::size_t seg : {std::size_t{64}, std::size_t{512 * 1024}})
                  for (bool ef : {false, true}) {
                    if (ef && seg == 64) continue;
                    ring_options opts;
                    opts.segment_bytes = seg;
                    opts.error_feedback = ef;
                    check_codec_ring(c, p, n, op, opts, ++salt);
                  }
        },
        any);
  }
}

TEST_CASE("ring allreduce reports the compression of each codec", "[ring][codecs][report]") {
  const int p = 4;
  const std::size_t n = 1 << 17;
  auto ratio_of = [&](const std::string& spec) {
    double ratio = 0;
    std::visit(
        [&](const auto& c) {
          using C = std::decay_t<decltype(c)>;
          std::vector<report> reps(p);
          auto errors = test::on_ranks(p, [&](inproc& t) {
            collective::ring_allreduce<C, inproc> ring(t, n, c);
            auto x = test::normal_floats(n, test::seed(static_cast<std::uint64_t>(t.rank())));
            reps[static_cast<std::size_t>(t.rank())] = ring.run(x);
          });
          test::rethrow_any(errors);
          ratio = reps[1].compression_ratio();
          for (const auto& rep : reps) REQUIRE(rep.raw_bytes == 4 * (2 * n - 2 * n / p));
        },
        codec::parse_codec(spec));
    return ratio;
  };
  CHECK(ratio_of("none") == Approx(1.0).epsilon(0.01));
  CHECK(ratio_of("fp16") == Approx(2.0).epsilon(0.01));
  CHECK(ratio_of("bf16") == Approx(2.0).epsilon(0.01));
  CHECK(ratio_of("int8") == Approx(4.0).epsilon(0.04));  // 1 byte + a scale per 512
}

TEST_CASE("codec registry parses specs and rejects bad ones", "[registry]") {
  CHECK(codec::codec_display_name(codec::parse_codec("none")) == "none");
  CHECK(codec::codec_display_name(codec::parse_codec("int8:stochastic")) == "int8_stochastic");
  const auto c = std::get<codec::int8>(codec::parse_codec("int8:bucket=256"));
  CHECK(c.bucket() == 256);
  CHECK(std::get<codec::int8>(codec::parse_codec("int8:128")).bucket() == 128);
  CHECK(codec::parse_codec_list("none,fp16,,bf16").size() == 3);
  CHECK_THROWS_AS(codec::parse_codec("zip"), config_error);
  CHECK_THROWS_AS(codec::parse_codec("fp16:3"), config_error);
  CHECK_THROWS_AS(codec::parse_codec("int8:bucket=x"), config_error);
  CHECK_THROWS_AS(codec::parse_codec("int8:bucket=0"), config_error);
  CHECK_THROWS_AS(codec::parse_codec("int8:size=3"), config_error);
  CHECK_THROWS_AS(codec::parse_codec_list(""), config_error);
  CHECK(std::get<codec::topk>(codec::parse_codec("topk:k=7")).k_of(100) == 7);
  CHECK(std::get<codec::topk>(codec::parse_codec("topk:0.5:sampled")).mode() ==
        codec::topk::selection::sampled);
  CHECK(std::get<codec::randomk>(codec::parse_codec("randomk:0.25")).k_of(100) == 25);
  CHECK(std::get<codec::ternary>(codec::parse_codec("ternary:bucket=256:clip=0")).clip() == 0.0F);
  CHECK(std::get<codec::sign>(codec::parse_codec("sign:32")).bucket() == 32);
  CHECK_THROWS_AS(codec::parse_codec("topk:2"), config_error);
  CHECK_THROWS_AS(codec::parse_codec("topk:ratio=x"), config_error);
  CHECK_THROWS_AS(codec::parse_codec("ternary:100"), config_error);
  CHECK_THROWS_AS(codec::parse_codec("sign:mode=1"), config_error);
  CHECK(std::get<codec::fp8>(codec::parse_codec("fp8")).format() == codec::fp8_format::e4m3);
  CHECK(std::get<codec::fp8>(codec::parse_codec("fp8:e5m2:bucket=64")).bucket() == 64);
  CHECK(std::get<codec::fp8>(codec::parse_codec("fp8_e5m2:32")).format() ==
        codec::fp8_format::e5m2);
  CHECK(codec::codec_display_name(codec::parse_codec("fp8:e5m2")) == "fp8_e5m2");
  CHECK(std::get<codec::qsgd>(codec::parse_codec("qsgd")).levels() == 7);
  CHECK(std::get<codec::qsgd>(codec::parse_codec("qsgd:127")).code_bits() == 8);
  CHECK(std::get<codec::qsgd>(codec::parse_codec("qsgd:levels=1:bucket=8")).code_bits() == 2);
  CHECK_THROWS_MATCHES(codec::parse_codec("qsgd:0"), config_error, test::what_has("levels"));
  CHECK_THROWS_MATCHES(codec::parse_codec("qsgd:128"), config_error, test::what_has("[1, 127]"));
  CHECK_THROWS_AS(codec::parse_codec("fp8:e3m4"), config_error);
  CHECK_THROWS_AS(codec::parse_codec("fp8:bucket=0"), config_error);
}
