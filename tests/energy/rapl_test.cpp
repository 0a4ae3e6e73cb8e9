#include "greenreduce/energy/rapl.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

using namespace greenreduce;
using namespace greenreduce::energy;
namespace fs = std::filesystem;

namespace {
/// A fresh directory for one test, removed at the end.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("greenreduce-powercap-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void put(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::trunc);
  f << text << '\n';
  REQUIRE(f.good());
}

/// Creates zone `dir` with its name and counters.
fs::path zone(const fs::path& dir, const std::string& name, std::uint64_t uj,
              std::uint64_t max = 262143328850ULL) {
  fs::create_directories(dir);
  put(dir / "name", name);
  put(dir / "energy_uj", std::to_string(uj));
  put(dir / "max_energy_range_uj", std::to_string(max));
  put(dir / "enabled", "1");
  return dir;
}

/// A test clock: returns whatever `now` holds.
struct fake_clock {
  std::shared_ptr<double> now = std::make_shared<double>(100.0);
  seconds_clock fn() const {
    return [n = now] { return *n; };
  }
};

rapl_options with_clock(const fake_clock& c) {
  rapl_options o;
  o.clock = c.fn();
  return o;
}
}  // namespace

TEST_CASE("RAPL sums packages and dram, skipping core, uncore and mmio", "[energy][rapl]") {
  temp_dir t;
  const auto p0 = zone(t.path / "intel-rapl:0", "package-0", 1'000'000);
  const auto p1 = zone(t.path / "intel-rapl:1", "package-1", 5'000'000);
  zone(t.path / "intel-rapl:0:0", "core", 10);                 // flat layout (sysfs class links)
  const auto d0 = zone(t.path / "intel-rapl:0:1", "dram", 0);  // flat
  zone(p1 / "intel-rapl:1:0", "uncore", 10);                   // nested only
  const auto d1 = zone(p1 / "intel-rapl:1:1", "dram", 7);      // nested only
  zone(t.path / "intel-rapl-mmio:0", "package-0", 1);
  fake_clock clock;
  const rapl_meter m(t.path, with_clock(clock));
  REQUIRE(m.available());
  CHECK(m.reason().empty());
  REQUIRE(m.domains().size() == 4);
  CHECK(m.domains()[0].zone == "intel-rapl:0");
  CHECK(m.domains()[1].zone == "intel-rapl:0:1");
  CHECK(m.domains()[1].name == "dram");
  CHECK(m.domains()[2].zone == "intel-rapl:1");
  CHECK(m.domains()[3].zone == "intel-rapl:1:1");

  const auto s = m.start();
  REQUIRE(s.ok);
  put(p0 / "energy_uj", "3000000");                 // +2 J
  put(p1 / "energy_uj", "5500000");                 // +0.5 J
  put(d0 / "energy_uj", "250000");                  // +0.25 J
  put(d1 / "energy_uj", "1000007");                 // +1 J
  put(t.path / "intel-rapl:0:0/energy_uj", "9e9");  // core is not read at all
  *clock.now += 0.5;
  const measurement r = m.stop(s);
  INFO(r.reason);
  REQUIRE(r.valid);
  CHECK_FALSE(r.too_short);
  CHECK(r.method == energy_method::rapl);
  CHECK(r.joules == Approx(3.75));
  CHECK(r.seconds == Approx(0.5));
  CHECK(r.watts() == Approx(7.5));
  const energy_estimate e = r.to_estimate();
  CHECK(e.method == energy_method::rapl);
  CHECK(e.measured_j == Approx(3.75));
  CHECK(e.total_j() == Approx(3.75));
  CHECK(e.network_j + e.memory_j + e.compute_j + e.static_j == 0);
}

TEST_CASE("RAPL undoes one counter wraparound with max_energy_range_uj", "[energy][rapl]") {
  temp_dir t;
  const auto p0 = zone(t.path / "intel-rapl:0", "package-0", 999'000, 1'000'000);
  fake_clock clock;
  const rapl_meter m(t.path, with_clock(clock));
  REQUIRE(m.available());
  CHECK(m.domains()[0].max_range_uj == 1'000'000);
  const auto s = m.start();
  put(p0 / "energy_uj", "500");  // wrapped: 1000 uJ up to the range, 500 after
  *clock.now += 1.0;
  const auto r = m.stop(s);
  REQUIRE(r.valid);
  CHECK(r.joules == Approx(1500e-6));

  // A counter above its declared range is reported, not turned into a huge number.
  const auto s2 = m.start();
  put(p0 / "energy_uj", "2000000");
  *clock.now += 1.0;
  const auto bad = m.stop(s2);
  CHECK_FALSE(bad.valid);
  CHECK(bad.reason.find("max_energy_range_uj") != std::string::npos);
}

TEST_CASE("RAPL uses psys alone when present, or packages when asked", "[energy][rapl]") {
  temp_dir t;
  const auto p0 = zone(t.path / "intel-rapl:0", "package-0", 0);
  const auto psys = zone(t.path / "intel-rapl:1", "psys", 0);
  zone(t.path / "intel-rapl:0:2", "dram", 0);
  fake_clock clock;
  const rapl_meter platform(t.path, with_clock(clock));
  REQUIRE(platform.domains().size() == 1);
  CHECK(platform.domains()[0].name == "psys");
  rapl_options o = with_clock(clock);
  o.scope = rapl_scope::packages;
  const rapl_meter packages(t.path, o);
  REQUIRE(packages.domains().size() == 2);
  CHECK(packages.domains()[0].name == "package-0");
  CHECK(packages.domains()[1].name == "dram");

  const auto a = platform.start();
  const auto b = packages.start();
  put(p0 / "energy_uj", "2000000");
  put(psys / "energy_uj", "3000000");
  *clock.now += 1;
  CHECK(platform.stop(a).joules == Approx(3.0));  // psys only: the package is inside it
  CHECK(packages.stop(b).joules == Approx(2.0));
}

TEST_CASE("RAPL without a usable tree is unavailable and says why", "[energy][rapl]") {
  temp_dir t;
  SECTION("absent root") {
    const rapl_meter m(t.path / "nope");
    CHECK_FALSE(m.available());
    CHECK(m.reason().find((t.path / "nope").string()) != std::string::npos);
    const auto s = m.start();
    CHECK_FALSE(s.ok);
    const auto r = m.stop(s);
    CHECK_FALSE(r.valid);
    CHECK(r.reason == m.reason());
    CHECK(r.to_estimate().method == energy_method::none);
    CHECK(r.to_estimate().total_j() == 0);
  }
  SECTION("empty root") {
    const rapl_meter m(t.path);
    CHECK_FALSE(m.available());
    CHECK(m.reason().find("no RAPL package or psys zone") != std::string::npos);
  }
  SECTION("only subdomains: dram alone is not a measurement") {
    zone(t.path / "intel-rapl:0:1", "dram", 0);
    zone(t.path / "intel-rapl:0:0", "core", 0);
    const rapl_meter m(t.path);
    CHECK_FALSE(m.available());
    CHECK(m.reason().find("found 2 intel-rapl zones") != std::string::npos);
  }
  SECTION("energy_uj is a directory") {
    const auto p0 = zone(t.path / "intel-rapl:0", "package-0", 0);
    fs::remove(p0 / "energy_uj");
    fs::create_directory(p0 / "energy_uj");
    const rapl_meter m(t.path);
    CHECK_FALSE(m.available());
    CHECK(m.reason().find("energy_uj") != std::string::npos);
    CHECK(m.reason().find("cannot read") != std::string::npos);
  }
  SECTION("energy_uj is a dangling symlink") {
    const auto p0 = zone(t.path / "intel-rapl:0", "package-0", 0);
    fs::remove(p0 / "energy_uj");
    fs::create_symlink(t.path / "gone", p0 / "energy_uj");
    const rapl_meter m(t.path);
    CHECK_FALSE(m.available());
    CHECK(m.reason().find("No such file or directory") != std::string::npos);
  }
  SECTION("max_energy_range_uj missing or garbage") {
    const auto p0 = zone(t.path / "intel-rapl:0", "package-0", 0);
    put(p0 / "max_energy_range_uj", "lots");
    const rapl_meter m(t.path);
    CHECK_FALSE(m.available());
    CHECK(m.reason().find("expected an unsigned integer") != std::string::npos);
    fs::remove(p0 / "max_energy_range_uj");
    const rapl_meter m2(t.path);
    CHECK_FALSE(m2.available());
    CHECK(m2.reason().find("max_energy_range_uj") != std::string::npos);
  }
}

TEST_CASE("RAPL permission denied (root-only energy_uj) makes the meter unavailable",
          "[energy][rapl]") {
  // Tests may run as root, where chmod 000 does not deny reads: inject EACCES.
  temp_dir t;
  zone(t.path / "intel-rapl:0", "package-0", 0);
  rapl_options o;
  o.reader = [](const fs::path& p) {
    if (p.filename() == "energy_uj") return file_result{false, {}, "Permission denied"};
    return read_small_file(p);
  };
  const rapl_meter m(t.path, o);
  CHECK_FALSE(m.available());
  CHECK(m.reason().find("Permission denied") != std::string::npos);
  CHECK(m.reason().find("intel-rapl:0/energy_uj") != std::string::npos);
  CHECK_NOTHROW(m.stop(m.start()));
  CHECK_FALSE(m.stop(m.start()).valid);
}

TEST_CASE("RAPL counters that fail between start and stop invalidate the window",
          "[energy][rapl]") {
  temp_dir t;
  const auto p0 = zone(t.path / "intel-rapl:0", "package-0", 0);
  fake_clock clock;
  auto deny = std::make_shared<bool>(false);
  rapl_options o = with_clock(clock);
  o.reader = [deny](const fs::path& p) {
    if (*deny) return file_result{false, {}, "Permission denied"};
    return read_small_file(p);
  };
  const rapl_meter m(t.path, o);
  REQUIRE(m.available());
  const auto s = m.start();
  REQUIRE(s.ok);
  *deny = true;
  *clock.now += 1;
  const auto r = m.stop(s);
  CHECK_FALSE(r.valid);
  CHECK(r.reason.find("Permission denied") != std::string::npos);
  *deny = false;
  fs::remove(p0 / "energy_uj");
  CHECK_FALSE(m.stop(s).valid);
  rapl_snapshot foreign = s;
  foreign.uj.push_back(1);
  put(p0 / "energy_uj", "5");
  CHECK(m.stop(foreign).reason.find("holds 2 counters") != std::string::npos);
}

TEST_CASE("RAPL windows shorter than the update period are flagged, not zero", "[energy][rapl]") {
  temp_dir t;
  const auto p0 = zone(t.path / "intel-rapl:0", "package-0", 0);
  fake_clock clock;
  const rapl_meter m(t.path, with_clock(clock));
  const auto s = m.start();
  *clock.now += rapl_update_period_s / 4;
  const auto r = m.stop(s);
  CHECK(r.too_short);
  CHECK_FALSE(r.valid);
  CHECK(r.reason.find("shorter than the RAPL update period") != std::string::npos);
  CHECK(r.to_estimate().method == energy_method::none);
  put(p0 / "energy_uj", "1000");
  *clock.now += rapl_update_period_s;
  const auto ok = m.stop(s);
  CHECK(ok.valid);
  CHECK_FALSE(ok.too_short);
  CHECK(ok.joules == Approx(1e-3));
}

TEST_CASE("RAPL's root comes from GREENREDUCE_POWERCAP_ROOT", "[energy][rapl]") {
  temp_dir t;
  zone(t.path / "intel-rapl:0", "package-0", 0);
  const rapl_meter m(env_source::from_map({{"GREENREDUCE_POWERCAP_ROOT", t.path.string()}}));
  CHECK(m.root() == t.path);
  CHECK(m.available());
  CHECK(rapl_meter(env_source::from_map({})).root() == fs::path("/sys/class/powercap"));
}

TEST_CASE("RAPL on this machine either measures or explains", "[energy][rapl]") {
  const rapl_meter m(env_source::process());
  const auto r = m.stop(m.start());
  if (!m.available()) {
    CHECK_FALSE(r.valid);
    CHECK_FALSE(m.reason().empty());
  } else {
    CHECK(r.joules >= 0);
    if (!r.valid) CHECK_FALSE(r.reason.empty());  // too short, or a failed read: said why
  }
}
