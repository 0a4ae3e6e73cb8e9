// examples/train/colocated.hpp — a parameter-server world that shares rank 0's process.
//
// The demo trains on the same np ranks in every mode, so the parameter server
// cannot be an extra process: it runs as threads inside rank 0, next to
// worker 0. `colocated_link` makes that a transport (transport/concept.hpp) of
// np + 1 ranks over the np-rank transport the ring uses:
//
//   ps rank 0      the server   (base rank 0's process, its own threads)
//   ps rank 1 + i  worker i     (base rank i)
//
// Server <-> worker i (i >= 1) messages go over the base transport between
// base ranks 0 and i; server <-> worker 0 messages go through a locked queue
// in rank 0's process (`local_pipe`) and cross no wire, so they are not
// counted by bytes_sent()/bytes_received() (worker 0's reports show 0 wire
// bytes; its codec work is still counted). Every other endpoint reports the
// base transport's counters: in PS modes the base is used by nothing else.
//
// Threads: the server drives its endpoint from one receive thread per worker
// plus a replying thread (docs/parameter_server.md). The local queue is
// locked; the base must accept operations on different peers from different
// threads — transport::tcp does (its engine posts under a mutex to one io
// thread and waits on a condition variable). inproc does not.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/concept.hpp"

namespace greenreduce::examples {

/// The two in-process queues between the server and worker 0 (in base rank 0).
class local_pipe {
 public:
  explicit local_pipe(std::chrono::milliseconds timeout) : timeout_(timeout) {}

  /// dir 0: server -> worker 0, dir 1: worker 0 -> server.
  void push(int dir, std::span<const std::byte> bytes) {
    auto& q = q_[dir];
    {
      std::lock_guard lock(q.m);
      q.msgs.emplace_back(bytes.begin(), bytes.end());
    }
    q.cv.notify_all();
  }

  std::size_t pop(int dir, std::span<std::byte> buf) {
    auto& q = q_[dir];
    std::unique_lock lock(q.m);
    if (!q.cv.wait_for(lock, timeout_, [&] { return !q.msgs.empty(); }))
      throw timeout_error(greenreduce::detail::str(
          "colocated parameter server: in-process ", dir == 0 ? "reply to" : "request from",
          " worker 0 did not arrive within ", timeout_.count(), " ms"));
    std::vector<std::byte> msg = std::move(q.msgs.front());
    q.msgs.pop_front();
    if (msg.size() > buf.size())
      throw peer_error(
          greenreduce::detail::str("colocated parameter server: in-process message of ", msg.size(),
                                   " bytes, buffer of ", buf.size()));
    if (!msg.empty()) std::memcpy(buf.data(), msg.data(), msg.size());
    return msg.size();
  }

 private:
  struct queue {
    std::mutex m;
    std::condition_variable cv;
    std::deque<std::vector<std::byte>> msgs;
  };
  std::chrono::milliseconds timeout_;
  queue q_[2];
};

/// One endpoint of the np + 1 rank parameter-server world (see the header comment).
template <transport::transport Base>
class colocated_link {
 public:
  class send_request {
   public:
    send_request() = default;

   private:
    friend class colocated_link;
    std::optional<typename Base::send_request> base_;
  };
  class recv_request {
   public:
    recv_request() = default;

   private:
    friend class colocated_link;
    std::optional<typename Base::recv_request> base_;
    std::span<std::byte> local_;
  };

  /// `ps_rank` 0 (server) and 1 (worker 0) need `pipe` and base.rank() == 0;
  /// ps rank 1 + i needs base.rank() == i.
  colocated_link(Base& base, int ps_rank, local_pipe* pipe)
      : base_(base), rank_(ps_rank), pipe_(pipe) {
    const int expect_base = ps_rank == 0 ? 0 : ps_rank - 1;
    if (ps_rank < 0 || ps_rank > base.size() || base.rank() != expect_base)
      throw config_error(greenreduce::detail::str("colocated_link: ps rank ", ps_rank,
                                                  " cannot live on base rank ", base.rank(), " of ",
                                                  base.size()));
    if (ps_rank <= 1 && !pipe)
      throw config_error("colocated_link: the server and worker 0 need the local pipe");
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return base_.size() + 1; }

  send_request isend(int peer, std::span<const std::byte> bytes) {
    send_request r;
    if (is_local(peer))
      pipe_->push(rank_ == 0 ? 0 : 1, bytes);
    else
      r.base_.emplace(base_.isend(base_rank(peer), bytes));
    return r;
  }
  recv_request irecv(int peer, std::span<std::byte> buffer) {
    recv_request r;
    if (is_local(peer))
      r.local_ = buffer;
    else
      r.base_.emplace(base_.irecv(base_rank(peer), buffer));
    return r;
  }
  void wait(send_request& r) {
    if (r.base_) base_.wait(*r.base_);
    r.base_.reset();
  }
  std::size_t wait(recv_request& r) {
    if (r.base_) {
      const std::size_t n = base_.wait(*r.base_);
      r.base_.reset();
      return n;
    }
    return pipe_->pop(rank_ == 0 ? 1 : 0, r.local_);
  }
  void send(int peer, std::span<const std::byte> bytes) {
    auto r = isend(peer, bytes);
    wait(r);
  }
  std::size_t recv(int peer, std::span<std::byte> buffer) {
    auto r = irecv(peer, buffer);
    return wait(r);
  }
  std::size_t sendrecv(int dst, std::span<const std::byte> out, int src, std::span<std::byte> in) {
    auto s = isend(dst, out);
    auto r = irecv(src, in);
    const std::size_t n = wait(r);
    wait(s);
    return n;
  }

  /// Wire bytes only: worker 0's in-process link counts nothing.
  std::uint64_t bytes_sent() const noexcept { return rank_ == 1 ? 0 : base_.bytes_sent(); }
  std::uint64_t bytes_received() const noexcept { return rank_ == 1 ? 0 : base_.bytes_received(); }

 private:
  bool is_local(int peer) const noexcept {
    return (rank_ == 0 && peer == 1) || (rank_ == 1 && peer == 0);
  }
  int base_rank(int peer) const {
    if (peer < 0 || peer > base_.size() || peer == rank_)
      throw config_error(
          greenreduce::detail::str("colocated_link: rank ", rank_, " cannot address peer ", peer));
    return peer == 0 ? 0 : peer - 1;
  }

  Base& base_;
  int rank_;
  local_pipe* pipe_;
};

}  // namespace greenreduce::examples
