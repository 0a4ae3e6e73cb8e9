// 08_energy_ledger — the account of a run: every report in a ledger, exported, read back, in CO2.
//
// Every operation returns a `report` (example 04), and reports add up with
// `+=`. An `energy::ledger` (energy/ledger.hpp) keeps them as rows — a
// timestamp from a clock you pass in, a step label, the report — and turns
// the total into energy and emissions:
//
//   kWh   = joules / 3.6e6
//   gCO2e = kWh x grid carbon intensity (gCO2e/kWh; default 480, the 2023
//           world average, Ember; GREENREDUCE_GRID_GCO2_PER_KWH or --grid
//           sets yours: ~20-50 for hydro/nuclear grids, 700+ for coal-heavy ones)
//
// It writes CSV (RFC 4180, one row per report, numbers in shortest
// round-trip form, so reading the file back gives the very same sums) and
// JSON (the total with kWh and CO2e, then the rows).
//
// This program trains for a few "steps" — a ring allreduce over 4 inproc
// ranks per step, first with fp32 (`none`), then with `int8` — and records
// every rank's report of every step, since the job's energy is the sum over
// its ranks. Then it writes 08_energy_ledger.csv and .json to --out DIR
// (default: the current directory), reads both back and checks that the sums
// agree, and prints kWh and CO2e, per codec and extrapolated to a long run.
//
// All joules here are estimates of energy::model (method "model"): bytes
// and operations counted by the library times literature coefficients, plus
// static power times wall time. On this shared machine the wall time — and so
// the static part — is that of threads competing for a few cores; the network
// and memory parts carry over to a real cluster. A RAPL or NVML meter
// (energy/rapl.hpp, nvml.hpp) would give measured joules, method "rapl"/"nvml".
//
// Read the per-codec lines with care: int8 sends 4x fewer bytes, yet on the
// datacenter_ethernet profile its network + memory joules come out *higher*
// than fp32's. A byte on a 400G optical link is priced at ~90 pJ per end, a
// byte through DDR at ~160 pJ, and the codec reads and writes its input more
// than once (encode, decode-add, the input copy that keeps `data` intact on
// error). Compression saves energy where bits are dear: --profile wifi_edge
// shows int8 at a quarter of fp32's joules. Which side of the line you are on
// is a property of your link and memory, and the model lets you ask.
//
//   $ ./build/examples/08_energy_ledger --out /tmp --grid 56     # e.g. a low-carbon grid
//   $ ./build/examples/08_energy_ledger --profile wifi_edge
//   $ GREENREDUCE_GRID_GCO2_PER_KWH=700 ./build/examples/08_energy_ledger --steps 10
#include <greenreduce/greenreduce.hpp>

#include <boost/property_tree/json_parser.hpp>
#include <boost/property_tree/ptree.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace gr = greenreduce;

namespace {

struct options {
  int np = 4;
  std::size_t n = 1 << 16;
  int steps = 3;
  std::string profile = "datacenter_ethernet";
  double grid = -1;  // < 0: GREENREDUCE_GRID_GCO2_PER_KWH, else the default
  std::string out = ".";
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--n" && v) {
      o.n = std::strtoull(v, nullptr, 10), ++i;
    } else if (a == "--steps" && v) {
      o.steps = std::atoi(v), ++i;
    } else if (a == "--profile" && v) {
      o.profile = v, ++i;
    } else if (a == "--grid" && v) {
      o.grid = std::atof(v), ++i;
    } else if (a == "--out" && v) {
      o.out = v, ++i;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--n N] [--steps K] [--profile NAME] [--grid gCO2/kWh] [--out DIR]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  return o;
}

/// One allreduce step of every rank with codec C; returns the p reports.
template <gr::codec::codec C>
std::vector<gr::report> allreduce_step(const C& codec, const options& o,
                                       const gr::energy::model& model, int step) {
  std::vector<gr::report> reps(static_cast<std::size_t>(o.np));
  gr::transport::inproc_world world(o.np);
  std::vector<std::thread> threads;
  for (int r = 0; r < o.np; ++r)
    threads.emplace_back([&, r] {
      auto t = world.rank(r);
      std::mt19937 gen(static_cast<unsigned>(1000 * step + r));
      std::normal_distribution<float> normal(0.0F, 1.0F);
      std::vector<float> grad(o.n);
      for (auto& v : grad) v = normal(gen);
      gr::collective::ring_options ro;
      ro.annotate = [&](gr::report& rep) { model.annotate(rep); };
      gr::collective::ring_allreduce<C, gr::transport::inproc> ring(t, o.n, codec, ro);
      reps[static_cast<std::size_t>(r)] = ring.run(grad, gr::collective::reduce_op::average);
    });
  for (auto& th : threads) th.join();
  return reps;
}

/// A JSON number member of `node` read as T. Boost.PropertyTree keeps every
/// value as text; from_chars (energy::csv::parse) reads it back to the same
/// bits, as write_json printed the shortest round-trip form.
template <class T>
T json_number(const boost::property_tree::ptree& node, const char* path) {
  T v{};
  const std::string& text = node.get_child(path).data();
  if (!gr::energy::csv::parse(text, v))
    throw gr::decode_error(
        gr::detail::str("JSON member ", path, " is \"", text, "\", expected a number"));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const double grid =
      o.grid >= 0 ? o.grid : gr::energy::grid_intensity_from_env(gr::env_source::process());
  const gr::energy::model model(o.profile);

  // The ledger takes its clock as an argument (no hidden global clock); the
  // default is Unix seconds from std::chrono::system_clock.
  gr::energy::ledger book(gr::energy::unix_seconds, grid);
  std::map<std::string, gr::report> per_codec;
  auto record = [&](const std::vector<gr::report>& reps, const std::string& label) {
    for (const auto& r : reps) {
      book.add(r, label);
      per_codec[r.codec] += r;
    }
  };
  for (int s = 0; s < o.steps; ++s)
    record(allreduce_step(gr::codec::none{}, o, model, s), "none/" + std::to_string(s));
  for (int s = 0; s < o.steps; ++s)
    record(allreduce_step(gr::codec::int8{}, o, model, s), "int8/" + std::to_string(s));

  std::printf(
      "%d steps x %d ranks x allreduce of %zu floats, per codec; profile %s, grid %.0f "
      "gCO2e/kWh\n\n",
      o.steps, o.np, o.n, o.profile.c_str(), grid);
  std::printf("%-8s %6s %12s %12s %12s %12s %12s\n", "step", "rows", "wire_bytes", "network_J",
              "memory_J", "static_J", "total_J");
  for (const auto& [label, r] : book.by_step())
    std::printf("%-8s %6llu %12llu %12.3e %12.3e %12.3e %12.3e\n", label.c_str(),
                static_cast<unsigned long long>(r.operations),
                static_cast<unsigned long long>(r.wire_bytes()), r.energy.network_j,
                r.energy.memory_j, r.energy.static_j, r.energy.total_j());

  const gr::report total = book.total();
  std::printf("\ntotal: %zu rows, %llu wire bytes, %.4g J = %.4g kWh = %.4g gCO2e (method %s)\n",
              book.rows().size(), static_cast<unsigned long long>(total.wire_bytes()),
              book.joules(), book.kwh(), book.co2_grams(),
              std::string(gr::to_string(total.energy.method)).c_str());
  for (const auto& [codec, r] : per_codec) {
    // Network + memory only: the parts that do not depend on this machine's load.
    const double per_step = (r.energy.network_j + r.energy.memory_j) / o.steps;
    std::printf("  %-5s network+memory %.3e J per step -> %.3g gCO2e per million steps\n",
                codec.c_str(), per_step, per_step * 1e6 / gr::energy::joules_per_kwh * grid);
  }

  // --- export
  const std::string csv_path = o.out + "/08_energy_ledger.csv";
  const std::string json_path = o.out + "/08_energy_ledger.json";
  {
    std::ofstream csv(csv_path), json(json_path);
    book.write_csv(csv);
    book.write_json(json);
    if (!csv || !json) {
      std::fprintf(stderr, "cannot write %s or %s\n", csv_path.c_str(), json_path.c_str());
      return 1;
    }
  }
  std::printf("\nwrote %s and %s\n", csv_path.c_str(), json_path.c_str());

  // --- read back and check
  int failed = 0;
  auto check = [&](bool ok, const char* what) {
    std::printf("  %-62s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok) ++failed;
  };
  std::ifstream csv_in(csv_path);
  const auto again = gr::energy::ledger::read_csv(csv_in, gr::energy::unix_seconds, grid);
  const gr::report t2 = again.total();
  check(again.rows().size() == book.rows().size(), "CSV: as many rows as recorded");
  check(t2.bytes_sent == total.bytes_sent && t2.bytes_received == total.bytes_received &&
            t2.raw_bytes == total.raw_bytes,
        "CSV: byte sums equal");
  check(again.joules() == book.joules(), "CSV: joules equal bit for bit (shortest round trip)");

  boost::property_tree::ptree js;
  boost::property_tree::read_json(json_path, js);  // throws on malformed JSON
  const auto& jt = js.get_child("total");
  check(js.get_child("rows").size() == book.rows().size(), "JSON: as many rows as recorded");
  check(json_number<std::uint64_t>(jt, "bytes_sent") == total.bytes_sent,
        "JSON: bytes_sent total equal");
  check(json_number<double>(jt, "total_j") == book.joules() &&
            json_number<double>(jt, "kwh") == book.kwh() &&
            json_number<double>(jt, "co2_g") == book.co2_grams(),
        "JSON: joules, kWh and CO2e equal");
  double rows_j = 0;
  for (const auto& [key, row] : js.get_child("rows")) rows_j += json_number<double>(row, "total_j");
  check(std::abs(rows_j - book.joules()) <= 1e-12 * book.joules(), "JSON: rows sum to the total");

  check(std::abs(book.kwh() - book.joules() / 3.6e6) <= 1e-15 * book.kwh() + 1e-300 &&
            std::abs(book.co2_grams() - book.kwh() * grid) <= 1e-12 * book.co2_grams() + 1e-300,
        "kWh = J / 3.6e6 and gCO2e = kWh x grid");
  const auto& none = per_codec["none"];
  const auto& int8 = per_codec["int8"];
  check(int8.energy.network_j < none.energy.network_j, "int8 costs fewer network joules than fp32");
  if (failed) return 1;
  std::printf("all checks passed\n");
  return 0;
}
