// greenreduce/transport/local_port.hpp — a rendezvous port for ranks that a
// program starts on this machine itself (torchrun's "standalone" case).
//
// The usual trick, bind port 0 and close, hands out a port from the kernel's
// ephemeral range; until rank 0 binds it, any socket on the machine that binds
// port 0 or connects out may take it (the ranks' own listeners do exactly
// that), and rank 0 then fails with "address already in use" while its peers
// wait for a store that never comes. spare_loopback_port() instead draws from
// the ports *below* the ephemeral range (net.ipv4.ip_local_port_range), which
// the kernel never hands out on its own, and keeps one that nothing listens on
// now. Two programs drawing at once collide with probability about 1 in the
// size of that range (tens of thousands).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <random>

#include "greenreduce/core/error.hpp"

namespace greenreduce::transport {

namespace detail {

/// The low end of the kernel's ephemeral port range (32768 when unreadable).
inline int ephemeral_low() {
  std::ifstream f("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 0, hi = 0;
  if (f >> lo >> hi && lo > 2048 && lo <= 65535) return lo;
  return 32768;
}

/// Whether a listener could bind 127.0.0.1:port now (as the store does).
inline bool loopback_port_bindable(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace detail

/// A loopback TCP port, below the ephemeral range, that nothing holds now.
/// Throws config_error when 256 draws found none.
inline std::uint16_t spare_loopback_port() {
  const int hi = detail::ephemeral_low() - 1;
  const int lo = hi > 12000 ? 10000 : 1024;
  std::mt19937_64 rng(
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
      (static_cast<std::uint64_t>(::getpid()) << 32));
  std::uniform_int_distribution<int> pick(lo, hi);
  for (int attempt = 0; attempt < 256; ++attempt) {
    const int port = pick(rng);
    if (detail::loopback_port_bindable(port)) return static_cast<std::uint16_t>(port);
  }
  throw config_error(
      greenreduce::detail::str("no free loopback port in [", lo, ", ", hi, "] after 256 draws"));
}

}  // namespace greenreduce::transport
