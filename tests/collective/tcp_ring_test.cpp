// Ring allreduce between real processes over TCP loopback, met through the
// torchrun environment: every rank within the bound, all ranks bit-identical.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>

#include "greenreduce/codec/int8.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/collective/ring_allreduce.hpp"
#include "greenreduce/core/crc32c.hpp"
#include "greenreduce/transport/tcp.hpp"
#include "support/random.hpp"
#include "transport/tcp_harness.hpp"

using namespace greenreduce;
using collective::reduce_op;
using greenreduce::test::rank_group;

namespace {

// Runs in each child: one allreduce per codec, checked against float64; the
// report line is "ok <crc of none result> <crc of int8 result> <bytes_sent>".
void rank_body(int rank, int p, std::uint16_t port, std::uint64_t salt, rank_group::reporter& say) {
  auto t = transport::tcp::from_env(
      env_source::from_map(greenreduce::test::launcher_env("torchrun", rank, p, port)));
  const std::size_t n = 100003;
  std::vector<std::vector<float>> in;
  for (int q = 0; q < p; ++q)
    in.push_back(test::normal_floats(n, salt + static_cast<std::uint64_t>(q)));
  std::string line = "ok";
  auto run = [&](auto codec, double per_encode) {
    using C = decltype(codec);
    collective::ring_options opts;
    opts.segment_bytes = 16 * 1024;
    collective::ring_allreduce<C, transport::tcp> ring(t, n, codec, opts);
    auto x = in[static_cast<std::size_t>(rank)];
    const greenreduce::report rep = ring.run(x, reduce_op::average);
    const double u = std::ldexp(1.0, -24);
    for (std::size_t i = 0; i < n; ++i) {
      double exact = 0, mag = 0;
      for (auto& v : in) {
        exact += v[i];
        mag += std::fabs(v[i]);
      }
      const double bound =
          (2 * p * u * mag + p * per_encode * (1 + 2 * p * u)) / p + u * std::fabs(exact / p);
      greenreduce::test::expect(std::fabs(x[i] - exact / p) <= bound,
                                detail::str(codec.name(), " element ", i, " is ", x[i],
                                            ", expected ", exact / p, " +- ", bound));
    }
    line += detail::str(" ", crc32c(std::as_bytes(std::span(x))), " ", rep.bytes_sent);
  };
  run(codec::none{}, 0.0);
  double mmax = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double m = 0;
    for (auto& v : in) m += std::fabs(v[i]);
    mmax = std::max(mmax, m);
  }
  run(codec::int8{}, 1.1 * mmax / 127);
  say(line);
}

}  // namespace

TEST_CASE("ring allreduce over tcp between processes, p = 2, 3, 4", "[ring][tcp]") {
  for (int p : {2, 3, 4}) {
    INFO("p=" << p);
    const auto port = greenreduce::test::free_port();
    const std::uint64_t salt = test::seed(static_cast<std::uint64_t>(p));
    rank_group g(
        p, [&](int rank, rank_group::reporter& report) { rank_body(rank, p, port, salt, report); });
    const auto lines = g.collect(std::chrono::seconds(60));
    std::string first_crcs;
    for (int r = 0; r < p; ++r) {
      INFO("rank " << r);
      REQUIRE(lines[static_cast<std::size_t>(r)]);
      const std::string& text = lines[static_cast<std::size_t>(r)]->text;
      INFO(text);
      REQUIRE(text.rfind("ok ", 0) == 0);
      // Fields: ok crc_none sent_none crc_int8 sent_int8; the crcs must agree.
      std::istringstream is(text.substr(3));
      std::string crc_none, sent_none, crc_int8, sent_int8;
      is >> crc_none >> sent_none >> crc_int8 >> sent_int8;
      if (r == 0) first_crcs = crc_none + " " + crc_int8;
      REQUIRE(crc_none + " " + crc_int8 == first_crcs);
      REQUIRE(std::stoull(sent_int8) * 3 < std::stoull(sent_none));
    }
  }
}
