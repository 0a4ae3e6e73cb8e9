// tests/ps/mailbox.hpp — a minimal thread-safe in-process transport for the
// parameter-server tests: one locked queue per ordered pair of ranks.
//
// Unlike a collective's transport it keeps failures per peer: close() on one
// endpoint makes its peers' receives from it fail with peer_error, and a
// timeout names the pair, while every other pair stays usable. That is what
// the server's failure handling needs to be exercised deterministically.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/concept.hpp"

namespace greenreduce::test {

class mailbox_world {
 public:
  explicit mailbox_world(int n, std::chrono::milliseconds timeout = std::chrono::seconds(20))
      : n_(n), timeout_(timeout), closed_(static_cast<std::size_t>(n)) {
    for (int i = 0; i < n * n; ++i) boxes_.push_back(std::make_unique<box>());
    for (auto& c : closed_) c = false;
  }

  class endpoint {
   public:
    struct send_request {};
    struct recv_request {
      int peer = -1;
      std::span<std::byte> buf;
    };

    endpoint(mailbox_world& w, int rank) : w_(&w), rank_(rank) {}
    int rank() const { return rank_; }
    int size() const { return w_->n_; }

    send_request isend(int peer, std::span<const std::byte> bytes) {
      if (w_->closed_[static_cast<std::size_t>(rank_)])
        throw peer_error(detail::str("mailbox rank ", rank_, " is closed"));
      auto& b = w_->at(rank_, peer);
      {
        std::lock_guard lock(b.m);
        b.q.emplace_back(bytes.begin(), bytes.end());
      }
      b.cv.notify_all();
      sent_ += bytes.size();
      return {};
    }
    recv_request irecv(int peer, std::span<std::byte> buf) { return {peer, buf}; }
    void wait(send_request&) {}
    std::size_t wait(recv_request& r) {
      auto& b = w_->at(r.peer, rank_);
      std::unique_lock lock(b.m);
      const bool ok = b.cv.wait_for(lock, w_->timeout_, [&] {
        return !b.q.empty() || w_->closed_[static_cast<std::size_t>(r.peer)] ||
               w_->closed_[static_cast<std::size_t>(rank_)];
      });
      if (b.q.empty()) {
        if (!ok)
          throw timeout_error(detail::str("mailbox rank ", rank_, " recv from ", r.peer,
                                          " exceeded ", w_->timeout_.count(), " ms"));
        throw peer_error(
            detail::str("mailbox rank ", rank_, " recv from ", r.peer, ": connection closed"));
      }
      auto msg = std::move(b.q.front());
      b.q.pop_front();
      if (msg.size() > r.buf.size())
        throw peer_error(detail::str("mailbox rank ", rank_, " recv from ", r.peer, ": message of ",
                                     msg.size(), " bytes, buffer of ", r.buf.size()));
      if (!msg.empty()) std::memcpy(r.buf.data(), msg.data(), msg.size());
      received_ += msg.size();
      return msg.size();
    }
    void send(int peer, std::span<const std::byte> bytes) {
      auto r = isend(peer, bytes);
      wait(r);
    }
    std::size_t recv(int peer, std::span<std::byte> buf) {
      auto r = irecv(peer, buf);
      return wait(r);
    }
    std::size_t sendrecv(int to, std::span<const std::byte> out, int from,
                         std::span<std::byte> in) {
      send(to, out);
      return recv(from, in);
    }
    std::uint64_t bytes_sent() const { return sent_; }
    std::uint64_t bytes_received() const { return received_; }

    /// This rank "dies": peers' receives from it fail once its queue drains.
    void close() { w_->close(rank_); }

   private:
    mailbox_world* w_;
    int rank_;
    std::atomic<std::uint64_t> sent_{0}, received_{0};
  };

  void close(int rank) {
    closed_[static_cast<std::size_t>(rank)] = true;
    for (auto& b : boxes_) {
      { std::lock_guard lock(b->m); }
      b->cv.notify_all();
    }
  }

 private:
  struct box {
    std::mutex m;
    std::condition_variable cv;
    std::deque<std::vector<std::byte>> q;
  };
  box& at(int src, int dst) { return *boxes_[static_cast<std::size_t>(src * n_ + dst)]; }

  int n_;
  std::chrono::milliseconds timeout_;
  std::vector<std::unique_ptr<box>> boxes_;
  std::vector<std::atomic<bool>> closed_;
};

static_assert(transport::transport<mailbox_world::endpoint>);

}  // namespace greenreduce::test
