// The parameter server with the library's codecs, and the transports it compiles against.
#include <catch2/catch.hpp>
#include <cmath>

// harness.hpp (and with it codec/none.hpp) first: none.hpp names detail::str
// unqualified, which codec/detail/ would otherwise capture.
#include "ps/harness.hpp"
// (keep this order)
#include "greenreduce/codec/fp16.hpp"
#include "greenreduce/codec/int8.hpp"
#include "greenreduce/transport/inproc.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using test::endpoint;

// Both roles instantiate over the library's in-process transport (see
// docs/parameter_server.md on the server's threading requirement).
template class greenreduce::ps::worker<transport::inproc, codec::int8, codec::fp16>;
template class greenreduce::ps::server<transport::inproc, codec::int8, codec::fp16>;

TEST_CASE("ps sync with int8 pushes (error feedback) and fp16 pulls tracks fp32 SGD",
          "[ps][codec]") {
  const std::uint64_t seed = test::seed(40);
  const int S = 2, W = 2, steps = 30;
  const std::vector<ps::key_spec> keys{{"w", 300}, {"b", 7}};
  const float lr = 0.1F;
  // fp32 reference of the same pushes (mean over workers).
  std::vector<std::vector<float>> ref{std::vector<float>(300, 0.0F), std::vector<float>(7, 0.0F)};
  auto grad = [&](int w, std::size_t k, int t) {
    return test::normal_floats(keys[k].length, seed ^ (static_cast<std::uint64_t>(w) << 40) ^
                                                   (k << 20) ^ static_cast<std::uint64_t>(t));
  };
  for (int t = 0; t < steps; ++t)
    for (std::size_t k = 0; k < keys.size(); ++k)
      for (int w = 0; w < W; ++w) {
        const auto g = grad(w, k, t);
        for (std::size_t i = 0; i < g.size(); ++i) ref[k][i] -= lr * g[i] / W;
      }
  test::ps_world world(S + W);
  ps::worker_options wo;
  wo.encoded_pull = true;
  std::vector<std::vector<float>> got(keys.size());
  std::vector<report> reports;
  test::run_ranks(
      world, S, S + W,
      [&](endpoint& t) {
        ps::server<endpoint, codec::int8, codec::fp16> srv(t, ps::roles(S, S + W), keys,
                                                           ps::sgd(lr));
        srv.run();
      },
      [&](endpoint& t) {
        ps::worker<endpoint, codec::int8, codec::fp16> wk(t, ps::roles(S, S + W), keys, wo);
        for (int step = 0; step < steps; ++step)
          for (std::size_t k = 0; k < keys.size(); ++k) {
            const auto r = wk.push(keys[k].name, grad(wk.index(), k, step));
            if (wk.index() == 0 && step > 0 && k == 0) reports.push_back(r);
          }
        if (wk.index() == 0)
          for (std::size_t k = 0; k < keys.size(); ++k) {
            got[k].resize(keys[k].length);
            const auto r = wk.pull(keys[k].name, got[k]);
            CHECK(r.codec == "fp16");
            CHECK(r.bytes_received < 4 * keys[k].length / 2 + 200);
          }
      });
  // With error feedback the sum of what int8 sent stays within one step's
  // quantization error of the sum of the gradients; fp16 adds its rounding.
  for (std::size_t k = 0; k < keys.size(); ++k)
    for (std::size_t i = 0; i < keys[k].length; ++i) {
      INFO("key " << keys[k].name << " element " << i << " seed " << seed);
      REQUIRE(std::abs(got[k][i] - ref[k][i]) <= 0.05F + 2e-3F * std::abs(ref[k][i]));
    }
  REQUIRE(!reports.empty());
  CHECK(reports[0].codec == "int8");
  CHECK(reports[0].raw_bytes == 1200);
  CHECK(reports[0].compression_ratio() > 2.5);
}
