// greenreduce/transport/rendezvous.hpp — who am I, how many are we, where to meet.
//
// World info comes from the launcher's environment, first match wins:
//   1. torchrun       RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (all four required)
//   2. Open MPI       OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE
//   3. PMI (MPICH, Intel MPI, srun --mpi=pmi2)   PMI_RANK, PMI_SIZE
//   4. Slurm          SLURM_PROCID, SLURM_NTASKS
// Launchers 2-4 say nothing about a meeting point: the master address is
// MASTER_ADDR/MASTER_PORT when both are set, else GREENREDUCE_MASTER_ADDR/
// GREENREDUCE_MASTER_PORT. A world of size 1 needs no master. Every malformed
// or missing value is a config_error naming the variable.
//
// The store's port: GREENREDUCE_STORE_PORT when set (any launcher); else,
// under torchrun's elastic agent (TORCHELASTIC_RUN_ID or
// TORCHELASTIC_USE_AGENT_STORE set), MASTER_PORT + 1, because the agent itself
// serves its own store on MASTER_PORT for the whole job; else the master port.
//
// The address a rank listens on is chosen, in this order, by an explicit
// address, by GREENREDUCE_SOCKET_IFNAME (the interface's first IPv4 address,
// getifaddrs(3)), or as the local address the kernel would use to reach the
// master (connect a UDP socket, read getsockname; no packet is sent).
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <string>

#include "greenreduce/core/env.hpp"
#include "greenreduce/core/error.hpp"

namespace greenreduce::transport {

/// This process's place in the job and where rank 0 serves the store.
struct world_info {
  int rank = 0;
  int size = 1;
  std::string master_addr;  ///< host name or IPv4 address of rank 0's store
  std::uint16_t master_port = 0;
  std::string launcher;  ///< "torchrun", "openmpi", "pmi", "slurm" or "explicit"
};

namespace detail {

using greenreduce::detail::str;

/// Reads a (rank, size) pair of variables; both must be set and rank < size.
inline void read_rank_size(const env_source& env, const char* rank_var, const char* size_var,
                           world_info& w) {
  if (!env.get(rank_var) || !env.get(size_var))
    throw config_error(str(env.get(rank_var) ? size_var : rank_var, " is not set but ",
                           env.get(rank_var) ? rank_var : size_var,
                           " is: set both (rank and world size)"));
  w.size = static_cast<int>(env_int(env, size_var, 1, 1, 65535));
  w.rank = static_cast<int>(env_int(env, rank_var, 0, 0, 65534));
  if (w.rank >= w.size)
    throw config_error(
        str(rank_var, "=", w.rank, " is invalid: expected a rank below ", size_var, "=", w.size));
}

/// MASTER_ADDR/MASTER_PORT or, when neither is set, the GREENREDUCE_ pair.
inline void read_master(const env_source& env, world_info& w, bool torchrun) {
  const char* addr_var = "MASTER_ADDR";
  const char* port_var = "MASTER_PORT";
  if (!torchrun && !env.get("MASTER_ADDR") && !env.get("MASTER_PORT")) {
    addr_var = "GREENREDUCE_MASTER_ADDR";
    port_var = "GREENREDUCE_MASTER_PORT";
  }
  const bool have_addr = env.get(addr_var).has_value();
  const bool have_port = env.get(port_var).has_value();
  if (have_port) w.master_port = static_cast<std::uint16_t>(env_int(env, port_var, 0, 1, 65535));
  if (have_addr) w.master_addr = *env.get(addr_var);
  if ((have_addr && have_port) || w.size == 1) return;
  throw config_error(
      torchrun ? str(have_addr ? port_var : addr_var,
                     " is not set: torchrun-style launch (RANK/WORLD_SIZE) needs MASTER_ADDR and "
                     "MASTER_PORT")
               : str("rank and size come from the ", w.launcher,
                     " launcher, but no master address is given: set MASTER_ADDR and "
                     "MASTER_PORT, or GREENREDUCE_MASTER_ADDR and GREENREDUCE_MASTER_PORT (",
                     have_addr ? port_var : addr_var, " is missing)"));
}

/// The store's port (see the header comment); after read_master.
inline void read_store_port(const env_source& env, world_info& w, bool torchrun) {
  if (env.get("GREENREDUCE_STORE_PORT")) {
    w.master_port = static_cast<std::uint16_t>(env_int(env, "GREENREDUCE_STORE_PORT", 0, 1, 65535));
    return;
  }
  if (!torchrun || w.master_port == 0) return;
  if (!env.get("TORCHELASTIC_RUN_ID") && !env.get("TORCHELASTIC_USE_AGENT_STORE")) return;
  if (w.master_port == 65535)
    throw config_error(
        "MASTER_PORT=65535 under torchrun's elastic agent: the agent serves its own store on "
        "MASTER_PORT and greenreduce's would go on MASTER_PORT + 1; set GREENREDUCE_STORE_PORT");
  w.master_port = static_cast<std::uint16_t>(w.master_port + 1);
}

}  // namespace detail

/// World info from the launcher's environment (order in the header comment).
inline world_info world_from_env(const env_source& env) {
  world_info w;
  if (env.get("RANK") || env.get("WORLD_SIZE")) {
    w.launcher = "torchrun";
    detail::read_rank_size(env, "RANK", "WORLD_SIZE", w);
    detail::read_master(env, w, true);
  } else if (env.get("OMPI_COMM_WORLD_RANK") || env.get("OMPI_COMM_WORLD_SIZE")) {
    w.launcher = "openmpi";
    detail::read_rank_size(env, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", w);
    detail::read_master(env, w, false);
  } else if (env.get("PMI_RANK") || env.get("PMI_SIZE")) {
    w.launcher = "pmi";
    detail::read_rank_size(env, "PMI_RANK", "PMI_SIZE", w);
    detail::read_master(env, w, false);
  } else if (env.get("SLURM_PROCID") || env.get("SLURM_NTASKS")) {
    w.launcher = "slurm";
    detail::read_rank_size(env, "SLURM_PROCID", "SLURM_NTASKS", w);
    detail::read_master(env, w, false);
  } else {
    throw config_error(
        "no launcher environment found: expected RANK/WORLD_SIZE (torchrun), "
        "OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE (mpirun), PMI_RANK/PMI_SIZE or "
        "SLURM_PROCID/SLURM_NTASKS (srun), or construct the transport from explicit options");
  }
  detail::read_store_port(env, w, w.launcher == "torchrun");
  return w;
}

/// `host` (a dotted IPv4 address or a name) as a dotted IPv4 address;
/// config_error naming `what` when it does not resolve to one.
inline std::string resolve_ipv4(const std::string& host, const std::string& what) {
  boost::system::error_code ec;
  const auto ip = boost::asio::ip::make_address_v4(host, ec);
  if (!ec) return ip.to_string();
  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  const auto results = resolver.resolve(boost::asio::ip::tcp::v4(), host, "", ec);
  if (ec || results.empty())
    throw config_error(detail::str(what, "=\"", host, "\" does not resolve to an IPv4 address",
                                   ec ? ": " + ec.message() : std::string()));
  return results.begin()->endpoint().address().to_string();
}

/// The first IPv4 address of interface `ifname`; config_error when it has none.
inline std::string interface_ipv4(const std::string& ifname) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0)
    throw config_error("getifaddrs failed while looking up GREENREDUCE_SOCKET_IFNAME");
  std::optional<std::string> found;
  bool exists = false;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_name == nullptr || ifname != a->ifa_name) continue;
    exists = true;
    if (a->ifa_addr != nullptr && a->ifa_addr->sa_family == AF_INET && !found) {
      char buf[INET_ADDRSTRLEN] = {};
      const auto* sin = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
      if (::inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf) != nullptr) found = buf;
    }
  }
  ::freeifaddrs(list);
  if (!found)
    throw config_error(detail::str(
        "GREENREDUCE_SOCKET_IFNAME=\"", ifname, "\" is invalid: ",
        exists ? "the interface has no IPv4 address" : "no such interface on this host"));
  return *found;
}

/// The local IPv4 address the kernel routes through to reach ip:port.
inline std::string route_ipv4_to(const std::string& ip, std::uint16_t port) {
  boost::asio::io_context io;
  boost::asio::ip::udp::socket s(io);
  boost::system::error_code ec;
  s.open(boost::asio::ip::udp::v4(), ec);
  if (!ec)
    s.connect({boost::asio::ip::make_address_v4(ip, ec), port == 0 ? std::uint16_t{9} : port}, ec);
  if (ec)
    throw config_error(detail::str("no route to the master ", ip, ":", port, " (", ec.message(),
                                   "): set GREENREDUCE_SOCKET_IFNAME or GREENREDUCE_SOCKET_ADDR"));
  return s.local_endpoint().address().to_string();
}

}  // namespace greenreduce::transport
