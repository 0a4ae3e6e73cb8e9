// Peer authentication (transport/auth.hpp): the secret from the environment,
// the proofs, the challenge parser, and jobs with a secret over real processes:
// strangers without it (plain hello, garbage, another secret, a plain store
// client) are refused before any frame of theirs is parsed, and the job goes on.
#include "greenreduce/transport/auth.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "greenreduce/transport/tcp.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"
#include "transport/tcp_harness.hpp"

namespace gr = greenreduce;
namespace grt = greenreduce::transport;
namespace aw = greenreduce::transport::auth_wire;
namespace net = boost::asio;
using greenreduce::test::expect;
using greenreduce::test::rank_group;
using greenreduce::test::what_has;
using namespace std::chrono_literals;

namespace {

std::string temp_file(const std::string& content, mode_t mode) {
  char name[] = "/tmp/greenreduce-secret-XXXXXX";
  const int fd = ::mkstemp(name);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
  ::close(fd);
  REQUIRE(::chmod(name, mode) == 0);
  return name;
}

gr::env_source env(std::map<std::string, std::string> m) {
  return gr::env_source::from_map(std::move(m));
}

// Ranks exchange one message each way with every peer and check its bytes.
void all_to_all(grt::tcp& t, std::uint64_t seed) {
  const int r = t.rank(), p = t.size();
  auto byte_of = [&](int src, int dst, std::size_t i) {
    return static_cast<std::byte>((seed >> (i % 56)) ^ (src * 31 + dst * 7 + i));
  };
  const std::size_t n = 1000 + seed % 5000;
  for (int j = 0; j < p; ++j) {
    if (j == r) continue;
    std::vector<std::byte> out(n), in(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = byte_of(r, j, i);
    const auto len = t.sendrecv(j, out, j, in);
    expect(len == n, "length");
    for (std::size_t i = 0; i < n; ++i)
      expect(in[i] == byte_of(j, r, i), gr::detail::str("byte ", i, " from rank ", j, " differs"));
  }
}

}  // namespace

TEST_CASE("auth: the secret from the environment", "[transport][auth]") {
  CHECK(grt::secret_from_env(env({})).empty());
  CHECK(grt::secret_from_env(env({{"GREENREDUCE_SECRET", "s3cret"}})) == "s3cret");
  const auto good = temp_file("from a file\n\n", 0600);
  CHECK(grt::secret_from_env(env({{"GREENREDUCE_SECRET_FILE", good}})) == "from a file");
  CHECK_THROWS_MATCHES(
      grt::secret_from_env(env({{"GREENREDUCE_SECRET", "x"}, {"GREENREDUCE_SECRET_FILE", good}})),
      gr::config_error, what_has("both set"));
  const auto world = temp_file("visible", 0644);
  CHECK_THROWS_MATCHES(grt::secret_from_env(env({{"GREENREDUCE_SECRET_FILE", world}})),
                       gr::config_error, what_has(world, "0644", "chmod 600"));
  const auto empty = temp_file("\n", 0600);
  CHECK_THROWS_MATCHES(grt::secret_from_env(env({{"GREENREDUCE_SECRET_FILE", empty}})),
                       gr::config_error, what_has("holds no secret"));
  CHECK_THROWS_MATCHES(
      grt::secret_from_env(env({{"GREENREDUCE_SECRET_FILE", "/nonexistent/greenreduce"}})),
      gr::config_error, what_has("/nonexistent/greenreduce"));
  const auto o = grt::tcp_options::from_env(env({{"RANK", "0"},
                                                 {"WORLD_SIZE", "1"},
                                                 {"GREENREDUCE_SECRET_FILE", good},
                                                 {"GREENREDUCE_HANDSHAKE_TIMEOUT_MS", "1234"}}));
  CHECK(o.secret == "from a file");
  CHECK(o.handshake_timeout == 1234ms);
  for (const auto& f : {good, world, empty}) std::remove(f.c_str());
  CHECK_THROWS_MATCHES(grt::peer_auth(""), gr::config_error, what_has("non-empty secret"));
}

TEST_CASE("auth: proofs verify only with the same secret, nonces and direction",
          "[transport][auth]") {
  const grt::peer_auth a("job secret"), b("job secret"), other("another secret");
  const auto cd = a.make_challenge(aw::role::mesh, 3);
  const auto ca = b.make_challenge(aw::role::mesh, 1);
  CHECK(cd != a.make_challenge(aw::role::mesh, 3));  // fresh nonce every time
  const auto pd = a.prove(true, cd, ca);
  CHECK(b.check(true, cd, ca, pd));
  CHECK_FALSE(other.check(true, cd, ca, pd));
  CHECK_FALSE(b.check(false, cd, ca, pd));  // a dialer's proof is no acceptor's proof
  CHECK(pd != a.prove(false, cd, ca));
  auto flipped = pd;
  flipped[17] ^= std::byte{1};
  CHECK_FALSE(b.check(true, cd, ca, flipped));
  auto cd2 = cd;
  cd2[40] ^= std::byte{0x80};  // another nonce: a replayed proof does not fit
  CHECK_FALSE(b.check(true, cd2, ca, pd));
}

TEST_CASE("auth: challenges are validated", "[transport][auth]") {
  const grt::peer_auth a("k");
  auto c = a.make_challenge(aw::role::store, aw::no_rank);
  CHECK(aw::parse_challenge(c, aw::role::store).rank == aw::no_rank);
  CHECK(aw::parse_challenge(a.make_challenge(aw::role::mesh, 7), aw::role::mesh).rank == 7);
  CHECK_THROWS_MATCHES(aw::parse_challenge(c, aw::role::mesh), gr::decode_error,
                       what_has("role 2", "expected 1"));
  auto bad = c;
  bad[0] = std::byte{'X'};
  CHECK_THROWS_MATCHES(aw::parse_challenge(bad, aw::role::store), gr::decode_error,
                       what_has("bad challenge magic"));
  bad = c;
  bad[4] = std::byte{9};
  CHECK_THROWS_MATCHES(aw::parse_challenge(bad, aw::role::store), gr::decode_error,
                       what_has("protocol version 9"));
  bad = c;
  bad[13] = std::byte{1};
  CHECK_THROWS_MATCHES(aw::parse_challenge(bad, aw::role::store), gr::decode_error,
                       what_has("reserved"));
}

TEST_CASE("tcp auth: a job with a secret completes; strangers without it are refused",
          "[transport][tcp][auth][fault]") {
  constexpr int p = 3;
  const auto seed = greenreduce::test::seed(11);
  const auto port = greenreduce::test::free_port();
  const std::string secret = "job-" + std::to_string(seed);
  // go: the strangers are queued, the last rank may come; done: the parent
  // saw what the strangers got, rank 0 may count its drops.
  int go[2], done[2];
  REQUIRE(::pipe(go) == 0);
  REQUIRE(::pipe(done) == 0);
  rank_group g(p, [&](int rank, rank_group::reporter& report) {
    ::close(go[1]);
    ::close(done[1]);
    char c;
    // Rank 0 accepts only once every address is in the store: the strangers
    // queued before the last rank are accepted first.
    if (rank == p - 1) expect(::read(go[0], &c, 1) == 1, "go pipe");
    grt::tcp_options o;
    o.rank = rank;
    o.size = p;
    o.master_addr = "127.0.0.1";
    o.master_port = port;
    o.listen_addr = "127.0.0.1";
    o.secret = secret;
    o.handshake_timeout = 5000ms;
    o.log = [](const std::string&) {};
    grt::tcp t(o);
    all_to_all(t, seed);
    if (rank == 0) expect(::read(done[0], &c, 1) == 1, "done pipe");
    report(rank == 0 ? "dropped " + std::to_string(t.dropped_connections()) : "ok");
  });
  ::close(go[0]);
  ::close(done[0]);

  // A plain store client (no secret) cannot read the store: the store speaks
  // first with its challenge, which is no reply.
  CHECK_THROWS_MATCHES(grt::store_client("127.0.0.1", port, 20s, 5s).try_get("greenreduce/token"),
                       gr::peer_error, what_has("bad reply magic"));
  // Another secret: the store closes the connection after our proof, without its own.
  CHECK_THROWS_MATCHES(grt::store_client("127.0.0.1", port, 1500ms, 1s, "wrong"), gr::timeout_error,
                       what_has("auth", "is the secret the same?"));

  grt::store_client store("127.0.0.1", port, 20s, 5s, secret);
  const auto addr = store.get("greenreduce/addr/0", 20s);
  const auto colon = addr.rfind(':');
  net::io_context io;
  const net::ip::tcp::endpoint ep(net::ip::make_address_v4(addr.substr(0, colon)),
                                  static_cast<std::uint16_t>(std::stoi(addr.substr(colon + 1))));
  const auto token = std::stoull(store.get("greenreduce/token", 5s));
  // A correct hello with the job's token but no authentication (padded to a
  // challenge's length); garbage; an authenticator with another secret that
  // claims to be rank 2.
  net::ip::tcp::socket plain_hello(io), garbage(io), impostor(io);
  plain_hello.connect(ep);
  std::vector<std::byte> hello(aw::challenge_bytes);
  const auto h = grt::tcp_wire::encode_hello({2, p, token});
  std::copy(h.begin(), h.end(), hello.begin());
  net::write(plain_hello, net::buffer(hello));
  garbage.connect(ep);
  net::write(garbage, net::buffer(std::string(48, 'x')));
  impostor.connect(ep);
  std::optional<grt::auth_result> impostor_result;
  grt::async_authenticate(impostor, std::make_shared<const grt::peer_auth>("wrong"), true,
                          aw::role::mesh, 2, [&](grt::auth_result r) { impostor_result = r; });
  std::this_thread::sleep_for(200ms);
  REQUIRE(::write(go[1], "g", 1) == 1);
  io.run_for(20s);
  REQUIRE(impostor_result);
  CHECK(impostor_result->how == grt::auth_result::kind::cut);  // refused without a proof
  // The plain hello gets the acceptor's challenge, never its hello, then EOF.
  std::array<std::byte, aw::challenge_bytes> got{};
  boost::system::error_code ec;
  net::read(plain_hello, net::buffer(got), ec);
  REQUIRE_FALSE(ec);
  CHECK(gr::load_le<std::uint32_t>(got.data()) == aw::magic);
  std::array<std::byte, 1> more{};
  net::read(plain_hello, net::buffer(more), ec);
  CHECK(ec == net::error::eof);

  REQUIRE(::write(done[1], "d", 1) == 1);
  const auto lines = g.collect(30s);
  for (int r = 0; r < p; ++r) {
    INFO("rank " << r << ": " << (lines[r] ? lines[r]->text : "<no report>"));
    REQUIRE(lines[r]);
    if (r == 0) {
      REQUIRE(lines[r]->text.rfind("dropped ", 0) == 0);
      CHECK(std::stoi(lines[r]->text.substr(8)) >= 3);
    } else {
      CHECK(lines[r]->text == "ok");
    }
  }
  ::close(go[1]);
  ::close(done[1]);
}

TEST_CASE("tcp auth: a rank with another secret cannot join; every rank fails typed",
          "[transport][tcp][auth][fault]") {
  constexpr int p = 3;
  const auto port = greenreduce::test::free_port();
  rank_group g(p, [&](int rank, rank_group::reporter&) {
    grt::tcp_options o;
    o.rank = rank;
    o.size = p;
    o.master_addr = "127.0.0.1";
    o.master_port = port;
    o.listen_addr = "127.0.0.1";
    o.secret = rank == 2 ? "intruder" : "members";
    o.connect_timeout = 2000ms;
    o.log = [](const std::string&) {};
    grt::tcp t(o);
  });
  const auto lines = g.collect(30s);
  for (int r = 0; r < p; ++r) {
    INFO("rank " << r << ": " << (lines[r] ? lines[r]->text : "<no report>"));
    REQUIRE(lines[r]);
    const std::string& t = lines[r]->text;
    // Rank 0 serves the store and times out waiting for rank 2; rank 1, still
    // waiting on the store when rank 0's process ends, may see the store close
    // before its own deadline: a peer_error naming the store, also typed.
    const bool timed_out = t.rfind("timeout_error: ", 0) == 0;
    const bool store_gone = r == 1 && t.rfind("peer_error: ", 0) == 0 &&
                            t.find("rendezvous store") != std::string::npos;
    CHECK((timed_out || store_gone));
    if (r != 1) CHECK(timed_out);
    if (r == 2) CHECK(t.find("auth") != std::string::npos);
  }
}
