// greenreduce/transport/store.hpp — the rendezvous key-value store.
//
// Rank 0 serves a tiny TCP key-value store; every rank publishes its listening
// address there and reads its peers' (Gloo's rendezvous::Store, served by the
// job itself instead of Redis or a shared file system). The store only has to
// live through connection setup.
//
// Wire format (all integers little-endian):
//   request  = magic "GRKS" | op u8 (1 set, 2 get) | zero u8 | key_len u16 |
//              value_len u32 | key | value            (12-byte header)
//   reply    = magic "GRKR" | status u8 (0 ok, 1 not found, 2 rejected) |
//              zero u8 | zero u16 | value_len u32 | value
// Invariants: a key is 1..max_key_bytes printable ASCII bytes, a value at most
// max_value_bytes, a get carries no value, the store holds at most max_keys
// keys. The server validates every header before it reads or allocates
// anything; a bad request is answered "rejected" with the reason and the
// connection is closed. Connections are bounded in number and in idle time.
// A new connection is "pending" until it proved itself (authenticated with the
// job's secret, or, without a secret, sent its first valid request): pending
// ones must do so within handshake_timeout, and at most max_pending wait at a
// time (a new one evicts the oldest), so a slow trickle of bytes or a flood of
// connections cannot hold the store.
// With a secret (auth.hpp) a connection is refused before its first request
// header is read unless it passes the challenge-response; without one the
// store is rendezvous, not authentication: anyone who can reach the port can
// read and write it.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "greenreduce/core/bytes.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/auth.hpp"

namespace greenreduce::transport {

namespace detail {

using greenreduce::detail::str;
namespace net = boost::asio;
using net_tcp = boost::asio::ip::tcp;
using steady = std::chrono::steady_clock;

/// A four-character code as the little-endian u32 that spells it on the wire.
constexpr std::uint32_t fourcc(const char (&s)[5]) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(s[0])) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[1])) << 8 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[2])) << 16 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[3])) << 24;
}

/// Milliseconds left until `deadline`, for messages.
inline long long ms_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

/// Runs one asynchronous operation on a private io_context until it completes
/// or `deadline` passes; on timeout the socket's operations are cancelled and
/// drained (so no buffer is touched afterwards) and nullopt is returned.
template <class Init>
std::optional<std::pair<boost::system::error_code, std::size_t>> run_until(
    net::io_context& io, net_tcp::socket& sock, steady::time_point deadline, Init init) {
  std::optional<std::pair<boost::system::error_code, std::size_t>> result;
  init([&result](boost::system::error_code ec, std::size_t n) { result.emplace(ec, n); });
  io.restart();
  io.run_until(deadline);
  if (!result) {
    boost::system::error_code ignored;
    sock.cancel(ignored);
    io.restart();
    io.run();
    return std::nullopt;
  }
  return result;
}

}  // namespace detail

/// Bounds of the store protocol.
struct store_limits {
  static constexpr std::size_t max_key_bytes = 256;
  static constexpr std::size_t max_value_bytes = 64 * 1024;
  static constexpr std::size_t max_keys = 65536;
};

/// The store's wire protocol, public so that tests and tools can speak it.
namespace store_protocol {

inline constexpr std::uint32_t request_magic = detail::fourcc("GRKS");
inline constexpr std::uint32_t reply_magic = detail::fourcc("GRKR");
inline constexpr std::size_t header_bytes = 12;

enum class op : std::uint8_t { set = 1, get = 2 };
enum class status : std::uint8_t { ok = 0, not_found = 1, rejected = 2 };

struct request_header {
  op kind = op::get;
  std::uint16_t key_len = 0;
  std::uint32_t value_len = 0;
};

inline std::array<std::byte, header_bytes> encode_request(const request_header& h) {
  std::array<std::byte, header_bytes> b{};
  store_le<std::uint32_t>(b.data(), request_magic);
  b[4] = static_cast<std::byte>(h.kind);
  store_le<std::uint16_t>(b.data() + 6, h.key_len);
  store_le<std::uint32_t>(b.data() + 8, h.value_len);
  return b;
}

/// Parses and validates a request header; throws decode_error saying what is wrong.
inline request_header parse_request(std::span<const std::byte, header_bytes> b) {
  const auto magic = load_le<std::uint32_t>(b.data());
  if (magic != request_magic)
    throw decode_error(detail::str("store request: bad magic 0x", std::hex, magic, " (expected 0x",
                                   request_magic, ")"));
  const auto kind = static_cast<std::uint8_t>(b[4]);
  if (kind != static_cast<std::uint8_t>(op::set) && kind != static_cast<std::uint8_t>(op::get))
    throw decode_error(detail::str("store request: unknown op ", int{kind}, " (expected 1 or 2)"));
  if (b[5] != std::byte{0}) throw decode_error("store request: reserved byte 5 must be zero");
  request_header h;
  h.kind = static_cast<op>(kind);
  h.key_len = load_le<std::uint16_t>(b.data() + 6);
  h.value_len = load_le<std::uint32_t>(b.data() + 8);
  if (h.key_len == 0 || h.key_len > store_limits::max_key_bytes)
    throw decode_error(detail::str("store request: key length ", h.key_len, " (expected 1..",
                                   store_limits::max_key_bytes, ")"));
  if (h.value_len > store_limits::max_value_bytes)
    throw decode_error(detail::str("store request: value length ", h.value_len,
                                   " exceeds the bound ", store_limits::max_value_bytes));
  if (h.kind == op::get && h.value_len != 0)
    throw decode_error(
        detail::str("store request: get carries ", h.value_len, " value bytes (expected 0)"));
  return h;
}

/// Checks a key's bytes (printable ASCII); throws decode_error.
inline void validate_key(std::string_view key) {
  if (key.empty() || key.size() > store_limits::max_key_bytes)
    throw decode_error(detail::str("store key of ", key.size(), " bytes (expected 1..",
                                   store_limits::max_key_bytes, ")"));
  for (char c : key)
    if (c < 0x21 || c > 0x7e)
      throw decode_error(detail::str("store key contains byte 0x", std::hex,
                                     int{static_cast<unsigned char>(c)},
                                     " (expected printable ASCII)"));
}

inline std::array<std::byte, header_bytes> encode_reply(status s, std::uint32_t value_len) {
  std::array<std::byte, header_bytes> b{};
  store_le<std::uint32_t>(b.data(), reply_magic);
  b[4] = static_cast<std::byte>(s);
  store_le<std::uint32_t>(b.data() + 8, value_len);
  return b;
}

}  // namespace store_protocol

/// Options of a store server.
struct store_server_options {
  std::size_t max_connections = 64;               ///< more are closed on accept
  std::chrono::milliseconds idle_timeout{60000};  ///< a request must arrive within this
  std::function<void(const std::string&)> log;    ///< dropped connections; null: stderr
  std::size_t max_pending = 16;  ///< connections not yet proven; a new one evicts the oldest
  std::chrono::milliseconds handshake_timeout{10000};  ///< to authenticate / send a first request
  std::string secret;  ///< non-empty: every client must authenticate (auth.hpp)
};

/// Serves the store on addr:port (port 0: an ephemeral port, see port()) from
/// a background thread until destroyed.
class store_server {
 public:
  store_server(const std::string& addr, std::uint16_t port, store_server_options opts = {})
      : opts_(std::move(opts)), acceptor_(io_) {
    if (!opts_.secret.empty()) auth_ = std::make_shared<const peer_auth>(opts_.secret);
    if (opts_.max_pending == 0 || opts_.max_connections == 0)
      throw config_error("store_server_options: max_pending and max_connections must be positive");
    boost::system::error_code ec;
    const auto ip = boost::asio::ip::make_address_v4(addr, ec);
    if (ec) throw config_error(detail::str("store address \"", addr, "\" is not an IPv4 address"));
    const detail::net_tcp::endpoint ep(ip, port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(boost::asio::socket_base::reuse_address(true));
    acceptor_.bind(ep, ec);
    if (ec)
      throw config_error(detail::str("cannot serve the rendezvous store on ", addr, ":", port, ": ",
                                     ec.message()));
    // Pending connections are bounded above the kernel (eviction); a short
    // backlog would only delay real clients behind strangers.
    acceptor_.listen(boost::asio::socket_base::max_listen_connections);
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  store_server(const store_server&) = delete;
  store_server& operator=(const store_server&) = delete;
  ~store_server() {
    boost::asio::post(io_, [this] {
      stopping_ = true;
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      for (auto& weak : sessions_)
        if (auto s = weak.lock()) s->close();
    });
    thread_.join();
  }

  std::uint16_t port() const noexcept { return port_; }
  /// Connections closed for a bad request, idleness or the connection bound.
  std::size_t dropped() const noexcept { return dropped_.load(); }

 private:
  struct session : std::enable_shared_from_this<session> {
    explicit session(boost::asio::io_context& io) : sock(io), timer(io) {}
    void close() {
      closed = true;
      boost::system::error_code ignored;
      sock.close(ignored);
      timer.cancel();
    }
    bool closed = false;
    bool proven = false;  // authenticated, or (no secret) sent a valid request
    detail::net_tcp::socket sock;
    boost::asio::steady_timer timer;
    std::array<std::byte, store_protocol::header_bytes> header{};
    store_protocol::request_header req;
    std::vector<char> body;
    std::array<std::byte, store_protocol::header_bytes> reply_header{};
    std::string reply;
    std::string peer;
  };

  void log(const std::string& msg) {
    if (opts_.log)
      opts_.log(msg);
    else
      std::fprintf(stderr, "[greenreduce store] %s\n", msg.c_str());
  }

  void drop(const std::shared_ptr<session>& s, const std::string& why) {
    if (s->closed) return;
    ++dropped_;
    log(detail::str("dropped connection from ", s->peer, ": ", why));
    s->close();
  }

  void accept() {
    auto s = std::make_shared<session>(io_);
    acceptor_.async_accept(s->sock, [this, s](boost::system::error_code ec) {
      if (stopping_ || ec == boost::asio::error::operation_aborted) return;
      if (!ec) {
        boost::system::error_code pec;
        const auto ep = s->sock.remote_endpoint(pec);
        s->peer = pec ? std::string("?") : detail::str(ep);
        std::erase_if(sessions_, [](const auto& w) {
          auto p = w.lock();
          return !p || p->closed;
        });
        std::shared_ptr<session> oldest_pending;
        std::size_t pending = 0;
        for (auto& w : sessions_)
          if (auto p = w.lock(); p && !p->proven) {
            ++pending;
            if (!oldest_pending) oldest_pending = p;
          }
        if ((pending >= opts_.max_pending || sessions_.size() >= opts_.max_connections) &&
            oldest_pending) {
          drop(oldest_pending, detail::str("evicted: ", pending,
                                           " connections wait to prove "
                                           "themselves (bound ",
                                           opts_.max_pending, ")"));
          std::erase_if(sessions_, [&](const auto& w) { return w.lock() == oldest_pending; });
        }
        if (sessions_.size() >= opts_.max_connections) {
          drop(s, detail::str("connection bound ", opts_.max_connections, " reached"));
        } else {
          sessions_.push_back(s);
          start(s);
        }
      }
      accept();
    });
  }

  // A pending connection has handshake_timeout from its accept to prove
  // itself; a proven one idle_timeout for each request.
  void arm(const std::shared_ptr<session>& s, std::chrono::milliseconds bound) {
    s->timer.expires_after(bound);
    s->timer.async_wait([this, s, bound](boost::system::error_code ec) {
      if (!ec && !stopping_)
        drop(s, detail::str(s->proven ? "idle for " : "not proven within ", bound.count(), " ms"));
    });
  }

  void start(const std::shared_ptr<session>& s) {
    arm(s, opts_.handshake_timeout);
    if (!auth_) return read_header(s);
    async_authenticate(s->sock, auth_, false, auth_wire::role::store, auth_wire::no_rank,
                       [this, s](auth_result r) {
                         if (stopping_ || s->closed) return;
                         if (!r.ok()) return drop(s, r.why);
                         s->proven = true;
                         read_header(s);
                       });
  }

  void read_header(const std::shared_ptr<session>& s) {
    if (s->proven) arm(s, opts_.idle_timeout);
    boost::asio::async_read(s->sock, boost::asio::buffer(s->header),
                            [this, s](boost::system::error_code ec, std::size_t) {
                              if (ec) {
                                s->close();  // a client that hangs up between requests is fine
                                return;
                              }
                              try {
                                s->req = store_protocol::parse_request(s->header);
                              } catch (const decode_error& e) {
                                reject(s, e.what());
                                return;
                              }
                              s->body.resize(std::size_t{s->req.key_len} + s->req.value_len);
                              boost::asio::async_read(
                                  s->sock, boost::asio::buffer(s->body),
                                  [this, s](boost::system::error_code ec2, std::size_t) {
                                    if (ec2) {
                                      if (!stopping_)
                                        drop(s, "truncated request: " + ec2.message());
                                      return;
                                    }
                                    handle(s);
                                  });
                            });
  }

  void handle(const std::shared_ptr<session>& s) {
    std::string key(s->body.data(), s->req.key_len);
    try {
      store_protocol::validate_key(key);
    } catch (const decode_error& e) {
      reject(s, e.what());
      return;
    }
    auto st = store_protocol::status::ok;
    s->reply.clear();
    if (s->req.kind == store_protocol::op::set) {
      if (data_.size() >= store_limits::max_keys && !data_.count(key)) {
        reject(s, detail::str("store full (", store_limits::max_keys, " keys)"));
        return;
      }
      data_[key].assign(s->body.data() + s->req.key_len, s->req.value_len);
    } else if (auto it = data_.find(key); it != data_.end()) {
      s->reply = it->second;
    } else {
      st = store_protocol::status::not_found;
    }
    s->proven = true;
    respond(s, st, false);
  }

  void reject(const std::shared_ptr<session>& s, const std::string& why) {
    s->reply = why.substr(0, store_limits::max_value_bytes);
    ++dropped_;
    log(detail::str("rejected request from ", s->peer, ": ", why));
    respond(s, store_protocol::status::rejected, true);
  }

  void respond(const std::shared_ptr<session>& s, store_protocol::status st, bool then_close) {
    s->reply_header = store_protocol::encode_reply(st, static_cast<std::uint32_t>(s->reply.size()));
    const std::array<boost::asio::const_buffer, 2> bufs{boost::asio::buffer(s->reply_header),
                                                        boost::asio::buffer(s->reply)};
    boost::asio::async_write(s->sock, bufs,
                             [this, s, then_close](boost::system::error_code ec, std::size_t) {
                               if (ec || then_close) {
                                 s->close();
                                 return;
                               }
                               read_header(s);
                             });
  }

  store_server_options opts_;
  std::shared_ptr<const peer_auth> auth_;
  boost::asio::io_context io_;
  detail::net_tcp::acceptor acceptor_;
  std::vector<std::weak_ptr<session>> sessions_;
  std::map<std::string, std::string, std::less<>> data_;
  std::atomic<std::size_t> dropped_{0};
  bool stopping_ = false;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

/// A blocking client of the store. Every call is bounded: connecting retries
/// until `connect_timeout`, each request must finish within `op_timeout`.
/// With a non-empty `secret` the client authenticates right after connecting
/// (a cut-off attempt is retried until `connect_timeout`, a refused one throws).
/// A connection that breaks under a request (the server evicted it while it
/// was pending, say) is reconnected and the request, idempotent, sent again,
/// until `connect_timeout` after construction; then peer_error.
class store_client {
 public:
  store_client(const std::string& addr, std::uint16_t port,
               std::chrono::milliseconds connect_timeout, std::chrono::milliseconds op_timeout,
               const std::string& secret = {})
      : sock_(io_),
        addr_(addr),
        port_(port),
        op_timeout_(op_timeout),
        connect_timeout_(connect_timeout),
        deadline_(detail::steady::now() + connect_timeout) {
    if (!secret.empty()) auth_ = std::make_shared<const peer_auth>(secret);
    boost::system::error_code ec;
    const auto ip = boost::asio::ip::make_address_v4(addr, ec);
    if (ec) throw config_error(detail::str("store address \"", addr, "\" is not an IPv4 address"));
    ep_ = detail::net_tcp::endpoint(ip, port);
    connect();
  }
  void set(const std::string& key, std::string_view value) {
    check_key(key);
    if (value.size() > store_limits::max_value_bytes)
      throw config_error(detail::str("store value for \"", key, "\" is ", value.size(),
                                     " bytes (bound ", store_limits::max_value_bytes, ")"));
    request(store_protocol::op::set, key, value);
  }

  /// The value of `key`, or nullopt when it is not set yet.
  std::optional<std::string> try_get(const std::string& key) {
    check_key(key);
    return request(store_protocol::op::get, key, {});
  }

  /// The value of `key`, polling until it is set; timeout_error after `timeout`.
  std::string get(const std::string& key, std::chrono::milliseconds timeout) {
    const auto deadline = detail::steady::now() + timeout;
    auto pause = std::chrono::milliseconds(2);
    while (true) {
      if (auto v = try_get(key)) return *v;
      if (detail::steady::now() + pause >= deadline)
        throw timeout_error(detail::str("store key \"", key, "\" was not set within ",
                                        timeout.count(), " ms (store at ", addr_, ":", port_, ")"));
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
  }

 private:
  static void check_key(const std::string& key) {
    try {
      store_protocol::validate_key(key);
    } catch (const decode_error& e) {
      throw config_error(e.what());
    }
  }

  [[noreturn]] void fail(const std::string& what) {
    throw peer_error(detail::str("rendezvous store at ", addr_, ":", port_, ": ", what));
  }

  // Connects (retrying while nobody listens) and authenticates, until the
  // deadline of the constructor's connect_timeout.
  void connect() {
    std::string last_error, auth_error;
    boost::system::error_code ec;
    while (true) {
      if (sock_.is_open()) sock_.close(ec);
      auto r = detail::run_until(io_, sock_, deadline_, [&](auto handler) {
        sock_.async_connect(ep_, [handler](boost::system::error_code e) mutable { handler(e, 0); });
      });
      if (r) last_error = r->first ? r->first.message() : std::string();
      if (r && !r->first) {
        if (!auth_) break;
        std::optional<auth_result> a;
        auto ar = detail::run_until(io_, sock_, deadline_, [&](auto handler) {
          async_authenticate(sock_, auth_, true, auth_wire::role::store, auth_wire::no_rank,
                             [&a, handler](auth_result res) mutable {
                               a = std::move(res);
                               handler(boost::system::error_code(), 0);
                             });
        });
        if (ar && a && a->ok()) break;
        if (ar && a && a->how == auth_result::kind::refused) fail(a->why);
        last_error = a ? a->why : std::string("authentication did not finish");
        auth_error = last_error;
      }
      if (!r || detail::steady::now() + std::chrono::milliseconds(50) >= deadline_)
        throw timeout_error(detail::str("could not connect to the rendezvous store at ", addr_, ":",
                                        port_, " within ", connect_timeout_.count(),
                                        " ms (GREENREDUCE_CONNECT_TIMEOUT_MS); last error: ",
                                        last_error.empty() ? std::string("none") : last_error,
                                        auth_error.empty() || auth_error == last_error
                                            ? std::string()
                                            : "; an earlier attempt failed in " + auth_error));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    sock_.set_option(detail::net_tcp::no_delay(true), ec);
  }

  // The connection broke under a request (EOF, reset): the server may have
  // evicted it as pending. Requests are idempotent, so reconnect and retry.
  struct broken {
    std::string what;
  };

  template <class Buffers>
  void io_op(bool write, const Buffers& bufs, const char* what) {
    const auto deadline = detail::steady::now() + op_timeout_;
    auto r = detail::run_until(io_, sock_, deadline, [&](auto handler) {
      if constexpr (boost::asio::is_mutable_buffer_sequence<Buffers>::value) {
        if (!write) return boost::asio::async_read(sock_, bufs, handler);
      }
      boost::asio::async_write(sock_, bufs, handler);
    });
    if (!r)
      throw timeout_error(detail::str("rendezvous store at ", addr_, ":", port_, ": ", what,
                                      " did not complete within ", op_timeout_.count(), " ms"));
    if (r->first) throw broken{detail::str(what, ": ", r->first.message())};
  }

  std::optional<std::string> request(store_protocol::op kind, const std::string& key,
                                     std::string_view value) {
    while (true) {
      try {
        return request_once(kind, key, value);
      } catch (const broken& b) {
        if (detail::steady::now() + std::chrono::milliseconds(50) >= deadline_) fail(b.what);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        connect();
      }
    }
  }

  std::optional<std::string> request_once(store_protocol::op kind, const std::string& key,
                                          std::string_view value) {
    const auto header = store_protocol::encode_request(
        {kind, static_cast<std::uint16_t>(key.size()), static_cast<std::uint32_t>(value.size())});
    const std::array<boost::asio::const_buffer, 3> out{
        boost::asio::buffer(header), boost::asio::buffer(key),
        boost::asio::buffer(value.data(), value.size())};
    io_op(true, out, "request");
    std::array<std::byte, store_protocol::header_bytes> rh{};
    io_op(false, boost::asio::buffer(rh), "reply");
    if (load_le<std::uint32_t>(rh.data()) != store_protocol::reply_magic) fail("bad reply magic");
    const auto st = static_cast<std::uint8_t>(rh[4]);
    const auto len = load_le<std::uint32_t>(rh.data() + 8);
    if (len > store_limits::max_value_bytes)
      fail(detail::str("reply of ", len, " bytes exceeds the bound ",
                       store_limits::max_value_bytes));
    std::string v(len, '\0');
    if (len) io_op(false, boost::asio::buffer(v), "reply value");
    if (st == static_cast<std::uint8_t>(store_protocol::status::ok)) return v;
    if (st == static_cast<std::uint8_t>(store_protocol::status::not_found)) return std::nullopt;
    if (st == static_cast<std::uint8_t>(store_protocol::status::rejected))
      fail("rejected the request: " + v);
    fail(detail::str("unknown reply status ", int{st}));
  }

  boost::asio::io_context io_;
  detail::net_tcp::socket sock_;
  std::string addr_;
  std::uint16_t port_;
  std::chrono::milliseconds op_timeout_;
  std::chrono::milliseconds connect_timeout_;
  detail::steady::time_point deadline_;  // of connecting and reconnecting
  detail::net_tcp::endpoint ep_;
  std::shared_ptr<const peer_auth> auth_;
};

}  // namespace greenreduce::transport
