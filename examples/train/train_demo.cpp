// train_demo — what greenreduce is for, in one run.
//
// The same MLP (784-64-32-10) is trained data-parallel on Fashion-MNIST by np
// ranks (processes over TCP), once per mode, from the same seed, with the same
// fixed data shard per rank and the same number of epochs:
//
//   sync     ring allreduce of fp32 gradients (the baseline)
//   async    parameter server, bounded staleness (SSP), fp32 pushes and pulls
//   hybrid   the same PS with int8 pushes (error feedback) and bf16 pulls
//   int8     ring allreduce with int8 gradients (per-bucket scale)
//   ternary  ring allreduce with TernGrad (2 bits per value)
//   topk     ring with top-k gradients, error feedback on each rank's gradient
//
// (modes.hpp is the registry; each mode is one modes_*.cpp file). The PS modes
// run the server as rank(s) of their own (world.hpp): the run is
// `servers + np` processes, servers = 1 when a PS mode is listed.
//
// It prints, per mode, test accuracy, wall time, wire bytes per rank and the
// estimated joules (energy/model.hpp; a RAPL reading too where one exists),
// each against sync. --json, --csv (worker 0's per-step ledger) and --plot
// write the same numbers to files.
//
//   $ ./build/examples/train/train_demo                     # 4 local ranks, all modes
//   $ ./build/examples/train/train_demo --straggler 1:2 --balance --modes sync,async
//   $ torchrun --nproc_per_node 5 --no_python ./build/examples/train/train_demo   (1 server + 4
//   workers)
//
// Argument errors print a message and exit with status 2.
#include <chrono>
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

std::string usage() {
  std::string u = ex::usage_text;
  for (const auto& m : ex::mode_registry())
    u += gr::detail::str("  ", m.name, std::string(m.name.size() < 9 ? 9 - m.name.size() : 1, ' '),
                         m.summary, m.by_default ? "" : " (not in the default list)", "\n");
  return u;
}

[[noreturn]] void usage_error(const std::string& msg) {
  std::string m = msg;
  const std::string prefix = "config_error: ";
  if (m.rfind(prefix, 0) == 0) m = m.substr(prefix.size());
  if (m == "help") {
    std::fputs(usage().c_str(), stdout);
    std::exit(0);
  }
  std::fprintf(stderr, "train_demo: %s\n%s", m.c_str(), usage().c_str());
  std::exit(2);
}

/// Packs a rank's outcome as doubles for the allgather to rank 0.
std::vector<double> pack(const ex::rank_outcome& o, std::size_t n) {
  std::vector<double> v = {o.wall_s,           o.wire_bytes,      o.samples,
                           o.energy.network_j, o.energy.memory_j, o.energy.compute_j,
                           o.energy.static_j,  o.compute_s,       o.exchange_s,
                           o.ps_switch_step,   o.ps_sync_updates, o.ps_updates};
  v.insert(v.end(), o.loss.begin(), o.loss.end());
  v.resize(n, 0.0);  // a server has no loss curve
  return v;
}
constexpr std::size_t packed_scalars = 12;

int rank_main(const ex::demo_options& opt, const std::vector<std::string>& modes, int servers,
              const std::string& launcher) {
  auto topt = gr::transport::tcp_options::from_env();
  // A server sits out the ring modes waiting in the outcome allgather below,
  // as long as the workers train; on a loaded host one mode can take longer
  // than the default 30 s bound. Its wait gets 10 minutes unless
  // GREENREDUCE_TIMEOUT_MS says otherwise; the workers keep the default.
  if (topt.rank < servers && std::getenv("GREENREDUCE_TIMEOUT_MS") == nullptr)
    topt.timeout = std::chrono::minutes(10);
  // Every rank of a PS job isolates peer failures (docs/parameter_server.md).
  topt.isolate_peer_failures = servers > 0;
  gr::transport::tcp t(topt);
  ex::demo_world w(t, servers);
  const int world = w.np();
  const int rank = w.is_server() ? -1 : t.rank() - servers;  // worker index
  ex::check_world(opt, world);

  ex::dataset train = ex::load_mnist_like(opt.data, "train");
  if (opt.limit && opt.limit < train.size()) {
    train.pixels.resize(opt.limit * train.features());
    train.labels.resize(opt.limit);
  }
  ex::dataset test;
  if (w.is_lead()) test = ex::load_mnist_like(opt.data, "t10k");

  ex::mlp net;
  ex::rank_context c{
      opt,
      rank,
      world,
      train,
      rank < 0 ? std::vector<std::uint32_t>{} : ex::shard_of(train.size(), world, rank, opt.seed),
      ex::fvec(net.parameter_count()),
      gr::energy::model(gr::energy::coefficients_from_env(
          gr::env_source::process(), gr::energy::profile_by_name(opt.profile)))};
  net.init(c.init, opt.seed);
  c.steps_per_epoch = std::max<std::size_t>(
      1, train.size() / (static_cast<std::size_t>(world) * static_cast<std::size_t>(opt.batch)));
  c.points_per_epoch = std::min<std::size_t>(c.steps_per_epoch, 10);
  gr::energy::ledger ledger;
  if (w.is_lead()) c.ledger = &ledger;

  gr::energy::rapl_meter meter(gr::env_source::process());
  std::vector<ex::mode_result> rows;
  const std::size_t npack =
      packed_scalars + c.points_per_epoch * static_cast<std::size_t>(opt.epochs);
  gr::collective::allgather<gr::transport::tcp> gather(t, npack * sizeof(double));
  const bool lead = w.is_lead();
  std::string meter_note = meter.available()
                               ? "RAPL (whole machine, all ranks and everything else running)"
                               : "n/a (RAPL: " + meter.reason() + "; NVML: not used, CPU training)";
  if (!w.is_server()) ex::warm_up(c, w.workers);
  for (const auto& mode : modes) {
    gr::collective::barrier(t);
    const auto snap = lead ? meter.start() : gr::energy::rapl_snapshot{};
    ex::rank_outcome o = ex::find_mode(mode).run(c, w);
    double measured = NAN;
    if (lead) {
      const auto m = meter.stop(snap);
      if (m.valid)
        measured = m.joules;
      else if (meter.available())
        meter_note = "n/a (RAPL: " + m.reason + ")";
    }
    const std::vector<double> mine = pack(o, npack);
    const auto all = gather.run(std::as_bytes(std::span<const double>(mine)));
    if (!lead) continue;
    ex::mode_result r;
    r.mode = mode;
    r.accuracy = ex::evaluate(net, o.params, test, opt.test_limit);
    r.measured_j = measured;
    std::vector<double> loss_sum(npack - packed_scalars, 0.0);
    for (int q = 0; q < t.size(); ++q) {
      std::vector<double> v(npack);
      std::memcpy(v.data(), all[static_cast<std::size_t>(q)].data(), npack * sizeof(double));
      gr::energy_estimate e;
      e.network_j = v[3];
      e.memory_j = v[4];
      e.compute_j = v[5];
      e.static_j = v[6];
      e.method = gr::energy_method::model;
      r.energy += e;
      if (q < servers) {  // a server: its energy and bytes, no row of its own
        r.server_wire_bytes += v[1];
        r.server_j += e.total_j();
        if (q == 0) {  // the schedule is the same on every server
          r.ps_switch_step = v[9];
          r.ps_sync_updates = v[10];
          r.ps_updates = v[11];
        }
        continue;
      }
      r.wall_s = std::max(r.wall_s, v[0]);
      r.wire_bytes += v[1] / world;
      r.samples += v[2];
      r.compute_s += v[7] / world;
      r.exchange_s += v[8] / world;
      r.rank_wall_s.push_back(v[0]);
      r.rank_wire_bytes.push_back(v[1]);
      r.rank_joules.push_back(e.total_j());
      r.rank_samples.push_back(v[2]);
      r.rank_compute_s.push_back(v[7]);
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
  if (!lead) return 0;

  ex::run_info info;
  info.dataset = opt.data;
  info.profile = opt.profile;
  info.link = opt.link.empty() ? "loopback" : opt.link + " (bench/netns.sh)";
  if (opt.link_change.active())
    info.link +=
        greenreduce::detail::str(", ", opt.link_change.rate, " from ", opt.link_change.from, " to ",
                                 opt.link_change.to, " of each mode's steps");
  info.meter_note = meter_note;
  info.launcher = launcher;
  info.np = world;
  info.servers = servers;
  info.epochs = opt.epochs;
  info.batch = opt.batch;
  info.lr = opt.lr;
  info.momentum = opt.momentum;
  info.topk_ratio = opt.topk_ratio;
  info.staleness = opt.staleness;
  info.ps_sync_warmup = opt.ps_sync_warmup;
  info.ps_push_every = opt.ps_push_every;
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
    const std::string title = "train_demo: " + std::to_string(world) + " workers, " +
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
  std::vector<std::string> modes;
  int servers = 0;
  try {
    opt = ex::parse_options(argc, argv);
    modes = ex::resolve_modes(opt.modes);
    servers = ex::needs_servers(modes) ? opt.servers : 0;
    gr::energy::profile_by_name(opt.profile);
    if (!ex::under_launcher()) ex::check_world(opt, opt.np);
  } catch (const gr::config_error& e) {
    usage_error(e.what());
  }
  try {
    if (ex::under_launcher()) {
      // The launcher's world is the servers followed by the workers.
      const auto w = gr::transport::world_from_env(gr::env_source::process());
      const int np = w.size - servers;
      if (np < 1 || (opt.np_given && opt.np != np))
        usage_error(gr::detail::str(
            "the launcher started ", w.size, " processes; these modes need ", servers,
            " parameter server(s) plus ", opt.np_given ? opt.np : std::max(np, 1),
            " workers (ranks [0, ", servers, ") serve, the rest train)"));
      return rank_main(opt, modes, servers, w.launcher);
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
    return ex::spawn(argv, servers + opt.np, servers, opt.link.empty() ? "" : "gr");
  } catch (const gr::config_error& e) {
    std::string m = e.what();
    std::fprintf(stderr, "train_demo: %s\n", m.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_demo: %s\n", e.what());
    return 1;
  }
}
