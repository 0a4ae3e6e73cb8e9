// train_demo — what greenreduce is for, in one run.
//
// The same MLP (784-64-32-10) is trained data-parallel on Fashion-MNIST by np
// ranks (processes over TCP), once per mode, from the same seed, with the same
// fixed data shard per rank and the same number of epochs:
//
//   sync     ring allreduce of fp32 gradients (the baseline)
//   async    parameter server, bounded staleness (SSP), fp32 pushes and pulls
//   hybrid   the same PS with top-k pushes (error feedback) and bf16 pulls
//   int8     ring allreduce with int8 gradients (per-bucket scale)
//   ternary  ring allreduce with TernGrad (2 bits per value)
//   topk     ring with top-k gradients, error feedback on each rank's gradient
//
// and prints, per mode, test accuracy, wall time, wire bytes per rank and the
// estimated joules (energy/model.hpp; a RAPL reading too where one exists),
// each against sync. --json, --csv (rank 0's per-step ledger) and --plot
// write the same numbers to files.
//
//   $ ./build/examples/train/train_demo                     # 4 local ranks, all modes
//   $ ./build/examples/train/train_demo --straggler 1:2 --balance --modes sync,async
//   $ torchrun --nproc-per-node 4 ./build/examples/train/train_demo   (one rank each)
//
// Argument errors print a message and exit with status 2.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include "greenreduce/collective/allgather.hpp"
#include "greenreduce/energy/ledger.hpp"
#include "greenreduce/energy/model.hpp"
#include "greenreduce/energy/rapl.hpp"
#include "greenreduce/transport/rendezvous.hpp"
#include "greenreduce/transport/tcp.hpp"
#include "harness.hpp"
#include "launch.hpp"
#include "modes.hpp"
#include "options.hpp"
#include "results.hpp"

namespace gr = greenreduce;
namespace ex = greenreduce::examples;

namespace {

[[noreturn]] void usage_error(const std::string& msg) {
  std::string m = msg;
  const std::string prefix = "config_error: ";
  if (m.rfind(prefix, 0) == 0) m = m.substr(prefix.size());
  if (m == "help") {
    std::fputs(ex::usage_text, stdout);
    std::exit(0);
  }
  std::fprintf(stderr, "train_demo: %s\n%s", m.c_str(), ex::usage_text);
  std::exit(2);
}

/// Packs a rank's outcome as doubles for the allgather to rank 0.
std::vector<double> pack(const ex::rank_outcome& o) {
  std::vector<double> v = {o.wall_s,           o.wire_bytes,      o.samples,
                           o.energy.network_j, o.energy.memory_j, o.energy.compute_j,
                           o.energy.static_j};
  v.insert(v.end(), o.loss.begin(), o.loss.end());
  return v;
}
constexpr std::size_t packed_scalars = 7;

int rank_main(const ex::demo_options& opt, const std::string& launcher) {
  auto t = gr::transport::tcp::from_env();
  const int rank = t.rank(), world = t.size();
  ex::check_world(opt, world);

  ex::dataset train = ex::load_mnist_like(opt.data, "train");
  if (opt.limit && opt.limit < train.size()) {
    train.pixels.resize(opt.limit * train.features());
    train.labels.resize(opt.limit);
  }
  ex::dataset test;
  if (rank == 0) test = ex::load_mnist_like(opt.data, "t10k");

  ex::mlp net;
  ex::rank_context c{opt,
                     rank,
                     world,
                     train,
                     ex::shard_of(train.size(), world, rank, opt.seed),
                     std::vector<float>(net.parameter_count()),
                     gr::energy::model(gr::energy::coefficients_from_env(
                         gr::env_source::process(), gr::energy::profile_by_name(opt.profile)))};
  net.init(c.init, opt.seed);
  c.steps_per_epoch = std::max<std::size_t>(
      1, train.size() / (static_cast<std::size_t>(world) * static_cast<std::size_t>(opt.batch)));
  c.points_per_epoch = std::min<std::size_t>(c.steps_per_epoch, 10);
  gr::energy::ledger ledger;
  if (rank == 0) c.ledger = &ledger;

  gr::energy::rapl_meter meter(gr::env_source::process());
  std::vector<ex::mode_result> rows;
  const std::size_t npack =
      packed_scalars + c.points_per_epoch * static_cast<std::size_t>(opt.epochs);
  gr::collective::allgather<gr::transport::tcp> gather(t, npack * sizeof(double));
  std::string meter_note = meter.available()
                               ? "RAPL (whole machine, all ranks and everything else running)"
                               : "n/a (RAPL: " + meter.reason() + "; NVML: not used, CPU training)";
  ex::warm_up(c, t);
  for (const auto& mode : opt.modes) {
    const auto snap = rank == 0 ? meter.start() : gr::energy::rapl_snapshot{};
    ex::rank_outcome o = ex::run_mode(c, t, mode);
    double measured = NAN;
    if (rank == 0) {
      const auto m = meter.stop(snap);
      if (m.valid)
        measured = m.joules;
      else if (meter.available())
        meter_note = "n/a (RAPL: " + m.reason + ")";
    }
    const std::vector<double> mine = pack(o);
    const auto all = gather.run(std::as_bytes(std::span<const double>(mine)));
    if (rank != 0) continue;
    ex::mode_result r;
    r.mode = mode;
    r.accuracy = ex::evaluate(net, o.params, test, opt.test_limit);
    r.measured_j = measured;
    std::vector<double> loss_sum(npack - packed_scalars, 0.0);
    for (int q = 0; q < world; ++q) {
      std::vector<double> v(npack);
      std::memcpy(v.data(), all[static_cast<std::size_t>(q)].data(), npack * sizeof(double));
      r.wall_s = std::max(r.wall_s, v[0]);
      r.wire_bytes += v[1] / world;
      r.samples += v[2];
      gr::energy_estimate e;
      e.network_j = v[3];
      e.memory_j = v[4];
      e.compute_j = v[5];
      e.static_j = v[6];
      e.method = gr::energy_method::model;
      r.energy += e;
      r.rank_wall_s.push_back(v[0]);
      r.rank_wire_bytes.push_back(v[1]);
      r.rank_joules.push_back(e.total_j());
      for (std::size_t i = 0; i < loss_sum.size(); ++i)
        loss_sum[i] += v[packed_scalars + i] / world;
    }
    for (std::size_t i = 0; i < loss_sum.size(); ++i)
      r.loss.emplace_back(static_cast<double>(i + 1) / static_cast<double>(c.points_per_epoch),
                          loss_sum[i]);
    if (opt.progress)
      std::fprintf(stderr,
                   "%-8s test accuracy %.2f%%, %.1f s, %.2f MB/rank on the wire, %.0f J (est.)\n",
                   mode.c_str(), r.accuracy, r.wall_s, r.wire_bytes / 1e6, r.energy.total_j());
    rows.push_back(std::move(r));
  }
  if (rank != 0) return 0;

  ex::run_info info;
  info.dataset = opt.data;
  info.profile = opt.profile;
  info.link = opt.link.empty() ? "loopback" : opt.link + " (bench/netns.sh)";
  info.meter_note = meter_note;
  info.launcher = launcher;
  info.np = world;
  info.epochs = opt.epochs;
  info.batch = opt.batch;
  info.lr = opt.lr;
  info.momentum = opt.momentum;
  info.topk_ratio = opt.topk_ratio;
  info.staleness = opt.staleness;
  info.straggler = opt.straggler;
  info.balance = opt.balance;
  info.train_samples = train.size();
  info.test_samples = opt.test_limit ? std::min(opt.test_limit, test.size()) : test.size();
  info.parameters = net.parameter_count();
  info.static_watts = c.model.coeffs().static_watts;
  ex::print_table(stdout, info, rows);

  if (!opt.json.empty()) {
    std::ofstream f(opt.json);
    ex::write_json(f, info, rows);
    if (!f) throw gr::config_error("cannot write --json file " + opt.json);
  }
  if (!opt.csv.empty()) {
    std::ofstream f(opt.csv);
    ledger.write_csv(f);
    if (!f) throw gr::config_error("cannot write --csv file " + opt.csv);
  }
  if (!opt.plot.empty()) {
    const auto data = ex::plot_data(rows);
    const std::string title = "train_demo: " + std::to_string(world) + " ranks, " +
                              std::to_string(opt.epochs) + " epochs (energy: model, profile " +
                              opt.profile + ")";
    bool png = false;
    if (opt.plot_format != "svg") png = ex::write_png(opt.plot + ".png", data, title);
    if (png) {
      std::printf("plot: %s.png\n", opt.plot.c_str());
    } else {
      if (opt.plot_format == "png")
        std::fprintf(stderr, "train_demo: gnuplot is not installed or failed; writing SVG\n");
      std::ofstream f(opt.plot + ".svg");
      ex::write_svg(f, data, title);
      if (!f) throw gr::config_error("cannot write plot " + opt.plot + ".svg");
      std::printf("plot: %s.svg\n", opt.plot.c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ex::demo_options opt;
  try {
    opt = ex::parse_options(argc, argv);
    gr::energy::profile_by_name(opt.profile);
    if (!ex::under_launcher()) ex::check_world(opt, opt.np);
  } catch (const gr::config_error& e) {
    usage_error(e.what());
  }
  try {
    if (ex::under_launcher()) {
      const auto w = gr::transport::world_from_env(gr::env_source::process());
      if (opt.np_given && opt.np != w.size)
        usage_error(
            gr::detail::str("--np ", opt.np, " disagrees with the launcher's world size ", w.size));
      return rank_main(opt, w.launcher);
    }
    // Fail before spawning when the data is missing: one message, not np.
    for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
      const std::string p = opt.data + "/" + f;
      if (!std::filesystem::exists(p + ".gz") && !std::filesystem::exists(p))
        throw gr::config_error("data file " + p +
                               ".gz does not exist (install the Debian "
                               "package dataset-fashion-mnist, or pass --data DIR with "
                               "MNIST-format files)");
    }
    return ex::spawn(argv, opt.np, opt.link.empty() ? "" : "gr");
  } catch (const gr::config_error& e) {
    std::string m = e.what();
    std::fprintf(stderr, "train_demo: %s\n", m.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_demo: %s\n", e.what());
    return 1;
  }
}
