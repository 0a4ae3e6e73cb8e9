// Tests of the training demo's pieces that need no ranks: the command line
// (examples/train/options.hpp), the mode registry (modes.hpp), the workers'
// rank view (world.hpp) and the SVG figure (examples/train/plot.hpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "greenreduce/transport/inproc.hpp"
#include "support/matchers.hpp"
#include "train/modes.hpp"
#include "train/options.hpp"
#include "train/plot.hpp"
#include "train/world.hpp"

using namespace greenreduce;
using namespace greenreduce::examples;

namespace {

demo_options parse(std::vector<const char*> args) {
  args.insert(args.begin(), "train_demo");
  return parse_options(static_cast<int>(args.size()), args.data());
}

std::string error_of(std::vector<const char*> args) {
  try {
    parse(std::move(args));
  } catch (const config_error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("train_demo options: defaults and every flag", "[train]") {
  const auto d = parse({});
  CHECK(d.np == 4);
  CHECK(d.modes.empty());  // the registry's default list (modes.hpp)
  CHECK(d.servers == 1);
  CHECK(d.straggler.rank == -1);
  CHECK_FALSE(d.balance);

  const auto o = parse({"--np",
                        "2",
                        "--modes",
                        "sync,topk",
                        "--epochs",
                        "5",
                        "--batch",
                        "64",
                        "--lr",
                        "0.1",
                        "--momentum",
                        "0.8",
                        "--straggler",
                        "1:2.5",
                        "--balance",
                        "--json",
                        "a.json",
                        "--csv",
                        "b.csv",
                        "--plot",
                        "p",
                        "--plot-format",
                        "svg",
                        "--limit",
                        "100",
                        "--link",
                        "1gbit",
                        "--topk-ratio",
                        "0.02",
                        "--staleness",
                        "3",
                        "--servers",
                        "2",
                        "--no-progress",
                        "--ps-sync-warmup",
                        "0.5"});
  CHECK(o.np == 2);
  CHECK(o.np_given);
  CHECK(o.modes == std::vector<std::string>{"sync", "topk"});
  CHECK(o.epochs == 5);
  CHECK(o.batch == 64);
  CHECK(o.lr == Approx(0.1));
  CHECK(o.momentum == Approx(0.8));
  CHECK(o.straggler.rank == 1);
  CHECK(o.straggler.factor == Approx(2.5));
  CHECK(o.balance);
  CHECK(o.json == "a.json");
  CHECK(o.csv == "b.csv");
  CHECK(o.plot == "p");
  CHECK(o.plot_format == "svg");
  CHECK(o.limit == 100);
  CHECK(o.link == "1gbit");
  CHECK(o.topk_ratio == Approx(0.02));
  CHECK(o.staleness == 3);
  CHECK(o.servers == 2);
  CHECK_FALSE(o.progress);
  CHECK(o.ps_sync_warmup == Approx(0.5));
  CHECK(parse({"--ps-push-every", "3"}).ps_push_every == 3);
  CHECK(d.ps_push_every == 1);
  CHECK(d.ps_sync_warmup == 2.0);  // sync for the first 2 epochs, then SSP
}

TEST_CASE("train_demo --ps-sync-warmup: epochs to steps", "[train]") {
  CHECK(ps_sync_steps(0.0, 468, 2340) == 0);
  CHECK(ps_sync_steps(1.0, 468, 2340) == 468);
  CHECK(ps_sync_steps(0.5, 31, 62) == 16);  // 15.5 rounds up
  CHECK(ps_sync_steps(0.25, 31, 62) == 8);  // 7.75
  CHECK(ps_sync_steps(0.01, 31, 62) == 0);  // under half a step: no sync start
  CHECK(ps_sync_steps(5.0, 468, 2340) == 2340);
  CHECK(ps_sync_steps(7.0, 468, 2340) == 2340);  // never past the run
}

TEST_CASE("train_demo options: errors say what was expected and what was found", "[train]") {
  CHECK_THAT(error_of({"--straggler", "1x2"}),
             Catch::Contains("--straggler expects RANK:FACTOR (e.g. 1:2), got \"1x2\""));
  CHECK_THAT(error_of({"--straggler", "1:0.5"}), Catch::Contains("FACTOR expects a number"));
  CHECK_THAT(error_of({"--straggler", "-1:2"}), Catch::Contains("RANK expects an integer"));
  CHECK_THAT(error_of({"--modes", "sync,,topk"}), Catch::Contains("empty name in \"sync,,topk\""));
  CHECK_THAT(error_of({"--servers", "0"}),
             Catch::Contains("--servers expects an integer in [1, 16]"));
  CHECK_THAT(error_of({"--modes", "sync,sync"}), Catch::Contains("listed twice"));
  CHECK_THAT(error_of({"--np", "0"}), Catch::Contains("--np expects an integer in [1, 64]"));
  CHECK_THAT(error_of({"--lr", "fast"}), Catch::Contains("--lr expects a number"));
  CHECK_THAT(error_of({"--epochs"}), Catch::Contains("--epochs needs a value"));
  CHECK_THAT(error_of({"--plot-format", "pdf"}), Catch::Contains("auto, png or svg"));
  CHECK_THAT(error_of({"--ps-sync-warmup", "-1"}),
             Catch::Contains("--ps-sync-warmup expects a number in [0, 1000], got \"-1\""));
  CHECK_THAT(error_of({"--ps-push-every", "0"}),
             Catch::Contains("--ps-push-every expects an integer in [1, 64], got \"0\""));
  CHECK_THAT(error_of({"--ps-sync-warmup", "one"}),
             Catch::Contains("--ps-sync-warmup expects a number"));
  CHECK_THAT(error_of({"--frobnicate"}), Catch::Contains("unknown argument \"--frobnicate\""));

  demo_options o;
  o.straggler = parse_straggler("3:2");
  CHECK_THROWS_WITH(check_world(o, 2), Catch::Contains("names rank 3 but there are only 2 ranks"));
  CHECK_NOTHROW(check_world(o, 4));
}

TEST_CASE("train_demo SVG: a well-formed document with every mode", "[train]") {
  std::vector<plot_series> s = {
      {"sync", 86.5, 1200.0, {{0.5, 0.9}, {1.0, 0.6}, {1.5, 0.5}}},
      {"top<k>&", 86.1, 1100.0, {{0.5, 1.0}, {1.0, 0.7}}},
  };
  std::ostringstream os;
  write_svg(os, s, "a \"title\"");
  const std::string svg = os.str();
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.size() > 7);
  CHECK(svg.substr(svg.size() - 7) == "</svg>\n");
  CHECK_THAT(svg, Catch::Contains(">sync</text>"));
  CHECK_THAT(svg, Catch::Contains("top&lt;k&gt;&amp;"));  // names are escaped
  CHECK_THAT(svg, Catch::Contains("a &quot;title&quot;"));
  CHECK_THAT(svg, Catch::Contains("<polyline"));
  CHECK_THAT(svg, Catch::Contains("<circle"));
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find("inf") == std::string::npos);
  // Balanced elements: every opened text closes.
  std::size_t open = 0, close = 0;
  for (auto at = svg.find("<text"); at != std::string::npos; at = svg.find("<text", at + 1)) ++open;
  for (auto at = svg.find("</text>"); at != std::string::npos; at = svg.find("</text>", at + 1))
    ++close;
  CHECK(open == close);

  // One mode, or a flat loss curve, must not divide by zero.
  std::ostringstream one;
  write_svg(one, {{"sync", 80.0, 10.0, {{1.0, 0.5}}}}, "t");
  CHECK(one.str().find("nan") == std::string::npos);
  std::ostringstream none;
  write_svg(none, {}, "t");
  CHECK_THAT(none.str(), Catch::Contains("</svg>"));
}

TEST_CASE("train_demo options: the adaptive mode's budget and ladder", "[train]") {
  const auto d = parse({});
  CHECK(d.energy_budget == 0);
  CHECK(adaptive::ladder::parse(d.adaptive_ladder).size() == 4);
  const auto o = parse({"--energy-budget", "0.25", "--adaptive-ladder", "none,int8,topk:0.01"});
  CHECK(o.energy_budget == 0.25);
  CHECK(!o.energy_min);
  CHECK(o.adaptive_ladder == "none,int8,topk:0.01");
  const auto m = parse({"--energy-budget", "min"});
  CHECK(m.energy_min);
  CHECK(m.energy_budget == 0);
  CHECK_THAT(error_of({"--energy-budget", "minimum"}),
             Catch::Contains("--energy-budget expects a number in [0, 1e12] (J per step) or "
                             "\"min\", got \"minimum\""));
  CHECK_THAT(
      error_of({"--energy-budget", "-1"}),
      Catch::Contains(
          "--energy-budget expects a number in [0, 1e12] (J per step) or \"min\", got \"-1\""));
  CHECK_THAT(error_of({"--adaptive-ladder", "none,zip"}), Catch::Contains("unknown codec \"zip\""));
  CHECK_THAT(error_of({"--adaptive-ladder", "int8,none"}), Catch::Contains("loosest first"));
}

TEST_CASE("train_demo options: the adaptive mode's averaging periods", "[train]") {
  CHECK(parse({}).adaptive_periods == std::vector<std::uint32_t>{1, 2, 4});
  CHECK(parse({"--adaptive-periods", "1"}).adaptive_periods == std::vector<std::uint32_t>{1});
  CHECK(parse({"--adaptive-periods", "1,3,8"}).adaptive_periods ==
        std::vector<std::uint32_t>{1, 3, 8});
  CHECK_THAT(error_of({"--adaptive-periods", "2,4"}),
             Catch::Contains("--adaptive-periods must start with 1 (synchronous), got \"2,4\""));
  CHECK_THAT(error_of({"--adaptive-periods", "1,4,4"}),
             Catch::Contains("--adaptive-periods must increase, got \"1,4,4\""));
  CHECK_THAT(error_of({"--adaptive-periods", "1,,2"}),
             Catch::Contains("--adaptive-periods expects an integer in [1, 64], got \"\""));
  CHECK_THAT(error_of({"--adaptive-periods", "1,65"}),
             Catch::Contains("--adaptive-periods expects an integer in [1, 64], got \"65\""));
}

TEST_CASE("train_demo options: --link-change and tc rates", "[train]") {
  const auto d = parse({});
  CHECK(!d.link_change.active());
  const auto o = parse({"--link", "1gbit", "--link-change", "0.3:0.7:100mbit"});
  CHECK(o.link_change.active());
  CHECK(o.link_change.from == 0.3);
  CHECK(o.link_change.to == 0.7);
  CHECK(o.link_change.rate == "100mbit");
  CHECK_NOTHROW(check_world(o, 2));
  CHECK(tc_rate_bytes("1gbit") == 125e6);
  CHECK(tc_rate_bytes("100mbit") == 12.5e6);
  CHECK(tc_rate_bytes("64kbit") == 8000);
  CHECK(tc_rate_bytes("800bit") == 100);
  CHECK_THAT(error_of({"--link-change", "0.3:100mbit"}),
             Catch::Contains("--link-change expects FROM:TO:RATE (e.g. 0.3:0.7:100mbit), got "
                             "\"0.3:100mbit\""));
  CHECK_THAT(error_of({"--link-change", "0.7:0.3:100mbit"}),
             Catch::Contains("FROM (0.7) must be below TO (0.3)"));
  CHECK_THAT(error_of({"--link-change", "0:1.5:100mbit"}),
             Catch::Contains("--link-change TO expects a number in [0, 1]"));
  CHECK_THAT(error_of({"--link-change", "0:1:fast"}),
             Catch::Contains("a link rate must be digits and a tc unit"));
  CHECK_THAT(error_of({"--link-change", "0:1:100mb"}), Catch::Contains("got \"100mb\""));
  CHECK_THAT(error_of({"--link-change", "0:1:0mbit"}), Catch::Contains("is below 8 bit/s"));
  const auto no_link = parse({"--link-change", "0.3:0.7:100mbit"});
  CHECK_THROWS_MATCHES(check_world(no_link, 2), config_error,
                       test::what_has("--link-change needs --link RATE"));
}

namespace {
rank_outcome (*const no_run)(rank_context&, demo_world&) = nullptr;
// Test modes, registered out of order: the registry sorts them by `order`.
const register_mode test_late{mode_spec{"zz_late", "late", 1000, false, true, no_run}};
const register_mode test_ps{mode_spec{"zz_ps", "a server mode", 990, true, true, no_run}};
const register_mode test_extra{mode_spec{"zz_extra", "not default", 995, false, false, no_run}};
}  // namespace

TEST_CASE("train_demo modes: one registration per file, sorted, validated", "[train]") {
  const auto def = resolve_modes({});
  REQUIRE(def.size() >= 2);
  CHECK(def[def.size() - 2] == "zz_ps");
  CHECK(def.back() == "zz_late");
  CHECK(std::find(def.begin(), def.end(), "zz_extra") == def.end());  // not by default
  CHECK(resolve_modes({"zz_extra", "zz_late"}) == std::vector<std::string>{"zz_extra", "zz_late"});
  CHECK(needs_servers({"zz_late", "zz_ps"}));
  CHECK_FALSE(needs_servers({"zz_late", "zz_extra"}));
  CHECK(find_mode("zz_ps").summary == "a server mode");
  CHECK_THROWS_MATCHES(resolve_modes({"zz_late", "bogus"}), config_error,
                       test::what_has("unknown mode \"bogus\": expected one of"));
  CHECK_THROWS_MATCHES(resolve_modes({"bogus"}), config_error, test::what_has("zz_extra"));
  CHECK_THROWS_MATCHES(register_mode(mode_spec{"zz_ps", "again", 1, false, true, no_run}),
                       config_error, test::what_has("\"zz_ps\" is registered twice"));
}

TEST_CASE("train_demo rank_range: the workers renumbered from 0", "[train]") {
  // 1 server + 3 workers as threads; the workers pass a ring of sendrecvs on
  // the view. Catch2 checks only on the main thread: threads record.
  transport::inproc_world world(4);
  std::vector<int> heard(4, -1), vrank(4, -1), vsize(4, -1);
  std::vector<std::string> errors(4);
  std::vector<bool> counted(4, false);
  std::vector<std::thread> threads;
  for (int r = 0; r < 4; ++r)
    threads.emplace_back([&, r] {
      auto t = world.rank(r);
      const auto i = static_cast<std::size_t>(r);
      try {
        if (r == 0) {
          rank_range<transport::inproc> bad(t, 1);  // the server is not a worker
          return;
        }
        rank_range<transport::inproc> v(t, 1);
        vrank[i] = v.rank();
        vsize[i] = v.size();
        const int me = v.rank(), right = (me + 1) % 3, left = (me + 2) % 3;
        int out = 100 + me, in = -1;
        const auto s0 = v.bytes_sent();
        v.sendrecv(right, std::as_bytes(std::span<const int>(&out, 1)), left,
                   std::as_writable_bytes(std::span<int>(&in, 1)));
        counted[i] = v.bytes_sent() > s0;
        heard[i] = in;
        v.send(3, std::as_bytes(std::span<const int>(&out, 1)));
      } catch (const config_error& e) {
        errors[i] = e.what();
      }
    });
  for (auto& th : threads) th.join();
  CHECK_THAT(errors[0], Catch::Contains("rank 0 of 4 is not in [1, 4)"));
  for (int r = 1; r < 4; ++r) {
    const auto i = static_cast<std::size_t>(r);
    CHECK(vrank[i] == r - 1);
    CHECK(vsize[i] == 3);
    CHECK(counted[i]);
    CHECK_THAT(errors[i], Catch::Contains("peer 3 is not in [0, 3)"));
  }
  CHECK(heard[1] == 102);  // worker 0 hears worker 2
  CHECK(heard[2] == 100);
  CHECK(heard[3] == 101);
}
