// Tests of the training demo's pieces that need no ranks: the command line
// (examples/train/options.hpp) and the SVG figure (examples/train/plot.hpp).
#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "train/options.hpp"
#include "train/plot.hpp"

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
  CHECK(d.modes.size() == 6);
  CHECK(d.straggler.rank == -1);
  CHECK_FALSE(d.balance);

  const auto o = parse({"--np",        "2",
                        "--modes",     "sync,topk",
                        "--epochs",    "5",
                        "--batch",     "64",
                        "--lr",        "0.1",
                        "--momentum",  "0.8",
                        "--straggler", "1:2.5",
                        "--balance",   "--json",
                        "a.json",      "--csv",
                        "b.csv",       "--plot",
                        "p",           "--plot-format",
                        "svg",         "--limit",
                        "100",         "--link",
                        "1gbit",       "--topk-ratio",
                        "0.02",        "--staleness",
                        "3",           "--no-progress"});
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
  CHECK_FALSE(o.progress);
}

TEST_CASE("train_demo options: errors say what was expected and what was found", "[train]") {
  CHECK_THAT(error_of({"--straggler", "1x2"}),
             Catch::Contains("--straggler expects RANK:FACTOR (e.g. 1:2), got \"1x2\""));
  CHECK_THAT(error_of({"--straggler", "1:0.5"}), Catch::Contains("FACTOR expects a number"));
  CHECK_THAT(error_of({"--straggler", "-1:2"}), Catch::Contains("RANK expects an integer"));
  CHECK_THAT(error_of({"--modes", "sync,bogus"}),
             Catch::Contains("unknown mode \"bogus\": expected sync, async, hybrid"));
  CHECK_THAT(error_of({"--modes", "sync,,topk"}), Catch::Contains("unknown mode \"\""));
  CHECK_THAT(error_of({"--modes", "sync,sync"}), Catch::Contains("listed twice"));
  CHECK_THAT(error_of({"--np", "0"}), Catch::Contains("--np expects an integer in [1, 64]"));
  CHECK_THAT(error_of({"--lr", "fast"}), Catch::Contains("--lr expects a number"));
  CHECK_THAT(error_of({"--epochs"}), Catch::Contains("--epochs needs a value"));
  CHECK_THAT(error_of({"--plot-format", "pdf"}), Catch::Contains("auto, png or svg"));
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
  CHECK(o.adaptive_ladder == "none,int8,topk:0.01");
  CHECK_THAT(error_of({"--energy-budget", "-1"}),
             Catch::Contains("--energy-budget expects a number in [0,"));
  CHECK_THAT(error_of({"--adaptive-ladder", "none,zip"}), Catch::Contains("unknown codec \"zip\""));
  CHECK_THAT(error_of({"--adaptive-ladder", "int8,none"}), Catch::Contains("loosest first"));
}
