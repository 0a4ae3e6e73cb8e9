// examples/train/harness.hpp — one process's part of the training in each mode.
//
// "Rank" below is a worker's index (world.hpp: the servers come first in the
// tcp world, the workers after them). Every mode runs the same loop on every
// worker: `epochs` x `steps` steps, each
// a mini-batch of this rank's fixed shard (the training set is shuffled once
// with the seed and cut into np contiguous shards), the gradient of the MLP,
// then the mode's exchange:
//
//   ring modes  scale the gradient by this rank's batch weight, allreduce it
//               (average) with collective::ring_allreduce<Codec>, and apply
//               SGD with momentum locally (v = m v + g; p -= lr v) — every
//               rank holds the same parameters;
//   PS modes    pull the parameters from the server (ps/worker.hpp), push the
//               weighted gradient; the server, a process of its own running
//               ps::server::run(), applies SGD with momentum per push, scaled
//               so that a round of pushes moves the parameters as much as one
//               sync step (train_ps).
//
// `--straggler R:F` makes rank R's compute take F x as long (it sleeps, then
// spins to that deadline): a slow node. `--balance` resizes batches every `rebalance_every`
// steps in proportion to measured throughput (samples per second of compute,
// a straggler's slowdown included; balance.hpp): sync carries the rates inside
// its gradient allreduce, the lossy ring modes allgather them, the PS modes
// ask the server's shares (ps::worker::shares). Either way the gradient is
// weighted by its batch so the update is the mean over all samples of the
// step.
//
// Energy: each rank annotates its communication reports with energy::model
// and adds a "compute" report per step (training FLOPs and memory traffic,
// see compute_report) and an "idle" report for the rest of its wall time, so
// the static part of its estimate is static_watts x wall time. A server adds
// a "serve" report (its bytes, decoding, update rule, encoding), no static
// power: it shares worker 0's host (docs/train_demo.md).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <type_traits>

#include <unistd.h>
#include <vector>

#include "balance.hpp"
#include "greenreduce/codec/error_feedback.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/collective/allgather.hpp"
#include "greenreduce/collective/barrier.hpp"
#include "greenreduce/collective/ring_allreduce.hpp"
#include "greenreduce/energy/ledger.hpp"
#include "greenreduce/energy/model.hpp"
#include "greenreduce/ps/server.hpp"
#include "greenreduce/ps/worker.hpp"
#include "idx.hpp"
#include "mlp.hpp"
#include "options.hpp"
#include "world.hpp"

namespace greenreduce::examples {

using steady = std::chrono::steady_clock;

inline double since(steady::time_point t0) {
  return std::chrono::duration<double>(steady::now() - t0).count();
}

/// This rank's shard and a reshuffled pass over it, per rank and seed.
class batcher {
 public:
  batcher(const dataset& d, std::vector<std::uint32_t> shard, std::uint64_t seed, int rank)
      : d_(d), idx_(std::move(shard)), gen_(seed * 1000003ULL + static_cast<std::uint64_t>(rank)) {
    if (idx_.empty())
      throw config_error("a rank's data shard is empty: use fewer ranks or more data");
    std::shuffle(idx_.begin(), idx_.end(), gen_);
  }
  /// The next b samples (wrapping into a fresh shuffled pass).
  void next(std::size_t b, fvec& x, std::vector<std::uint8_t>& y) {
    const std::size_t f = d_.features();
    x.resize(b * f);
    y.resize(b);
    for (std::size_t j = 0; j < b; ++j) {
      if (at_ == idx_.size()) {
        std::shuffle(idx_.begin(), idx_.end(), gen_);
        at_ = 0;
      }
      const std::uint32_t i = idx_[at_++];
      std::memcpy(x.data() + j * f, d_.pixels.data() + std::size_t{i} * f, f * sizeof(float));
      y[j] = d_.labels[i];
    }
  }

 private:
  const dataset& d_;
  std::vector<std::uint32_t> idx_;
  std::mt19937_64 gen_;
  std::size_t at_ = 0;
};

/// The fixed shard of `rank`: a seeded permutation of [0, n) cut in `world` pieces.
inline std::vector<std::uint32_t> shard_of(std::size_t n, int world, int rank, std::uint64_t seed) {
  std::vector<std::uint32_t> all(n);
  std::iota(all.begin(), all.end(), 0U);
  std::mt19937_64 gen(seed);
  std::shuffle(all.begin(), all.end(), gen);
  const std::size_t lo = n * static_cast<std::size_t>(rank) / static_cast<std::size_t>(world);
  const std::size_t hi = n * static_cast<std::size_t>(rank + 1) / static_cast<std::size_t>(world);
  return {all.begin() + static_cast<std::ptrdiff_t>(lo),
          all.begin() + static_cast<std::ptrdiff_t>(hi)};
}

/// The learning-rate factor at `progress` in [0, 1] of the run: cosine decay
/// to zero (Loshchilov & Hutter, SGDR, ICLR 2017, without restarts), so the
/// final parameters are not caught mid-oscillation and modes compare fairly.
inline double lr_factor(double progress) {
  constexpr double pi = 3.14159265358979323846;
  return 0.5 * (1.0 + std::cos(pi * std::clamp(progress, 0.0, 1.0)));
}

/// Test accuracy in percent.
inline double evaluate(mlp& m, std::span<const float> params, const dataset& test,
                       std::size_t limit) {
  const std::size_t n = limit ? std::min(limit, test.size()) : test.size();
  std::vector<std::uint8_t> pred(1000);
  std::size_t right = 0;
  for (std::size_t at = 0; at < n; at += 1000) {
    const std::size_t b = std::min<std::size_t>(1000, n - at);
    m.predict(params, test.pixels.data() + at * test.features(), b, pred.data());
    for (std::size_t j = 0; j < b; ++j) right += pred[j] == test.labels[at + j];
  }
  return n ? 100.0 * static_cast<double>(right) / static_cast<double>(n) : 0.0;
}

/// The report of one training step's compute: forward + backward of the MLP
/// (6 x parameters x samples FLOPs: 2 forward, 4 backward) plus the optimizer
/// (4 per parameter), and the memory traffic of parameters, gradient,
/// optimizer state, input and activations.
inline report compute_report(std::size_t params, std::size_t batch, std::size_t features,
                             std::size_t activations, double seconds, bool optimizer) {
  report r;
  r.op = "compute";
  r.algo = "mlp";
  r.seconds = seconds;
  r.compute_ops = 6 * params * batch + (optimizer ? 4 * params : 0);
  r.memory_bytes =
      4 * (3 * params + (optimizer ? 5 * params : 0) + batch * (features + 4 * activations));
  return r;
}

/// One rank's running account of a mode: model-annotated reports and a ledger (rank 0).
class account {
 public:
  account(const energy::model& m, energy::ledger* led, std::string mode)
      : model_(m), led_(led), mode_(std::move(mode)) {
    total_.operations = 0;
  }
  void add(report r, std::uint64_t step) {
    model_.annotate(r);
    if (led_) led_->add(r, mode_ + "/" + std::to_string(step));
    total_ += r;
  }
  const report& total() const noexcept { return total_; }

 private:
  const energy::model& model_;
  energy::ledger* led_;
  std::string mode_;
  report total_;
};

/// What one rank sends to rank 0 after a mode.
struct rank_outcome {
  double wall_s = 0, wire_bytes = 0, samples = 0;
  double compute_s = 0;   ///< gradient computation (a straggler's slowdown included)
  double exchange_s = 0;  ///< pulls, pushes, allreduces, rebalancing: waiting included
  energy_estimate energy;
  std::vector<double> loss;  ///< mean training loss per point (points_per_epoch per epoch)
  fvec params;               ///< rank 0: the trained parameters
  /// PS server ranks: the first step served under SSP after a sync start
  /// (--ps-sync-warmup; from the server's schedule, -1 when there was no
  /// switch) and the updates applied under sync and in all.
  double ps_switch_step = -1, ps_sync_updates = 0, ps_updates = 0;
};

/// Everything a rank's training loop needs, shared by the modes.
struct rank_context {
  const demo_options& opt;
  int rank = 0, world = 1;  ///< worker index (-1 on a server) and number of workers
  const dataset& train;
  std::vector<std::uint32_t> shard;
  fvec init;  ///< initial parameters (same on every rank)
  energy::model model;
  energy::ledger* ledger = nullptr;  ///< worker 0's, or null
  std::size_t steps_per_epoch = 1;
  std::size_t points_per_epoch = 1;
  static constexpr std::size_t rebalance_every = 20;
  /// This rank's measured throughput (samples per second of compute, a
  /// straggler's slowdown included; exponential average), set by train_loop
  /// before every exchange so that an exchange can carry it (train_ring).
  double compute_rate = 0;
};

/// Progress bar of rank 0 on stderr, one line per epoch.
class progress {
 public:
  progress(bool on, std::string mode, int epochs, std::size_t steps)
      : on_(on), tty_(::isatty(2) == 1), mode_(std::move(mode)), epochs_(epochs), steps_(steps) {}
  void update(int epoch, std::size_t step, double loss) {
    if (!on_) return;
    if (step == 0) t0_ = steady::now();
    const std::size_t done = step + 1;
    const bool last = done == steps_;
    if (!last && (!tty_ || done % std::max<std::size_t>(1, steps_ / 40) != 0)) return;
    const double frac = static_cast<double>(done) / static_cast<double>(steps_);
    const double el = since(t0_);
    const double eta = frac > 0 ? el / frac - el : 0;
    const int width = 30, fill = static_cast<int>(frac * width);
    std::fprintf(stderr, "%s%-8s epoch %d/%d [%.*s%*s] %3.0f%% loss %.4f ETA %4.0fs",
                 tty_ ? "\r" : "", mode_.c_str(), epoch + 1, epochs_, fill,
                 "##############################", width - fill, "", 100 * frac, loss, eta);
    if (last) std::fprintf(stderr, " (%.1fs)\n", el);
    std::fflush(stderr);
  }

 private:
  bool on_, tty_;  // not a terminal: one line per epoch, no redraws
  std::string mode_;
  int epochs_;
  std::size_t steps_;
  steady::time_point t0_ = steady::now();
};

/// --link-change: reshapes this worker's egress (eth0 of its bench/netns.sh
/// namespace, where --link started it) to the change's rate at step FROM x
/// steps and back to --link's rate at TO x steps, with netns.sh's tbf
/// settings (burst: 4 ms at the rate, at least 64 KiB; latency 20 ms). Every
/// mode sees the same phases at the same steps. The tc call (a few ms) runs
/// outside the step's compute and exchange timers, inside the mode's wall time.
class link_shaper {
 public:
  link_shaper(const demo_options& o, std::uint64_t total_steps) : o_(o) {
    if (!o.link_change.active()) return;
    const auto at = [&](double f) {
      return static_cast<std::uint64_t>(std::llround(f * static_cast<double>(total_steps)));
    };
    from_ = at(o.link_change.from);
    to_ = at(o.link_change.to);
  }
  link_shaper(const link_shaper&) = delete;
  link_shaper& operator=(const link_shaper&) = delete;
  ~link_shaper() {
    if (changed_) {
      try {
        shape(o_.link);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "train_demo: %s\n", e.what());
      }
    }
  }

  /// Call at the start of every step.
  void at(std::uint64_t step) {
    if (!o_.link_change.active()) return;
    if (step == from_ && !changed_) {
      shape(o_.link_change.rate);
      changed_ = true;
    } else if (step == to_ && changed_) {
      shape(o_.link);
      changed_ = false;
    }
  }

 private:
  static void shape(const std::string& rate) {
    const double burst = std::max(65536.0, 0.004 * tc_rate_bytes(rate));
    const std::string cmd = detail::str("tc qdisc change dev eth0 root tbf rate ", rate, " burst ",
                                        static_cast<long long>(burst), " latency 20ms");
    const int rc = std::system(cmd.c_str());
    if (rc != 0)
      throw config_error(detail::str("--link-change: \"", cmd, "\" failed (status ", rc,
                                     "); it runs as root inside bench/netns.sh's namespaces"));
  }

  const demo_options& o_;
  std::uint64_t from_ = 0, to_ = 0;
  bool changed_ = false;
};

/// The loop every mode shares. `exchange(grad, b, step)` moves the gradient
/// and updates the parameters; `fetch(params, step)` refreshes them first
/// (PS pull; a no-op for the ring); `rebalance(rate, step) -> batch` returns
/// this rank's new batch size.
template <class Fetch, class Exchange, class Rebalance>
void train_loop(rank_context& c, const std::string& mode, bool local_optimizer, account& acc,
                fvec& params, rank_outcome& out, Fetch fetch, Exchange exchange,
                Rebalance rebalance) {
  mlp net;
  const std::size_t P = net.parameter_count();
  batcher data(c.train, c.shard, c.opt.seed, c.rank);
  fvec grad(P), x;
  std::vector<std::uint8_t> y;
  std::size_t b = static_cast<std::size_t>(c.opt.batch);
  double rate = 0;
  progress bar(c.opt.progress && c.rank == 0, mode, c.opt.epochs, c.steps_per_epoch);
  out.loss.assign(static_cast<std::size_t>(c.opt.epochs) * c.points_per_epoch, 0.0);
  const bool slow = c.opt.straggler.rank == c.rank && c.opt.straggler.factor > 1.0;
  std::uint64_t step = 0;
  std::vector<double> point_sum(c.points_per_epoch), point_n(c.points_per_epoch);
  link_shaper shaper(c.opt, static_cast<std::uint64_t>(c.steps_per_epoch) *
                                static_cast<std::uint64_t>(c.opt.epochs));
  for (int e = 0; e < c.opt.epochs; ++e) {
    double epoch_sum = 0;
    std::fill(point_sum.begin(), point_sum.end(), 0.0);
    std::fill(point_n.begin(), point_n.end(), 0.0);
    for (std::size_t s = 0; s < c.steps_per_epoch; ++s, ++step) {
      shaper.at(step);
      const auto f0 = steady::now();
      fetch(params, step);
      const auto t0 = steady::now();
      out.exchange_s += std::chrono::duration<double>(t0 - f0).count();
      data.next(b, x, y);
      const float loss = net.loss_and_gradient(params, x.data(), y.data(), b, grad);
      const double work_s = since(t0);
      // The slow node: its compute takes factor x as long, and no longer. A
      // plain sleep overshoots on a loaded host (the wait for a core after
      // waking: at factor 2 and load 15 a step took about 5x as long), so it
      // sleeps until 1 ms before the end and spins the rest, busy as a slow
      // CPU is.
      if (slow) {
        const auto until = t0 + std::chrono::duration_cast<steady::duration>(
                                    std::chrono::duration<double>(c.opt.straggler.factor * work_s));
        if (until - steady::now() > std::chrono::milliseconds(2))
          std::this_thread::sleep_until(until - std::chrono::milliseconds(1));
        while (steady::now() < until) {
        }
      }
      const double compute_s = since(t0);
      out.compute_s += compute_s;
      acc.add(compute_report(P, b, c.train.features(), 64 + 32 + 10, compute_s, local_optimizer),
              step);
      out.samples += static_cast<double>(b);
      const double r = static_cast<double>(b) / std::max(compute_s, 1e-9);
      rate = rate == 0 ? r : 0.7 * rate + 0.3 * r;
      c.compute_rate = rate;
      const auto x0 = steady::now();
      exchange(grad, b, step);
      out.exchange_s += since(x0);
      if (c.opt.balance && (step + 1) % rank_context::rebalance_every == 0)
        b = rebalance(rate, step);
      const std::size_t point = s * c.points_per_epoch / c.steps_per_epoch;
      point_sum[point] += loss;
      point_n[point] += 1;
      epoch_sum += loss;
      bar.update(e, s, epoch_sum / static_cast<double>(s + 1));
    }
    for (std::size_t q = 0; q < c.points_per_epoch; ++q)
      out.loss[static_cast<std::size_t>(e) * c.points_per_epoch + q] =
          point_n[q] > 0 ? point_sum[q] / point_n[q] : 0.0;
  }
}

/// Untimed warm-up before the first mode (connections, caches, allocator),
/// so that the first mode is not charged for what every later one gets free.
template <class Transport>
void warm_up(rank_context& c, Transport& t) {
  mlp net;
  batcher data(c.train, c.shard, c.opt.seed + 7, c.rank);
  fvec grad(c.init.size()), x;
  std::vector<std::uint8_t> y;
  collective::ring_allreduce<codec::none, Transport> ring(t, grad.size());
  for (int i = 0; i < 20; ++i) {
    data.next(static_cast<std::size_t>(c.opt.batch), x, y);
    net.loss_and_gradient(c.init, x.data(), y.data(), static_cast<std::size_t>(c.opt.batch), grad);
    ring.run(grad, collective::reduce_op::average);
  }
  collective::barrier(t);
}

/// Ring modes: allreduce with Codec. `rank_ef` (sparse codecs: top-k) adds
/// error feedback on each rank's whole gradient with Deep Gradient
/// Compression's momentum correction (Lin et al., ICLR 2018): the momentum is
/// kept per rank, u = m u + g; e = r + u is sparsified with Codec, r keeps what
/// was dropped, u is zeroed where e was sent (momentum factor masking), and
/// the allreduced sparse e is applied without a second momentum.
template <class Codec>
rank_outcome train_ring(rank_context& c, demo_world& world, const std::string& mode, Codec codec,
                        bool chunk_ef, bool rank_ef) {
  rank_outcome out;
  if (world.is_server()) return out;  // the ring is the workers' alone
  using Transport = rank_range<transport::tcp>;
  Transport& t = world.workers;
  account acc(c.model, c.ledger, mode);
  fvec params = c.init, velocity(c.init.size(), 0.0F);
  const std::size_t P = params.size();
  collective::ring_options ro;
  ro.error_feedback = chunk_ef;
  ro.seed = c.opt.seed;
  ro.keep_input = false;
  // --balance: with an exact codec the rates ride in the gradient's own
  // allreduce, np slots after the gradient; lossy codecs allgather them
  // (balance.hpp says why).
  constexpr bool exact = std::is_same_v<Codec, codec::none>;
  const bool carry_rates = exact && c.opt.balance;
  const std::size_t slots = carry_rates ? static_cast<std::size_t>(c.world) : 0;
  fvec wide(carry_rates ? P + slots : 0);
  std::vector<double> rates(static_cast<std::size_t>(c.world), 0.0);
  collective::ring_allreduce<Codec, Transport> ring(t, P + slots, codec, ro);
  std::optional<codec::error_feedback<Codec>> ef;
  byte_buffer frame;
  rng g(c.opt.seed, static_cast<std::uint64_t>(c.rank));
  if constexpr (codec::sparse_codec<Codec>) {
    if (rank_ef) {
      ef.emplace(codec, P);
      frame.resize(codec.max_encoded_bytes(P));
    }
  }
  collective::allgather<Transport> rates_ag(t, sizeof(double));
  std::vector<std::size_t> batches(static_cast<std::size_t>(c.world),
                                   static_cast<std::size_t>(c.opt.batch));
  const auto m = static_cast<float>(c.opt.momentum);
  const auto w = static_cast<float>(c.world);
  const double total_steps = static_cast<double>(c.steps_per_epoch) * c.opt.epochs;

  collective::barrier(t);
  const auto start = steady::now();
  const std::uint64_t wire0 = t.bytes_sent() + t.bytes_received();
  train_loop(
      c, mode, true, acc, params, out, [](fvec&, std::uint64_t) {},
      [&](fvec& grad, std::size_t b, std::uint64_t step) {
        const std::size_t total = std::accumulate(batches.begin(), batches.end(), std::size_t{0});
        const float weight = static_cast<float>(b) * w / static_cast<float>(total);
        if (weight != 1.0F)
          for (float& v : grad) v *= weight;
        report extra;
        if constexpr (codec::sparse_codec<Codec>) {
          if (ef) {
            for (std::size_t i = 0; i < P; ++i) velocity[i] = m * velocity[i] + grad[i];
            const std::size_t len = ef->encode(velocity, frame, g);
            codec.decode(std::span<const std::byte>(frame.data(), len), grad);
            for (std::size_t i = 0; i < P; ++i)
              if (grad[i] != 0.0F) velocity[i] = 0.0F;
            const auto ew = codec.encode_work(P), dw = codec.decode_work(P);
            extra.memory_bytes = ew.memory_bytes + dw.memory_bytes;
            extra.compute_ops = ew.ops + dw.ops;
          }
        }
        report r;
        if (carry_rates) {
          std::copy(grad.begin(), grad.end(), wide.begin());
          const auto tail = std::span<float>(wide).subspan(P);
          put_rate(tail, c.rank, c.compute_rate);
          r = ring.run(wide, collective::reduce_op::average);
          std::copy(wide.begin(), wide.begin() + static_cast<std::ptrdiff_t>(P), grad.begin());
          take_rates(tail, c.world, rates);
        } else {
          r = ring.run(grad, collective::reduce_op::average);
        }
        r.memory_bytes += extra.memory_bytes;
        r.compute_ops += extra.compute_ops;
        acc.add(r, step);
        const auto lr =
            static_cast<float>(c.opt.lr * lr_factor(static_cast<double>(step) / total_steps));
        if (ef) {
          for (std::size_t i = 0; i < P; ++i) params[i] -= lr * grad[i];
        } else {
          for (std::size_t i = 0; i < P; ++i) {
            velocity[i] = m * velocity[i] + grad[i];
            params[i] -= lr * velocity[i];
          }
        }
      },
      [&](double rate, std::uint64_t step) {
        if (!carry_rates) {
          report r;
          r.op = "allgather";
          r.algo = "rates";
          const std::uint64_t s0 = t.bytes_sent(), r0 = t.bytes_received();
          const auto a0 = steady::now();
          const auto all = rates_ag.run(std::as_bytes(std::span<const double>(&rate, 1)));
          for (std::size_t q = 0; q < all.size(); ++q) std::memcpy(&rates[q], all[q].data(), 8);
          r.bytes_sent = t.bytes_sent() - s0;
          r.bytes_received = t.bytes_received() - r0;
          r.seconds = since(a0);
          acc.add(r, step);
        }
        batches = balanced_batches(rates, c.opt.batch, std::move(batches));
        return batches[static_cast<std::size_t>(c.rank)];
      });
  out.wire_bytes = static_cast<double>(t.bytes_sent() + t.bytes_received() - wire0);
  collective::barrier(t);
  out.wall_s = since(start);
  report idle;
  idle.op = "idle";
  idle.seconds = std::max(0.0, out.wall_s - acc.total().seconds);
  acc.add(idle, c.steps_per_epoch * static_cast<std::size_t>(c.opt.epochs));
  out.energy = acc.total().energy;
  if (c.rank == 0) out.params = std::move(params);
  return out;
}

/// The PS keys: the parameter vector cut into one contiguous key per server
/// (one fused key per step when there is one server), as bench/ps_bench.hpp.
inline std::vector<ps::key_spec> ps_keys(std::size_t n, int servers) {
  std::vector<ps::key_spec> keys;
  const auto S = static_cast<std::size_t>(servers);
  for (std::size_t s = 0; s < S; ++s)
    keys.push_back({"params" + std::to_string(s), n * (s + 1) / S - n * s / S});
  return keys;
}

/// How a PS mode trains; the modes differ in codecs and these switches.
struct ps_setup {
  bool encoded_pull = false;  ///< pulls come back encoded with the PullCodec
  /// Pull every `pull_every` steps and train on the cached copy in between
  /// (SSP's cached reads, Ho et al. 2013: a read may be up to the staleness
  /// bound old); 1 = pull before every step.
  int pull_every = 1;
};

/// PS modes: ranks [0, servers) run ps::server on their own process, the
/// workers a ps::worker each; bounded staleness (SSP) with the demo's bound.
/// The server applies SGD with momentum at lr / np per push on the ring's
/// cosine schedule (indexed by the key's update count), so a round of np
/// pushes moves the parameters as far as one sync step.
template <class PushCodec, class PullCodec>
rank_outcome train_ps(rank_context& c, demo_world& world, const std::string& mode,
                      PushCodec push_codec, PullCodec pull_codec, ps_setup setup) {
  using tcp = transport::tcp;
  rank_outcome out;
  account acc(c.model, c.ledger, mode);
  tcp& t = world.all;
  const std::size_t P = c.init.size();
  const auto keys = ps_keys(P, world.servers);
  const ps::roles roles(world.servers, t.size());
  const std::uint64_t end_step = c.steps_per_epoch * static_cast<std::size_t>(c.opt.epochs);
  // --ps-push-every K: a worker pulls, computes K gradients on those
  // parameters and pushes their sum, so the PS sees `rounds` pushes per
  // worker (its "steps"), each worth K steps of data.
  const auto K = static_cast<std::uint64_t>(c.opt.ps_push_every);
  const std::uint64_t rounds = (end_step + K - 1) / K;
  const std::uint64_t pull_every = static_cast<std::uint64_t>(setup.pull_every) * K;
  // --ps-sync-warmup: the first `sync_steps` steps in sync consistency (every
  // worker's gradient of a step averaged into one update, as the ring's sync
  // does), then SSP, scheduled by the workers via change_consistency.
  const std::uint64_t sync_steps = ps_sync_steps(c.opt.ps_sync_warmup, c.steps_per_epoch, end_step);
  const std::uint64_t sync_rounds = std::min(rounds, (sync_steps + K - 1) / K);
  const auto ssp = ps::consistency::bounded_staleness(static_cast<std::uint32_t>(c.opt.staleness));
  ps::ps_options po;
  po.mode = sync_rounds > 0 ? ps::consistency::sync() : ssp;
  po.timeout = std::chrono::milliseconds(120000);

  if (world.is_server()) {
    // Momentum. Asynchrony adds momentum of its own: with np workers about
    // 1 - 1/np per update (Mitliagkas et al., "Asynchrony begets momentum",
    // 2016), so the PS uses the explicit momentum m_ps = max(0, m - (1 - 1/np))
    // per step and keeps the steady-state step lr / (1 - m) of sync:
    // lr_ps = lr (1 - m_ps) / (1 - m). (Measured here with 4 workers: explicit
    // 0.9 lost about a point to sync, 0.15-0.7 about 0.6-0.9.) Then per push,
    // since np pushes make a step: m' = m_ps^(1/np), so momentum decays over
    // the same number of steps as in sync, and lr' = lr_ps (1 - m') /
    // (np (1 - m_ps)), so a steady gradient moves the parameters as far per
    // round of np pushes as per step.
    const double m = c.opt.momentum;
    const double m_ps = std::max(0.0, m - (1.0 - 1.0 / c.world));
    const double lr_ps = c.opt.lr * (1 - m_ps) / (1 - m);
    const double m_push = std::pow(m_ps, 1.0 / c.world);
    const double lr0 = m_ps > 0 ? lr_ps * (1 - m_push) / (c.world * (1 - m_ps)) : lr_ps / c.world;
    const auto mom = static_cast<float>(m_push);
    // Warm-up (Goyal et al., "Accurate, Large Minibatch SGD", 2017): without
    // a sync start the learning rate ramps up linearly over the first 5% of
    // the updates. The compensated rate is 8.5 x sync's with 4 workers, and at
    // the start every worker pushes gradients of nearly the same parameters;
    // without the ramp a run over shaped links (bench/netns.sh, 1gbit) killed
    // the network within its first 50 steps (loss stuck at ln 10, 10%
    // accuracy). A sync start needs no ramp: it is the ring's sync rule.
    const double async_updates = static_cast<double>(rounds - sync_rounds) * c.world;
    const double warmup = sync_rounds > 0 ? 0.0 : std::max(1.0, async_updates / 20);
    const auto sync_lr = static_cast<float>(c.opt.lr);
    const auto sync_mom = static_cast<float>(m);
    const auto T = static_cast<double>(sync_rounds);
    const auto np = static_cast<double>(c.world);
    const auto total = static_cast<double>(rounds);
    // At the switch the velocity is rescaled so that a steady gradient keeps
    // moving the parameters as far per step: sync moves them lr v per step,
    // SSP lr0 v' per push (np pushes a step), so v' = v lr / (np lr0).
    const auto rescale = static_cast<float>(c.opt.lr / (c.world * lr0));
    // Rule state the server does not keep: per key, whether the switch
    // happened; the sync updates applied (for the outcome).
    struct rule_log {
      std::vector<char> switched;
      std::uint64_t sync_updates = 0;
    };
    auto rlog = std::make_shared<rule_log>();
    rlog->switched.assign(keys.size(), 0);
    const ps::update_rule rule{
        1, [=](const ps::update_context& ctx, std::span<float> p, std::span<const float> g,
               std::span<float> v) {
          const auto u = static_cast<double>(ctx.step);
          if (ctx.worker < 0) {  // a sync step: the mean of every worker's gradient
            ++rlog->sync_updates;
            const auto lr = static_cast<float>(sync_lr * lr_factor(u / total));
            for (std::size_t i = 0; i < p.size(); ++i) {
              v[i] = sync_mom * v[i] + g[i];
              p[i] -= lr * v[i];
            }
            return;
          }
          if (T > 0 && !rlog->switched[ctx.key]) {
            rlog->switched[ctx.key] = 1;
            for (float& x : v) x *= rescale;
          }
          // Progress in steps: T sync updates, then np pushes per step.
          const double at = T + (u - T) / np;
          const double ramp = warmup > 0 ? std::min(1.0, (u - T + 1) / warmup) : 1.0;
          const auto lr = static_cast<float>(ramp * lr0 * lr_factor(at / total));
          for (std::size_t i = 0; i < p.size(); ++i) {
            v[i] = mom * v[i] + g[i];
            p[i] -= lr * v[i];
          }
        }};
    ps::server<tcp, PushCodec, PullCodec> srv(
        t, roles, keys, rule, po, push_codec, pull_codec, [](std::string_view line) {
          std::fprintf(stderr, "[ps server] %.*s\n", static_cast<int>(line.size()), line.data());
        });
    const auto& mine = srv.layout().keys_of[static_cast<std::size_t>(t.rank())];
    std::size_t off = 0;
    for (std::size_t k = 0; k < keys.size(); off += keys[k].length, ++k)
      if (std::find(mine.begin(), mine.end(), k) != mine.end())
        srv.init(keys[k].name, std::span<const float>(c.init).subspan(off, keys[k].length));
    collective::barrier(t);
    const auto start = steady::now();
    const std::uint64_t s0 = t.bytes_sent(), r0 = t.bytes_received();
    srv.run();
    out.wall_s = since(start);
    // The server's account: its socket bytes, per push the decode of the
    // frame, per update the update rule (4 ops, 20 bytes per element: p, g, v
    // read, p, v written), per pull the encode of the reply. Its host is worker 0's
    // (see docs/train_demo.md), whose static power already covers this time.
    const auto st = srv.stats();
    for (const auto& [from, mode] : srv.schedule())
      if (from > 0 && mode.mode != ps::consistency::kind::sync)
        out.ps_switch_step = static_cast<double>(from);
    out.ps_updates = static_cast<double>(st.updates);
    out.ps_sync_updates = static_cast<double>(rlog->sync_updates);
    std::uint64_t len = 0;
    for (std::size_t k : mine) len += keys[k].length;
    const std::uint64_t updates = st.updates;  // a sync step is one update of np pushes
    const std::uint64_t pushes =
        std::accumulate(st.pushes_applied.begin(), st.pushes_applied.end(), std::uint64_t{0});
    const std::uint64_t pulls =
        static_cast<std::uint64_t>(c.world) * ((end_step + pull_every - 1) / pull_every);
    const codec::work dec = push_codec.decode_work(len);
    const codec::work enc =
        setup.encoded_pull ? pull_codec.encode_work(len) : codec::none{}.encode_work(len);
    report srv_r;
    srv_r.op = "serve";
    srv_r.algo = "ps";
    srv_r.bytes_sent = t.bytes_sent() - s0;
    srv_r.bytes_received = t.bytes_received() - r0;
    // A sync step also sums its np gradients first (agg, g read, agg written).
    const std::uint64_t summed = pushes - (updates - rlog->sync_updates);
    srv_r.memory_bytes = pushes * dec.memory_bytes + updates * 20 * len + summed * 12 * len +
                         pulls * enc.memory_bytes;
    srv_r.compute_ops = pushes * dec.ops + updates * 4 * len + summed * len + pulls * enc.ops;
    c.model.annotate(srv_r);
    out.energy = srv_r.energy;
    out.wire_bytes = static_cast<double>(srv_r.wire_bytes());
    // Worker 0 evaluates the server's parameters, sent outside the timed part.
    for (std::size_t k : mine) {
      const auto p = srv.params(keys[k].name);
      t.send(world.lead(), std::as_bytes(std::span<const float>(p)));
    }
    return out;
  }

  fvec params = c.init;
  ps::worker_options wo;
  wo.encoded_pull = setup.encoded_pull;
  wo.seed = c.opt.seed;
  ps::worker<tcp, PushCodec, PullCodec> wk(t, roles, keys, wo, push_codec, pull_codec);
  const auto global = static_cast<double>(c.opt.batch) * c.world;
  const auto each_key = [&](auto&& f) {
    std::size_t off = 0;
    for (const auto& k : keys) {
      f(k, off);
      off += k.length;
    }
  };
  collective::barrier(t);
  const auto start = steady::now();
  const std::uint64_t sent0 = t.bytes_sent(), recv0 = t.bytes_received();
  if (sync_rounds > 0 && sync_rounds < rounds) {
    // Every worker asks for the same change (each is accepted); none can have
    // pushed step sync_rounds yet, since a sync step completes only once all
    // pushed it.
    const std::uint64_t at = wk.change_consistency(ssp, sync_rounds);
    if (at != sync_rounds)
      throw mismatch_error(greenreduce::detail::str(
          "the PS scheduled ", ssp.to_string(), " from step ", at, ", asked for ", sync_rounds));
  }
  fvec sum(K > 1 ? P : 0, 0.0F);
  std::size_t summed = 0;  // samples in `sum`
  // Pulling before every round: each push brings the next round's parameters
  // back in its reply (worker::push_pull), one round trip a step, not two.
  const bool fused = setup.pull_every == 1;
  train_loop(
      c, mode, false, acc, params, out,
      [&](fvec& p, std::uint64_t step) {
        if (step % pull_every != 0 || (fused && step > 0)) return;
        each_key([&](const ps::key_spec& k, std::size_t off) {
          acc.add(wk.pull(k.name, std::span<float>(p).subspan(off, k.length)), step);
        });
      },
      [&](fvec& grad, std::size_t b, std::uint64_t step) {
        const float weight = static_cast<float>(b) / static_cast<float>(c.opt.batch);
        if (weight != 1.0F)
          for (float& v : grad) v *= weight;
        if (K > 1) {
          for (std::size_t i = 0; i < P; ++i) sum[i] += grad[i];
          summed += b;
          if ((step + 1) % K != 0 && step + 1 != end_step) return;
        }
        const fvec& g = K > 1 ? sum : grad;
        wk.set_samples(static_cast<std::uint32_t>(K > 1 ? summed : b));
        each_key([&](const ps::key_spec& k, std::size_t off) {
          const auto gk = std::span<const float>(g).subspan(off, k.length);
          acc.add(fused ? wk.push_pull(k.name, gk, std::span<float>(params).subspan(off, k.length))
                        : wk.push(k.name, gk),
                  step);
        });
        if (K > 1) {
          std::fill(sum.begin(), sum.end(), 0.0F);
          summed = 0;
        }
      },
      [&](double, std::uint64_t step) {
        report r;
        r.op = "shares";
        r.algo = "ps";
        const std::uint64_t s0 = t.bytes_sent(), r0 = t.bytes_received();
        const auto a0 = steady::now();
        const auto sh = wk.shares();
        r.seconds = since(a0);
        r.bytes_sent = t.bytes_sent() - s0;
        r.bytes_received = t.bytes_received() - r0;
        acc.add(r, step);
        return std::max<std::size_t>(1, static_cast<std::size_t>(std::lround(
                                            global * sh[static_cast<std::size_t>(wk.index())])));
      });
  wk.finish();
  out.wire_bytes = static_cast<double>(t.bytes_sent() - sent0 + t.bytes_received() - recv0);
  collective::barrier(world.workers);
  out.wall_s = since(start);
  report idle;
  idle.op = "idle";
  idle.seconds = std::max(0.0, out.wall_s - acc.total().seconds);
  acc.add(idle, end_step);
  out.energy = acc.total().energy;
  if (world.is_lead()) {
    // The servers' final parameters, key by key (after every worker's bye).
    each_key([&](const ps::key_spec& k, std::size_t off) {
      const int owner = roles.server_rank(wk.layout().owner[&k - keys.data()]);
      const std::size_t n =
          t.recv(owner, std::as_writable_bytes(std::span<float>(params).subspan(off, k.length)));
      if (n != 4 * k.length)
        throw peer_error(greenreduce::detail::str("server rank ", owner, " sent ", n,
                                                  " bytes of key ", k.name, ", expected ",
                                                  4 * k.length));
    });
    out.params = std::move(params);
  }
  return out;
}

}  // namespace greenreduce::examples
