#include "greenreduce/core/report.hpp"

#include <catch2/catch.hpp>

using namespace greenreduce;

TEST_CASE("reports add field by field and merge names", "[core][report]") {
  report a;
  a.op = "allreduce";
  a.codec = "int8";
  a.algo = "ring";
  a.bytes_sent = 100;
  a.bytes_received = 90;
  a.raw_bytes = 400;
  a.seconds = 0.5;
  a.energy = {1, 2, 3, 4, energy_method::model};
  report b = a;
  b.codec = "ternary";
  b.energy.method = energy_method::rapl;
  report s = a + b;
  CHECK(s.op == "allreduce");
  CHECK(s.codec == "mixed");
  CHECK(s.bytes_sent == 200);
  CHECK(s.bytes_received == 180);
  CHECK(s.raw_bytes == 800);
  CHECK(s.seconds == Approx(1.0));
  CHECK(s.operations == 2);
  CHECK(s.energy.total_j() == Approx(20.0));
  CHECK(s.energy.method == energy_method::mixed);
  CHECK(a.compression_ratio() == Approx(4.0));
  CHECK(a.wire_bytes() == 190);
  CHECK(report{}.compression_ratio() == 1.0);
}

TEST_CASE("an empty report adopts the first report's names and method", "[core][report]") {
  report total;
  total.operations = 0;
  report r;
  r.op = "push";
  r.energy.method = energy_method::model;
  total += r;
  CHECK(total.op == "push");
  CHECK(total.operations == 1);
  CHECK(total.energy.method == energy_method::model);
  CHECK(to_string(energy_method::nvml) == "nvml");
}

TEST_CASE("measured joules add up and count in the total", "[core][report]") {
  energy_estimate modelled{1, 2, 3, 4, energy_method::model};
  energy_estimate measured;
  measured.method = energy_method::rapl;
  measured.measured_j = 5;
  CHECK(measured.total_j() == Approx(5.0));
  energy_estimate sum = modelled;
  sum += measured;
  sum += measured;
  CHECK(sum.measured_j == Approx(10.0));
  CHECK(sum.static_j == Approx(4.0));
  CHECK(sum.total_j() == Approx(20.0));
  CHECK(sum.method == energy_method::mixed);
}
