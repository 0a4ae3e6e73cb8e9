// Resource bounds of connection set-up: a flood of silent connections and a
// slow-loris peer (one byte at a time) cannot hold the rendezvous store or a
// rank's listening port. Pending connections are bounded (the oldest is
// evicted), each must finish its handshake within handshake_timeout, and the
// job completes regardless.
#include <atomic>
#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "greenreduce/transport/store.hpp"
#include "greenreduce/transport/tcp.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"
#include "transport/tcp_harness.hpp"

namespace gr = greenreduce;
namespace grt = greenreduce::transport;
namespace net = boost::asio;
using greenreduce::test::expect;
using greenreduce::test::rank_group;
using namespace std::chrono_literals;

namespace {

// Connects and sends one byte every `every` until the peer closes the
// connection or `limit` bytes went out; returns whether the peer closed it.
bool slow_loris(const net::ip::tcp::endpoint& ep, std::chrono::milliseconds every, int limit) {
  net::io_context io;
  net::ip::tcp::socket s(io);
  s.connect(ep);
  for (int i = 0; i < limit; ++i) {
    boost::system::error_code ec;
    const char b = static_cast<char>(0x47 + i % 4);
    net::write(s, net::buffer(&b, 1), ec);
    if (ec) return true;
    std::this_thread::sleep_for(every);
    // a closed connection shows as readable with EOF
    if (s.available(ec) == 0 && !ec) {
      s.non_blocking(true);
      char x;
      s.read_some(net::buffer(&x, 1), ec);
      s.non_blocking(false);
      if (ec && ec != net::error::would_block) return true;
    }
  }
  return false;
}

bool closed_by_peer(net::ip::tcp::socket& s) {
  char x;
  boost::system::error_code ec;
  s.read_some(net::buffer(&x, 1), ec);  // blocks until the peer closes it
  return ec == net::error::eof || ec == net::error::connection_reset;
}

}  // namespace

TEST_CASE("store: pending connections are bounded and time out; clients still get through",
          "[transport][store][bounds]") {
  grt::store_server_options so;
  so.max_pending = 2;
  so.handshake_timeout = 500ms;
  so.log = [](const std::string&) {};
  grt::store_server server("127.0.0.1", 0, so);
  const net::ip::tcp::endpoint ep(net::ip::make_address_v4("127.0.0.1"), server.port());
  std::atomic<bool> loris_closed{false};
  std::thread loris([&] { loris_closed = slow_loris(ep, 100ms, 200); });
  net::io_context io;
  std::vector<net::ip::tcp::socket> silent;
  for (int i = 0; i < 5; ++i) {
    silent.emplace_back(io);
    silent.back().connect(ep);
  }
  grt::store_client good("127.0.0.1", server.port(), 5s, 5s);
  good.set("k", "v");
  CHECK(good.try_get("k") == "v");
  for (auto& s : silent) CHECK(closed_by_peer(s));  // evicted or timed out
  loris.join();
  CHECK(loris_closed);              // before its 200 bytes (20 s): the handshake bound held
  CHECK(good.try_get("k") == "v");  // a proven client is not pending
  CHECK(server.dropped() >= 6);
}

TEST_CASE("tcp: a flood of silent connections and a slow-loris cannot hold the mesh set-up",
          "[transport][tcp][bounds][fault]") {
  constexpr int p = 3;
  const auto seed = greenreduce::test::seed(21);
  const auto port = greenreduce::test::free_port();
  int go[2];
  REQUIRE(::pipe(go) == 0);
  rank_group g(p, [&](int rank, rank_group::reporter&) {
    ::close(go[1]);
    char c;
    if (rank == p - 1) expect(::read(go[0], &c, 1) == 1, "go pipe");
    grt::tcp_options o;
    o.rank = rank;
    o.size = p;
    o.master_addr = "127.0.0.1";
    o.master_port = port;
    o.listen_addr = "127.0.0.1";
    o.max_pending_connections = 2;
    o.handshake_timeout = 1000ms;
    o.log = [](const std::string&) {};
    grt::tcp t(o);
    std::vector<std::byte> out(4096 + seed % 4096, std::byte{static_cast<unsigned char>(rank)});
    for (int j = 0; j < p; ++j) {
      if (j == rank) continue;
      std::vector<std::byte> in(out.size());
      expect(t.sendrecv(j, out, j, in) == out.size(), "length");
      expect(in[out.size() / 2] == std::byte{static_cast<unsigned char>(j)}, "content");
    }
  });
  ::close(go[0]);
  grt::store_client store("127.0.0.1", port, 20s, 5s);
  const auto addr = store.get("greenreduce/addr/0", 20s);
  const auto colon = addr.rfind(':');
  const net::ip::tcp::endpoint ep(net::ip::make_address_v4(addr.substr(0, colon)),
                                  static_cast<std::uint16_t>(std::stoi(addr.substr(colon + 1))));
  const net::ip::tcp::endpoint store_ep(net::ip::make_address_v4("127.0.0.1"), port);
  // Queued before the last rank: rank 0 accepts them first, then must still
  // let ranks 1 and 2 through.
  net::io_context io;
  std::vector<net::ip::tcp::socket> silent;
  for (int i = 0; i < 6; ++i) {
    silent.emplace_back(io);
    silent.back().connect(i % 3 == 2 ? store_ep : ep);
  }
  std::atomic<bool> loris_closed{false}, store_loris_closed{false};
  std::thread loris([&] { loris_closed = slow_loris(ep, 200ms, 100); });
  std::thread store_loris([&] { store_loris_closed = slow_loris(store_ep, 200ms, 100); });
  std::this_thread::sleep_for(100ms);
  REQUIRE(::write(go[1], "g", 1) == 1);
  const auto lines = g.collect(60s);
  for (int r = 0; r < p; ++r) {
    INFO("rank " << r << ": " << (lines[r] ? lines[r]->text : "<no report>"));
    REQUIRE(lines[r]);
    CHECK(lines[r]->text == "ok");
  }
  loris.join();
  store_loris.join();
  CHECK(loris_closed);
  CHECK(store_loris_closed);
  ::close(go[1]);
}
