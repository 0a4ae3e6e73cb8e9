// World info from each launcher's variables, their precedence, and every
// malformed value -> config_error naming the variable.
#include "greenreduce/transport/rendezvous.hpp"

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "greenreduce/transport/tcp.hpp"
#include "support/matchers.hpp"

namespace gr = greenreduce;
namespace grt = greenreduce::transport;
using greenreduce::test::what_has;
using vars = std::map<std::string, std::string>;

namespace {
grt::world_info world(vars v) {
  return grt::world_from_env(gr::env_source::from_map(std::move(v)));
}
grt::tcp_options options(vars v) {
  return grt::tcp_options::from_env(gr::env_source::from_map(std::move(v)));
}
}  // namespace

TEST_CASE("rendezvous: each launcher's variables", "[transport][rendezvous]") {
  auto w = world(
      {{"RANK", "2"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "29500"}});
  CHECK(w.launcher == "torchrun");
  CHECK(w.rank == 2);
  CHECK(w.size == 4);
  CHECK(w.master_addr == "10.0.0.1");
  CHECK(w.master_port == 29500);

  w = world({{"OMPI_COMM_WORLD_RANK", "1"},
             {"OMPI_COMM_WORLD_SIZE", "3"},
             {"GREENREDUCE_MASTER_ADDR", "h0"},
             {"GREENREDUCE_MASTER_PORT", "1234"}});
  CHECK(w.launcher == "openmpi");
  CHECK(w.rank == 1);
  CHECK(w.size == 3);
  CHECK(w.master_addr == "h0");

  w = world({{"PMI_RANK", "0"},
             {"PMI_SIZE", "2"},
             {"MASTER_ADDR", "m"},
             {"MASTER_PORT", "7"},
             {"GREENREDUCE_MASTER_ADDR", "ignored"},
             {"GREENREDUCE_MASTER_PORT", "8"}});
  CHECK(w.launcher == "pmi");
  CHECK(w.master_addr == "m");  // MASTER_* wins over GREENREDUCE_MASTER_*
  CHECK(w.master_port == 7);

  w = world({{"SLURM_PROCID", "5"},
             {"SLURM_NTASKS", "8"},
             {"GREENREDUCE_MASTER_ADDR", "n1"},
             {"GREENREDUCE_MASTER_PORT", "9"}});
  CHECK(w.launcher == "slurm");
  CHECK(w.rank == 5);
  CHECK(w.size == 8);

  // Order: torchrun before Open MPI before PMI before Slurm.
  w = world({{"SLURM_PROCID", "1"},
             {"SLURM_NTASKS", "2"},
             {"PMI_RANK", "0"},
             {"PMI_SIZE", "2"},
             {"MASTER_ADDR", "m"},
             {"MASTER_PORT", "7"}});
  CHECK(w.launcher == "pmi");
  CHECK(w.rank == 0);
  w = world({{"OMPI_COMM_WORLD_RANK", "1"},
             {"OMPI_COMM_WORLD_SIZE", "2"},
             {"RANK", "0"},
             {"WORLD_SIZE", "2"},
             {"MASTER_ADDR", "m"},
             {"MASTER_PORT", "7"}});
  CHECK(w.launcher == "torchrun");

  // A world of one needs no master.
  w = world({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}});
  CHECK(w.size == 1);
}

TEST_CASE("rendezvous: the store's port, beside torchrun's agent store",
          "[transport][rendezvous]") {
  const vars torchrun{
      {"RANK", "1"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "29500"}};
  auto with = [&](vars base, vars extra) {
    for (auto& [k, x] : extra) base[k] = x;
    return world(base);
  };
  // Variables set by hand: the store is on MASTER_PORT.
  CHECK(world(torchrun).master_port == 29500);
  // torchrun's elastic agent serves its own store on MASTER_PORT: ours goes one above.
  CHECK(with(torchrun, {{"TORCHELASTIC_RUN_ID", "none"}}).master_port == 29501);
  CHECK(with(torchrun, {{"TORCHELASTIC_USE_AGENT_STORE", "True"}}).master_port == 29501);
  // An explicit port wins, under any launcher.
  CHECK(with(torchrun, {{"TORCHELASTIC_RUN_ID", "x"}, {"GREENREDUCE_STORE_PORT", "40000"}})
            .master_port == 40000);
  CHECK(world({{"OMPI_COMM_WORLD_RANK", "0"},
               {"OMPI_COMM_WORLD_SIZE", "2"},
               {"MASTER_ADDR", "m"},
               {"MASTER_PORT", "7"},
               {"GREENREDUCE_STORE_PORT", "8"}})
            .master_port == 8);
  // The agent only matters to torchrun-style launches.
  CHECK(world({{"OMPI_COMM_WORLD_RANK", "0"},
               {"OMPI_COMM_WORLD_SIZE", "2"},
               {"MASTER_ADDR", "m"},
               {"MASTER_PORT", "7"},
               {"TORCHELASTIC_RUN_ID", "x"}})
            .master_port == 7);
  CHECK_THROWS_MATCHES(with(torchrun, {{"GREENREDUCE_STORE_PORT", "0"}}), gr::config_error,
                       what_has("GREENREDUCE_STORE_PORT=\"0\""));
  CHECK_THROWS_MATCHES(with(torchrun, {{"TORCHELASTIC_RUN_ID", "x"}, {"MASTER_PORT", "65535"}}),
                       gr::config_error, what_has("MASTER_PORT=65535", "GREENREDUCE_STORE_PORT"));
}

TEST_CASE("rendezvous: malformed or missing values name the variable", "[transport][rendezvous]") {
  const vars master{{"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}};
  auto with = [&](vars v) {
    for (auto& [k, x] : master) v.emplace(k, x);
    return v;
  };
  CHECK_THROWS_MATCHES(world({}), gr::config_error, what_has("no launcher", "SLURM_PROCID"));
  CHECK_THROWS_MATCHES(world(with({{"RANK", "abc"}, {"WORLD_SIZE", "2"}})), gr::config_error,
                       what_has("RANK=\"abc\""));
  CHECK_THROWS_MATCHES(world(with({{"RANK", "0"}, {"WORLD_SIZE", "0"}})), gr::config_error,
                       what_has("WORLD_SIZE=\"0\""));
  CHECK_THROWS_MATCHES(world(with({{"RANK", "4"}, {"WORLD_SIZE", "4"}})), gr::config_error,
                       what_has("RANK=4", "WORLD_SIZE=4"));
  CHECK_THROWS_MATCHES(world(with({{"RANK", "-1"}, {"WORLD_SIZE", "4"}})), gr::config_error,
                       what_has("RANK=\"-1\""));
  CHECK_THROWS_MATCHES(world(with({{"RANK", "1"}})), gr::config_error, what_has("WORLD_SIZE"));
  CHECK_THROWS_MATCHES(world({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}),
                       gr::config_error, what_has("MASTER_PORT is not set"));
  CHECK_THROWS_MATCHES(
      world({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}),
      gr::config_error, what_has("MASTER_PORT=\"70000\""));
  CHECK_THROWS_MATCHES(world({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}}),
                       gr::config_error,
                       what_has("openmpi", "GREENREDUCE_MASTER_ADDR", "MASTER_ADDR"));
  CHECK_THROWS_MATCHES(world({{"OMPI_COMM_WORLD_SIZE", "2"}}), gr::config_error,
                       what_has("OMPI_COMM_WORLD_RANK is not set"));
  CHECK_THROWS_MATCHES(world({{"PMI_RANK", "x1"}, {"PMI_SIZE", "2"}}), gr::config_error,
                       what_has("PMI_RANK"));
  CHECK_THROWS_MATCHES(world({{"SLURM_PROCID", "0"},
                              {"SLURM_NTASKS", "2"},
                              {"GREENREDUCE_MASTER_ADDR", "h"},
                              {"GREENREDUCE_MASTER_PORT", "port"}}),
                       gr::config_error, what_has("GREENREDUCE_MASTER_PORT=\"port\""));

  const vars ok{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}};
  auto opt = [&](const char* k, const char* v) {
    auto x = ok;
    x[k] = v;
    return options(x);
  };
  CHECK_THROWS_MATCHES(opt("GREENREDUCE_TIMEOUT_MS", "0"), gr::config_error,
                       what_has("GREENREDUCE_TIMEOUT_MS=\"0\""));
  CHECK_THROWS_MATCHES(opt("GREENREDUCE_TIMEOUT_MS", "fast"), gr::config_error,
                       what_has("GREENREDUCE_TIMEOUT_MS"));
  CHECK_THROWS_MATCHES(opt("GREENREDUCE_CONNECT_TIMEOUT_MS", "1e3"), gr::config_error,
                       what_has("GREENREDUCE_CONNECT_TIMEOUT_MS"));
  CHECK_THROWS_MATCHES(opt("GREENREDUCE_SOCKET_ADDR", "1.2.3"), gr::config_error,
                       what_has("GREENREDUCE_SOCKET_ADDR=\"1.2.3\""));
  CHECK_THROWS_MATCHES(opt("GREENREDUCE_SOCKET_BUFFER", "lots"), gr::config_error,
                       what_has("GREENREDUCE_SOCKET_BUFFER"));

  auto o = opt("GREENREDUCE_TIMEOUT_MS", "2000");
  CHECK(o.timeout.count() == 2000);
  CHECK(o.connect_timeout.count() == 60000);
  CHECK(opt("GREENREDUCE_SOCKET_BUFFER", "4MiB").socket_buffer_bytes == (4u << 20));
  CHECK(options(ok).timeout.count() == 30000);
}

TEST_CASE("rendezvous: interfaces and addresses", "[transport][rendezvous]") {
  CHECK(grt::interface_ipv4("lo") == "127.0.0.1");
  CHECK_THROWS_MATCHES(grt::interface_ipv4("nope0"), gr::config_error,
                       what_has("GREENREDUCE_SOCKET_IFNAME=\"nope0\"", "no such interface"));
  CHECK(grt::route_ipv4_to("127.0.0.1", 29500) == "127.0.0.1");
  CHECK(grt::resolve_ipv4("127.0.0.1", "MASTER_ADDR") == "127.0.0.1");
  CHECK(grt::resolve_ipv4("localhost", "MASTER_ADDR") == "127.0.0.1");
  CHECK_THROWS_MATCHES(grt::resolve_ipv4("no-such-host.invalid", "MASTER_ADDR"), gr::config_error,
                       what_has("MASTER_ADDR=\"no-such-host.invalid\""));

  // The transport reports a missing interface before it touches the network.
  grt::tcp_options o;
  o.rank = 1;
  o.size = 2;
  o.master_addr = "127.0.0.1";
  o.master_port = 9;
  o.ifname = "nope0";
  CHECK_THROWS_MATCHES(grt::tcp{o}, gr::config_error, what_has("nope0"));
  o.rank = 2;
  CHECK_THROWS_AS(grt::tcp{o}, gr::config_error);
  o.rank = 1;
  o.master_addr.clear();
  CHECK_THROWS_MATCHES(grt::tcp{o}, gr::config_error, what_has("master_addr"));
}

TEST_CASE("tcp: a world of one needs no network and has no peers", "[transport][tcp]") {
  auto t =
      grt::tcp::from_env(gr::env_source::from_map({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}));
  CHECK(t.rank() == 0);
  CHECK(t.size() == 1);
  std::vector<std::byte> b(4);
  CHECK_THROWS_AS(t.isend(0, b), gr::config_error);
  CHECK_THROWS_AS(t.irecv(1, b), gr::config_error);
  CHECK(t.bytes_sent() == 0);
  CHECK(t.bytes_received() == 0);
}

TEST_CASE("tcp: two ranks as threads of one process, with a moved-from handle",
          "[transport][tcp]") {
  grt::tcp_options o;
  o.size = 2;
  o.master_addr = "127.0.0.1";
  o.master_port = 0;
  // Pick a port, then let both ranks meet there.
  {
    grt::store_server probe("127.0.0.1", 0);
    o.master_port = probe.port();
  }
  std::string err0, err1;
  std::vector<std::byte> got0(8), got1(8);
  std::size_t n0 = 0, n1 = 0;
  auto run = [&](int rank, std::string& err, std::vector<std::byte>& got, std::size_t& n) {
    try {
      auto oo = o;
      oo.rank = rank;
      grt::tcp a(oo);
      grt::tcp t = std::move(a);
      const std::vector<std::byte> out(5, std::byte(rank + 1));
      n = t.sendrecv(1 - rank, out, 1 - rank, got);
      grt::tcp::recv_request empty;
      if (empty.pending()) err = "a default request is pending";
      try {
        t.wait(empty);
        err = "wait on an empty request did not throw";
      } catch (const gr::config_error&) {
      }
    } catch (const std::exception& e) {
      err = e.what();
    }
  };
  std::thread t1([&] { run(1, err1, got1, n1); });
  run(0, err0, got0, n0);
  t1.join();
  CHECK(err0.empty());
  CHECK(err1.empty());
  CHECK(n0 == 5);
  CHECK(n1 == 5);
  CHECK(got0[0] == std::byte(2));
  CHECK(got1[4] == std::byte(1));
}
