// greenreduce/ps/placement.hpp — which server owns which key (tensor).
//
// Keys are sharded over S servers balanced by bytes with the greedy
// largest-first rule (LPT, Graham 1969: makespan within 4/3 of optimal): sort
// keys by size descending (ties: by key index), give each to the server with the
// fewest bytes so far (ties: the lowest server index). The rule is a pure
// function of the key list and S, so every rank computes the same placement
// without talking to the others. A key's id is its index in the key list.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "greenreduce/core/error.hpp"

namespace greenreduce::ps {

/// A named tensor of `length` fp32 elements.
struct key_spec {
  std::string name;
  std::size_t length = 0;
};

/// The owner of every key and each server's share of the bytes.
struct placement {
  std::vector<int> owner;                         ///< owner[key id] = server index in [0, S)
  std::vector<std::uint64_t> bytes;               ///< bytes[server] = fp32 bytes of its keys
  std::vector<std::vector<std::size_t>> keys_of;  ///< keys_of[server] = its key ids, ascending

  int servers() const noexcept { return static_cast<int>(bytes.size()); }
};

/// Places `keys` on `servers` servers (greedy largest-first by bytes).
/// Throws config_error for servers < 1 or duplicate key names.
inline placement place(const std::vector<key_spec>& keys, int servers) {
  if (servers < 1)
    throw config_error(
        detail::str("parameter server placement needs at least 1 server, got ", servers));
  for (std::size_t i = 0; i < keys.size(); ++i)
    for (std::size_t j = i + 1; j < keys.size(); ++j)
      if (keys[i].name == keys[j].name)
        throw config_error(detail::str("parameter server key '", keys[i].name,
                                       "' is declared twice (ids ", i, " and ", j, ")"));
  std::vector<std::size_t> order(keys.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return keys[a].length > keys[b].length; });
  placement p;
  p.owner.assign(keys.size(), 0);
  p.bytes.assign(static_cast<std::size_t>(servers), 0);
  p.keys_of.resize(static_cast<std::size_t>(servers));
  for (std::size_t k : order) {
    const auto least = std::min_element(p.bytes.begin(), p.bytes.end());
    const auto s = static_cast<std::size_t>(least - p.bytes.begin());
    p.owner[k] = static_cast<int>(s);
    p.bytes[s] += static_cast<std::uint64_t>(keys[k].length) * sizeof(float);
    p.keys_of[s].push_back(k);
  }
  for (auto& ks : p.keys_of) std::sort(ks.begin(), ks.end());
  return p;
}

}  // namespace greenreduce::ps
