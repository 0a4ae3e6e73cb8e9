// Multi-process tests of transport::tcp: every launcher's variables, p = 2..4,
// ring and all-to-all traffic, full duplex beyond the socket buffers, and
// Gloo-style faults (a rank killed, a rank stopped, a stranger on the port).
#include "greenreduce/transport/tcp.hpp"

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "support/random.hpp"
#include "transport/tcp_harness.hpp"

namespace gr = greenreduce;
namespace grt = greenreduce::transport;
using greenreduce::test::expect;
using greenreduce::test::rank_group;
using namespace std::chrono_literals;

namespace {

// The content of message k from src to dst; any corruption or reordering shows.
std::byte pattern(std::uint64_t seed, int src, int dst, int k, std::size_t i) {
  std::uint64_t x = seed ^ (std::uint64_t(src) << 40) ^ (std::uint64_t(dst) << 32) ^
                    (std::uint64_t(k) << 24) ^ (i * 0x9E3779B97F4A7C15ULL);
  x ^= x >> 29;
  return static_cast<std::byte>((x * 0xBF58476D1CE4E5B9ULL) >> 56);
}

std::vector<std::byte> message(std::uint64_t seed, int src, int dst, int k, std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = pattern(seed, src, dst, k, i);
  return v;
}

void check_message(std::uint64_t seed, int src, int dst, int k, std::span<const std::byte> got,
                   std::size_t n, std::size_t len) {
  expect(len == n, gr::detail::str("message ", k, " from ", src, " to ", dst, ": length ", len,
                                   ", expected ", n));
  for (std::size_t i = 0; i < n; ++i)
    if (got[i] != pattern(seed, src, dst, k, i))
      throw std::runtime_error(
          gr::detail::str("message ", k, " from ", src, " to ", dst, ": byte ", i, " differs"));
}

// Length of message k between src and dst: 0, small, odd, a few hundred KiB.
std::size_t length_of(std::uint64_t seed, int src, int dst, int k) {
  const std::size_t choices[] = {0, 1, 7, 4096, 65537, 300000};
  return choices[(seed + static_cast<std::uint64_t>(src * 5 + dst * 3 + k)) % 6];
}

// Ring sendrecv then all-to-all (three messages per ordered pair, posted at
// once), then the counters: payload + one header per message, both ways.
void exchange(grt::tcp& t, std::uint64_t seed) {
  const int r = t.rank(), p = t.size();
  std::uint64_t sent = 0, received = 0;
  const int right = (r + 1) % p, left = (r + p - 1) % p;
  for (int k = 0; k < 6; ++k) {
    auto out = message(seed, r, right, k, length_of(seed, r, right, k));
    const std::size_t n_in = length_of(seed, left, r, k);
    std::vector<std::byte> in(n_in + 3);
    const auto len = t.sendrecv(right, out, left, in);
    check_message(seed, left, r, k, in, n_in, len);
    sent += out.size() + grt::tcp::header_bytes;
    received += n_in + grt::tcp::header_bytes;
  }
  constexpr int per_pair = 3;
  std::vector<std::vector<std::byte>> outs, ins;
  std::vector<grt::tcp::send_request> sreq;
  std::vector<grt::tcp::recv_request> rreq;
  for (int j = 0; j < p; ++j) {
    if (j == r) continue;
    for (int k = 10; k < 10 + per_pair; ++k) {
      outs.push_back(message(seed, r, j, k, length_of(seed, r, j, k)));
      sent += outs.back().size() + grt::tcp::header_bytes;
      ins.emplace_back(length_of(seed, j, r, k));
      received += ins.back().size() + grt::tcp::header_bytes;
    }
  }
  std::size_t m = 0;
  for (int j = 0; j < p; ++j) {
    if (j == r) continue;
    for (int k = 0; k < per_pair; ++k, ++m) {
      sreq.push_back(t.isend(j, outs[m]));
      rreq.push_back(t.irecv(j, ins[m]));
    }
  }
  m = 0;
  for (int j = 0; j < p; ++j) {
    if (j == r) continue;
    for (int k = 10; k < 10 + per_pair; ++k, ++m) {
      const auto len = t.wait(rreq[m]);
      check_message(seed, j, r, k, ins[m], ins[m].size(), len);
    }
  }
  for (auto& s : sreq) t.wait(s);
  expect(t.bytes_sent() == sent,
         gr::detail::str("bytes_sent ", t.bytes_sent(), ", expected ", sent));
  expect(t.bytes_received() == received,
         gr::detail::str("bytes_received ", t.bytes_received(), ", expected ", received));
}

void require_all(const std::vector<std::optional<rank_group::line>>& lines, const char* what) {
  for (std::size_t r = 0; r < lines.size(); ++r) {
    INFO(what << ": rank " << r << ": " << (lines[r] ? lines[r]->text : "<no report>"));
    CHECK((lines[r] && lines[r]->text == "ok"));
  }
}

}  // namespace

TEST_CASE("tcp: every launcher, p = 2..4, ring and all-to-all with exact counters",
          "[transport][tcp]") {
  const auto seed = greenreduce::test::seed(1);
  for (const std::string launcher : {"torchrun", "openmpi", "pmi", "slurm"}) {
    for (int p = 2; p <= 4; ++p) {
      const auto port = greenreduce::test::free_port();
      rank_group g(p, [&](int rank, rank_group::reporter&) {
        auto env = greenreduce::env_source::from_map(
            greenreduce::test::launcher_env(launcher, rank, p, port));
        auto t = grt::tcp::from_env(env);
        expect(t.rank() == rank && t.size() == p, "rank/size differ from the environment");
        expect(t.listen_address().rfind("127.0.0.1:", 0) == 0,
               "listening on " + t.listen_address() + ", expected loopback");
        exchange(t, seed);
      });
      require_all(g.collect(30s), (launcher + " p=" + std::to_string(p)).c_str());
    }
  }
}

TEST_CASE("tcp: 64 MB both ways at once does not deadlock", "[transport][tcp]") {
  const auto seed = greenreduce::test::seed(2);
  const auto port = greenreduce::test::free_port();
  constexpr std::size_t n = 64u << 20;
  rank_group g(2, [&](int rank, rank_group::reporter&) {
    auto t = grt::tcp::from_env(greenreduce::env_source::from_map(
        greenreduce::test::launcher_env("torchrun", rank, 2, port)));
    const int peer = 1 - rank;
    auto out = message(seed, rank, peer, 0, n);
    std::vector<std::byte> in(n);
    for (int round = 0; round < 2; ++round) {
      const auto len = t.sendrecv(peer, out, peer, in);
      check_message(seed, peer, rank, 0, in, n, len);
    }
    expect(t.bytes_sent() == 2 * (n + grt::tcp::header_bytes), "bytes_sent");
    expect(t.bytes_received() == 2 * (n + grt::tcp::header_bytes), "bytes_received");
  });
  require_all(g.collect(60s), "64 MB sendrecv");
}

TEST_CASE("tcp: a message longer than the posted buffer is a peer_error, then unusable",
          "[transport][tcp]") {
  const auto port = greenreduce::test::free_port();
  rank_group g(2, [&](int rank, rank_group::reporter& report) {
    auto t = grt::tcp::from_env(greenreduce::env_source::from_map(
        greenreduce::test::launcher_env("torchrun", rank, 2, port)));
    if (rank == 0) {
      std::vector<std::byte> out(1000);
      t.send(1, out);
      return;
    }
    std::vector<std::byte> in(999);
    try {
      t.recv(0, in);
      report("no error");
    } catch (const gr::peer_error& e) {
      const std::string w = e.what();
      expect(w.find("rank 0") != std::string::npos && w.find("1000") != std::string::npos &&
                 w.find("999") != std::string::npos,
             "message does not name peer and sizes: " + w);
    }
    try {
      t.send(0, in);
      report("no error after the first one");
    } catch (const gr::peer_error& e) {
      expect(std::string(e.what()).find("unusable") != std::string::npos,
             std::string("later call does not say unusable: ") + e.what());
    }
  });
  require_all(g.collect(30s), "too long");
}

namespace {

// p ranks loop a ring exchange until an error; each reports "up" once set up,
// then the error's what(), then lingers until killed.
void fault_body(int rank, int p, std::uint16_t port, rank_group::reporter& report) {
  auto vars = greenreduce::test::launcher_env("torchrun", rank, p, port);
  vars["GREENREDUCE_TIMEOUT_MS"] = "1500";
  auto t = grt::tcp::from_env(greenreduce::env_source::from_map(vars));
  report("up");
  std::vector<std::byte> out(64 << 10), in(64 << 10);
  try {
    while (true) t.sendrecv((rank + 1) % p, out, (rank + p - 1) % p, in);
  } catch (const std::exception& e) {
    report(e.what());
  }
  while (true) ::pause();
}

}  // namespace

TEST_CASE("tcp: SIGKILL of one rank -> every survivor throws peer_error within 2x timeout",
          "[transport][tcp][fault]") {
  constexpr int p = 4;
  const auto port = greenreduce::test::free_port();
  rank_group g(p, [&](int rank, rank_group::reporter& r) { fault_body(rank, p, port, r); });
  const auto up = g.collect(30s);
  for (int r = 0; r < p; ++r) REQUIRE((up[r] && up[r]->text == "up"));
  std::this_thread::sleep_for(100ms);
  ::kill(g.pid(2), SIGKILL);
  const auto killed = greenreduce::test::mono::now();
  const auto lines = g.collect(6s, {0, 1, 3});
  for (int r : {0, 1, 3}) {
    INFO("rank " << r << ": " << (lines[r] ? lines[r]->text : "<no report>"));
    REQUIRE(lines[r]);
    CHECK(lines[r]->text.rfind("peer_error", 0) == 0);
    CHECK(lines[r]->text.find("rank 2") != std::string::npos);
    CHECK(lines[r]->at - killed < 3000ms);
  }
}

TEST_CASE("tcp: SIGSTOP of one rank -> the others throw timeout_error within 2x timeout",
          "[transport][tcp][fault]") {
  constexpr int p = 3;
  const auto port = greenreduce::test::free_port();
  rank_group g(p, [&](int rank, rank_group::reporter& r) { fault_body(rank, p, port, r); });
  const auto up = g.collect(30s);
  for (int r = 0; r < p; ++r) REQUIRE((up[r] && up[r]->text == "up"));
  std::this_thread::sleep_for(100ms);
  ::kill(g.pid(1), SIGSTOP);
  const auto stopped = greenreduce::test::mono::now();
  const auto lines = g.collect(6s, {0, 2});
  for (int r : {0, 2}) {
    INFO("rank " << r << ": " << (lines[r] ? lines[r]->text : "<no report>"));
    REQUIRE(lines[r]);
    CHECK(lines[r]->text.rfind("timeout_error", 0) == 0);
    CHECK(lines[r]->text.find("1500 ms") != std::string::npos);
    CHECK(lines[r]->at - stopped < 3000ms);
  }
  ::kill(g.pid(1), SIGCONT);  // the group kills it
}

TEST_CASE("tcp: strangers on the listening and store ports are dropped; the job completes",
          "[transport][tcp][fault]") {
  constexpr int p = 3;
  const auto seed = greenreduce::test::seed(3);
  const auto port = greenreduce::test::free_port();
  int go[2];
  REQUIRE(::pipe(go) == 0);
  rank_group g(p, [&](int rank, rank_group::reporter& report) {
    ::close(go[1]);
    if (rank == p - 1) {  // the last rank dials everyone: hold it back until the strangers came
      char c;
      expect(::read(go[0], &c, 1) == 1, "go pipe");
    }
    grt::tcp_options o;
    o.rank = rank;
    o.size = p;
    o.master_addr = "127.0.0.1";
    o.master_port = port;
    o.listen_addr = "127.0.0.1";
    o.log = [](const std::string&) {};
    grt::tcp t(o);
    exchange(t, seed);
    report(rank == 0 ? "dropped " + std::to_string(t.dropped_connections()) : "ok");
  });
  ::close(go[0]);
  {
    grt::store_client store("127.0.0.1", port, 20s, 5s);
    const auto addr = store.get("greenreduce/addr/0", 20s);
    const auto colon = addr.rfind(':');
    namespace net = boost::asio;
    net::io_context io;
    const net::ip::tcp::endpoint ep(net::ip::make_address_v4(addr.substr(0, colon)),
                                    static_cast<std::uint16_t>(std::stoi(addr.substr(colon + 1))));
    net::ip::tcp::socket garbage(io), wrong_token(io), silent(io), store_garbage(io);
    garbage.connect(ep);
    net::write(garbage, net::buffer(std::string(24, 'x')));
    wrong_token.connect(ep);
    net::write(wrong_token, net::buffer(grt::tcp_wire::encode_hello({2, p, 12345})));
    silent.connect(ep);
    store_garbage.connect({net::ip::make_address_v4("127.0.0.1"), port});
    net::write(store_garbage, net::buffer(std::string(12, '\xff')));
    std::this_thread::sleep_for(200ms);
    REQUIRE(::write(go[1], "g", 1) == 1);
    const auto lines = g.collect(30s);
    for (int r = 0; r < p; ++r) {
      INFO("rank " << r << ": " << (lines[r] ? lines[r]->text : "<no report>"));
      REQUIRE(lines[r]);
      if (r == 0) CHECK(lines[r]->text.rfind("dropped ", 0) == 0);
      if (r == 0)
        CHECK(std::stoi(lines[r]->text.substr(8)) >= 2);
      else
        CHECK(lines[r]->text == "ok");
    }
  }
  ::close(go[1]);
}
