#include "greenreduce/energy/model.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using namespace greenreduce::energy;
using greenreduce::test::what_has;

namespace {
report sample_report() {
  report r;
  r.op = "allreduce";
  r.bytes_sent = 1000;
  r.bytes_received = 3000;
  r.memory_bytes = 1'000'000;
  r.compute_ops = 2'000'000;
  r.seconds = 0.25;
  return r;
}
}  // namespace

TEST_CASE("the model's parts match hand-computed joules", "[energy][model]") {
  const model m(coefficients{10.0, 100.0, 2.0, 40.0});
  const energy_estimate e = m.estimate(sample_report());
  // (1000 + 3000) bytes * 8 bit * 10 pJ = 320000 pJ
  CHECK(e.network_j == Approx(3.2e-7));
  // 1e6 bytes * 100 pJ = 1e8 pJ
  CHECK(e.memory_j == Approx(1e-4));
  // 2e6 ops * 2 pJ = 4e6 pJ
  CHECK(e.compute_j == Approx(4e-6));
  // 40 W * 0.25 s
  CHECK(e.static_j == Approx(10.0));
  CHECK(e.measured_j == 0);
  CHECK(e.total_j() == Approx(3.2e-7 + 1e-4 + 4e-6 + 10.0));
  CHECK(e.method == energy_method::model);
}

TEST_CASE("a rank pays for the bits it sends and the bits it receives", "[energy][model]") {
  const model m(coefficients{1.0, 0, 0, 0});
  report send_only;
  send_only.bytes_sent = 500;
  report recv_only;
  recv_only.bytes_received = 500;
  CHECK(m.estimate(send_only).network_j == Approx(500 * 8 * 1e-12));
  CHECK(m.estimate(recv_only).network_j == Approx(m.estimate(send_only).network_j));
  // One message between two ranks costs 2 * link_pj_per_bit per bit in total.
  CHECK(m.estimate(send_only).network_j + m.estimate(recv_only).network_j ==
        Approx(500 * 8 * 2 * 1e-12));
}

TEST_CASE("the default profile is datacenter_ethernet with the documented numbers",
          "[energy][model]") {
  const model m;
  CHECK(m.coeffs() == profile_by_name("datacenter_ethernet"));
  CHECK(m.coeffs().link_pj_per_bit == Approx(11.25));
  CHECK(m.coeffs().memory_pj_per_byte == Approx(162.5));
  CHECK(m.coeffs().op_pj == Approx(2.3));
  CHECK(m.coeffs().static_watts == Approx(50.0));
  CHECK(profile_by_name("nvlink").link_pj_per_bit == Approx(0.65));
  CHECK(profile_by_name("nvlink").memory_pj_per_byte == Approx(31.2));
  CHECK(profile_by_name("wifi_edge").link_pj_per_bit == Approx(645000.0));
  CHECK(profile_by_name("loopback").link_pj_per_bit == Approx(162.5 / 8));
  for (const auto& p : profiles) {
    INFO(p.name);
    CHECK_NOTHROW(validate(p.coeffs));
    CHECK(model(p.name).coeffs() == p.coeffs);
    CHECK(p.coeffs.link_pj_per_bit > 0);
  }
  // Wi-Fi costs more per bit than optical Ethernet, which costs more than NVLink.
  CHECK(profile_by_name("wifi_edge").link_pj_per_bit >
        profile_by_name("datacenter_ethernet").link_pj_per_bit);
  CHECK(profile_by_name("datacenter_ethernet").link_pj_per_bit >
        profile_by_name("pcie").link_pj_per_bit);
  CHECK(profile_by_name("pcie").link_pj_per_bit > profile_by_name("nvlink").link_pj_per_bit);
}

TEST_CASE("an unknown profile names the valid ones", "[energy][model]") {
  CHECK_THROWS_MATCHES(
      profile_by_name("token_ring"), config_error,
      what_has("token_ring", "datacenter_ethernet", "nvlink", "pcie", "wifi_edge", "loopback"));
}

TEST_CASE("coefficients must be finite and non-negative", "[energy][model]") {
  CHECK_THROWS_MATCHES(model(coefficients{-1, 0, 0, 0}), config_error,
                       what_has("link_pj_per_bit", ">= 0", "-1"));
  CHECK_THROWS_MATCHES(model(coefficients{0, 0, 0, std::nan("")}), config_error,
                       what_has("static_watts"));
  CHECK_THROWS_MATCHES(model(coefficients{0, 0, INFINITY, 0}), config_error, what_has("op_pj"));
}

TEST_CASE("environment variables pick a profile and override coefficients", "[energy][model]") {
  CHECK(model::from_env(env_source::from_map({})).coeffs() == profiles[0].coeffs);
  const auto nv = model::from_env(env_source::from_map({{"GREENREDUCE_ENERGY_PROFILE", "nvlink"}}));
  CHECK(nv.coeffs() == profile_by_name("nvlink"));

  const auto over = model::from_env(env_source::from_map({
      {"GREENREDUCE_ENERGY_PROFILE", "pcie"},
      {"GREENREDUCE_ENERGY_LINK_PJ_PER_BIT", "7.5"},
      {"GREENREDUCE_ENERGY_MEMORY_PJ_PER_BYTE", " 12 "},
      {"GREENREDUCE_ENERGY_OP_PJ", "0.03"},
      {"GREENREDUCE_ENERGY_STATIC_WATTS", "0"},
  }));
  CHECK(over.coeffs() == coefficients{7.5, 12.0, 0.03, 0.0});

  // Only the variables that are set replace the profile's numbers.
  const auto partial = model::from_env(env_source::from_map(
      {{"GREENREDUCE_ENERGY_PROFILE", "wifi_edge"}, {"GREENREDUCE_ENERGY_STATIC_WATTS", "2"}}));
  auto expect = profile_by_name("wifi_edge");
  expect.static_watts = 2;
  CHECK(partial.coeffs() == expect);

  // API override on top of the environment.
  auto c = coefficients_from_env(env_source::from_map({}), profile_by_name("loopback"));
  CHECK(c == profile_by_name("loopback"));
  c.static_watts = 15;
  CHECK(model(c).estimate(sample_report()).static_j == Approx(15 * 0.25));
}

TEST_CASE("malformed environment values name the variable", "[energy][model]") {
  CHECK_THROWS_MATCHES(
      model::from_env(env_source::from_map({{"GREENREDUCE_ENERGY_PROFILE", "fast"}})), config_error,
      what_has("GREENREDUCE_ENERGY_PROFILE", "\"fast\"", "nvlink"));
  const char* vars[] = {"GREENREDUCE_ENERGY_LINK_PJ_PER_BIT",
                        "GREENREDUCE_ENERGY_MEMORY_PJ_PER_BYTE", "GREENREDUCE_ENERGY_OP_PJ",
                        "GREENREDUCE_ENERGY_STATIC_WATTS"};
  for (const char* var : vars)
    for (const char* bad : {"abc", "-1", "nan", "inf", "1pJ", "1e400"}) {
      INFO(var << "=" << bad);
      CHECK_THROWS_MATCHES(model::from_env(env_source::from_map({{var, bad}})), config_error,
                           what_has(var, bad));
    }
}

TEST_CASE("annotate fills the report's energy with the model's estimate", "[energy][model]") {
  const model m("nvlink");
  report r = sample_report();
  r.energy.method = energy_method::rapl;
  r.energy.measured_j = 99;
  m.annotate(r);
  CHECK(r.energy.method == energy_method::model);
  CHECK(r.energy.measured_j == 0);
  CHECK(r.energy.total_j() == Approx(m.estimate(sample_report()).total_j()));
}

TEST_CASE("property: fewer wire bytes never cost more network energy; the model is additive",
          "[energy][model][property]") {
  const auto s = greenreduce::test::seed(0xE1);
  INFO("seed " << s);
  std::mt19937_64 gen(s);
  std::uniform_int_distribution<std::uint64_t> bytes(0, std::uint64_t{1} << 40);
  std::uniform_real_distribution<double> coef(0.0, 1e6), secs(0.0, 100.0);
  for (int i = 0; i < 2000; ++i) {
    const model m(coefficients{coef(gen), coef(gen), coef(gen), coef(gen) * 1e-3});
    report a;
    a.bytes_sent = bytes(gen);
    a.bytes_received = bytes(gen);
    a.memory_bytes = bytes(gen);
    a.compute_ops = bytes(gen);
    a.seconds = secs(gen);
    report fewer = a;  // same data, fewer wire bytes
    fewer.bytes_sent = a.bytes_sent == 0 ? 0 : bytes(gen) % (a.bytes_sent + 1);
    fewer.bytes_received = a.bytes_received == 0 ? 0 : bytes(gen) % (a.bytes_received + 1);
    const auto ea = m.estimate(a), ef = m.estimate(fewer);
    REQUIRE(ef.network_j <= ea.network_j);
    REQUIRE(ef.total_j() <= ea.total_j());
    REQUIRE(ef.memory_j == ea.memory_j);

    report b = fewer;
    auto sum = m.estimate(a);
    sum += m.estimate(b);
    const auto of_sum = m.estimate(a + b);
    REQUIRE(of_sum.network_j == Approx(sum.network_j).epsilon(1e-12));
    REQUIRE(of_sum.total_j() == Approx(sum.total_j()).epsilon(1e-12));
  }
}
