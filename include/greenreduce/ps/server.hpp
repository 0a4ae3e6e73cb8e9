// greenreduce/ps/server.hpp — one shard of the parameter server.
//
// A server holds the fp32 parameters (and update-rule state) of the keys the
// placement gives it (ps/placement.hpp), receives pushes from every worker,
// applies the update rule as the consistency mode says (ps/options.hpp),
// answers pulls, and measures each worker's throughput to offer batch shares.
//
// Threads. run() drives the transport from the calling thread alone: it keeps
// one receive posted per worker and waits on all of them with the transport's
// pollable capability (transport/concept.hpp: wait_any, test, cancel), handles
// whichever request arrived, replies, and re-posts. Liveness is the server's
// own rule, not a transport timeout: a worker silent (no request in flight)
// for longer than ps_options::timeout is dropped, checked at least every
// timeout/8. The transport must isolate peer failures (tcp_options /
// inproc_options::isolate_peer_failures), so a dead worker fails only its own
// operations (see docs/parameter_server.md). params(), shares(), stats() and
// totals() may be called from other threads.
//
// Accounting. totals() is a report of the server's own work since run()
// began (op "ps_server"): the bytes its transport moved, its wall time, and
// the memory traffic and arithmetic of decoding pushes, aggregating, applying
// the update rule (counted as reading and writing the parameters, the
// gradient and the rule's state once each, one operation per value: an
// estimate for a user-supplied rule) and encoding pulls; energy from the model
// passed to totals(), so a parameter-server run's joules include its servers.
//
// Mode changes. The consistency mode is a schedule: ps_options::mode from
// step 0, then every change accepted since, each "mode M from step T". A push
// of step t is served under the mode in force at t, on every key, whichever
// worker pushed it, so all workers see the same behaviour at the same step.
// A change is asked for by a worker (worker::change_consistency, a mode
// request) or by the server's owner (change_consistency()). It is accepted
// when no worker has pushed step T of any of this server's keys yet (T = 0
// asks for the earliest such step), and T is after every change already
// scheduled; asking again for a change already scheduled is accepted as is,
// so every worker may send the same decision. Otherwise: config_error
// (invalid_change: T already reached, a malformed mode) or mismatch_error
// (out_of_step: another change is scheduled at or after T). At the boundary
// nothing is lost: sync -> SSP/async applies once step T-1 completed for
// everyone (a sync push blocks until then); SSP/async -> sync applies the pushes
// of steps < T on arrival as before, and step T once every live worker pushed
// it. Several servers: ask each with the same T (the worker does), which each
// accepts while no worker reached T on its keys.
//
// Invariants. A request is validated entirely (header, key, length, codec,
// frame) before any state changes; a rejected request leaves the parameters
// as they were. A push is acknowledged only after the update that contains it
// was applied, and each accepted push enters exactly one update.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/core/buffer.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/core/report.hpp"
#include "greenreduce/core/rng.hpp"
#include "greenreduce/energy/model.hpp"
#include "greenreduce/kernels/int8.hpp"
#include "greenreduce/ps/options.hpp"
#include "greenreduce/ps/placement.hpp"
#include "greenreduce/ps/protocol.hpp"
#include "greenreduce/ps/update_rule.hpp"
#include "greenreduce/transport/concept.hpp"

namespace greenreduce::ps {

/// What a server has done, for logs and tests.
struct server_stats {
  std::vector<std::uint64_t> pushes_applied;  ///< per worker: pushes that entered an update
  std::uint64_t updates = 0;                  ///< update-rule calls
  std::uint64_t rejected = 0;                 ///< requests answered with an error
  std::uint32_t max_staleness = 0;            ///< largest (clock - slowest clock) at a release
  std::vector<int> dropped;                   ///< worker indices dropped, in order
};

/// Receives a line for every event worth logging (a worker dropped, a step failed).
using log_fn = std::function<void(std::string_view)>;

template <transport::pollable Transport, codec::codec PushCodec = codec::none,
          codec::codec PullCodec = codec::none>
class server {
  using clock = std::chrono::steady_clock;

 public:
  /// The server of rank `t.rank()` (must be < r.servers). Every rank passes
  /// the same keys, roles and options. Parameters start at zero; see init().
  server(Transport& t, roles r, std::vector<key_spec> keys, update_rule rule, ps_options opt = {},
         PushCodec push_codec = PushCodec(), PullCodec pull_codec = PullCodec(), log_fn logger = {})
      : t_(t),
        roles_(r),
        keys_(std::move(keys)),
        place_(place(keys_, r.servers)),
        rule_(std::move(rule)),
        opt_(opt),
        push_codec_(std::move(push_codec)),
        pull_codec_(std::move(pull_codec)),
        log_(std::move(logger)),
        index_(t.rank()),
        rng_(0x70735f73657276ULL, static_cast<std::uint64_t>(t.rank())) {
    if (r.size != t.size())
      throw config_error(detail::str("ps server: roles describe ", r.size,
                                     " ranks but the transport has ", t.size()));
    if (!r.is_server(index_))
      throw config_error(detail::str("ps server: rank ", index_,
                                     " is not a server (servers are ranks [0, ", r.servers, "))"));
    if (!rule_.apply) throw config_error("ps server: the update rule has no callable");
    if (!t.isolates_peer_failures())
      throw config_error(detail::str(
          "ps server: rank ", index_,
          ": the transport must isolate peer failures (set isolate_peer_failures in its "
          "options), else one dead worker would break the server for every other worker"));
    if (opt_.timeout.count() <= 0)
      throw config_error(
          detail::str("ps server: timeout must be positive, got ", opt_.timeout.count(), " ms"));
    const auto W = static_cast<std::size_t>(r.workers());
    slot_.assign(keys_.size(), npos);
    for (std::size_t k : place_.keys_of[static_cast<std::size_t>(index_)]) {
      slot_[k] = ks_.size();
      key_state s;
      s.id = k;
      s.params.assign(keys_[k].length, 0.0F);
      s.state.assign(keys_[k].length * rule_.state_per_element, 0.0F);
      s.pushed.assign(W, 0);
      s.clock.assign(W, 0);
      max_len_ = std::max(max_len_, keys_[k].length);
      ks_.push_back(std::move(s));
    }
    workers_.assign(W, worker_state{});
    stats_.pushes_applied.assign(W, 0);
    schedule_.push_back({0, opt_.mode});
  }

  server(const server&) = delete;
  server& operator=(const server&) = delete;
  ~server() = default;

  /// Sets the initial parameters of `name` (before run()).
  void init(std::string_view name, std::span<const float> values) {
    const std::size_t k = key_id(name);
    if (slot_[k] == npos)
      throw config_error(detail::str("ps server ", index_, ": key '", name, "' belongs to server ",
                                     place_.owner[k]));
    if (values.size() != keys_[k].length)
      throw config_error(detail::str("ps server: init of key '", name, "' with ", values.size(),
                                     " values, the key has ", keys_[k].length));
    std::lock_guard lock(mu_);
    auto& s = ks_[slot_[k]];
    std::copy(values.begin(), values.end(), s.params.begin());
  }

  /// Serves from this thread until every worker said bye or was dropped and
  /// every dropped worker said bye or lost its connection (a dropped worker
  /// that comes back is told so, see docs/parameter_server.md "Failures").
  void run() {
    const int W = roles_.workers();
    const auto WW = static_cast<std::size_t>(W);
    bufs_.assign(WW, byte_buffer(receive_bound()));
    reqs_.assign(WW, typename Transport::recv_request{});
    posted_.assign(WW, false);
    aligned_vector<float> scratch(max_len_);
    {
      std::lock_guard lock(mu_);
      const auto now = clock::now();
      for (auto& w : workers_) w.last_seen = now;
      run_t0_ = now;
      sent0_ = t_.bytes_sent();
      recv0_ = t_.bytes_received();
      totals_.op = "ps_server";
      totals_.codec = std::string(push_codec_.name());
      totals_.algo = "ps";
    }
    for (int w = 0; w < W; ++w) post(w);
    const auto tick =
        std::clamp(opt_.timeout / 8, std::chrono::milliseconds(1), std::chrono::milliseconds(250));
    std::vector<typename Transport::recv_request*> ptrs;
    std::vector<int> who;
    std::size_t turn = 0;
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (active_workers() == 0 &&
            std::none_of(posted_.begin(), posted_.end(), [](bool p) { return p; }))
          break;
      }
      // Rotate the start so no worker is always served first.
      ptrs.clear();
      who.clear();
      for (int i = 0; i < W; ++i) {
        const int w = static_cast<int>((turn + static_cast<std::size_t>(i)) % WW);
        if (!posted_[static_cast<std::size_t>(w)]) continue;
        ptrs.push_back(&reqs_[static_cast<std::size_t>(w)]);
        who.push_back(w);
      }
      ++turn;
      if (!ptrs.empty()) {
        if (const auto i = t_.wait_any(ptrs, tick)) service(who[*i], scratch);
      } else {
        std::this_thread::sleep_for(tick);
      }
      check_silence();
      account_time();
    }
    for (int w = 0; w < W; ++w)
      if (posted_[static_cast<std::size_t>(w)]) {
        t_.cancel(reqs_[static_cast<std::size_t>(w)]);
        posted_[static_cast<std::size_t>(w)] = false;
      }
    account_time();
  }

  /// The server's own work since run() began (see "Accounting" above), with
  /// the energy estimate of `m`. Up to date after every request it served.
  report totals(const energy::model& m = energy::default_model()) const {
    report r;
    {
      std::lock_guard lock(mu_);
      r = totals_;
    }
    m.annotate(r);
    return r;
  }

  /// A copy of the current parameters of `name`.
  std::vector<float> params(std::string_view name) const {
    const std::size_t k = key_id(name);
    if (slot_[k] == npos)
      throw config_error(detail::str("ps server ", index_, ": key '", name, "' belongs to server ",
                                     place_.owner[k]));
    std::lock_guard lock(mu_);
    return ks_[slot_[k]].params;
  }

  /// Batch shares proportional to measured throughput (see shares_locked()).
  std::vector<double> shares() const {
    std::lock_guard lock(mu_);
    return shares_locked();
  }

  server_stats stats() const {
    std::lock_guard lock(mu_);
    return stats_;
  }

  const placement& layout() const noexcept { return place_; }
  /// The options given; options().mode is the mode from step 0 (see consistency_at()).
  const ps_options& options() const noexcept { return opt_; }

  /// The mode that serves pushes of `step` (under the changes accepted so far).
  consistency consistency_at(std::uint64_t step) const {
    std::lock_guard lock(mu_);
    return mode_at_locked(step);
  }
  /// Every change so far as (first step, mode), the first entry (0, options().mode).
  std::vector<std::pair<std::uint64_t, consistency>> schedule() const {
    std::lock_guard lock(mu_);
    return schedule_;
  }
  /// Schedules `m` from step `from_step` of every key (0: the earliest step no
  /// worker reached); returns that step. Thread-safe (run() may be serving).
  /// Throws config_error or mismatch_error as described under "Mode changes".
  std::uint64_t change_consistency(consistency m, std::uint64_t from_step = 0) {
    std::lock_guard lock(mu_);
    auto r = schedule_locked(m, from_step, -1);
    if (!r.error) return r.step;
    throw_reply_error(r.error->first, r.error->second);
  }

 private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::size_t receive_bound() const {
    return request_header_bytes + push_codec_.max_encoded_bytes(max_len_);
  }

  struct ssp_wait {
    int worker;
    std::uint64_t clock;  // the worker's clock after this push
    std::uint32_t bound;  // staleness bound of the push's step (async: none)
  };
  struct key_state {
    std::size_t id = 0;
    std::vector<float> params, state;
    aligned_vector<float> agg;  // sync: sum of this step's gradients
    std::uint64_t step = 0;     // updates applied (sync: completed steps)
    std::vector<char> pushed;   // sync: who pushed this step
    std::size_t pushed_count = 0;
    std::vector<int> sync_waiting;     // sync: pushers of this step awaiting its completion
    std::vector<std::uint64_t> clock;  // per worker: its steps of this key applied
    std::vector<ssp_wait> waiting;     // async/SSP: pushes awaiting the bound
  };
  struct schedule_result {
    std::uint64_t step = 0;
    std::optional<std::pair<reply_status, std::string>> error;
  };
  struct worker_state {
    bool live = true;        // not dropped
    bool left = false;       // said bye
    bool in_flight = false;  // a request of it is unanswered
    clock::time_point last_seen{};
    double rate = 0;               // samples/s, exponential moving average
    std::uint16_t push_flags = 0;  // request_flags of its push awaiting acknowledgement
  };
  struct outgoing {
    int worker;
    byte_buffer bytes;
  };

  // ------------------------------------------------------------ accounting
  // Called from the serving thread only; the transport's counters are read there.
  void account_time() {
    const auto sent = t_.bytes_sent();
    const auto recv = t_.bytes_received();
    std::lock_guard lock(mu_);
    totals_.bytes_sent = sent - sent0_;
    totals_.bytes_received = recv - recv0_;
    totals_.seconds = std::chrono::duration<double>(clock::now() - run_t0_).count();
  }
  void add_work_locked(const codec::work& w) {
    totals_.memory_bytes += w.memory_bytes;
    totals_.compute_ops += w.ops;
  }
  /// Values read plus written, and operations, of n elements through `values` streams.
  void add_stream_locked(std::size_t n, std::size_t values) {
    totals_.memory_bytes += static_cast<std::uint64_t>(n) * values * sizeof(float);
    totals_.compute_ops += static_cast<std::uint64_t>(n) * values;
  }

  // ------------------------------------------------------------ the loop
  void post(int w) {
    const auto W = static_cast<std::size_t>(w);
    const int peer = roles_.worker_rank(w);
    if (t_.peer_failed(peer)) return;
    try {
      reqs_[W] = t_.irecv(peer, bufs_[W]);
      posted_[W] = true;
    } catch (const std::exception& e) {
      lost(w, e);
    }
  }

  // Worker w's connection failed: a live worker is dropped.
  void lost(int w, const std::exception& e) {
    std::vector<outgoing> out;
    {
      std::lock_guard lock(mu_);
      const auto& ws = workers_[static_cast<std::size_t>(w)];
      if (ws.live && !ws.left)
        drop_locked(w, detail::str("its connection failed: ", e.what()), out);
    }
    send_all(out);
  }

  // The receive of worker w completed or failed.
  void service(int w, std::span<float> scratch) {
    const auto W = static_cast<std::size_t>(w);
    std::optional<std::size_t> n;
    try {
      n = t_.test(reqs_[W]);
    } catch (const std::exception& e) {
      posted_[W] = false;
      lost(w, e);
      return;
    }
    if (!n) return;
    posted_[W] = false;
    if (handle(w, std::span<const std::byte>(bufs_[W].data(), *n), scratch)) post(w);
  }

  // Drops every live worker silent for longer than the timeout.
  void check_silence() {
    const auto now = clock::now();
    std::vector<outgoing> out;
    {
      std::lock_guard lock(mu_);
      for (int w = 0; w < roles_.workers(); ++w) {
        auto& ws = workers_[static_cast<std::size_t>(w)];
        if (!ws.live || ws.left || ws.in_flight) continue;
        const auto silent =
            std::chrono::duration_cast<std::chrono::milliseconds>(now - ws.last_seen);
        if (silent > opt_.timeout)
          drop_locked(w,
                      detail::str("it sent nothing for ", silent.count(), " ms (timeout ",
                                  opt_.timeout.count(), " ms)"),
                      out);
      }
    }
    send_all(out);
  }

  // ------------------------------------------------------------ requests
  /// Handles one message of worker w; false when it said bye (no more receives).
  bool handle(int w, std::span<const std::byte> msg, std::span<float> scratch) {
    std::vector<outgoing> out;
    request_header h;
    try {
      h = parse_request(msg).header;
    } catch (const decode_error& e) {
      std::lock_guard lock(mu_);
      touch_locked(w);
      reject_locked(w, request_kind::push, 0, reply_status::bad_request,
                    detail::str("server ", index_, " rejected a malformed request from worker ", w,
                                ": ", e.what(), "; server state unchanged"),
                    out);
    }
    if (!out.empty()) {
      send_all(out);
      return true;
    }
    if (h.kind == request_kind::bye) {
      {
        std::lock_guard lock(mu_);
        leave_locked(w, out);
      }
      send_all(out);
      return false;
    }
    const auto payload = msg.subspan(request_header_bytes);
    std::optional<std::pair<reply_status, std::string>> bad = validate(w, h, payload, scratch);
    {
      std::lock_guard lock(mu_);
      touch_locked(w);
      auto& ws = workers_[static_cast<std::size_t>(w)];
      if (bad) {
        reject_locked(w, h.kind, h.key, bad->first, std::move(bad->second), out);
      } else if (!ws.live) {
        reject_locked(w, h.kind, h.key, reply_status::peer_failed,
                      detail::str("server ", index_, " dropped worker ", w, " earlier (",
                                  ws_reason(w), "); its requests are refused"),
                      out);
      } else if (failed_ && h.kind != request_kind::pull) {
        reject_locked(w, h.kind, h.key, reply_status::peer_failed, failure_, out);
      } else if (h.kind == request_kind::push) {
        push_locked(w, h, scratch, out);
      } else if (h.kind == request_kind::pull) {
        pull_locked(w, h, out);
      } else if (h.kind == request_kind::hello) {
        ok_locked(w, request_kind::hello, 0, 0, {}, out, receive_bound());
      } else if (h.kind == request_kind::mode) {
        mode_request_locked(w, h, out);
      } else {
        shares_reply_locked(w, out);
      }
    }
    send_all(out);
    return true;
  }

  /// Checks key, length, codec and decodes the frame into scratch; nothing
  /// shared is touched, so no lock is needed (keys and codecs are immutable).
  std::optional<std::pair<reply_status, std::string>> validate(int w, const request_header& h,
                                                               std::span<const std::byte> payload,
                                                               std::span<float> scratch) const {
    const auto what = [&] {
      return detail::str(to_string(h.kind), " from worker ", w, " to server ", index_);
    };
    if (h.kind == request_kind::shares || h.kind == request_kind::hello ||
        h.kind == request_kind::mode)
      return std::nullopt;
    if (h.key >= keys_.size() || slot_[h.key] == npos)
      return {{reply_status::unknown_key,
               h.key >= keys_.size()
                   ? detail::str(what(), ": key id ", h.key, " is unknown (", keys_.size(),
                                 " keys); server parameters unchanged")
                   : detail::str(what(), ": key '", keys_[h.key].name, "' (id ", h.key,
                                 ") belongs to server ", place_.owner[h.key],
                                 "; server parameters unchanged")}};
    const auto& key = keys_[h.key];
    if (h.length != key.length)
      return {{reply_status::wrong_length, detail::str(what(), ": key '", key.name, "' has ",
                                                       key.length, " elements, the request says ",
                                                       h.length, "; server parameters unchanged")}};
    if (h.kind == request_kind::pull) {
      if (h.codec_hash != codec::none{}.config_hash() && h.codec_hash != pull_codec_.config_hash())
        return {{reply_status::wrong_codec,
                 detail::str(what(), ": key '", key.name, "' asks for codec hash 0x", std::hex,
                             h.codec_hash, ", this server sends none or ", pull_codec_.name(),
                             " (0x", pull_codec_.config_hash(), ")")}};
      return std::nullopt;
    }
    if (h.codec_hash != push_codec_.config_hash())
      return {{reply_status::wrong_codec,
               detail::str(what(), ": key '", key.name, "' was encoded with codec hash 0x",
                           std::hex, h.codec_hash, ", this server decodes ", push_codec_.name(),
                           " (0x", push_codec_.config_hash(), "); server parameters unchanged")}};
    try {
      push_codec_.decode(payload, scratch.first(key.length));
    } catch (const std::exception& e) {
      return {{reply_status::bad_request, detail::str(what(), ": key '", key.name, "': ", e.what(),
                                                      "; server parameters unchanged")}};
    }
    if (kernels::all_finite(scratch.data(), key.length)) return std::nullopt;
    for (std::size_t i = 0; i < key.length; ++i)  // name the first bad element
      if (!std::isfinite(scratch[i]))
        return {{reply_status::bad_request,
                 detail::str(what(), ": key '", key.name, "' element ", i, " decodes to ",
                             scratch[i], "; server parameters unchanged")}};
    return std::nullopt;
  }

  void push_locked(int w, const request_header& h, std::span<const float> grad,
                   std::vector<outgoing>& out) {
    auto& s = ks_[slot_[h.key]];
    const auto& key = keys_[h.key];
    add_work_locked(push_codec_.decode_work(key.length));
    add_stream_locked(key.length, 1);  // the finiteness scan
    const auto W = static_cast<std::size_t>(w);
    note_rate_locked(w, h);
    workers_[W].push_flags = h.flags;
    const consistency mode = mode_at_locked(h.step);
    if (mode.mode == consistency::kind::sync) {
      if (h.step != s.clock[W] || s.pushed[W]) {
        reject_locked(w, h.kind, h.key, reply_status::out_of_step,
                      detail::str("push from worker ", w, " of key '", key.name, "' for step ",
                                  h.step, s.pushed[W] ? " repeats a push of" : " but the key is at",
                                  " step ", s.clock[W], "; server parameters unchanged"),
                      out);
        return;
      }
      if (s.agg.size() != key.length) s.agg.assign(key.length, 0.0F);
      for (std::size_t i = 0; i < key.length; ++i) s.agg[i] += grad[i];
      add_stream_locked(key.length, 3);
      s.pushed[W] = 1;
      ++s.pushed_count;
      s.sync_waiting.push_back(w);
      maybe_complete_locked(s, out);
      return;
    }
    if (h.step != s.clock[W]) {
      reject_locked(
          w, h.kind, h.key, reply_status::out_of_step,
          detail::str("push from worker ", w, " of key '", key.name, "' for step ", h.step,
                      " but its next step is ", s.clock[W], "; server parameters unchanged"),
          out);
      return;
    }
    update_context ctx{h.key, key.name, s.step, w, 1};
    apply_locked(s, ctx, grad);
    ++stats_.pushes_applied[W];
    ++s.clock[W];
    s.waiting.push_back(
        {w, s.clock[W],
         mode.mode == consistency::kind::bounded_staleness ? mode.staleness : UINT32_MAX});
    release_locked(s, out);
  }

  /// Sync: applies the mean once every active worker pushed this step.
  void maybe_complete_locked(key_state& s, std::vector<outgoing>& out) {
    if (s.pushed_count == 0) return;
    for (int v = 0; v < roles_.workers(); ++v)
      if (active(v) && !s.pushed[static_cast<std::size_t>(v)]) return;
    const auto& key = keys_[s.id];
    const float inv = 1.0F / static_cast<float>(s.pushed_count);
    for (auto& g : s.agg) g *= inv;
    add_stream_locked(key.length, 2);
    update_context ctx{s.id, key.name, s.step, -1, s.pushed_count};
    apply_locked(s, ctx, s.agg);
    for (int v : s.sync_waiting) {
      ++stats_.pushes_applied[static_cast<std::size_t>(v)];
      ++s.clock[static_cast<std::size_t>(v)];
      push_ok_locked(v, s, out);
    }
    s.sync_waiting.clear();
    std::fill(s.pushed.begin(), s.pushed.end(), 0);
    s.pushed_count = 0;
    std::fill(s.agg.begin(), s.agg.end(), 0.0F);
    release_locked(s, out);  // the clocks moved: pushes of an earlier SSP step may go
  }

  /// Async/SSP: replies to every waiting push whose worker is within the bound.
  void release_locked(key_state& s, std::vector<outgoing>& out) {
    std::uint64_t slowest = UINT64_MAX;
    for (int v = 0; v < roles_.workers(); ++v)
      if (active(v)) slowest = std::min(slowest, s.clock[static_cast<std::size_t>(v)]);
    std::erase_if(s.waiting, [&](const ssp_wait& p) {
      const bool bounded = p.bound != UINT32_MAX;
      if (bounded && slowest != UINT64_MAX && p.clock > slowest + p.bound) return false;
      if (bounded && slowest != UINT64_MAX)
        stats_.max_staleness = std::max(
            stats_.max_staleness, static_cast<std::uint32_t>(p.clock - std::min(p.clock, slowest)));
      push_ok_locked(p.worker, s, out);
      return true;
    });
  }

  void apply_locked(key_state& s, const update_context& ctx, std::span<const float> grad) {
    rule_.apply(ctx, s.params, grad, s.state);
    add_stream_locked(s.params.size(), 3 + 2 * rule_.state_per_element);
    ++s.step;
    ++stats_.updates;
  }

  void pull_locked(int w, const request_header& h, std::vector<outgoing>& out) {
    params_reply_locked(w, request_kind::pull, ks_[slot_[h.key]],
                        h.codec_hash == codec::none{}.config_hash(), out);
  }

  /// Acknowledges worker w's push of key s: with the parameters when the
  /// push asked for them (request_flags), else an empty ok.
  /// The push is applied either way: when the parameters cannot be encoded
  /// (non-finite after the update) the reply is a plain ok without them,
  /// which the worker reports as a decode_error with the push counted.
  void push_ok_locked(int w, key_state& s, std::vector<outgoing>& out) {
    const std::uint16_t f = workers_[static_cast<std::size_t>(w)].push_flags;
    if ((f & request_flags::with_params) == 0 ||
        !params_reply_locked(w, request_kind::push, s, (f & request_flags::encoded_params) == 0,
                             out, false))
      ok_locked(w, request_kind::push, s.id, s.step, {}, out);
  }

  /// Replies to w with key s's parameters, fp32 (`plain`) or in the pull codec.
  /// When they cannot be encoded: refuses the request if `reject`, else logs
  /// and sends nothing; returns whether the parameters went out.
  bool params_reply_locked(int w, request_kind kind, key_state& s, bool plain,
                           std::vector<outgoing>& out, bool reject = true) {
    const std::size_t cap = plain ? codec::none{}.max_encoded_bytes(s.params.size())
                                  : pull_codec_.max_encoded_bytes(s.params.size());
    byte_buffer bytes(reply_header_bytes + cap);
    const auto body = std::span<std::byte>(bytes).subspan(reply_header_bytes);
    std::size_t len = 0;
    try {
      len = plain ? codec::none{}.encode(s.params, body, rng_)
                  : pull_codec_.encode(s.params, body, rng_);
    } catch (const std::exception& e) {
      auto why = detail::str("server ", index_, " could not encode key '", keys_[s.id].name,
                             "': ", e.what());
      if (reject)
        reject_locked(w, kind, s.id, reply_status::bad_request, std::move(why), out);
      else
        log(why + " (the push of worker " + std::to_string(w) + " is applied)");
      return false;
    }
    bytes.resize(reply_header_bytes + len);
    add_work_locked(plain ? codec::none{}.encode_work(s.params.size())
                          : pull_codec_.encode_work(s.params.size()));
    reply_header r;
    r.kind = kind;
    r.key = static_cast<std::uint32_t>(s.id);
    r.step = s.step;
    r.length = s.params.size();
    r.payload_bytes = len;
    write_reply(bytes, r);
    answered_locked(w);
    out.push_back({w, std::move(bytes)});
    return true;
  }

  void shares_reply_locked(int w, std::vector<outgoing>& out) {
    const auto sh = shares_locked();
    std::vector<std::byte> payload(sh.size() * 8);
    for (std::size_t i = 0; i < sh.size(); ++i) {
      std::uint64_t bits;
      std::memcpy(&bits, &sh[i], 8);
      store_le<std::uint64_t>(payload.data() + 8 * i, bits);
    }
    ok_locked(w, request_kind::shares, 0, 0, payload, out, sh.size());
  }

  /// Shares of the active workers, proportional to their measured samples/s;
  /// a worker not yet measured counts at the mean of those measured (all
  /// equal when none is). Dropped and departed workers get 0.
  std::vector<double> shares_locked() const {
    const auto W = static_cast<std::size_t>(roles_.workers());
    std::vector<double> sh(W, 0.0);
    double sum = 0;
    std::size_t measured = 0, act = 0;
    for (std::size_t v = 0; v < W; ++v)
      if (active(static_cast<int>(v))) {
        ++act;
        if (workers_[v].rate > 0) {
          sum += workers_[v].rate;
          ++measured;
        }
      }
    if (act == 0) return sh;
    const double fill = measured == 0 ? 1.0 : sum / static_cast<double>(measured);
    double total = 0;
    for (std::size_t v = 0; v < W; ++v)
      if (active(static_cast<int>(v))) {
        sh[v] = workers_[v].rate > 0 ? workers_[v].rate : fill;
        total += sh[v];
      }
    for (auto& x : sh) x /= total;
    return sh;
  }

  void note_rate_locked(int w, const request_header& h) {
    if (h.samples == 0 || h.compute_ns == 0) return;
    const double r = static_cast<double>(h.samples) * 1e9 / static_cast<double>(h.compute_ns);
    auto& rate = workers_[static_cast<std::size_t>(w)].rate;
    rate = rate == 0 ? r : 0.7 * rate + 0.3 * r;
  }

  // ------------------------------------------------------------ workers coming and going
  bool active(int v) const {
    const auto& ws = workers_[static_cast<std::size_t>(v)];
    return ws.live && !ws.left;
  }
  std::size_t active_workers() const {
    std::size_t n = 0;
    for (int v = 0; v < roles_.workers(); ++v) n += active(v) ? 1 : 0;
    return n;
  }

  void touch_locked(int w) {
    auto& ws = workers_[static_cast<std::size_t>(w)];
    ws.last_seen = clock::now();
    ws.in_flight = true;
  }
  void answered_locked(int w) {
    auto& ws = workers_[static_cast<std::size_t>(w)];
    ws.last_seen = clock::now();
    ws.in_flight = false;
  }

  std::string ws_reason(int w) const {
    for (const auto& [v, why] : drop_reasons_)
      if (v == w) return why;
    return "no reason recorded";
  }

  /// Worker w is gone for good (died, silent, or its connection failed).
  void drop_locked(int w, std::string why, std::vector<outgoing>& out) {
    auto& ws = workers_[static_cast<std::size_t>(w)];
    if (!ws.live) return;
    ws.live = false;
    ws.in_flight = false;
    stats_.dropped.push_back(w);
    drop_reasons_.emplace_back(w, why);
    log(detail::str("worker ", w, " (rank ", roles_.worker_rank(w), ") dropped: ", why));
    for (auto& s : ks_) {
      std::erase_if(s.waiting, [w](const ssp_wait& p) { return p.worker == w; });
      std::erase(s.sync_waiting, w);
    }
    // A sync step the dropped worker owed (one in progress, or its next one)
    // can never complete.
    bool owes_sync = false;
    for (const auto& s : ks_)
      owes_sync =
          owes_sync || s.pushed_count > 0 ||
          mode_at_locked(s.clock[static_cast<std::size_t>(w)]).mode == consistency::kind::sync;
    if (owes_sync) {
      failed_ = true;
      failure_ = detail::str("server ", index_, ": sync step cannot complete: worker ", w,
                             " (rank ", roles_.worker_rank(w), ") ", why);
      for (auto& s : ks_) {
        for (int v : s.sync_waiting)
          reject_locked(v, request_kind::push, s.id, reply_status::peer_failed, failure_, out);
        s.sync_waiting.clear();
        std::fill(s.pushed.begin(), s.pushed.end(), 0);
        s.pushed_count = 0;
        std::fill(s.agg.begin(), s.agg.end(), 0.0F);
      }
    }
    for (auto& s : ks_) release_locked(s, out);
  }

  /// Worker w said bye: the remaining workers carry on without it.
  void leave_locked(int w, std::vector<outgoing>& out) {
    auto& ws = workers_[static_cast<std::size_t>(w)];
    ws.left = true;
    ws.in_flight = false;
    for (auto& s : ks_) {
      std::erase_if(s.waiting, [w](const ssp_wait& p) { return p.worker == w; });
      // A sync push it made this step stays in the aggregate (it cannot have
      // been waiting: a worker's push blocks until its step completes).
      if (!failed_) maybe_complete_locked(s, out);
      release_locked(s, out);
    }
  }

  // ------------------------------------------------------------ mode changes
  consistency mode_at_locked(std::uint64_t step) const {
    consistency m = schedule_.front().second;
    for (const auto& [from, mode] : schedule_)
      if (from <= step) m = mode;
    return m;
  }

  /// Accepts or refuses "m from step T" (see "Mode changes"); `w` is the
  /// asking worker, -1 for the server's owner.
  schedule_result schedule_locked(consistency m, std::uint64_t from_step, int w) {
    const std::string who = w < 0 ? std::string("the server's owner") : detail::str("worker ", w);
    schedule_result r;
    if ((m.mode != consistency::kind::bounded_staleness && m.staleness != 0) ||
        (m.mode == consistency::kind::bounded_staleness && m.staleness == 0)) {
      r.error = {reply_status::invalid_change,
                 detail::str("server ", index_, ": mode change from ", who, " to ", m.to_string(),
                             " with staleness ", m.staleness,
                             " is invalid (sync and async take none, ssp:s needs s >= 1)")};
      return r;
    }
    // The earliest step no worker has pushed (or begun to push) on our keys.
    std::uint64_t earliest = 0;
    std::string reached;
    for (const auto& s : ks_)
      for (std::size_t v = 0; v < s.clock.size(); ++v) {
        const std::uint64_t next = s.clock[v] + (s.pushed[v] ? 1 : 0);
        if (next > earliest) {
          earliest = next;
          reached = detail::str("worker ", v, " pushed step ", next - 1, " of key '",
                                keys_[s.id].name, "'");
        }
      }
    const std::uint64_t T = from_step == 0 ? earliest : from_step;
    r.step = T;
    const auto last = schedule_.back();                 // a copy: push_back below may reallocate
    if (T == last.first && m == last.second) return r;  // already scheduled: accepted as is
    if (T <= last.first) {
      r.error = {
          reply_status::out_of_step,
          detail::str("server ", index_, ": mode change from ", who, " to ", m.to_string(),
                      " from step ", T, " conflicts with the change to ", last.second.to_string(),
                      " from step ", last.first, " already scheduled; mode unchanged")};
      return r;
    }
    if (T < earliest) {
      r.error = {
          reply_status::invalid_change,
          detail::str("server ", index_, ": mode change from ", who, " to ", m.to_string(),
                      " from step ", T, " comes too late: ", reached,
                      " already (the earliest step still open is ", earliest, "); mode unchanged")};
      return r;
    }
    if (!(m == last.second)) {
      schedule_.push_back({T, m});
      log(detail::str("consistency ", last.second.to_string(), " -> ", m.to_string(), " from step ",
                      T, " (asked by ", who, ")"));
    }
    return r;
  }

  void mode_request_locked(int w, const request_header& h, std::vector<outgoing>& out) {
    consistency m;
    if (h.length > UINT32_MAX) {
      reject_locked(
          w, h.kind, 0, reply_status::invalid_change,
          detail::str("mode request from worker ", w, " to server ", index_, " asks for staleness ",
                      h.length, ", above the largest bound 2^32 - 1; mode unchanged"),
          out);
      return;
    }
    if (h.samples == 1 || h.samples == 2 || h.samples == 3) {
      m.mode = h.samples == 1   ? consistency::kind::sync
               : h.samples == 2 ? consistency::kind::async
                                : consistency::kind::bounded_staleness;
      m.staleness = static_cast<std::uint32_t>(h.length);
    } else {
      reject_locked(w, h.kind, 0, reply_status::bad_request,
                    detail::str("mode request from worker ", w, " to server ", index_,
                                " names consistency kind ", h.samples,
                                ", expected 1 (sync), 2 (async) or 3 (ssp); mode unchanged"),
                    out);
      return;
    }
    auto r = schedule_locked(m, h.step, w);
    if (r.error)
      reject_locked(w, h.kind, 0, r.error->first, std::move(r.error->second), out);
    else
      ok_locked(w, request_kind::mode, 0, r.step, {}, out);
  }

  // ------------------------------------------------------------ replies
  void ok_locked(int w, request_kind kind, std::size_t key, std::uint64_t step,
                 std::span<const std::byte> payload, std::vector<outgoing>& out,
                 std::uint64_t length = 0) {
    byte_buffer bytes(reply_header_bytes + payload.size());
    reply_header r;
    r.kind = kind;
    r.key = static_cast<std::uint32_t>(key);
    r.step = step;
    r.length = length;
    r.payload_bytes = payload.size();
    write_reply(bytes, r);
    if (!payload.empty())
      std::memcpy(bytes.data() + reply_header_bytes, payload.data(), payload.size());
    answered_locked(w);
    out.push_back({w, std::move(bytes)});
  }

  void reject_locked(int w, request_kind kind, std::size_t key, reply_status status,
                     std::string text, std::vector<outgoing>& out) {
    if (text.size() > max_error_text) text.resize(max_error_text);
    ++stats_.rejected;
    byte_buffer bytes(reply_header_bytes + text.size());
    reply_header r;
    r.kind = kind == request_kind::bye ? request_kind::push : kind;
    r.status = status;
    r.key = static_cast<std::uint32_t>(key);
    r.payload_bytes = text.size();
    write_reply(bytes, r);
    std::memcpy(bytes.data() + reply_header_bytes, text.data(), text.size());
    answered_locked(w);
    out.push_back({w, std::move(bytes)});
  }

  /// Sends the replies collected under the state lock, one sender at a time.
  void send_all(std::vector<outgoing>& out) {
    for (auto& o : out) {
      try {
        t_.send(roles_.worker_rank(o.worker), o.bytes);
      } catch (const std::exception& e) {
        std::vector<outgoing> more;
        {
          std::lock_guard lock(mu_);
          drop_locked(o.worker, detail::str("a reply to it failed: ", e.what()), more);
        }
        send_all(more);
      }
    }
    out.clear();
  }

  void log(const std::string& line) const {
    const std::string full = detail::str("[greenreduce ps server ", index_, "] ", line);
    if (log_)
      log_(full);
    else
      std::cerr << full << '\n';
  }

  std::size_t key_id(std::string_view name) const {
    for (std::size_t k = 0; k < keys_.size(); ++k)
      if (keys_[k].name == name) return k;
    throw config_error(detail::str("ps server: unknown key '", name, "'"));
  }

  Transport& t_;
  roles roles_;
  std::vector<key_spec> keys_;
  placement place_;
  update_rule rule_;
  ps_options opt_;
  PushCodec push_codec_;
  PullCodec pull_codec_;
  log_fn log_;
  int index_;
  rng rng_;
  std::size_t max_len_ = 0;
  std::vector<std::size_t> slot_;  // key id -> index into ks_, npos when not ours

  // run()'s thread only
  std::vector<byte_buffer> bufs_;
  std::vector<typename Transport::recv_request> reqs_;
  std::vector<bool> posted_;

  mutable std::mutex mu_;  // guards everything below
  std::vector<key_state> ks_;
  std::vector<worker_state> workers_;
  std::vector<std::pair<int, std::string>> drop_reasons_;
  server_stats stats_;
  report totals_;
  clock::time_point run_t0_{};
  std::uint64_t sent0_ = 0, recv0_ = 0;
  bool failed_ = false;
  std::string failure_;
  std::vector<std::pair<std::uint64_t, consistency>> schedule_;  // (first step, mode), by step
};

}  // namespace greenreduce::ps
