// greenreduce/transport/tcp.hpp — ranks in processes or hosts over TCP (Boost.Asio).
//
// Construction is the whole set-up, as in Gloo's transport/tcp + rendezvous:
//   1. rank 0 serves the rendezvous store (store.hpp) on master_addr:port;
//   2. every rank listens on ip:0 (ip from the options, rendezvous.hpp), and
//      publishes "ip:port" in the store; rank 0 also publishes a random job
//      token;
//   3. every rank reads all addresses and the token, then connects the full
//      mesh: it dials each lower rank and accepts each higher one; each new
//      connection starts with a hello (magic, version, token, size, rank) in
//      both directions; a connection whose hello is wrong or late is dropped
//      and logged, and the job goes on;
//   4. the listening socket closes once every higher rank is connected, and
//      rank 0 stops the store once its own mesh is complete (by then every
//      rank has read everything it needs).
// Afterwards messages are framed (tcp/wire.hpp) and moved by one io thread
// per transport (tcp/engine.hpp): full duplex, FIFO per ordered pair.
//
// Security (docs/transport.md): every socket binds the one address chosen
// for this rank (never 0.0.0.0). With a secret (tcp_options::secret) every
// connection, store and mesh, first passes the HMAC-SHA256 challenge-response
// of auth.hpp; a peer without the secret is dropped before any frame of it is
// parsed and the job goes on. Set-up is bounded per connection
// (handshake_timeout) and in pending connections (max_pending_connections).
//
// Failure semantics (Gloo's): a peer that dies or closes without a goodbye,
// or breaks the protocol, is a peer_error; an operation that does not finish
// within `timeout` is a timeout_error naming rank, peer, operation and bound.
// After either the transport is unusable and every later call says so.
// With `isolate_peer_failures` (the parameter server) an error with one peer
// (closed, died, protocol, a timed-out wait on it) closes that connection,
// fails only its operations with peer_error/timeout_error naming it and marks
// it peer_failed(); the other peers carry on. The pollable capability
// (concept.hpp: test, wait_any, cancel) is always there.
//
//   auto t = greenreduce::transport::tcp::from_env();   // torchrun/mpirun/srun
//   t.sendrecv(right, out, left, in);
#pragma once

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "greenreduce/core/env.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/auth.hpp"
#include "greenreduce/transport/concept.hpp"
#include "greenreduce/transport/rendezvous.hpp"
#include "greenreduce/transport/store.hpp"
#include "greenreduce/transport/tcp/engine.hpp"
#include "greenreduce/transport/tcp/wire.hpp"

namespace greenreduce::transport {

/// Everything a tcp transport needs; from_env() fills it from the launcher.
struct tcp_options {
  int rank = 0;
  int size = 1;
  std::string master_addr;  ///< rank 0 serves the store here (IPv4 or host name)
  std::uint16_t master_port = 0;
  std::string listen_addr;                   ///< IPv4 address to listen on; wins over ifname
  std::string ifname;                        ///< else the first IPv4 address of this interface
                                             ///< else the address that routes to the master
  std::chrono::milliseconds timeout{30000};  ///< every wait()
  std::chrono::milliseconds connect_timeout{60000};  ///< store + mesh set-up
  std::size_t socket_buffer_bytes = 0;               ///< SO_SNDBUF/SO_RCVBUF; 0 = kernel autotuning
  std::size_t max_pending_connections = 32;          ///< accepted but not yet said hello
  std::function<void(const std::string&)> log;       ///< dropped connections; null: stderr
  bool isolate_peer_failures = false;                ///< an error fails one peer, not the transport
  std::string secret;  ///< non-empty: authenticate every connection with it (auth.hpp)
  std::chrono::milliseconds handshake_timeout{10000};  ///< per connection: auth + hello

  /// The launcher's world (rendezvous.hpp) plus
  ///   GREENREDUCE_TIMEOUT_MS          per-operation bound, default 30000
  ///   GREENREDUCE_CONNECT_TIMEOUT_MS  set-up bound, default 60000
  ///   GREENREDUCE_SOCKET_IFNAME       interface to listen on
  ///   GREENREDUCE_SOCKET_ADDR         IPv4 address to listen on (wins over IFNAME)
  ///   GREENREDUCE_SOCKET_BUFFER       socket buffer bytes, default 0 (autotuning)
  ///   GREENREDUCE_SECRET / GREENREDUCE_SECRET_FILE   the job's secret (auth.hpp)
  ///   GREENREDUCE_HANDSHAKE_TIMEOUT_MS  per-connection set-up bound, default 10000
  static tcp_options from_env(const env_source& env = env_source::process()) {
    const world_info w = world_from_env(env);
    tcp_options o;
    o.rank = w.rank;
    o.size = w.size;
    o.master_addr = w.master_addr;
    o.master_port = w.master_port;
    o.timeout = std::chrono::milliseconds(
        env_int(env, "GREENREDUCE_TIMEOUT_MS", 30000, 1, 24LL * 3600 * 1000));
    o.connect_timeout = std::chrono::milliseconds(
        env_int(env, "GREENREDUCE_CONNECT_TIMEOUT_MS", 60000, 1, 24LL * 3600 * 1000));
    o.ifname = env_string(env, "GREENREDUCE_SOCKET_IFNAME");
    o.listen_addr = env_string(env, "GREENREDUCE_SOCKET_ADDR");
    if (!o.listen_addr.empty()) {
      boost::system::error_code ec;
      boost::asio::ip::make_address_v4(o.listen_addr, ec);
      if (ec)
        greenreduce::detail::bad_env("GREENREDUCE_SOCKET_ADDR", o.listen_addr,
                                     "a dotted IPv4 address");
    }
    o.socket_buffer_bytes = static_cast<std::size_t>(
        env_bytes(env, "GREENREDUCE_SOCKET_BUFFER", 0, std::uint64_t{1} << 30));
    o.secret = secret_from_env(env);
    o.handshake_timeout = std::chrono::milliseconds(
        env_int(env, "GREENREDUCE_HANDSHAKE_TIMEOUT_MS", 10000, 1, 24LL * 3600 * 1000));
    return o;
  }
};

/// A transport (concept.hpp) over TCP sockets; see the header comment.
class tcp {
 public:
  /// Handle of an isend; wait() on it once. Movable, not copyable.
  class send_request {
   public:
    send_request() = default;
    bool pending() const noexcept { return op_ != nullptr; }

   private:
    friend class tcp;
    std::shared_ptr<detail::tcp_op> op_;
  };
  /// Handle of an irecv; wait() on it once and get the message's length.
  class recv_request {
   public:
    recv_request() = default;
    bool pending() const noexcept { return op_ != nullptr; }

   private:
    friend class tcp;
    std::shared_ptr<detail::tcp_op> op_;
  };

  /// Bytes of transport header before every message (counted by the counters).
  static constexpr std::size_t header_bytes = tcp_wire::header_bytes;

  /// Rendezvous and full-mesh set-up; blocks until every peer is connected.
  explicit tcp(const tcp_options& o)
      : rank_(o.rank), size_(o.size), timeout_(o.timeout), isolate_(o.isolate_peer_failures) {
    if (o.size < 1 || o.rank < 0 || o.rank >= o.size)
      throw config_error(detail::str("tcp_options: rank ", o.rank, " and size ", o.size,
                                     " (expected 0 <= rank < size)"));
    if (o.timeout.count() <= 0 || o.connect_timeout.count() <= 0 ||
        o.handshake_timeout.count() <= 0)
      throw config_error("tcp_options: timeouts must be positive");
    std::shared_ptr<const peer_auth> auth;
    if (!o.secret.empty()) auth = std::make_shared<const peer_auth>(o.secret);
    if (o.size == 1) return;  // nobody to talk to
    if (o.master_addr.empty() || o.master_port == 0)
      throw config_error(detail::str("tcp_options: rank ", o.rank, " of ", o.size,
                                     " needs master_addr and master_port (rank 0's store)"));
    const auto deadline = detail::steady::now() + o.connect_timeout;
    const std::string master = resolve_ipv4(o.master_addr, "master address");
    std::string ip = o.listen_addr;
    if (ip.empty())
      ip = o.ifname.empty() ? route_ipv4_to(master, o.master_port) : interface_ipv4(o.ifname);

    detail::tcp_engine_options eo;
    eo.rank = o.rank;
    eo.size = o.size;
    eo.timeout = o.timeout;
    eo.socket_buffer_bytes = o.socket_buffer_bytes;
    eo.max_pending_connections = std::max<std::size_t>(1, o.max_pending_connections);
    eo.hello_timeout = std::min(o.connect_timeout, o.handshake_timeout);
    eo.log = o.log;
    eo.isolate_peer_failures = o.isolate_peer_failures;
    eo.auth = auth;
    engine_ = std::make_unique<detail::tcp_engine>(std::move(eo));
    listen_ = engine_->listen(ip);

    std::optional<store_server> server;
    if (o.rank == 0) {
      store_server_options so;
      so.max_connections = 2 * static_cast<std::size_t>(o.size) + 16;
      so.max_pending = std::max<std::size_t>(1, o.max_pending_connections);
      so.idle_timeout = o.connect_timeout;
      so.handshake_timeout = std::min(o.connect_timeout, o.handshake_timeout);
      so.log = o.log;
      so.secret = o.secret;
      server.emplace(master, o.master_port, std::move(so));
    }
    std::vector<detail::net_tcp::endpoint> peers(static_cast<std::size_t>(o.size));
    std::uint64_t token = 0;
    {
      store_client store(master, o.master_port, o.connect_timeout, o.timeout, o.secret);
      if (o.rank == 0) {
        std::random_device rd;
        token = (std::uint64_t{rd()} << 32) ^ rd();
        store.set("greenreduce/token", std::to_string(token));
      }
      store.set(detail::str("greenreduce/addr/", o.rank), listen_);
      const auto left = [&] {
        return std::max(std::chrono::milliseconds(1),
                        std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - detail::steady::now()));
      };
      token = parse_token(store.get("greenreduce/token", left()));
      for (int j = 0; j < o.size; ++j)
        if (j != o.rank)
          peers[static_cast<std::size_t>(j)] =
              parse_endpoint(j, store.get(detail::str("greenreduce/addr/", j), left()));
    }
    engine_->connect_mesh(peers, token, deadline, o.connect_timeout);
  }

  /// tcp(tcp_options::from_env(env)): the launcher's environment.
  static tcp from_env(const env_source& env = env_source::process()) {
    return tcp(tcp_options::from_env(env));
  }

  tcp(tcp&&) noexcept = default;
  tcp& operator=(tcp&&) noexcept = default;
  ~tcp() = default;

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  /// "ip:port" this rank listened on during set-up (empty when size() == 1).
  const std::string& listen_address() const noexcept { return listen_; }
  std::chrono::milliseconds timeout() const noexcept { return timeout_; }
  /// Connections dropped during set-up (strangers, bad or missing hellos).
  std::size_t dropped_connections() const noexcept {
    return engine_ ? engine_->dropped_connections() : 0;
  }

  /// Starts sending `bytes` to `peer`; they must stay alive until wait().
  send_request isend(int peer, std::span<const std::byte> bytes) {
    check_peer(peer, "isend");
    send_request r;
    // The engine only reads through this pointer.
    r.op_ = engine_->post(true, peer, const_cast<std::byte*>(bytes.data()), bytes.size());
    return r;
  }
  /// Posts `buffer` for the next message from `peer`; it must stay alive until wait().
  recv_request irecv(int peer, std::span<std::byte> buffer) {
    check_peer(peer, "irecv");
    recv_request r;
    r.op_ = engine_->post(false, peer, buffer.data(), buffer.size());
    return r;
  }
  /// Blocks until the bytes left this rank's hands (in the kernel's socket buffer).
  void wait(send_request& r) { wait_until(r, deadline()); }
  /// Blocks until a whole message arrived; returns its length.
  std::size_t wait(recv_request& r) { return wait_until(r, deadline()); }

  void send(int peer, std::span<const std::byte> bytes) {
    auto r = isend(peer, bytes);
    wait(r);
  }
  std::size_t recv(int peer, std::span<std::byte> buffer) {
    auto r = irecv(peer, buffer);
    return wait(r);
  }
  /// Sends to `dst` while receiving from `src`, both within one timeout.
  std::size_t sendrecv(int dst, std::span<const std::byte> out, int src, std::span<std::byte> in) {
    auto s = isend(dst, out);
    auto r = irecv(src, in);
    const auto d = deadline();
    const std::size_t n = wait_until(r, d);
    wait_until(s, d);
    return n;
  }

  // --- pollable (concept.hpp) ------------------------------------------------

  /// The message's length once it arrived (the request is then consumed),
  /// nullopt while pending; throws like wait() when it failed.
  std::optional<std::size_t> test(recv_request& r) {
    if (!r.op_) throw config_error("tcp::test on a request that is empty or already completed");
    auto n = engine_->test(r.op_);
    if (n) r.op_.reset();
    return n;
  }
  /// Index of a request that completed or failed, or nullopt after `bound`.
  std::optional<std::size_t> wait_any(std::span<recv_request* const> reqs,
                                      std::chrono::milliseconds bound) {
    const auto d = detail::steady::now() + bound;
    if (!engine_) return std::nullopt;
    std::vector<detail::tcp_op*> ops(reqs.size(), nullptr);
    for (std::size_t i = 0; i < reqs.size(); ++i)
      if (reqs[i]) ops[i] = reqs[i]->op_.get();
    return engine_->wait_any(ops, d);
  }
  /// Withdraws a posted receive; its buffer is not touched afterwards.
  void cancel(recv_request& r) {
    if (!r.op_) return;
    engine_->cancel(r.op_);
    r.op_.reset();
  }
  bool peer_failed(int peer) const { return engine_ && engine_->peer_failed(peer); }
  bool isolates_peer_failures() const noexcept { return isolate_; }

  std::uint64_t bytes_sent() const noexcept { return engine_ ? engine_->bytes_sent() : 0; }
  std::uint64_t bytes_received() const noexcept { return engine_ ? engine_->bytes_received() : 0; }

 private:
  detail::steady::time_point deadline() const { return detail::steady::now() + timeout_; }

  void check_peer(int peer, const char* op) const {
    if (peer < 0 || peer >= size_ || peer == rank_)
      throw config_error(detail::str("tcp::", op, ": rank ", rank_, " of ", size_,
                                     " cannot address peer ", peer,
                                     " (expected another rank in [0, ", size_, "))"));
  }

  template <class Request>
  std::size_t wait_until(Request& r, detail::steady::time_point d) {
    if (!r.op_) throw config_error("tcp::wait on a request that is empty or already waited");
    auto op = std::move(r.op_);
    return engine_->wait(
        op, d,
        detail::str(std::is_same_v<Request, send_request> ? "send to rank " : "recv from rank ",
                    op->peer, " (", op->size, " bytes)"));
  }

  static std::uint64_t parse_token(const std::string& s) {
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size())
      throw peer_error("rendezvous store holds a malformed job token \"" + s + "\"");
    return v;
  }

  static detail::net_tcp::endpoint parse_endpoint(int peer, const std::string& s) {
    const auto colon = s.rfind(':');
    boost::system::error_code ec;
    std::uint16_t port = 0;
    boost::asio::ip::address_v4 ip;
    if (colon != std::string::npos) {
      ip = boost::asio::ip::make_address_v4(s.substr(0, colon), ec);
      auto [p, pec] = std::from_chars(s.data() + colon + 1, s.data() + s.size(), port);
      if (pec != std::errc() || p != s.data() + s.size() || port == 0)
        ec = make_error_code(boost::system::errc::invalid_argument);
    }
    if (colon == std::string::npos || ec)
      throw peer_error(detail::str("rendezvous store holds a malformed address \"", s,
                                   "\" for rank ", peer, " (expected ip:port)"));
    return {ip, port};
  }

  int rank_ = 0;
  int size_ = 1;
  std::chrono::milliseconds timeout_{30000};
  bool isolate_ = false;
  std::string listen_;
  std::unique_ptr<detail::tcp_engine> engine_;
};

static_assert(transport<tcp>);
static_assert(pollable<tcp>);

}  // namespace greenreduce::transport
