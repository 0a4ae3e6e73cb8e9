// greenreduce/transport/inproc.hpp — ranks as threads of one process.
//
//   transport::inproc_world world(4);           // shared mailboxes for 4 ranks
//   std::thread t([&] { auto t1 = world.rank(1); ... });   // one endpoint per thread
//
// Each ordered pair (src -> dst) has a queue of posted sends and each
// destination a queue of posted receives per source, guarded by the
// destination's mutex and condition variable. Matching is MPI-like and keeps
// the pair order: a send that finds a posted receive is copied straight into
// it (one copy); a send that finds none is either copied into an owned buffer
// when it is at most `eager_bytes` long (the send completes at once, like
// bytes handed to a socket buffer) or left in place until the receiver posts
// (rendezvous: the receiver copies it, one copy, and only then does the
// sender's wait() return — as a large TCP write blocks until the peer reads).
//
// Byte counters: every message counts its payload plus `inproc_header_bytes`
// (16), the frame header the tcp transport puts in front of each message
// (transport/tcp/wire.hpp: magic, sequence number, length), so
// a collective's report reads the same on both transports.
//
// Failure: `world.kill(r)` marks rank r dead (a crashed process): its posted
// sends that no one has copied yet are dropped, and every peer blocked on it,
// or later asking it for a message that is not already queued, gets a
// peer_error. Messages it sent before dying stay readable, as bytes already
// in a socket are. Any error on an endpoint (timeout, over-long message, dead
// peer) breaks that endpoint for good and kills its rank, as a process whose
// sockets close, so its peers learn of it instead of waiting for their
// timeout. Destroying an endpoint also kills its rank.
//
// With `isolate_peer_failures` (for the parameter server) an error involving
// one peer (it died, sent too much, a wait on it timed out) fails only the
// operations with that peer, marks it failed for this endpoint
// (peer_failed()), and leaves the endpoint and its rank alive for the others.
// The pollable capability (concept.hpp: test, wait_any, cancel) is always
// there.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "greenreduce/core/env.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/concept.hpp"

namespace greenreduce::transport {

/// Bytes each message is counted with on top of its payload (tcp's length prefix).
inline constexpr std::size_t inproc_header_bytes = 16;

/// Timeout of every blocking step: GREENREDUCE_TIMEOUT_MS, default 30000.
inline std::chrono::milliseconds default_timeout(const env_source& env = env_source::process()) {
  return std::chrono::milliseconds(env_int(env, "GREENREDUCE_TIMEOUT_MS", 30000, 1, 86400000));
}

struct inproc_options {
  std::chrono::milliseconds timeout = default_timeout();  ///< bound of every blocking step
  std::size_t eager_bytes = 64 * 1024;  ///< unmatched sends up to this size are buffered
  /// An error with one peer fails only that peer's operations (see the header).
  bool isolate_peer_failures = false;
};

namespace inproc_detail {

struct op_state {
  bool done = false;
  bool failed = false;  // receiver: the message did not fit
  std::size_t length = 0;
};

struct pending_send {
  std::span<const std::byte> bytes;  // rendezvous: the sender's memory
  std::vector<std::byte> owned;      // eager: our copy
  std::shared_ptr<op_state> state;   // null once the send completed
  bool eager() const noexcept { return state == nullptr; }
  std::span<const std::byte> data() const noexcept {
    return eager() ? std::span<const std::byte>(owned) : bytes;
  }
};

struct posted_recv {
  std::span<std::byte> buffer;
  std::shared_ptr<op_state> state;
};

/// Everything addressed to one destination rank.
struct mailbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::deque<pending_send>> sends;  // by source
  std::vector<std::deque<posted_recv>> recvs;   // by source
};

struct world_state {
  int size = 0;
  inproc_options opts;
  std::vector<std::unique_ptr<mailbox>> boxes;
  std::unique_ptr<std::atomic<bool>[]> dead;
  std::unique_ptr<std::atomic<bool>[]> taken;
  std::unique_ptr<std::atomic<std::uint64_t>[]> sent;
  std::unique_ptr<std::atomic<std::uint64_t>[]> received;

  // Copies a matched message; the receiver's state tells whether it fit.
  static void deliver(std::span<const std::byte> msg, posted_recv& r) {
    if (msg.size() > r.buffer.size()) {
      r.state->failed = true;
      r.state->length = msg.size();
    } else {
      if (!msg.empty()) std::memcpy(r.buffer.data(), msg.data(), msg.size());
      r.state->length = msg.size();
    }
    r.state->done = true;
  }

  void kill(int r) {
    if (dead[static_cast<std::size_t>(r)].exchange(true)) return;
    for (int d = 0; d < size; ++d) {
      auto& box = *boxes[static_cast<std::size_t>(d)];
      std::lock_guard lk(box.mu);
      if (d != r) {
        // Drop r's rendezvous sends: its memory may be gone. Eager copies stay readable.
        auto& q = box.sends[static_cast<std::size_t>(r)];
        q.erase(
            std::remove_if(q.begin(), q.end(), [](const pending_send& s) { return !s.eager(); }),
            q.end());
      } else {
        // Nobody may write into a dead rank's receive buffers any more.
        for (auto& q : box.recvs) q.clear();
      }
      box.cv.notify_all();
    }
  }
};

}  // namespace inproc_detail

/// One rank's endpoint; satisfies transport::transport. Move-only; not thread-safe
/// (one thread drives one endpoint, as with a socket).
class inproc {
 public:
  struct send_request {
    std::shared_ptr<inproc_detail::op_state> state;  // null: completed at isend
    int peer = -1;
    std::size_t bytes = 0;
  };
  struct recv_request {
    std::shared_ptr<inproc_detail::op_state> state;
    int peer = -1;
    std::size_t capacity = 0;
  };

  inproc(inproc&& o) noexcept
      : w_(std::move(o.w_)),
        rank_(o.rank_),
        timeout_(o.timeout_),
        broken_(std::move(o.broken_)),
        failed_(std::move(o.failed_)) {}
  inproc& operator=(inproc&&) = delete;
  inproc(const inproc&) = delete;
  inproc& operator=(const inproc&) = delete;
  ~inproc() {
    if (w_) w_->kill(rank_);
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return w_->size; }

  /// The bound of every blocking step from now on.
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }
  std::chrono::milliseconds timeout() const noexcept { return timeout_; }

  std::uint64_t bytes_sent() const noexcept { return w_->sent[idx(rank_)].load(); }
  std::uint64_t bytes_received() const noexcept { return w_->received[idx(rank_)].load(); }

  /// Breaks this endpoint and kills its rank: peers get peer_error. Collectives
  /// call it when they fail so the failure travels instead of timing out.
  void abort() noexcept {
    if (broken_.empty()) broken_ = "aborted";
    w_->kill(rank_);
  }

  send_request isend(int peer, std::span<const std::byte> bytes) {
    check_usable("isend", peer);
    auto& box = *w_->boxes[idx(peer)];
    std::unique_lock lk(box.mu);
    if (w_->dead[idx(peer)]) {
      lk.unlock();
      fail(peer_error(where("isend", peer) + ": peer rank is dead"), peer);
    }
    w_->sent[idx(rank_)] += bytes.size() + inproc_header_bytes;
    auto& rq = box.recvs[idx(rank_)];
    auto& sq = box.sends[idx(rank_)];
    if (sq.empty() && !rq.empty()) {  // a receive is waiting: copy straight into it
      auto r = std::move(rq.front());
      rq.pop_front();
      inproc_detail::world_state::deliver(bytes, r);
      lk.unlock();
      box.cv.notify_all();
      return {nullptr, peer, bytes.size()};
    }
    inproc_detail::pending_send s;
    if (bytes.size() <= w_->opts.eager_bytes) {
      s.owned.assign(bytes.begin(), bytes.end());
      sq.push_back(std::move(s));
      return {nullptr, peer, bytes.size()};
    }
    s.bytes = bytes;
    s.state = std::make_shared<inproc_detail::op_state>();
    send_request req{s.state, peer, bytes.size()};
    sq.push_back(std::move(s));
    return req;
  }

  recv_request irecv(int peer, std::span<std::byte> buffer) {
    check_usable("irecv", peer);
    auto& box = *w_->boxes[idx(rank_)];
    auto state = std::make_shared<inproc_detail::op_state>();
    inproc_detail::posted_recv r{buffer, state};
    std::unique_lock lk(box.mu);
    auto& sq = box.sends[idx(peer)];
    auto& rq = box.recvs[idx(peer)];
    if (rq.empty() && !sq.empty()) {  // a message is waiting: copy it out
      auto s = std::move(sq.front());
      sq.pop_front();
      inproc_detail::world_state::deliver(s.data(), r);
      if (s.state) s.state->done = true;
      lk.unlock();
      box.cv.notify_all();
    } else {
      rq.push_back(std::move(r));
    }
    return {state, peer, buffer.size()};
  }

  void wait(send_request& req) {
    if (!req.state) return;
    check_usable("wait(send)", req.peer);
    auto& box = *w_->boxes[idx(req.peer)];
    std::unique_lock lk(box.mu);
    const bool ok = box.cv.wait_for(lk, timeout_, [&] {
      return req.state->done || w_->dead[idx(req.peer)] || w_->dead[idx(rank_)];
    });
    if (req.state->done) {
      req.state.reset();
      return;
    }
    {  // our memory must not be read after we throw
      auto& sq = box.sends[idx(rank_)];
      std::erase_if(sq, [&](const inproc_detail::pending_send& p) { return p.state == req.state; });
    }
    lk.unlock();
    if (!ok)
      fail(timeout_error(detail::str(where("send", req.peer), ": ", req.bytes,
                                     " bytes not taken within ", timeout_.count(), " ms")),
           req.peer);
    fail(peer_error(detail::str(where("send", req.peer), ": ",
                                w_->dead[idx(rank_)] ? "this rank was killed" : "peer rank died",
                                " before taking ", req.bytes, " bytes")),
         w_->dead[idx(rank_)] ? -1 : req.peer);
  }

  std::size_t wait(recv_request& req) {
    check_usable("wait(recv)", req.peer);
    if (!req.state) throw config_error(where("wait(recv)", req.peer) + ": empty request");
    auto& box = *w_->boxes[idx(rank_)];
    std::unique_lock lk(box.mu);
    const bool ok = box.cv.wait_for(lk, timeout_, [&] { return settled(req); });
    if (!ok && !req.state->done) {
      withdraw(req);
      lk.unlock();
      fail(timeout_error(detail::str(where("recv", req.peer), ": no message within ",
                                     timeout_.count(), " ms")),
           req.peer);
    }
    return conclude(req, lk);
  }

  // --- pollable (concept.hpp) ------------------------------------------------

  /// The message's length once it arrived (the request is then consumed),
  /// nullopt while pending; throws like wait() when the request failed.
  std::optional<std::size_t> test(recv_request& req) {
    check_usable("test(recv)", req.peer);
    if (!req.state) throw config_error(where("test(recv)", req.peer) + ": empty request");
    auto& box = *w_->boxes[idx(rank_)];
    std::unique_lock lk(box.mu);
    if (!settled(req)) return std::nullopt;
    const std::size_t n = conclude(req, lk);
    req.state.reset();
    return n;
  }

  /// Index of a request that completed or failed, or nullopt after `bound`.
  std::optional<std::size_t> wait_any(std::span<recv_request* const> reqs,
                                      std::chrono::milliseconds bound) {
    if (!w_) throw peer_error("inproc wait_any: endpoint was moved from");
    auto& box = *w_->boxes[idx(rank_)];
    std::optional<std::size_t> hit;
    const auto scan = [&] {
      for (std::size_t i = 0; i < reqs.size(); ++i)
        if (reqs[i] && reqs[i]->state && settled(*reqs[i])) {
          hit = i;
          return true;
        }
      return false;
    };
    std::unique_lock lk(box.mu);
    box.cv.wait_for(lk, bound, scan);
    return hit;
  }

  /// Withdraws a posted receive; its buffer is not touched afterwards.
  void cancel(recv_request& req) {
    if (!req.state || !w_) return;
    auto& box = *w_->boxes[idx(rank_)];
    std::lock_guard lk(box.mu);
    withdraw(req);
    req.state.reset();
  }

  /// Whether operations with `peer` fail on this endpoint (isolation only).
  bool peer_failed(int peer) const {
    return peer >= 0 && peer < size() && !failed_.empty() && failed_[idx(peer)];
  }
  bool isolates_peer_failures() const noexcept { return w_ && w_->opts.isolate_peer_failures; }

  void send(int peer, std::span<const std::byte> bytes) {
    auto r = isend(peer, bytes);
    wait(r);
  }
  std::size_t recv(int peer, std::span<std::byte> buffer) {
    auto r = irecv(peer, buffer);
    return wait(r);
  }
  std::size_t sendrecv(int to, std::span<const std::byte> out, int from, std::span<std::byte> in) {
    auto r = irecv(from, in);
    auto s = isend(to, out);
    const std::size_t n = wait(r);
    wait(s);
    return n;
  }

 private:
  friend class inproc_world;
  inproc(std::shared_ptr<inproc_detail::world_state> w, int rank)
      : w_(std::move(w)), rank_(rank), timeout_(w_->opts.timeout) {}

  static std::size_t idx(int r) noexcept { return static_cast<std::size_t>(r); }

  // Under the box lock: the request completed, or can no longer complete.
  bool settled(const recv_request& req) const {
    return req.state->done || w_->dead[idx(req.peer)] || w_->dead[idx(rank_)] ||
           peer_failed(req.peer);
  }

  // Under the box lock.
  void withdraw(const recv_request& req) {
    auto& rq = w_->boxes[idx(rank_)]->recvs[idx(req.peer)];
    auto it =
        std::find_if(rq.begin(), rq.end(), [&](const auto& r) { return r.state == req.state; });
    if (it != rq.end()) rq.erase(it);
  }

  // A settled request: its length, or its error (the lock is released first).
  std::size_t conclude(recv_request& req, std::unique_lock<std::mutex>& lk) {
    if (req.state->done) {
      const auto st = *req.state;
      lk.unlock();
      if (st.failed)
        fail(peer_error(detail::str(where("recv", req.peer), ": message of ", st.length,
                                    " bytes exceeds the receive buffer of ", req.capacity,
                                    " bytes")),
             req.peer);
      w_->received[idx(rank_)] += st.length + inproc_header_bytes;
      return st.length;
    }
    // The peer may be dead with our message already queued: it would have matched.
    withdraw(req);
    lk.unlock();
    const bool self = w_->dead[idx(rank_)];
    fail(peer_error(detail::str(where("recv", req.peer), ": ",
                                self                    ? "this rank was killed"
                                : peer_failed(req.peer) ? "peer failed earlier"
                                                        : "peer rank died",
                                " before sending")),
         self ? -1 : req.peer);
  }

  std::string where(const char* op, int peer) const {
    return detail::str("inproc rank ", rank_, " ", op, " peer ", peer);
  }

  void check_usable(const char* op, int peer) {
    if (!w_) throw peer_error(detail::str("inproc ", op, ": endpoint was moved from"));
    if (!broken_.empty())
      throw peer_error(detail::str(where(op, peer), ": endpoint unusable after an earlier error (",
                                   broken_, "); build a new world"));
    if (peer < 0 || peer >= w_->size || peer == rank_)
      throw config_error(detail::str(where(op, peer), ": peer must be in [0, ", w_->size,
                                     ") and differ from this rank"));
    if (peer_failed(peer))
      throw peer_error(detail::str(where(op, peer), ": peer failed earlier on this endpoint"));
    if (w_->dead[idx(rank_)]) {
      broken_ = "this rank was killed";
      throw peer_error(where(op, peer) + ": this rank was killed");
    }
  }

  // `peer`: the peer the error is about (-1: this rank itself). With
  // isolation only that peer is marked failed; else the endpoint breaks.
  template <class E>
  [[noreturn]] void fail(const E& e, int peer) {
    if (peer >= 0 && w_->opts.isolate_peer_failures) {
      if (failed_.empty()) failed_.assign(idx(w_->size), false);
      failed_[idx(peer)] = true;
      w_->boxes[idx(rank_)]->cv.notify_all();
      throw e;
    }
    broken_ = e.what();
    w_->kill(rank_);
    throw e;
  }

  std::shared_ptr<inproc_detail::world_state> w_;
  int rank_ = 0;
  std::chrono::milliseconds timeout_{};
  std::string broken_;
  std::vector<bool> failed_;  // isolation: peers failed on this endpoint
};

/// The shared state of `size` in-process ranks. Outlives no endpoint: endpoints
/// keep it alive.
class inproc_world {
 public:
  explicit inproc_world(int size, inproc_options opts = {})
      : s_(std::make_shared<inproc_detail::world_state>()) {
    if (size < 1) throw config_error(detail::str("inproc_world size must be >= 1, got ", size));
    if (opts.timeout.count() <= 0)
      throw config_error(
          detail::str("inproc timeout must be positive, got ", opts.timeout.count(), " ms"));
    const auto n = static_cast<std::size_t>(size);
    s_->size = size;
    s_->opts = opts;
    s_->dead = std::make_unique<std::atomic<bool>[]>(n);
    s_->taken = std::make_unique<std::atomic<bool>[]>(n);
    s_->sent = std::make_unique<std::atomic<std::uint64_t>[]>(n);
    s_->received = std::make_unique<std::atomic<std::uint64_t>[]>(n);
    for (std::size_t i = 0; i < n; ++i) {
      auto box = std::make_unique<inproc_detail::mailbox>();
      box->sends.resize(n);
      box->recvs.resize(n);
      s_->boxes.push_back(std::move(box));
      s_->dead[i] = false;
      s_->taken[i] = false;
      s_->sent[i] = 0;
      s_->received[i] = 0;
    }
  }

  int size() const noexcept { return s_->size; }

  /// Rank r's endpoint; each rank can be taken once.
  inproc rank(int r) {
    if (r < 0 || r >= s_->size)
      throw config_error(detail::str("inproc_world rank ", r, " out of [0, ", s_->size, ")"));
    if (s_->taken[static_cast<std::size_t>(r)].exchange(true))
      throw config_error(detail::str("inproc_world rank ", r, " was already taken"));
    return inproc(s_, r);
  }

  /// Marks rank r dead, as if its process crashed (see the header comment).
  void kill(int r) {
    if (r < 0 || r >= s_->size)
      throw config_error(detail::str("inproc_world kill: rank ", r, " out of [0, ", s_->size, ")"));
    s_->kill(r);
  }
  bool is_dead(int r) const { return s_->dead[static_cast<std::size_t>(r)].load(); }

 private:
  std::shared_ptr<inproc_detail::world_state> s_;
};

static_assert(transport<inproc>);
static_assert(pollable<inproc>);

}  // namespace greenreduce::transport
