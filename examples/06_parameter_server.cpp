// 06_parameter_server — synchronous versus bounded-staleness training with a slow worker.
//
// The ring of examples 04-05 is symmetric: every rank waits for every other
// at every step. A parameter server splits the roles (ps/, docs/parameter_server.md):
// ranks [0, S) hold the parameters and apply updates, ranks [S, size) are
// workers that loop
//
//   pull(key, x)   ->   g = gradient at x   ->   push(key, g)
//
// and the server's consistency mode decides when a push returns:
//
//   sync                    the server waits until every worker pushed step t,
//                           applies the mean gradient once, then answers all:
//                           exactly single-process SGD on the mean gradient,
//                           and every step runs at the pace of the slowest worker
//   bounded_staleness{s}    (SSP, Ho et al., NeurIPS 2013) every push is applied
//                           on arrival, but a push returns only when no worker
//                           is more than s steps behind: fast workers run ahead,
//                           by s steps at most, instead of waiting every step
//
// Here one server and three workers (threads over `transport::inproc`) solve
// a least-squares problem, each worker holding its own rows; the last worker
// sleeps --slow-ms every step. For each mode the program prints, per worker,
// the steps done, the time spent computing and the time spent waiting inside
// push/pull, and the largest lead it had over the slowest worker's step when
// its push returned; then the final parameters against a reference.
//
// Checks (exit 1 otherwise): every worker did every step and the server
// applied all of them; no push returned while its worker led by more than s
// steps (0 in sync), checked on the worker side and by the server's own
// `max_staleness`; sync equals single-process SGD on the mean gradient (to
// float rounding); both modes end near the least-squares solution x*.
// Times depend on the machine's load, so they are printed, not checked.
//
// What to look for: in sync the fast workers' wait_s is the slow worker's
// sleep, every step (max_lead 0). In SSP they run up to s steps ahead and
// their gradients are applied at once instead of waiting for the step to
// close (3x the updates, each from one worker). The job still cannot finish
// before the slow worker has done all its steps: against a worker that is
// *always* slow SSP saves little wall time. It pays off against transient
// stragglers (a worker slow now and then, a different one each time), whose
// delays it absorbs as long as they stay below s steps.
//
// Note on step sizes: sync applies lr * mean of W gradients once per step,
// SSP applies each worker's gradient as it arrives, W updates per round; SSP
// therefore uses lr / W to take the same average step.
//
//   $ ./build/examples/06_parameter_server
//   $ ./build/examples/06_parameter_server --staleness 4 --slow-ms 5 --steps 300
//
// The same server and workers run over TCP as processes: construct them on a
// `transport::tcp` with `isolate_peer_failures = true` (greenreduce-bench
// --algo ps does; see bench/ps_bench.hpp).
#include <greenreduce/greenreduce.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace gr = greenreduce;
using namespace std::chrono_literals;

namespace {

struct options {
  int workers = 3;
  int dim = 16;
  int rows = 32;  // per worker
  int steps = 150;
  float lr = 0.3F;
  std::uint32_t staleness = 2;
  int slow_ms = 2;
  std::uint64_t seed = 6;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--steps" && v) {
      o.steps = std::atoi(v), ++i;
    } else if (a == "--staleness" && v) {
      o.staleness = static_cast<std::uint32_t>(std::atoi(v)), ++i;
    } else if (a == "--slow-ms" && v) {
      o.slow_ms = std::atoi(v), ++i;
    } else if (a == "--workers" && v) {
      o.workers = std::atoi(v), ++i;
    } else {
      std::fprintf(stderr, "usage: %s [--steps N] [--staleness S] [--slow-ms MS] [--workers W]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  return o;
}

/// Worker w's rows of a consistent system A x* = b (so f(x*) = 0).
struct problem {
  std::vector<float> x_star;
  std::vector<std::vector<float>> a, b;  // per worker: rows x dim (row-major), rows
  int dim = 0, rows = 0;

  problem(const options& o) : dim(o.dim), rows(o.rows) {
    std::mt19937_64 gen(o.seed);
    std::normal_distribution<float> normal(0.0F, 1.0F);
    x_star.resize(static_cast<std::size_t>(dim));
    for (auto& v : x_star) v = normal(gen);
    for (int w = 0; w < o.workers; ++w) {
      std::vector<float> aw(static_cast<std::size_t>(rows * dim)),
          bw(static_cast<std::size_t>(rows));
      for (auto& v : aw) v = normal(gen);
      for (int i = 0; i < rows; ++i)
        for (int j = 0; j < dim; ++j) bw[i] += aw[i * dim + j] * x_star[j];
      a.push_back(std::move(aw));
      b.push_back(std::move(bw));
    }
  }

  /// g = A_w^T (A_w x - b_w) / rows: the gradient of worker w's mean squared residual / 2.
  std::vector<float> grad(int w, std::span<const float> x) const {
    const auto& aw = a[static_cast<std::size_t>(w)];
    const auto& bw = b[static_cast<std::size_t>(w)];
    std::vector<float> g(static_cast<std::size_t>(dim), 0.0F);
    for (int i = 0; i < rows; ++i) {
      float r = -bw[static_cast<std::size_t>(i)];
      for (int j = 0; j < dim; ++j) r += aw[i * dim + j] * x[j];
      for (int j = 0; j < dim; ++j) g[j] += aw[i * dim + j] * r / static_cast<float>(rows);
    }
    return g;
  }
};

/// What one worker saw.
struct worker_log {
  std::uint64_t steps = 0;
  double compute_s = 0, wait_s = 0;
  std::int64_t max_lead = 0;  // (my step) - (slowest worker's started step) when my push returned
};

struct outcome {
  std::vector<float> x;
  std::vector<worker_log> logs;
  gr::ps::server_stats stats;
  double seconds = 0;
  bool bound_kept = true;
};

outcome train(const options& o, const problem& prob, gr::ps::consistency mode, float lr) {
  const int S = 1, W = o.workers;
  const gr::ps::roles roles(S, S + W);
  const std::vector<gr::ps::key_spec> keys{{"x", static_cast<std::size_t>(o.dim)}};
  gr::ps::ps_options po;
  po.mode = mode;

  // The server needs a transport that isolates peer failures: one dead worker
  // must not take the others' connections down with it.
  gr::transport::inproc_options to;
  to.isolate_peer_failures = true;
  gr::transport::inproc_world world(S + W, to);

  outcome out;
  out.logs.resize(static_cast<std::size_t>(W));
  std::vector<std::atomic<std::int64_t>> started(static_cast<std::size_t>(W));
  for (auto& s : started) s = 0;
  const std::int64_t bound = mode.mode == gr::ps::consistency::kind::sync ? 0 : mode.staleness;

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  threads.emplace_back([&] {  // rank 0: the server
    auto t = world.rank(0);
    gr::ps::server<gr::transport::inproc> srv(t, roles, keys, gr::ps::sgd(lr), po);
    srv.run();  // until every worker has said bye
    out.x = srv.params("x");
    out.stats = srv.stats();
  });
  for (int w = 0; w < W; ++w)
    threads.emplace_back([&, w] {  // ranks 1..W: the workers
      auto t = world.rank(roles.worker_rank(w));
      gr::ps::worker<gr::transport::inproc> wk(t, roles, keys);
      auto& log = out.logs[static_cast<std::size_t>(w)];
      std::vector<float> x(static_cast<std::size_t>(o.dim));
      for (int step = 0; step < o.steps; ++step) {
        log.wait_s += wk.pull("x", x).seconds;
        const auto c0 = std::chrono::steady_clock::now();
        const auto g = prob.grad(w, x);
        if (w == W - 1) std::this_thread::sleep_for(std::chrono::milliseconds(o.slow_ms));
        log.compute_s +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
        started[static_cast<std::size_t>(w)] = step + 1;
        log.wait_s += wk.push("x", g).seconds;  // returns when the mode allows
        std::int64_t slowest = started[0];
        for (const auto& s : started) slowest = std::min<std::int64_t>(slowest, s);
        log.max_lead = std::max(log.max_lead, step + 1 - slowest);
      }
      log.steps = wk.step("x");
      wk.finish();  // bye: the server stops waiting for this worker
    });
  for (auto& th : threads) th.join();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& log : out.logs)
    if (log.max_lead > bound) out.bound_kept = false;
  return out;
}

double max_diff(std::span<const float> a, std::span<const float> b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(double(a[i]) - b[i]));
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const problem prob(o);
  int failed = 0;
  auto check = [&](bool ok, const std::string& what) {
    std::printf("  %-66s %s\n", what.c_str(), ok ? "ok" : "FAILED");
    if (!ok) ++failed;
  };

  // Reference for sync: the same steps in one process on the mean gradient.
  std::vector<float> ref(static_cast<std::size_t>(o.dim), 0.0F);
  for (int step = 0; step < o.steps; ++step) {
    std::vector<float> mean(ref.size(), 0.0F);
    for (int w = 0; w < o.workers; ++w) {
      const auto g = prob.grad(w, ref);
      for (std::size_t j = 0; j < ref.size(); ++j) mean[j] += g[j] / static_cast<float>(o.workers);
    }
    for (std::size_t j = 0; j < ref.size(); ++j) ref[j] -= o.lr * mean[j];
  }

  const auto modes = {gr::ps::consistency::sync(),
                      gr::ps::consistency::bounded_staleness(o.staleness)};
  for (const auto mode : modes) {
    const bool sync = mode.mode == gr::ps::consistency::kind::sync;
    const float lr = sync ? o.lr : o.lr / static_cast<float>(o.workers);
    const outcome r = train(o, prob, mode, lr);
    std::printf("\n=== %s: %d workers, worker %d sleeps %d ms per step, lr %.3g, %.3f s ===\n",
                mode.to_string().c_str(), o.workers, o.workers - 1, o.slow_ms, lr, r.seconds);
    std::printf("  %-7s %6s %10s %10s %9s\n", "worker", "steps", "compute_s", "wait_s", "max_lead");
    for (std::size_t w = 0; w < r.logs.size(); ++w)
      std::printf("  %-7zu %6llu %10.4f %10.4f %9lld\n", w,
                  static_cast<unsigned long long>(r.logs[w].steps), r.logs[w].compute_s,
                  r.logs[w].wait_s, static_cast<long long>(r.logs[w].max_lead));
    std::printf("  server: %llu updates, max staleness at a release %u\n",
                static_cast<unsigned long long>(r.stats.updates), r.stats.max_staleness);

    bool all_steps = true;
    for (std::size_t w = 0; w < r.logs.size(); ++w)
      all_steps = all_steps && r.logs[w].steps == static_cast<std::uint64_t>(o.steps) &&
                  r.stats.pushes_applied[w] == static_cast<std::uint64_t>(o.steps);
    check(all_steps, "every worker did every step, the server applied every push");
    const std::uint32_t bound = sync ? 0 : mode.staleness;
    check(r.bound_kept && r.stats.max_staleness <= bound,
          "no push returned more than " + std::to_string(bound) + " steps ahead of the slowest");
    const double to_star = max_diff(r.x, prob.x_star);
    if (sync) {
      const double to_ref = max_diff(r.x, ref);
      std::printf("  max |x - single-process SGD| = %.3e, max |x - x*| = %.3e\n", to_ref, to_star);
      check(to_ref <= 1e-5, "sync equals single-process SGD on the mean gradient");
    } else {
      std::printf("  max |x - x*| = %.3e\n", to_star);
    }
    check(to_star <= 1e-2, "the parameters ended near the least-squares solution x*");
  }
  if (failed) return 1;
  std::printf("\nall checks passed\n");
  return 0;
}
