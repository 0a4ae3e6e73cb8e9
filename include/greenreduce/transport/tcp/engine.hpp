// greenreduce/transport/tcp/engine.hpp — the io thread behind transport::tcp.
//
// One io_context and one background thread per transport own every socket.
// The caller's thread posts receives and waits on a condition variable, so a
// rank reads from one peer while it writes to another (or the same) peer: the
// ring's full duplex. Per connection at most one write and one read are in
// flight; sends and receives queue in FIFO order per peer.
//
// Sends are written by the caller's thread first, as Gloo's pairs do: when
// nothing is queued on the connection, isend writes header and payload with
// non-blocking sendmsg calls right away (what the socket takes without
// waiting) and hands only the rest to the io thread. The two copies of a full
// duplex exchange (into the kernel, out of it) then run on two threads, and a
// send that fits the socket buffer costs no thread handoff. A direct write
// never blocks, so isend keeps its asynchronous contract; the connection's
// send state (queue, writing flag, sequence number, whether direct writes are
// allowed) is guarded by a per-connection mutex, which is also held while the
// io thread closes that socket, so a direct write never reaches a closed or
// reused descriptor. After any failure, a goodbye or shutdown, direct writes
// stop and sends take the io thread's path, which reports the error.
//
// Invariants:
//  - A header read is always outstanding on an idle connection, so a peer that
//    dies (EOF or reset without a goodbye frame) fails the transport at once,
//    even while this rank waits on another peer.
//  - A payload is read straight into the caller's posted buffer after its
//    header said how long it is; longer than the buffer -> peer_error.
//  - After the first error (peer_error, timeout_error) every outstanding
//    operation is cancelled on the io thread before the error reaches the
//    caller, so no caller buffer is touched after wait() throws. Sockets stay
//    open until destruction (peers see the failure as EOF only then).
//  - Connection set-up is bounded: an accepted connection must authenticate
//    (with a secret) and say hello within hello_timeout or it is closed; at
//    most max_pending_connections accepted ones wait at a time, and a new one
//    evicts the oldest, so neither a flood nor a slow trickle of strangers can
//    hold the listening port. A dialled connection that is cut before its
//    hello (the acceptor evicted it, was not listening yet, or timed out) is
//    dialled again until the set-up deadline; a wrong answer is fatal.
//  - Counters add what each read and write moved, frame headers included (a
//    received header is counted when its message is delivered, so counters
//    are exact when wait() returns); hello and goodbye frames (set-up and
//    teardown) are not counted.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/auth.hpp"
#include "greenreduce/transport/store.hpp"
#include "greenreduce/transport/tcp/wire.hpp"

namespace greenreduce::transport::detail {

/// One isend or irecv; completion fields are guarded by the engine's mutex.
struct tcp_op {
  int peer = -1;
  std::byte* data = nullptr;  // const for sends; never written through then
  std::size_t size = 0;
  std::array<std::byte, tcp_wire::header_bytes> header{};
  std::size_t written = 0;  // sends: header + payload bytes already on the socket
  bool framed = false;      // sends: header encoded (its sequence number taken)
  bool done = false;
  bool failed = false;  // isolation: this op's peer failed; `error` says why
  std::string error;
  std::size_t length = 0;
};

struct tcp_engine_options {
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{30000};
  std::size_t socket_buffer_bytes = 0;
  std::size_t max_pending_connections = 32;
  std::chrono::milliseconds hello_timeout{10000};
  std::function<void(const std::string&)> log;
  bool isolate_peer_failures = false;
  std::shared_ptr<const peer_auth> auth;  ///< null: no authentication
};

class tcp_engine {
 public:
  enum class failure { none, peer, timeout };

  explicit tcp_engine(tcp_engine_options o)
      : o_(std::move(o)), acceptor_(io_), work_(io_.get_executor()) {
    conns_.resize(static_cast<std::size_t>(o_.size));
    connected_.assign(static_cast<std::size_t>(o_.size), false);
    peer_failed_.assign(static_cast<std::size_t>(o_.size), false);
    last_dial_error_.resize(static_cast<std::size_t>(o_.size));
  }
  tcp_engine(const tcp_engine&) = delete;
  tcp_engine& operator=(const tcp_engine&) = delete;

  ~tcp_engine() {
    if (!thread_.joinable()) return;
    // Say goodbye on every healthy connection, then close everything.
    std::unique_lock lk(mu_);
    byes_pending_ = -1;
    lk.unlock();
    net::post(io_, [this] { begin_shutdown(); });
    lk.lock();
    cv_.wait_for(lk, o_.timeout, [this] { return byes_pending_ == 0; });
    lk.unlock();
    net::post(io_, [this] { close_all(); });
    work_.reset();
    thread_.join();
  }

  /// Opens the listening socket on ip:0 and starts the io thread; "ip:port".
  std::string listen(const std::string& ip) {
    boost::system::error_code ec;
    const auto addr = net::ip::make_address_v4(ip, ec);
    if (ec) throw config_error(str("rank ", o_.rank, ": listen address \"", ip, "\" is not IPv4"));
    const net_tcp::endpoint ep(addr, 0);
    acceptor_.open(ep.protocol());
    acceptor_.bind(ep, ec);
    if (ec)
      throw config_error(str("rank ", o_.rank, ": cannot listen on ", ip, ": ", ec.message()));
    // Pending connections are bounded above the kernel (eviction, see the
    // header comment); a short backlog would only delay ranks behind strangers.
    acceptor_.listen(net::socket_base::max_listen_connections);
    thread_ = std::thread([this] { io_.run(); });
    return str(ip, ":", acceptor_.local_endpoint().port());
  }

  /// Connects the full mesh: this rank dials every lower rank and accepts
  /// every higher one. Blocks until done or `deadline` (timeout_error).
  void connect_mesh(const std::vector<net_tcp::endpoint>& peers, std::uint64_t token,
                    steady::time_point deadline, std::chrono::milliseconds bound) {
    token_ = token;
    net::post(io_, [this, peers] {
      for (int j = 0; j < o_.rank; ++j) dial(j, peers[static_cast<std::size_t>(j)]);
      if (o_.rank < o_.size - 1)
        accept();
      else
        close_acceptor();
    });
    std::unique_lock lk(mu_);
    const bool done = cv_.wait_until(lk, deadline, [this] {
      return failure_ != failure::none || connected_count_ == o_.size - 1;
    });
    if (failure_ != failure::none) throw_failure(lk, true);
    if (done) return;
    std::string missing;
    for (int j = 0; j < o_.size; ++j)
      if (j != o_.rank && !connected_[static_cast<std::size_t>(j)]) {
        missing += (missing.empty() ? "" : ", ") + std::to_string(j);
        if (const auto& e = last_dial_error_[static_cast<std::size_t>(j)]; !e.empty())
          missing += " (last attempt: " + e + ")";
      }
    fail_and_throw(
        lk, failure::timeout,
        str("rank ", o_.rank, ": connection setup did not complete within ", bound.count(),
            " ms (GREENREDUCE_CONNECT_TIMEOUT_MS); not connected: rank ", missing));
  }

  std::shared_ptr<tcp_op> post(bool is_send, int peer, std::byte* data, std::size_t size) {
    auto op = std::make_shared<tcp_op>();
    op->peer = peer;
    op->data = data;
    op->size = size;
    {
      std::unique_lock lk(mu_);
      if (failure_ != failure::none) throw_failure(lk, false);
    }
    if (is_send && send_from_caller(op)) return op;
    net::post(io_, [this, op, is_send] {
      if (failure_io_) return;
      auto& c = conns_[static_cast<std::size_t>(op->peer)];
      if (c->failed) return fail_op(op, c->why);
      if (c->bye && o_.isolate_peer_failures)
        return fail_op(
            op, str("rank ", o_.rank, ": ", is_send ? "send to" : "recv from", " rank ", op->peer,
                    ": rank ", op->peer, " already closed its transport (goodbye received)"));
      if (c->bye) {
        fail(failure::peer,
             str("rank ", o_.rank, ": ", is_send ? "send to" : "recv from", " rank ", op->peer,
                 ": rank ", op->peer, " already closed its transport (goodbye received)"));
        return;
      }
      if (is_send) {
        {
          std::lock_guard g(c->tx_mu);
          c->sends.push_back(op);
        }
        pump_write(c);
      } else {
        c->recvs.push_back(op);
        pump_read(c);
      }
    });
    return op;
  }

  /// Blocks until `op` completes; the error of the transport, or timeout_error
  /// naming `what` when `deadline` passes first.
  std::size_t wait(const std::shared_ptr<tcp_op>& op, steady::time_point deadline,
                   const std::string& what) {
    std::unique_lock lk(mu_);
    cv_.wait_until(lk, deadline,
                   [&] { return op->done || op->failed || failure_ != failure::none; });
    if (op->done) return op->length;
    if (op->failed) throw peer_error(op->error);
    if (failure_ != failure::none) throw_failure(lk, true);
    if (o_.isolate_peer_failures) {
      const std::string why = str("rank ", o_.rank, ": ", what, " did not complete within ",
                                  o_.timeout.count(), " ms (GREENREDUCE_TIMEOUT_MS)");
      lk.unlock();
      const int peer = op->peer;
      on_io([this, peer, why] { fail_conn(conns_[static_cast<std::size_t>(peer)], why); });
      throw timeout_error(why);
    }
    fail_and_throw(lk, failure::timeout,
                   str("rank ", o_.rank, ": ", what, " did not complete within ",
                       o_.timeout.count(), " ms (GREENREDUCE_TIMEOUT_MS)"));
  }

  // --- pollable (transport/concept.hpp) --------------------------------------

  /// Completed: its length; failed: throws; pending: nullopt.
  std::optional<std::size_t> test(const std::shared_ptr<tcp_op>& op) {
    std::unique_lock lk(mu_);
    if (op->done) return op->length;
    if (op->failed) throw peer_error(op->error);
    if (failure_ != failure::none) throw_failure(lk, true);
    return std::nullopt;
  }

  /// Index of an op (null entries skipped) that completed or failed, or nullopt at `deadline`.
  std::optional<std::size_t> wait_any(std::span<tcp_op* const> ops, steady::time_point deadline) {
    std::optional<std::size_t> hit;
    std::unique_lock lk(mu_);
    cv_.wait_until(lk, deadline, [&] {
      for (std::size_t i = 0; i < ops.size(); ++i)
        if (ops[i] && (ops[i]->done || ops[i]->failed || failure_ != failure::none)) {
          hit = i;
          return true;
        }
      return false;
    });
    return hit;
  }

  /// Withdraws a posted receive. If its payload is being read right now the
  /// connection to that peer is failed instead (isolation) or the transport is.
  void cancel(const std::shared_ptr<tcp_op>& op) {
    {
      std::lock_guard g(mu_);
      if (op->done || op->failed) return;
    }
    on_io([this, op] {
      auto& c = conns_[static_cast<std::size_t>(op->peer)];
      if (!c || failure_io_) return;
      auto it = std::find(c->recvs.begin(), c->recvs.end(), op);
      if (it == c->recvs.end()) return;
      if (it == c->recvs.begin() && c->have_header && c->reading) {
        const auto why = str("rank ", o_.rank, ": recv from rank ", op->peer,
                             " cancelled while its message was being read");
        if (o_.isolate_peer_failures) return fail_conn(c, why);
        return fail(failure::peer, why);
      }
      c->recvs.erase(it);
    });
  }

  bool peer_failed(int peer) const {
    std::lock_guard g(mu_);
    return peer >= 0 && peer < o_.size && peer_failed_[static_cast<std::size_t>(peer)];
  }
  bool isolates_peer_failures() const noexcept { return o_.isolate_peer_failures; }

  std::uint64_t bytes_sent() const noexcept { return sent_.load(std::memory_order_relaxed); }
  std::uint64_t bytes_received() const noexcept {
    return received_.load(std::memory_order_relaxed);
  }
  std::size_t dropped_connections() const noexcept { return dropped_.load(); }

 private:
  struct conn {
    explicit conn(net::io_context& io) : sock(io) {}
    int peer = -1;
    net_tcp::socket sock;
    // Send state, shared with callers' direct writes (see the header comment).
    std::mutex tx_mu;
    std::deque<std::shared_ptr<tcp_op>> sends;
    bool writing = false;
    bool direct = false;  // callers may write; cleared for good on failure, goodbye, shutdown
    std::uint32_t tx_seq = 0;
    // Receive state, io thread only.
    std::deque<std::shared_ptr<tcp_op>> recvs;
    bool reading = false, have_header = false, bye = false;
    std::array<std::byte, tcp_wire::header_bytes> rx{};
    bool failed = false;  // isolation: this peer failed; `why` says how
    std::string why;
    std::uint32_t rx_seq = 0;
    std::uint64_t rx_len = 0;
  };
  // A connection that has not said hello yet (accepted) or not heard it (dialled).
  struct handshake {
    explicit handshake(net::io_context& io) : sock(io), timer(io) {}
    net_tcp::socket sock;
    net::steady_timer timer;
    int expect = -1;  // dialled rank; -1 when accepted
    bool timed_out = false;
    bool finished = false;  // dropped or installed: later handlers do nothing
    std::uint32_t auth_rank = auth_wire::no_rank;
    std::array<std::byte, tcp_wire::hello_bytes> in{}, out{};
    std::string from;
  };

  void log(const std::string& msg) {
    if (o_.log)
      o_.log(msg);
    else
      std::fprintf(stderr, "[greenreduce tcp] %s\n", msg.c_str());
  }

  // --- failure --------------------------------------------------------------

  // `direct`: the caller's operation was pending when the error happened. The
  // first call to see an error gets the error itself; later calls are told
  // the transport is unusable and why.
  [[noreturn]] void throw_failure(std::unique_lock<std::mutex>&, bool direct) {
    const bool first = !reported_;
    reported_ = true;
    if (!direct && !first)
      throw peer_error(str("rank ", o_.rank,
                           ": transport unusable after an earlier error; "
                           "build a new one. The error was: ",
                           what_));
    if (failure_ == failure::timeout) throw timeout_error(what_);
    throw peer_error(what_);
  }

  // From the caller's thread: record, make the io thread cancel everything, throw.
  [[noreturn]] void fail_and_throw(std::unique_lock<std::mutex>& lk, failure kind,
                                   const std::string& what) {
    if (failure_ == failure::none) {
      failure_ = kind;
      what_ = what;
    }
    fenced_ = false;
    lk.unlock();
    cv_.notify_all();
    net::post(io_, [this] {
      cancel_all();
      std::lock_guard g(mu_);
      fenced_ = true;
      cv_.notify_all();
    });
    lk.lock();
    cv_.wait(lk, [this] { return fenced_; });
    throw_failure(lk, true);
  }

  // From the caller's thread: runs fn on the io thread and waits for it.
  template <class F>
  void on_io(F fn) {
    auto done = std::make_shared<bool>(false);
    net::post(io_, [this, fn = std::move(fn), done]() mutable {
      fn();
      std::lock_guard g(mu_);
      *done = true;
      cv_.notify_all();
    });
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return *done; });
  }

  // On the io thread: fails `op` alone (isolation).
  void fail_op(const std::shared_ptr<tcp_op>& op, const std::string& why) {
    {
      std::lock_guard g(mu_);
      op->failed = true;
      op->error = why;
    }
    cv_.notify_all();
  }

  // On the io thread, isolation: the connection to one peer is dead; fail its
  // operations only, close its socket, keep the others going.
  void fail_conn(const std::shared_ptr<conn>& c, const std::string& why) {
    if (!c || c->failed) return;
    c->failed = true;
    c->why = why;
    std::lock_guard tx(c->tx_mu);
    c->direct = false;
    boost::system::error_code ignored;
    c->sock.close(ignored);
    {
      std::lock_guard g(mu_);
      peer_failed_[static_cast<std::size_t>(c->peer)] = true;
      for (auto& op : c->sends) op->failed = true, op->error = why;
      for (auto& op : c->recvs) op->failed = true, op->error = why;
    }
    c->sends.clear();
    c->recvs.clear();
    cv_.notify_all();
    log(why + " (only this peer's operations fail)");
  }

  // On the io thread: a peer's error, isolated or fatal as configured.
  void fail_peer(const std::shared_ptr<conn>& c, const std::string& why) {
    if (o_.isolate_peer_failures) return fail_conn(c, why);
    fail(failure::peer, why);
  }

  // On the io thread.
  void fail(failure kind, const std::string& what) {
    {
      std::lock_guard g(mu_);
      if (failure_ == failure::none) {
        failure_ = kind;
        what_ = what;
      }
    }
    cv_.notify_all();
    cancel_all();
  }

  void cancel_all() {
    failure_io_ = true;
    close_acceptor();
    for (auto& h : handshakes_) close(*h);
    for (auto& c : conns_) {
      if (!c) continue;
      std::lock_guard tx(c->tx_mu);
      c->direct = false;
      boost::system::error_code ignored;
      c->sock.cancel(ignored);
      c->sends.clear();
      c->recvs.clear();
    }
  }

  void on_error(const std::shared_ptr<conn>& c, const char* dir,
                const boost::system::error_code& ec) {
    if (ec == net::error::operation_aborted || failure_io_ || stopping_ || c->failed) return;
    std::string why;
    if (ec == net::error::eof)
      why = "connection closed without a goodbye (peer process exited, crashed or was killed)";
    else if (ec == net::error::connection_reset || ec == net::error::broken_pipe)
      why = "connection reset (peer process exited, crashed or was killed): " + ec.message();
    else
      why = ec.message();
    fail_peer(c, str("rank ", o_.rank, ": ", dir, " rank ", c->peer, ": ", why));
  }

  void complete(const std::shared_ptr<tcp_op>& op, std::size_t length) {
    {
      std::lock_guard g(mu_);
      op->done = true;
      op->length = length;
    }
    cv_.notify_all();
  }

  // --- data path (io thread) ------------------------------------------------

  // From the caller's thread (post): writes `op` at once when nothing is
  // queued before it; true when all of it went out (the op is complete).
  // Otherwise the op, framed and partly written or not, is queued for the io
  // thread, which writes the rest.
  bool send_from_caller(const std::shared_ptr<tcp_op>& op) {
#if !defined(MSG_NOSIGNAL)
    (void)op;
    return false;  // no per-call SIGPIPE suppression: the io thread writes everything
#else
    const auto& c = conns_[static_cast<std::size_t>(op->peer)];
    if (!c) return false;
    std::unique_lock tx(c->tx_mu);
    if (!c->direct || c->writing || !c->sends.empty()) return false;
    tcp_wire::encode_header(op->header, tcp_wire::data_magic, c->tx_seq++, op->size);
    op->framed = true;
    const std::size_t total = tcp_wire::header_bytes + op->size;
    const int fd = c->sock.native_handle();
    while (op->written < total) {
      const std::size_t off = op->written;
      ::iovec iov[2];
      int k = 0;
      if (off < tcp_wire::header_bytes)
        iov[k++] = {op->header.data() + off, tcp_wire::header_bytes - off};
      const std::size_t poff = off < tcp_wire::header_bytes ? 0 : off - tcp_wire::header_bytes;
      if (poff < op->size) iov[k++] = {op->data + poff, op->size - poff};
      ::msghdr m{};
      m.msg_iov = iov;
      m.msg_iovlen = static_cast<decltype(m.msg_iovlen)>(k);
      const ::ssize_t n = ::sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        op->written += static_cast<std::size_t>(n);
        sent_.fetch_add(static_cast<std::size_t>(n), std::memory_order_relaxed);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        break;  // full (EAGAIN) or an error, which the io thread's write reports
      }
    }
    if (op->written == total) {
      tx.unlock();
      complete(op, op->size);
      return true;
    }
    c->sends.push_back(op);
    tx.unlock();
    net::post(io_, [this, c] { pump_write(c); });
    return true;
#endif
  }

  void pump_write(const std::shared_ptr<conn>& c) {
    std::unique_lock tx(c->tx_mu);
    if (failure_io_ || stopping_ || c->failed || c->writing || c->sends.empty()) return;
    auto& op = c->sends.front();
    if (!op->framed) {
      tcp_wire::encode_header(op->header, tcp_wire::data_magic, c->tx_seq++, op->size);
      op->framed = true;
    }
    c->writing = true;
    const std::size_t off = op->written;
    const std::size_t hoff = std::min(off, tcp_wire::header_bytes);
    const std::size_t poff = off - hoff;
    const std::array<net::const_buffer, 2> bufs{
        net::buffer(op->header.data() + hoff, tcp_wire::header_bytes - hoff),
        net::buffer(op->data + poff, op->size - poff)};
    tx.unlock();
    net::async_write(c->sock, bufs, [this, c](boost::system::error_code ec, std::size_t n) {
      sent_.fetch_add(n, std::memory_order_relaxed);
      std::unique_lock tx2(c->tx_mu);
      c->writing = false;
      if (ec) {
        tx2.unlock();
        return on_error(c, "send to", ec);
      }
      if (failure_io_ || c->failed || c->sends.empty()) return;
      auto op = std::move(c->sends.front());
      c->sends.pop_front();
      tx2.unlock();
      complete(op, op->size);
      pump_write(c);
    });
  }

  void pump_read(const std::shared_ptr<conn>& c) {
    if (failure_io_ || stopping_ || c->failed || c->reading || c->bye) return;
    if (!c->have_header) {
      c->reading = true;
      net::async_read(c->sock, net::buffer(c->rx),
                      [this, c](boost::system::error_code ec, std::size_t) {
                        c->reading = false;
                        if (ec) return on_error(c, "recv from", ec);
                        on_header(c);
                      });
      return;
    }
    if (c->recvs.empty()) return;
    auto op = c->recvs.front();
    if (c->rx_len > op->size)
      return fail_peer(
          c, str("rank ", o_.rank, ": recv from rank ", c->peer, ": message of ", c->rx_len,
                 " bytes is longer than the posted receive buffer of ", op->size, " bytes"));
    const auto len = static_cast<std::size_t>(c->rx_len);
    if (len == 0) return finish_recv(c, 0);
    c->reading = true;
    net::async_read(c->sock, net::buffer(op->data, len),
                    [this, c, len](boost::system::error_code ec, std::size_t n) {
                      c->reading = false;
                      received_.fetch_add(n, std::memory_order_relaxed);
                      if (ec) return on_error(c, "recv from", ec);
                      finish_recv(c, len);
                    });
  }

  void on_header(const std::shared_ptr<conn>& c) {
    if (failure_io_ || stopping_ || c->failed) return;
    const auto magic = load_le<std::uint32_t>(c->rx.data());
    const auto seq = load_le<std::uint32_t>(c->rx.data() + 4);
    if (magic == tcp_wire::bye_magic) {
      c->bye = true;
      {
        std::lock_guard tx(c->tx_mu);
        c->direct = false;
      }
      if (!c->recvs.empty())
        fail_peer(c, str("rank ", o_.rank, ": recv from rank ", c->peer, ": rank ", c->peer,
                         " closed its transport before sending the message"));
      return;
    }
    if (magic != tcp_wire::data_magic || seq != c->rx_seq)
      return fail_peer(c, str("rank ", o_.rank, ": recv from rank ", c->peer,
                              ": protocol violation: frame magic 0x", std::hex, magic, " sequence ",
                              std::dec, seq, " (expected data frame ", c->rx_seq, ")"));
    ++c->rx_seq;
    c->rx_len = load_le<std::uint64_t>(c->rx.data() + 8);
    c->have_header = true;
    pump_read(c);
  }

  void finish_recv(const std::shared_ptr<conn>& c, std::size_t len) {
    if (failure_io_ || c->failed || c->recvs.empty()) return;
    auto op = std::move(c->recvs.front());
    c->recvs.pop_front();
    c->have_header = false;
    // The header counts with its message, so the counters are exact at wait().
    received_.fetch_add(tcp_wire::header_bytes, std::memory_order_relaxed);
    complete(op, len);
    pump_read(c);
  }

  // --- connection setup (io thread) -----------------------------------------

  void close(handshake& h) {
    boost::system::error_code ignored;
    h.sock.close(ignored);
    h.timer.cancel();
  }

  void close_acceptor() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  }

  void forget(const std::shared_ptr<handshake>& h) {
    std::erase(handshakes_, h);
  }

  void drop(const std::shared_ptr<handshake>& h, const std::string& why) {
    if (h->finished) return;
    h->finished = true;
    ++dropped_;
    log(str("rank ", o_.rank, ": dropped connection from ", h->from, ": ", why));
    close(*h);
    forget(h);
  }

  void accept() {
    auto h = std::make_shared<handshake>(io_);
    acceptor_.async_accept(h->sock, [this, h](boost::system::error_code ec) {
      if (ec == net::error::operation_aborted || failure_io_ || stopping_) return;
      if (ec) {
        log(str("rank ", o_.rank, ": accept failed: ", ec.message()));
        return accept();
      }
      boost::system::error_code pec;
      const auto ep = h->sock.remote_endpoint(pec);
      h->from = pec ? std::string("?") : str(ep);
      std::size_t pending = 0;
      std::shared_ptr<handshake> oldest;
      for (auto& x : handshakes_)
        if (x->expect < 0) {
          ++pending;
          if (!oldest) oldest = x;
        }
      if (pending >= o_.max_pending_connections && oldest)
        drop(oldest, str("evicted: ", pending, " accepted connections already wait for their ",
                         o_.auth ? "authentication" : "hello", " (bound ",
                         o_.max_pending_connections, ")"));
      handshakes_.push_back(h);
      arm_handshake_timer(h);
      if (o_.auth) {
        async_authenticate(h->sock, o_.auth, false, auth_wire::role::mesh,
                           static_cast<std::uint32_t>(o_.rank), [this, h](auth_result r) {
                             if (failure_io_ || stopping_ || h->finished) return;
                             if (!r.ok()) return drop(h, h->timed_out ? timed_out_text() : r.why);
                             h->auth_rank = r.peer_rank;
                             read_hello(h);
                           });
      } else {
        read_hello(h);
      }
      accept();
    });
  }

  // A handshake that is not finished by hello_timeout is closed, which ends
  // whichever read or write it waits on.
  void arm_handshake_timer(const std::shared_ptr<handshake>& h) {
    h->timer.expires_after(o_.hello_timeout);
    h->timer.async_wait([h](boost::system::error_code tec) {
      if (tec || h->finished) return;
      h->timed_out = true;
      boost::system::error_code ignored;
      h->sock.close(ignored);
    });
  }

  std::string timed_out_text() const {
    return str("no ", o_.auth ? "authentication and " : "", "hello within ",
               o_.hello_timeout.count(), " ms");
  }

  void read_hello(const std::shared_ptr<handshake>& h) {
    net::async_read(h->sock, net::buffer(h->in),
                    [this, h](boost::system::error_code rec, std::size_t) { on_hello_in(h, rec); });
  }

  void on_hello_in(const std::shared_ptr<handshake>& h, const boost::system::error_code& ec) {
    if (failure_io_ || stopping_ || h->finished) return;
    if (ec)
      return drop(h, h->timed_out ? timed_out_text() : "closed before hello: " + ec.message());
    tcp_wire::hello in;
    try {
      in = tcp_wire::parse_hello(h->in, static_cast<std::uint32_t>(o_.size), token_);
    } catch (const decode_error& e) {
      return drop(h, e.what());
    }
    const int peer = static_cast<int>(in.rank);
    if (o_.auth && in.rank != h->auth_rank)
      return drop(h,
                  str("hello from rank ", in.rank, " after authenticating as rank ", h->auth_rank));
    if (peer <= o_.rank || conns_[static_cast<std::size_t>(peer)])
      return drop(h, str("hello from rank ", peer, ", which ",
                         peer <= o_.rank ? "this rank dials instead" : "is already connected"));
    h->out = tcp_wire::encode_hello(
        {static_cast<std::uint32_t>(o_.rank), static_cast<std::uint32_t>(o_.size), token_});
    net::async_write(h->sock, net::buffer(h->out),
                     [this, h, peer](boost::system::error_code wec, std::size_t) {
                       if (failure_io_ || stopping_ || h->finished) return;
                       if (wec) return drop(h, "closed before our hello: " + wec.message());
                       if (conns_[static_cast<std::size_t>(peer)])
                         return drop(h, str("rank ", peer, " connected twice"));
                       install(h, peer);
                     });
  }

  void dial(int peer, net_tcp::endpoint ep) {
    auto h = std::make_shared<handshake>(io_);
    h->expect = peer;
    h->from = str(ep);
    handshakes_.push_back(h);
    h->sock.async_connect(ep, [this, h, ep](boost::system::error_code ec) {
      if (failure_io_ || stopping_ || h->finished) return;
      if (ec) return redial(h, ep, "connect: " + ec.message());  // not listening yet
      arm_handshake_timer(h);
      if (!o_.auth) return send_hello(h, ep);
      async_authenticate(h->sock, o_.auth, true, auth_wire::role::mesh,
                         static_cast<std::uint32_t>(o_.rank), [this, h, ep](auth_result r) {
                           if (failure_io_ || stopping_ || h->finished) return;
                           if (r.how == auth_result::kind::refused) return dial_failed(h, r.why);
                           if (!r.ok())
                             return redial(h, ep, h->timed_out ? timed_out_text() : r.why);
                           if (r.peer_rank != static_cast<std::uint32_t>(h->expect))
                             return dial_failed(h, str("it authenticated as rank ", r.peer_rank));
                           send_hello(h, ep);
                         });
    });
  }

  void send_hello(const std::shared_ptr<handshake>& h, net_tcp::endpoint ep) {
    h->out = tcp_wire::encode_hello(
        {static_cast<std::uint32_t>(o_.rank), static_cast<std::uint32_t>(o_.size), token_});
    net::async_write(
        h->sock, net::buffer(h->out), [this, h, ep](boost::system::error_code wec, std::size_t) {
          if (failure_io_ || stopping_ || h->finished) return;
          if (wec) return redial(h, ep, "sending hello: " + wec.message());
          net::async_read(
              h->sock, net::buffer(h->in),
              [this, h, ep](boost::system::error_code rec, std::size_t) {
                if (failure_io_ || stopping_ || h->finished) return;
                if (rec)
                  return redial(
                      h, ep, h->timed_out ? timed_out_text() : "reading hello: " + rec.message());
                try {
                  const auto in =
                      tcp_wire::parse_hello(h->in, static_cast<std::uint32_t>(o_.size), token_);
                  if (static_cast<int>(in.rank) != h->expect)
                    return dial_failed(h, str("it says it is rank ", in.rank));
                } catch (const decode_error& e) {
                  return dial_failed(h, e.what());
                }
                install(h, h->expect);
              });
        });
  }

  // The connection was cut before its hello (not listening yet, evicted by a
  // full pending queue, timed out): try again in 50 ms, until the deadline.
  void redial(const std::shared_ptr<handshake>& h, net_tcp::endpoint ep, const std::string& why) {
    h->finished = true;
    {
      std::lock_guard g(mu_);
      last_dial_error_[static_cast<std::size_t>(h->expect)] = why;
    }
    boost::system::error_code ignored;
    h->sock.close(ignored);
    h->timer.expires_after(std::chrono::milliseconds(50));
    h->timer.async_wait([this, h, ep](boost::system::error_code tec) {
      if (tec || failure_io_ || stopping_) return;
      forget(h);
      dial(h->expect, ep);
    });
  }

  void dial_failed(const std::shared_ptr<handshake>& h, const std::string& why) {
    fail(failure::peer, str("rank ", o_.rank, ": connecting to rank ", h->expect, " at ", h->from,
                            " failed: ", why));
  }

  void install(const std::shared_ptr<handshake>& h, int peer) {
    h->finished = true;
    h->timer.cancel();
    auto c = std::make_shared<conn>(io_);
    c->peer = peer;
    c->sock = std::move(h->sock);
    forget(h);
    boost::system::error_code ignored;
    c->sock.set_option(net_tcp::no_delay(true), ignored);
    c->direct = true;  // not yet shared: no lock needed
    if (o_.socket_buffer_bytes > 0) {
      const int n = static_cast<int>(o_.socket_buffer_bytes);
      c->sock.set_option(net::socket_base::send_buffer_size(n), ignored);
      c->sock.set_option(net::socket_base::receive_buffer_size(n), ignored);
    }
    conns_[static_cast<std::size_t>(peer)] = c;
    int count = 0;
    bool accepting = false;
    {
      std::lock_guard g(mu_);
      connected_[static_cast<std::size_t>(peer)] = true;
      count = ++connected_count_;
      for (int j = o_.rank + 1; j < o_.size; ++j)
        accepting = accepting || !connected_[static_cast<std::size_t>(j)];
    }
    if (!accepting) close_acceptor();
    if (count == o_.size - 1) cv_.notify_all();
    pump_read(c);
  }

  // --- shutdown (io thread) -------------------------------------------------

  void begin_shutdown() {
    const bool healthy = !failure_io_;
    stopping_ = true;
    close_acceptor();
    for (auto& h : handshakes_) close(*h);
    int pending = 0;
    for (auto& c : conns_) {
      if (!c) continue;
      boost::system::error_code ignored;
      c->sock.cancel(ignored);  // the idle header read
      std::lock_guard tx(c->tx_mu);
      c->direct = false;
      if (!healthy || c->failed || c->writing || c->bye) continue;
      ++pending;
      tcp_wire::encode_header(c->rx, tcp_wire::bye_magic, c->tx_seq, 0);
      net::async_write(c->sock, net::buffer(c->rx),
                       [this, c](boost::system::error_code ec, std::size_t) {
                         boost::system::error_code ignored2;
                         if (!ec) c->sock.shutdown(net_tcp::socket::shutdown_send, ignored2);
                         std::lock_guard g(mu_);
                         if (--byes_pending_ == 0) cv_.notify_all();
                       });
    }
    std::lock_guard g(mu_);
    byes_pending_ = pending;
    if (pending == 0) cv_.notify_all();
  }

  void close_all() {
    stopping_ = true;
    close_acceptor();
    for (auto& h : handshakes_) close(*h);
    for (auto& c : conns_) {
      if (!c) continue;
      std::lock_guard tx(c->tx_mu);
      c->direct = false;
      boost::system::error_code ignored;
      c->sock.close(ignored);
    }
  }

  tcp_engine_options o_;
  net::io_context io_;
  net_tcp::acceptor acceptor_;
  net::executor_work_guard<net::io_context::executor_type> work_;
  // io thread only
  std::vector<std::shared_ptr<conn>> conns_;
  std::vector<std::shared_ptr<handshake>> handshakes_;
  std::uint64_t token_ = 0;
  bool failure_io_ = false;
  bool stopping_ = false;
  // guarded by mu_
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> peer_failed_;
  failure failure_ = failure::none;
  std::string what_;
  bool reported_ = false;
  bool fenced_ = false;
  std::vector<bool> connected_;
  std::vector<std::string> last_dial_error_;
  int connected_count_ = 0;
  int byes_pending_ = 0;
  // any thread
  std::atomic<std::uint64_t> sent_{0}, received_{0};
  std::atomic<std::size_t> dropped_{0};
  std::thread thread_;
};

}  // namespace greenreduce::transport::detail
