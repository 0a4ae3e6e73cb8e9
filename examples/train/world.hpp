// examples/train/world.hpp — the processes of one demo run and the workers' view of them.
//
// A run is one TCP world of `servers + np` processes, as greenreduce-bench
// --algo ps lays it out (bench/ps_bench.hpp, ps::roles): ranks [0, servers)
// are parameter servers, ranks [servers, servers + np) the np training
// workers. `servers` is 1 when a parameter-server mode is on the list, else 0.
//
// The ring modes, the warm-up and the workers' barriers run on `workers`, a
// view of the worker ranks renumbered from 0 (rank_range): the servers take no
// part in them and see none of their messages. The PS modes use the whole
// world: every server runs ps::server::run() single-threaded on its own
// process (docs/parameter_server.md), every worker a ps::worker. Each process
// drives its transport from one thread.
#pragma once

#include <cstdint>
#include <span>

#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/concept.hpp"
#include "greenreduce/transport/tcp.hpp"

namespace greenreduce::examples {

/// Ranks [first, base.size()) of `base` as a transport of their own, ranks
/// renumbered from 0. Every call forwards to `base`; the byte counters are
/// the base's (a process uses one view at a time, so differences over a call
/// are that call's bytes).
template <transport::transport Base>
class rank_range {
 public:
  using send_request = typename Base::send_request;
  using recv_request = typename Base::recv_request;

  rank_range(Base& base, int first) : base_(base), first_(first) {
    if (first < 0 || base.rank() < first || first >= base.size())
      throw config_error(greenreduce::detail::str("rank_range: rank ", base.rank(), " of ",
                                                  base.size(), " is not in [", first, ", ",
                                                  base.size(), ")"));
  }

  int rank() const noexcept { return base_.rank() - first_; }
  int size() const noexcept { return base_.size() - first_; }

  send_request isend(int peer, std::span<const std::byte> bytes) {
    return base_.isend(map(peer), bytes);
  }
  recv_request irecv(int peer, std::span<std::byte> buffer) {
    return base_.irecv(map(peer), buffer);
  }
  void wait(send_request& r) { base_.wait(r); }
  std::size_t wait(recv_request& r) { return base_.wait(r); }
  void send(int peer, std::span<const std::byte> bytes) { base_.send(map(peer), bytes); }
  std::size_t recv(int peer, std::span<std::byte> buffer) { return base_.recv(map(peer), buffer); }
  std::size_t sendrecv(int dst, std::span<const std::byte> out, int src, std::span<std::byte> in) {
    return base_.sendrecv(map(dst), out, map(src), in);
  }
  std::uint64_t bytes_sent() const noexcept { return base_.bytes_sent(); }
  std::uint64_t bytes_received() const noexcept { return base_.bytes_received(); }

 private:
  int map(int peer) const {
    if (peer < 0 || peer >= size())
      throw config_error(
          greenreduce::detail::str("rank_range: peer ", peer, " is not in [0, ", size(), ")"));
    return peer + first_;
  }

  Base& base_;
  int first_;
};

/// This process's place in the run.
struct demo_world {
  transport::tcp& all;                 ///< servers + workers
  int servers = 0;                     ///< ranks [0, servers) serve, the rest train
  rank_range<transport::tcp> workers;  ///< the workers, renumbered from 0 (servers: unused)

  demo_world(transport::tcp& t, int s) : all(t), servers(s), workers(t, t.rank() < s ? 0 : s) {}
  bool is_server() const noexcept { return all.rank() < servers; }
  int np() const noexcept { return all.size() - servers; }
  /// The worker that evaluates and prints (worker 0).
  int lead() const noexcept { return servers; }
  bool is_lead() const noexcept { return all.rank() == servers; }
};

}  // namespace greenreduce::examples
