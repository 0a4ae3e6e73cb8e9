#include "greenreduce/energy/nvml.hpp"

#include <dlfcn.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <string>

using namespace greenreduce;
using namespace greenreduce::energy;

namespace {
nvml_options fake(std::shared_ptr<double> now) {
  nvml_options o;
  o.library = GREENREDUCE_FAKE_NVML_PATH;
  o.clock = [now] { return *now; };
  return o;
}
}  // namespace

TEST_CASE("NVML without the library is unavailable with dlerror's reason", "[energy][nvml]") {
  nvml_options o;
  o.library = "libgreenreduce-no-such-nvml.so.1";
  const nvml_meter m(o);
  CHECK_FALSE(m.available());
  CHECK(m.device_count() == 0);
  CHECK(m.reason().find("dlopen(\"libgreenreduce-no-such-nvml.so.1\") failed") !=
        std::string::npos);
  CHECK(m.reason().find("libgreenreduce-no-such-nvml.so.1: cannot open shared object file") !=
        std::string::npos);
  const auto s = m.start();
  CHECK_FALSE(s.ok);
  const auto r = m.stop(s);
  CHECK_FALSE(r.valid);
  CHECK(r.method == energy_method::nvml);
  CHECK(r.reason == m.reason());
  CHECK(r.to_estimate().method == energy_method::none);
}

TEST_CASE("NVML from a library without its symbols is unavailable", "[energy][nvml]") {
  nvml_options o;
  o.library = "libc.so.6";
  const nvml_meter m(o);
  CHECK_FALSE(m.available());
  CHECK(m.reason().find("NVML library lacks nvmlInit_v2") != std::string::npos);
}

TEST_CASE("NVML sums the energy of the chosen devices", "[energy][nvml]") {
  auto now = std::make_shared<double>(5.0);
  nvml_options o = fake(now);
  o.devices = {0, 1};
  const nvml_meter m(o);
  INFO(m.reason());
  REQUIRE(m.available());
  CHECK(m.device_count() == 2);
  const auto s = m.start();
  REQUIRE(s.ok);
  *now += 2.0;
  const auto r = m.stop(s);
  INFO(r.reason);
  REQUIRE(r.valid);
  CHECK(r.joules == Approx(4.0));  // 1500 mJ + 2500 mJ per read
  CHECK(r.seconds == Approx(2.0));
  CHECK(r.watts() == Approx(2.0));
  const auto e = r.to_estimate();
  CHECK(e.method == energy_method::nvml);
  CHECK(e.measured_j == Approx(4.0));

  o.devices = {1};
  const nvml_meter one(o);
  const auto s1 = one.start();
  *now += 1.0;
  CHECK(one.stop(s1).joules == Approx(2.5));
}

TEST_CASE("NVML devices without energy support or out of range make it unavailable",
          "[energy][nvml]") {
  auto now = std::make_shared<double>(0.0);
  const nvml_meter all(fake(now));  // device 2 does not support the counter
  CHECK_FALSE(all.available());
  CHECK(all.reason().find("device 2") != std::string::npos);
  CHECK(all.reason().find("Not Supported (3)") != std::string::npos);
  nvml_options o = fake(now);
  o.devices = {7};
  const nvml_meter absent(o);
  CHECK_FALSE(absent.available());
  CHECK(absent.reason().find("NVML device 7 requested, but only 3 present") != std::string::npos);
}

TEST_CASE("NVML windows shorter than the update period are flagged", "[energy][nvml]") {
  auto now = std::make_shared<double>(0.0);
  nvml_options o = fake(now);
  o.devices = {0};
  const nvml_meter m(o);
  REQUIRE(m.available());
  const auto s = m.start();
  *now += nvml_update_period_s / 10;
  const auto r = m.stop(s);
  CHECK(r.too_short);
  CHECK_FALSE(r.valid);
  CHECK(r.joules == Approx(1.5));  // the raw difference is kept for the curious
  CHECK(r.reason.find("shorter than the NVML update period") != std::string::npos);
}

TEST_CASE("NVML meters move and shut the library down once", "[energy][nvml]") {
  // Holding our own handle keeps the fake loaded, so its init count survives.
  void* h = ::dlopen(GREENREDUCE_FAKE_NVML_PATH, RTLD_NOW | RTLD_LOCAL);
  REQUIRE(h != nullptr);
  int (*live)() = nullptr;
  void* sym = ::dlsym(h, "greenreduce_fake_nvml_live_inits");
  REQUIRE(sym != nullptr);
  std::memcpy(&live, &sym, sizeof sym);
  const int before = live();
  {
    auto now = std::make_shared<double>(0.0);
    nvml_options o = fake(now);
    o.devices = {0};
    nvml_meter a(o);
    REQUIRE(a.available());
    CHECK(live() == before + 1);
    nvml_meter b(std::move(a));
    CHECK(b.available());
    const auto s = b.start();
    *now += 1;
    CHECK(b.stop(s).valid);
    const nvml_meter failing(fake(now));  // initialises, then finds device 2 unsupported
    CHECK_FALSE(failing.available());
    CHECK(live() == before + 1);
  }
  CHECK(live() == before);
  ::dlclose(h);
}

TEST_CASE("NVML on this machine either measures or explains", "[energy][nvml]") {
  const nvml_meter m;
  if (!m.available()) CHECK_FALSE(m.reason().empty());
  CHECK_NOTHROW(m.stop(m.start()));
}
