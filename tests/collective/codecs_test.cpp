// Ring allreduce with every built-in codec: results within the codec's bound,
// bit-identical on all ranks, and the compression the report claims.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <tuple>

#include "collective/ranks.hpp"
#include "greenreduce/codec/registry.hpp"
#include "greenreduce/collective/ring_allreduce.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using collective::reduce_op;
using collective::ring_options;
using transport::inproc;

namespace {

// Worst error of one encode of values of magnitude <= m (bench/check.hpp has
// the same table and its derivation).
template <class Codec>
double per_encode_error(const Codec& c, double m) {
  const std::string_view name = c.name();
  if (name == "none") return 0;
  if (name == "fp16") return std::ldexp(m, -11) + std::ldexp(1.0, -25);
  if (name == "bf16") return std::ldexp(m, -8);
  if (name.starts_with("int8")) return m / 127;
  return 2 * m;
}

template <class Codec>
void check_codec_ring(const Codec& c, int p, std::size_t n, reduce_op op, ring_options opts,
                      std::uint64_t salt) {
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
  const double u = std::ldexp(1.0, -24);
  const double gamma = 2.0 * p * u / (1 - 2.0 * p * u);
  const double d = per_encode_error(c, 1.1 * mmax);
  for (std::size_t i = 0; i < n; ++i) {
    double exact = 0, mag = 0;
    for (auto& x : in) {
      exact += x[i];
      mag += std::fabs(x[i]);
    }
    double bound = gamma * (mag + p * d) + p * d;
    if (op == reduce_op::average) {
      exact /= p;
      bound = bound / p + u * std::fabs(exact);
    }
    if (!(std::fabs(out[0][i] - exact) <= bound)) {
      INFO("element " << i << " got " << out[0][i] << " exact " << exact << " bound " << bound);
      REQUIRE(std::fabs(out[0][i] - exact) <= bound);
    }
  }
  for (int r = 1; r < p; ++r) REQUIRE(test::bit_equal(out[0], out[static_cast<std::size_t>(r)]));
  for (const auto& rep : reps) REQUIRE(rep.codec == std::string(c.name()));
}

const std::vector<std::string> dense_specs = {"none", "fp16", "bf16", "int8",
                                              "int8:bucket=64:stochastic"};

}  // namespace

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
}
