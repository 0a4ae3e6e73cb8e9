// greenreduce/ps/options.hpp — roles, consistency modes and knobs of the parameter server.
//
// Roles: ranks [0, S) of the transport are servers, ranks [S, size) workers
// (worker index = rank - S). S comes from the caller or GREENREDUCE_PS_SERVERS.
//
// Consistency (Ho et al., "More effective distributed ML via a stale
// synchronous parallel parameter server", NeurIPS 2013):
//   sync                 a key's step is applied once every live worker pushed
//                        it (gradients averaged); a push returns after that
//   async                every push is applied on arrival (Downpour/Hogwild)
//   bounded_staleness{s} pushes are applied on arrival, but a push of step t
//                        returns only when every live worker has pushed step
//                        t - s of that key: no worker runs more than s steps
//                        ahead of the slowest. s = 0 is sync.
#pragma once

#include <charconv>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include "greenreduce/core/env.hpp"
#include "greenreduce/core/error.hpp"

namespace greenreduce::ps {

/// Which consistency model the servers enforce.
struct consistency {
  enum class kind : std::uint8_t { sync, async, bounded_staleness };
  kind mode = kind::sync;
  std::uint32_t staleness = 0;  ///< s of bounded_staleness (0 for the others)

  static consistency sync() { return {kind::sync, 0}; }
  static consistency async() { return {kind::async, 0}; }
  /// SSP with bound s; s = 0 is the same as sync().
  static consistency bounded_staleness(std::uint32_t s) {
    return s == 0 ? sync() : consistency{kind::bounded_staleness, s};
  }

  /// Parses "sync", "async" or "ssp:K" (K >= 0); config_error otherwise.
  static consistency parse(std::string_view text) {
    if (text == "sync") return sync();
    if (text == "async") return async();
    if (text.substr(0, 4) == "ssp:") {
      const std::string_view num = text.substr(4);
      std::uint32_t s = 0;
      auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), s);
      if (ec == std::errc() && ptr == num.data() + num.size() && !num.empty())
        return bounded_staleness(s);
    }
    throw config_error(detail::str("consistency mode \"", text,
                                   "\" is invalid: expected sync, async or ssp:K with K >= 0"));
  }

  std::string to_string() const {
    switch (mode) {
      case kind::sync:
        return "sync";
      case kind::async:
        return "async";
      case kind::bounded_staleness:
        return detail::str("ssp:", staleness);
    }
    return "unknown";
  }
  friend bool operator==(const consistency&, const consistency&) = default;
};

/// Which ranks serve and which work.
struct roles {
  int servers = 1;  ///< ranks [0, servers) are servers
  int size = 0;     ///< the transport's size

  /// Checks 1 <= servers < size (at least one worker).
  roles(int servers_, int size_) : servers(servers_), size(size_) {
    if (servers < 1 || servers >= size)
      throw config_error(detail::str("parameter server roles: ", servers, " servers among ", size,
                                     " ranks; need 1 <= servers < ranks (at least one worker)"));
  }
  /// S from GREENREDUCE_PS_SERVERS (default 1).
  static roles from_env(const env_source& env, int size) {
    const auto s = env_int(env, "GREENREDUCE_PS_SERVERS", 1, 1, size > 1 ? size - 1 : 1);
    return roles(static_cast<int>(s), size);
  }

  int workers() const noexcept { return size - servers; }
  bool is_server(int rank) const noexcept { return rank >= 0 && rank < servers; }
  bool is_worker(int rank) const noexcept { return rank >= servers && rank < size; }
  int worker_index(int rank) const noexcept { return rank - servers; }
  int worker_rank(int index) const noexcept { return servers + index; }
  int server_rank(int index) const noexcept { return index; }
};

/// Knobs shared by servers and workers (every rank must use the same values).
struct ps_options {
  consistency mode = consistency::sync();
  /// A worker silent this long (no request in flight) is dead: dropped in
  /// async/SSP, a peer_error for everyone waiting in sync.
  std::chrono::milliseconds timeout{30000};

  /// mode from GREENREDUCE_PS_MODE (sync|async|ssp:K), timeout from
  /// GREENREDUCE_PS_TIMEOUT_MS (default: GREENREDUCE_TIMEOUT_MS, else 30000).
  static ps_options from_env(const env_source& env) {
    ps_options o;
    if (auto m = env.get("GREENREDUCE_PS_MODE")) o.mode = consistency::parse(*m);
    const auto base = env_int(env, "GREENREDUCE_TIMEOUT_MS", 30000, 1, 86400000);
    o.timeout =
        std::chrono::milliseconds(env_int(env, "GREENREDUCE_PS_TIMEOUT_MS", base, 1, 86400000));
    return o;
  }
};

}  // namespace greenreduce::ps
