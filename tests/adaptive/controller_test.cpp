// The adaptive controller on synthetic report streams: a link that slows down,
// a budget that cannot be met, oscillating signals, the accuracy guard, warm-up,
// determinism and the sync/SSP switch; plus its ladder, options and log format.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "greenreduce/adaptive/controller.hpp"
#include "greenreduce/energy/csv.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using adaptive::controller;
using adaptive::controller_options;
using adaptive::observation;
using adaptive::reason;

namespace {

// A rank that sends `raw` fp32 bytes per step over a link of `bandwidth` wire
// bytes per second, at the nominal ratio of the controller's current level;
// joules from the default energy model (50 W static while communicating).
struct link_sim {
  double bandwidth = 1e10;
  double raw = 64e6;
  double compute = 0.02;
  double noise = 0;    // relative jitter of the communication time
  double latency = 0;  // seconds per step whatever the bytes
  std::mt19937_64 gen{1};
  energy::model model;

  observation step(const controller& c, std::uint64_t s) {
    const double ratio = c.current().nominal_ratio;
    const auto sent = static_cast<std::uint64_t>(raw / ratio);
    report r;
    r.bytes_sent = sent;
    r.bytes_received = sent;
    r.raw_bytes = static_cast<std::uint64_t>(raw);
    double jitter = 1;
    if (noise > 0) jitter += noise * std::uniform_real_distribution<double>(-1, 1)(gen);
    r.seconds = (latency + static_cast<double>(r.wire_bytes()) / bandwidth) * jitter;
    model.annotate(r);
    return observation::from_report(r, s).with_step_seconds(compute + r.seconds);
  }
};

std::size_t codec_changes(const controller& c) {
  std::size_t n = 0;
  for (const auto& d : c.log()) n += d.changes_codec() ? 1 : 0;
  return n;
}

controller_options base_options() {
  controller_options o;
  o.with_warmup_steps(50).with_window_steps(10).with_hysteresis(3, 5).with_consistency(false);
  return o;
}

}  // namespace

TEST_CASE("ladder: the default ladder, parsing and its checks", "[adaptive]") {
  const adaptive::ladder l;
  REQUIRE(l.size() == 7);
  CHECK(l[0].spec == "none");
  CHECK(l[0].nominal_ratio == Approx(1).epsilon(1e-3));
  for (std::size_t i = 1; i < l.size(); ++i) CHECK(l[i].nominal_ratio >= l[i - 1].nominal_ratio);
  CHECK(l[6].nominal_ratio > 40);
  CHECK(adaptive::ladder::parse(l.to_string()).to_string() == l.to_string());
  CHECK(adaptive::ladder::parse("int8").size() == 1);

  CHECK_THROWS_MATCHES(adaptive::ladder::parse("none,,int8"), config_error,
                       test::what_has("empty level"));
  CHECK_THROWS_MATCHES(adaptive::ladder::parse("none,int8,int8"), config_error,
                       test::what_has("\"int8\" appears twice"));
  CHECK_THROWS_MATCHES(adaptive::ladder::parse("none,topk:0.01,int8"), config_error,
                       test::what_has("\"int8\"", "compresses less", "loosest first"));
  CHECK_THROWS_MATCHES(adaptive::ladder::parse("none,zip"), config_error,
                       test::what_has("unknown codec \"zip\""));
  CHECK_THROWS_MATCHES(adaptive::ladder(std::vector<std::string>{}), config_error,
                       test::what_has("no level"));
}

TEST_CASE("controller options: every knob is range-checked", "[adaptive]") {
  auto bad = [](controller_options o, const char* knob) {
    CHECK_THROWS_MATCHES(controller(o), config_error, test::what_has(knob));
  };
  bad(controller_options().with_window_steps(0), "window_steps");
  bad(controller_options().with_hysteresis(0, 1), "hysteresis_windows");
  bad(controller_options().with_energy_budget(-1), "energy_budget_j");
  bad(controller_options().with_energy_budget(NAN), "energy_budget_j");
  bad(controller_options().with_max_slowdown(0.5), "max_slowdown");
  bad(controller_options().with_loosen_margin(1), "loosen_margin");
  bad(controller_options().with_ewma_alpha(0), "ewma_alpha");
  bad(controller_options().with_spread_thresholds(0.1, 0.2), "spread_low");
  bad(controller_options().with_staleness_ladder({1, 2}), "staleness_ladder[0]");
  bad(controller_options().with_staleness_ladder({0, 2, 2}), "values must increase");
  bad(controller_options().with_accuracy_guard(0.1, INFINITY), "reference_loss");
  CHECK_THROWS_MATCHES(controller_options().with_warmup_fraction(1.5, 100), config_error,
                       test::what_has("fraction"));
  CHECK(controller_options().with_warmup_fraction(0.05, 1001).warmup_steps == 51);
  CHECK(controller_options().with_epoch_energy_budget(100, 40).energy_budget_j == 2.5);
  CHECK_THROWS_MATCHES(controller_options().with_epoch_energy_budget(100, 0), config_error,
                       test::what_has("steps_per_epoch"));
}

TEST_CASE("controller: malformed observations are config_errors naming the field", "[adaptive]") {
  controller c;
  CHECK_THROWS_MATCHES(c.observe(observation().with_comm_seconds(-1)), config_error,
                       test::what_has("step 0", "comm_seconds"));
  CHECK_THROWS_MATCHES(c.observe(observation().with_joules(NAN)), config_error,
                       test::what_has("joules"));
  CHECK_THROWS_MATCHES(c.observe(observation().with_val_loss(INFINITY)), config_error,
                       test::what_has("val_loss"));
  CHECK(c.steps_observed() == 0);
  c.observe(observation().with_step(4));
  CHECK_THROWS_MATCHES(c.observe(observation().with_step(4)), config_error,
                       test::what_has("step 4 comes after step 4"));
  CHECK(c.steps_observed() == 1);
}

TEST_CASE("controller: warm-up runs level 0 and ends with its baseline", "[adaptive]") {
  const std::uint64_t warm = GENERATE(0, 1, 29, 30, 37, 50);
  auto o = base_options().with_warmup_steps(warm).with_energy_budget(0.01);
  controller c(o);
  link_sim link;
  link.bandwidth = 1e9;  // over budget from the first step
  std::uint64_t first_change = 0;
  for (std::uint64_t s = 0; s < 400; ++s) {
    if (s < warm) CHECK(c.level() == 0);
    const std::size_t before = c.level();
    c.observe(link.step(c, s));
    if (c.level() != before && first_change == 0) first_change = s;
  }
  INFO("warm-up " << warm);
  // A warm-up of at least hysteresis_windows windows (3 x 10 steps) decides
  // on its last step; a shorter one needs hysteresis_windows full windows after it.
  CHECK(first_change == (warm >= 3 * 10 ? warm - 1 : warm + 3 * 10 - 1));
  if (warm > 0) {
    REQUIRE(!c.log().empty());
    CHECK(c.log()[0].why == reason::warmup_done);
    CHECK(c.log()[0].step == warm - 1);
    CHECK(c.baseline_seconds() ==
          Approx(link.compute + 2 * link.raw / link.bandwidth).epsilon(1e-4));
  }
}

TEST_CASE("controller: a link that slows down mid-run tightens within a bounded number of windows",
          "[adaptive]") {
  const bool budget = GENERATE(true, false);
  auto o = base_options();
  if (budget)
    o.with_energy_budget(1.0);  // level 0 costs 0.65 J/step on the fast link, 6.5 J on the slow
  else
    o.with_max_slowdown(1.5);  // warm-up step 0.033 s; the slow link needs 4.4x compression
  controller c(o);
  link_sim link;
  const std::uint64_t slow_at = 300;
  std::uint64_t tightened_at = 0;
  for (std::uint64_t s = 0; s < 900; ++s) {
    if (s == slow_at) link.bandwidth = 1e9;
    c.observe(link.step(c, s));
    if (s < slow_at) REQUIRE(c.level() == 0);
    if (tightened_at == 0 && c.level() > 0) tightened_at = s;
  }
  INFO((budget ? "energy budget" : "max slowdown"));
  REQUIRE(tightened_at > 0);
  // Hysteresis (3 windows) plus the window the change fell into.
  CHECK(tightened_at - slow_at < (3 + 1) * 10);
  // The loosest level that meets the objective on the slow link: topk:0.1.
  CHECK(c.current().spec == "topk:ratio=0.1");
  CHECK(codec_changes(c) == 1);
  CHECK(c.state() == adaptive::policy_state::tracking);
  const auto& d = c.log().back();
  CHECK(d.why == (budget ? reason::over_budget : reason::over_slowdown));
  CHECK(d.from_level == 0);
  CHECK(d.to_level == 3);
  CHECK(d.measured.bandwidth < 2e9);
  // The estimate follows the link and predicts the level it runs.
  CHECK(c.bandwidth() == Approx(1e9).epsilon(1e-6));
  const auto p = c.predict(c.level());
  CHECK(p.measured);
  const auto now = link.step(c, 10000);
  CHECK(p.joules == Approx(now.joules).epsilon(1e-6));
  CHECK(p.seconds == Approx(now.step_seconds).epsilon(1e-6));
}

TEST_CASE("controller: the link's latency comes from two levels and predicts the others",
          "[adaptive]") {
  // Small messages: 2 ms a step whatever the bytes, then 1 GB/s. Level 0
  // moves 0.8 MB a step (0.8 ms of bytes), so bytes alone explain little.
  auto latency_bound = [](double bandwidth) {
    link_sim l;
    l.raw = 4e5;
    l.bandwidth = bandwidth;
    l.latency = 2e-3;
    return l;
  };
  controller c(base_options().with_minimum_energy());
  link_sim link = latency_bound(1e9);
  for (std::uint64_t s = 0; s < 200; ++s) c.observe(link.step(c, s));
  const std::size_t top = c.options().ladder.size() - 1;
  REQUIRE(c.level() == top);  // the cheapest per byte; measured next to level 0
  CHECK(c.latency_seconds() == Approx(2e-3).epsilon(1e-4));
  CHECK(c.bandwidth() == Approx(1e9).epsilon(1e-4));
  for (std::size_t l = 1; l < top; ++l) {
    INFO("level " << l << " " << c.options().ladder[l].spec);
    const auto p = c.predict(l);
    CHECK(!p.measured);
    const double wire = 2 * link.raw / c.options().ladder[l].nominal_ratio;
    CHECK(p.seconds == Approx(link.compute + 2e-3 + wire / 1e9).epsilon(1e-4));
  }
  // Latency alone: every level costs the same 2 ms. Before a second level
  // ran, bytes looked like the whole cost and the policy moved once; then the
  // latency is known to be all of it and no further move saves anything.
  controller flat(base_options().with_minimum_energy());
  link_sim lat = latency_bound(1e15);
  for (std::uint64_t s = 0; s < 400; ++s) flat.observe(lat.step(flat, s));
  CHECK(codec_changes(flat) == 1);
  CHECK(flat.latency_seconds() == Approx(2e-3).epsilon(1e-3));
}

TEST_CASE("controller: a faster link again loosens, with margin", "[adaptive]") {
  controller c(base_options().with_energy_budget(1.0));
  link_sim link;
  link.bandwidth = 1e9;
  for (std::uint64_t s = 0; s < 300; ++s) c.observe(link.step(c, s));
  REQUIRE(c.level() == 3);
  link.bandwidth = 1e10;
  std::size_t prev = c.level();
  for (std::uint64_t s = 300; s < 700; ++s) {
    c.observe(link.step(c, s));
    CHECK(c.level() <= prev);  // only ever looser on the way back
    prev = c.level();
  }
  CHECK(c.level() == 0);
  CHECK(c.log().back().why == reason::room_to_loosen);
  CHECK(codec_changes(c) <= 4);
}

TEST_CASE("controller: an unattainable budget goes to the strongest level and stays",
          "[adaptive]") {
  controller c(base_options().with_energy_budget(0.01));
  link_sim link;
  link.bandwidth = 1e9;
  link.noise = 0.3;
  for (std::uint64_t s = 0; s < 2000; ++s) c.observe(link.step(c, s));
  CHECK(c.level() == c.options().ladder.size() - 1);
  CHECK(c.state() == adaptive::policy_state::budget_unattainable);
  CHECK(codec_changes(c) == 1);  // straight to the strongest, never back
  std::size_t flagged = 0;
  for (const auto& d : c.log()) flagged += d.why == reason::budget_unattainable ? 1 : 0;
  CHECK(flagged == 1);
  CHECK(c.log().back().why == reason::budget_unattainable);
  CHECK(c.log().back().text.find("holding it") != std::string::npos);
  CHECK(c.log().back().text.find("cheapest of levels 0..6") != std::string::npos);
}

TEST_CASE(
    "controller: where codec work costs more than the bytes it saves, it settles on the "
    "cheapest level",
    "[adaptive]") {
  // Loopback: a wire byte costs one DRAM access per end, and every codec but
  // none moves 3 bytes of memory per raw byte in its kernels. Every level then
  // costs more than none; the budget (below none) cannot be met.
  const energy::model m("loopback");
  controller c(base_options().with_model(m).with_energy_budget(1e-3));
  const double raw = 4e6;
  std::size_t prev = 0, changes = 0;
  for (std::uint64_t s = 0; s < 3000; ++s) {
    const auto sent = static_cast<std::uint64_t>(raw / c.current().nominal_ratio);
    report r;
    r.bytes_sent = r.bytes_received = sent;
    r.raw_bytes = static_cast<std::uint64_t>(raw);
    r.memory_bytes = static_cast<std::uint64_t>(raw * (c.level() == 0 ? 0.1 : 3.0));
    r.seconds = 1e-3;
    m.annotate(r);
    c.observe(observation::from_report(r, s));
    changes += c.level() != prev ? 1 : 0;
    prev = c.level();
  }
  for (const auto& d : c.log()) INFO(d.to_json());
  CHECK(c.level() == 0);
  CHECK(c.state() == adaptive::policy_state::budget_unattainable);
  CHECK(changes <= 2 * (c.options().ladder.size() - 1));
  CHECK(c.log().back().why == reason::budget_unattainable);
  CHECK(c.log().back().text.find("cheapest") != std::string::npos);
}

TEST_CASE("controller: a budget hovering at the strongest level's cost moves no codec",
          "[adaptive]") {
  controller c(base_options().with_energy_budget(0.112));  // topk:0.01 costs 0.112 J/step
  link_sim link;
  link.bandwidth = 1e9;
  link.noise = 0.3;
  link.gen.seed(test::seed(5));
  for (std::uint64_t s = 0; s < 3000; ++s) c.observe(link.step(c, s));
  CHECK(codec_changes(c) == 1);
  std::size_t states = 0;
  for (const auto& d : c.log())
    states += d.why == reason::budget_unattainable || d.why == reason::budget_attainable;
  CHECK(states >= 1);
  // Entering and leaving each take 3 consecutive windows and the dwell, which
  // doubles (5, 10, 20, 40, 80 windows) when a change reverses the last one
  // soon after. Seeds 1-10 gave 7-12 records (14-27 before the dwell applied
  // to state changes).
  CHECK(states <= 15);
}

TEST_CASE("controller: oscillating signals do not make it flap", "[adaptive]") {
  const std::uint64_t period = GENERATE(1, 5, 10, 20, 30, 70);
  const std::uint32_t dwell = 5;
  controller c(base_options().with_energy_budget(1.0).with_hysteresis(3, dwell));
  link_sim link;
  const std::uint64_t steps = 3000;
  std::uint64_t last_change = 0;
  for (std::uint64_t s = 0; s < steps; ++s) {
    link.bandwidth = (s / period) % 2 ? 1e9 : 1e10;
    const std::size_t before = c.level();
    c.observe(link.step(c, s));
    if (c.level() != before) {
      INFO("period " << period << " step " << s << " last change " << last_change);
      if (last_change > 0) CHECK(s - last_change >= dwell * 10);
      last_change = s;
    }
  }
  INFO("period " << period);
  // Reversals double the dwell from 5 to at most 80 windows (4 doublings);
  // after that, one move per 80 windows.
  const std::size_t windows = (steps - 50) / 10;
  CHECK(codec_changes(c) <= 1 + 4 + windows / 80 + 1);
  if (period <= 10) CHECK(codec_changes(c) <= 1);  // faster than the hysteresis: a mean or nothing
}

TEST_CASE("controller: the accuracy guard loosens and caps the ladder", "[adaptive]") {
  SECTION("validation loss") {
    controller c(base_options().with_energy_budget(1.0).with_accuracy_guard(0.05));
    link_sim link;
    link.bandwidth = 1e9;
    for (std::uint64_t s = 0; s < 600; ++s) {
      auto o = link.step(c, s);
      if (s % 10 == 9)  // a slowly falling loss, 0.5 higher on the topk levels
        o.with_val_loss(2.0 - 0.001 * static_cast<double>(s) + (c.level() >= 3 ? 0.5 : 0));
      c.observe(o);
    }
    bool guarded = false;
    for (const auto& d : c.log())
      if (d.why == reason::accuracy_loss) {
        guarded = true;
        CHECK(d.from_level == 3);
        CHECK(d.to_level == 2);
        CHECK(d.measured.val_loss > 2.3);
        CHECK(d.measured.val_loss > d.measured.reference_loss * 1.05);
      }
    CHECK(guarded);
    CHECK(c.ceiling() == 2);
    CHECK(c.level() == 2);
    // int8 cannot meet the budget on this link: said once, not oscillated.
    CHECK(c.state() == adaptive::policy_state::budget_unattainable);
    CHECK(codec_changes(c) == 2);
  }
  SECTION("compression error") {
    controller c(base_options().with_energy_budget(1.0).with_max_compression_error(0.3));
    link_sim link;
    link.bandwidth = 1e9;
    for (std::uint64_t s = 0; s < 600; ++s) {
      auto o = link.step(c, s);
      o.with_compression_error(c.level() >= 3 ? 0.6 : 0.01 * static_cast<double>(c.level()));
      c.observe(o);
    }
    CHECK(c.level() == 2);
    CHECK(c.ceiling() == 2);
    std::size_t guards = 0;
    for (const auto& d : c.log()) guards += d.why == reason::accuracy_error ? 1 : 0;
    CHECK(guards == 1);
  }
  SECTION("a fixed reference loss") {
    controller c(base_options().with_energy_budget(1.0).with_accuracy_guard(0.1, 1.0));
    link_sim link;
    link.bandwidth = 1e9;
    for (std::uint64_t s = 0; s < 400; ++s) c.observe(link.step(c, s).with_val_loss(1.05));
    CHECK(c.level() == 3);  // 5% above the reference is tolerated
    for (std::uint64_t s = 400; s < 440; ++s) c.observe(link.step(c, s).with_val_loss(1.2));
    CHECK(c.level() == 2);
    for (std::uint64_t s = 440; s < 700; ++s) c.observe(link.step(c, s).with_val_loss(1.05));
    CHECK(c.level() == 2);  // capped: int8 misses the budget, held rather than retried
    CHECK(c.ceiling() == 2);
    CHECK(c.state() == adaptive::policy_state::budget_unattainable);
  }
}

TEST_CASE("controller: minimum energy goes to the cheapest level the guard allows, and stays",
          "[adaptive]") {
  const adaptive::ladder ladder;
  const std::size_t top = ladder.size() - 1;
  SECTION("a slow link: the strongest level, in one move on the warm-up's last step") {
    controller c(base_options().with_minimum_energy());
    link_sim link;
    link.bandwidth = 1e8;
    link.noise = 0.2;
    std::uint64_t moved_at = 0;
    for (std::uint64_t s = 0; s < 1500; ++s) {
      const std::size_t before = c.level();
      c.observe(link.step(c, s));
      if (c.level() != before && moved_at == 0) moved_at = s;
    }
    CHECK(c.level() == top);
    CHECK(moved_at == 50 - 1);  // the 50-step warm-up covers the 3-window hysteresis
    CHECK(codec_changes(c) == 1);
    REQUIRE(c.log().size() == 2);
    CHECK(c.log()[1].why == reason::cheaper_level);
    CHECK(c.log()[1].measured.predicted_joules < 0.9 * c.log()[1].measured.joules);
    CHECK_THAT(c.log()[1].text,
               Catch::Contains("predicted") && Catch::Contains("observed at level 0"));
  }
  SECTION("the guard caps it: one rung below the level that failed, held") {
    controller c(base_options().with_minimum_energy().with_accuracy_guard(0.05));
    link_sim link;
    link.bandwidth = 1e8;
    for (std::uint64_t s = 0; s < 1500; ++s) {
      auto o = link.step(c, s);
      if (s % 10 == 9)  // a slowly falling loss, 0.5 higher on the strongest level
        o.with_val_loss(2.0 - 0.001 * static_cast<double>(s) + (c.level() == top ? 0.5 : 0));
      c.observe(o);
    }
    CHECK(c.ceiling() == top - 1);
    CHECK(c.level() == top - 1);
    CHECK(codec_changes(c) == 2);  // up to the strongest, one rung back; never retried
    REQUIRE(!c.log().empty());
    CHECK(c.log().back().why == reason::accuracy_loss);
  }
  SECTION("a level that saves less than the margin is not worth a move") {
    // fp16 halves the bytes: about half the joules on this link.
    const double margin = GENERATE(0.4, 0.6);
    controller c(base_options()
                     .with_ladder(adaptive::ladder::parse("none,fp16"))
                     .with_minimum_energy()
                     .with_loosen_margin(margin));
    link_sim link;
    link.bandwidth = 1e8;
    for (std::uint64_t s = 0; s < 800; ++s) c.observe(link.step(c, s));
    INFO("margin " << margin);
    CHECK(c.level() == (margin < 0.5 ? 1U : 0U));
    CHECK(codec_changes(c) == (margin < 0.5 ? 1U : 0U));
  }
  SECTION("exclusive with a budget") {
    CHECK_THROWS_MATCHES(
        controller(controller_options().with_minimum_energy().with_energy_budget(1)), config_error,
        test::what_has("energy_budget_j", "minimize_energy"));
  }
}

TEST_CASE("controller: the same observations give the same decisions", "[adaptive]") {
  const auto seed = test::seed(11);
  INFO("seed " << seed);
  auto run = [&] {
    controller c(base_options()
                     .with_energy_budget(1.0)
                     .with_max_slowdown(3)
                     .with_accuracy_guard(0.2)
                     .with_consistency(true));
    link_sim link;
    link.noise = 0.5;
    link.gen.seed(seed);
    std::mt19937_64 g(seed ^ 1);
    for (std::uint64_t s = 0; s < 3000; ++s) {
      link.bandwidth = std::uniform_real_distribution<double>(5e8, 2e10)(g);
      auto o = link.step(c, s).with_step_spread(std::uniform_real_distribution<double>(0, 1)(g));
      if (s % 25 == 0) o.with_val_loss(std::uniform_real_distribution<double>(1, 1.5)(g));
      c.observe(o);
    }
    std::string out;
    for (const auto& d : c.log()) out += d.to_json() + "\n";
    return out;
  };
  const std::string a = run();
  CHECK(a.find("warmup_done") != std::string::npos);
  CHECK(a == run());
}

TEST_CASE("controller: congestion moves to bounded staleness and back", "[adaptive]") {
  controller c(base_options().with_consistency(true).with_spread_thresholds(0.5, 0.2));
  link_sim link;
  auto feed = [&](std::uint64_t from, std::uint64_t to, double spread) {
    for (std::uint64_t s = from; s < to; ++s) c.observe(link.step(c, s).with_step_spread(spread));
  };
  feed(0, 200, 0.05);
  CHECK(c.consistency() == ps::consistency::sync());
  feed(200, 240, 0.8);  // 4 windows: hysteresis met, dwell met
  CHECK(c.consistency() == ps::consistency::bounded_staleness(1));
  CHECK(c.log().back().why == reason::congestion);
  CHECK(c.log().back().changes_mode());
  CHECK_FALSE(c.log().back().changes_codec());
  feed(240, 600, 0.8);
  CHECK(c.consistency() == ps::consistency::bounded_staleness(4));  // top of the ladder
  feed(600, 700, 0.35);                                             // between the thresholds: stays
  CHECK(c.consistency() == ps::consistency::bounded_staleness(4));
  feed(700, 1200, 0.05);
  CHECK(c.consistency() == ps::consistency::sync());
  CHECK(c.log().back().why == reason::congestion_cleared);
  CHECK(c.level() == 0);  // no objective: the codec never moved
  std::size_t mode_changes = 0;
  for (const auto& d : c.log()) mode_changes += d.changes_mode() ? 1 : 0;
  CHECK(mode_changes == 6);

  SECTION("comm fraction as the congestion signal") {
    controller f(base_options().with_consistency(true).with_comm_fraction_thresholds(0.9, 0.5));
    link_sim slow;
    slow.bandwidth = 1e9;  // comm 0.128 s of a 0.148 s step: 86%
    slow.compute = 0.001;  // now 99%
    for (std::uint64_t s = 0; s < 200; ++s) f.observe(slow.step(f, s));
    CHECK(f.consistency().staleness >= 1);
  }
}

TEST_CASE("decision log: JSON and CSV rows carry every field", "[adaptive]") {
  controller c(base_options().with_energy_budget(1.0));
  link_sim link;
  link.bandwidth = 1e9;
  for (std::uint64_t s = 0; s < 200; ++s) c.observe(link.step(c, s));
  REQUIRE(c.log().size() == 2);
  const auto& d = c.log()[1];
  const std::string j = d.to_json();
  for (const char* k : {"\"step\":", "\"from\":\"none\"", "\"to\":\"topk:ratio=0.1\"",
                        "\"reason\":\"over_budget\"", "\"state\":\"tracking\"", "\"joules\":",
                        "\"bandwidth\":", "\"predicted_joules\":", "\"from_mode\":\"sync\""})
    CHECK(j.find(k) != std::string::npos);
  std::istringstream header{std::string(adaptive::decision::csv_header)};
  std::istringstream row{d.to_csv()};
  std::vector<std::string> h, r;
  std::size_t line = 0;
  REQUIRE(energy::csv::read_record(header, h, line));
  REQUIRE(energy::csv::read_record(row, r, line));
  CHECK(h.size() == r.size());
  CHECK(r[7] == "over_budget");
  CHECK(r.back() == d.text);
  CHECK(d.text.find("above the budget") != std::string::npos);
}

TEST_CASE("controller: the accuracy guard undoes the last tightening, staleness included",
          "[adaptive]") {
  // Minimum energy on a slow, latency-heavy link: the codec tightens at the
  // warm-up's end, then the comm fraction raises the staleness (spread off).
  controller c(base_options()
                   .with_consistency(true)
                   .with_minimum_energy()
                   .with_spread_thresholds(1e9, 1e9)
                   .with_comm_fraction_thresholds(0.5, 0.0)
                   .with_staleness_ladder({0, 1, 3})
                   .with_accuracy_guard(0.1));
  link_sim link;
  link.bandwidth = 1e9;
  link.latency = 0.002;
  link.compute = 0.001;
  std::vector<adaptive::decision> seen;
  bool latency_dropped = false;
  std::uint64_t s = 0;
  auto feed = [&](std::uint64_t to, double loss) {
    for (; s < to; ++s) {
      const double before = c.latency_seconds();
      auto o = link.step(c, s);
      if (s % 10 == 9) o.with_val_loss(loss);
      for (const auto& d : c.observe(o)) {
        seen.push_back(d);
        // A new consistency mode drops the latency line (refitted under it).
        if (d.changes_mode() && before > 0) latency_dropped = c.latency_seconds() == 0;
      }
    }
  };
  feed(400, 1.0);
  REQUIRE(c.level() > 0);
  REQUIRE(c.consistency().staleness == 3);
  CHECK(latency_dropped);
  std::size_t tight_codec = 0, tight_mode = 0;
  for (const auto& d : seen) {
    if (d.changes_codec() && d.to_level > d.from_level) tight_codec = d.step;
    if (d.changes_mode() && d.why == reason::congestion) tight_mode = d.step;
  }
  REQUIRE(tight_mode > tight_codec);  // the staleness moved last
  const std::size_t level = c.level();
  const std::size_t before = seen.size();
  feed(420, 1.5);  // 50% above the best loss: the guard acts on the first bad window
  REQUIRE(seen.size() > before);
  const auto& g = seen[before];
  CHECK(g.why == reason::accuracy_loss);
  CHECK(g.changes_mode());
  CHECK_FALSE(g.changes_codec());
  CHECK(g.to_mode == ps::consistency::bounded_staleness(1));
  CHECK(c.staleness_ceiling() == 1);
  CHECK(c.level() == level);
  // Still bad: after the dwell the guard loosens the codec (no staleness move
  // is the last tightening now), then the staleness again, ...
  feed(1000, 1.5);
  CHECK(c.consistency() == ps::consistency::sync());
  CHECK(c.staleness_ceiling() == 0);
  CHECK(c.level() < level);
  for (std::size_t k = before; k < seen.size(); ++k) {
    INFO(seen[k].to_json());
    CHECK((seen[k].why == reason::accuracy_loss || seen[k].why == reason::budget_unattainable ||
           seen[k].why == reason::budget_attainable));
    if (seen[k].why == reason::accuracy_loss)
      CHECK(seen[k].changes_codec() != seen[k].changes_mode());  // one kind per move
  }
  // Loss fine again and the link as slow: the staleness stays under its cap.
  const std::size_t ceiling = c.ceiling();
  feed(2000, 1.0);
  CHECK(c.consistency() == ps::consistency::sync());
  CHECK(c.level() <= ceiling);
}
