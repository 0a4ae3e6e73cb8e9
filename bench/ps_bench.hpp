// bench/ps_bench.hpp — the parameter-server driver of greenreduce-bench (--algo ps).
//
// Ranks [0, S) are servers (--servers S), the rest workers. For every size and
// codec a fresh set of servers and workers serves one tensor of `size` bytes
// split into S keys of about size/S bytes (placement puts one on each server).
// One iteration of a worker pushes every key (encoded with the codec; error
// feedback only with --error-feedback) and pulls every key back as fp32. The
// server rule replaces the parameters with the (mean) gradient, so in sync
// mode a pull returns the average of the workers' inputs: the same reference
// as the ring's --op average check. Async and SSP rows are not checked
// (wrong = -1) because their result depends on arrival order.
//
// Columns: time = mean over workers of one iteration's push+pull seconds;
// algbw = size / time; busbw = 2 * algbw (a worker sends and receives `size`);
// wire = bytes_sent + bytes_received of worker 0 in one iteration; raw = 4n
// (the gradient) and ratio = raw / worker 0's push bytes_sent. Workers send
// their figures to rank 0, which prints. Energy (a model estimate): every
// worker's push+pull reports plus every server's totals() spread evenly over
// the warm-up and timed iterations it served.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "check.hpp"
#include "greenreduce/core/report.hpp"
#include "greenreduce/energy/model.hpp"
#include "greenreduce/ps/server.hpp"
#include "greenreduce/ps/worker.hpp"

namespace greenreduce::bench {

struct ps_config {
  int servers = 1;
  ps::consistency mode = ps::consistency::sync();
  int iters = 20;
  int warmup = 5;
  bool check = false;
  bool error_feedback = false;
  std::uint64_t seed = 1;
  energy::model energy;
};

/// What one worker measured for one (size, codec); sent to rank 0.
struct ps_figures {
  double seconds = 0;  // sum over the timed iterations
  std::uint64_t wire = 0, raw = 0, sent = 0;
  std::int64_t wrong = -1;
  double joules = 0;  // estimated, sum over the timed iterations
};

/// Rank 0's view of one (size, codec).
struct ps_result {
  std::vector<ps_figures> workers;  // index = worker
  double server_joules = 0;         // estimated, all servers, per iteration
};

inline std::vector<ps::key_spec> ps_keys(std::size_t n, int servers) {
  std::vector<ps::key_spec> keys;
  const auto S = static_cast<std::size_t>(servers);
  for (std::size_t s = 0; s < S; ++s) {
    const std::size_t lo = n * s / S, hi = n * (s + 1) / S;
    keys.push_back({detail::str("g", s), hi - lo});
  }
  return keys;
}

/// One (size, codec) on this rank; rank 0 returns the figures, every other
/// rank an empty result.
template <class Transport, class Codec>
ps_result ps_run_one(Transport& t, const ps_config& c, std::size_t n, const Codec& codec) {
  const ps::roles roles(c.servers, t.size());
  const auto keys = ps_keys(n, c.servers);
  ps::ps_options opt;
  opt.mode = c.mode;
  ps_result all;
  if (roles.is_server(t.rank())) {
    auto rule = ps::update_rule::custom(
        [](const ps::update_context&, std::span<float> p, std::span<const float> g) {
          std::copy(g.begin(), g.end(), p.begin());
        });
    double joules = 0;
    {
      ps::server<Transport, Codec> srv(t, roles, keys, rule, opt, codec);
      srv.run();
      joules = srv.totals(c.energy).energy.total_j() / static_cast<double>(c.warmup + c.iters);
    }
    if (t.rank() != 0) {
      t.send(0, std::as_bytes(std::span<const double>(&joules, 1)));
      return all;
    }
    all.server_joules = joules;
    for (int s = 1; s < roles.servers; ++s) {
      double j = 0;
      t.recv(s, std::as_writable_bytes(std::span<double>(&j, 1)));
      all.server_joules += j;
    }
    all.workers.resize(static_cast<std::size_t>(roles.workers()));
    for (int w = 0; w < roles.workers(); ++w)
      t.recv(roles.worker_rank(w), std::as_writable_bytes(std::span<ps_figures>(
                                       &all.workers[static_cast<std::size_t>(w)], 1)));
    return all;
  }
  ps::worker_options wo;
  wo.energy = c.energy;
  wo.error_feedback = c.error_feedback;
  wo.seed = c.seed;
  ps_figures fig;
  {
    ps::worker<Transport, Codec> wk(t, roles, keys, wo, codec);
    const int w = wk.index();
    std::vector<float> input(n), out(n);
    fill_input(input, c.seed, w);
    const auto iteration = [&](report& push, report& pull) {
      std::size_t off = 0;
      for (const auto& k : keys) {
        const auto r = wk.push(k.name, std::span<const float>(input).subspan(off, k.length));
        push.seconds += r.seconds;
        push.bytes_sent += r.bytes_sent;
        push.bytes_received += r.bytes_received;
        push.raw_bytes += r.raw_bytes;
        push.energy += r.energy;
        off += k.length;
      }
      off = 0;
      for (const auto& k : keys) {
        const auto r = wk.pull(k.name, std::span<float>(out).subspan(off, k.length));
        pull.seconds += r.seconds;
        pull.bytes_sent += r.bytes_sent;
        pull.bytes_received += r.bytes_received;
        pull.energy += r.energy;
        off += k.length;
      }
    };
    for (int i = 0; i < c.warmup; ++i) {
      report a, b;
      iteration(a, b);
    }
    for (int i = 0; i < c.iters; ++i) {
      report push, pull;
      iteration(push, pull);
      fig.seconds += push.seconds + pull.seconds;
      fig.wire = push.bytes_sent + push.bytes_received + pull.bytes_sent + pull.bytes_received;
      fig.raw = push.raw_bytes;
      fig.sent = push.bytes_sent;
      fig.joules += push.energy.total_j() + pull.energy.total_j();
    }
    if (c.check && c.mode.mode == ps::consistency::kind::sync)
      fig.wrong = static_cast<std::int64_t>(count_wrong(codec, out, c.seed, roles.workers(), true));
    wk.finish();
  }
  t.send(0, std::as_bytes(std::span<const ps_figures>(&fig, 1)));
  return all;
}

}  // namespace greenreduce::bench
