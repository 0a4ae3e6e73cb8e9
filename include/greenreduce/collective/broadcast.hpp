// greenreduce/collective/broadcast.hpp — one rank's bytes to every rank.
//
// A pipelined chain from the root around the ring: the bytes are cut into
// segments and rank root+k forwards segment i to root+k+1 while it receives
// segment i+1, so the time is about (size + (p-2) * segment) / bandwidth
// instead of (p-1) * size / bandwidth. Every rank passes a buffer of the same
// size; a rank receiving more or fewer bytes than that throws peer_error.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>

#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/concept.hpp"

namespace greenreduce::collective {

/// Copies root's `data` into every rank's `data` (same size on all ranks).
template <transport::transport Transport>
void broadcast(Transport& t, std::span<std::byte> data, int root,
               std::size_t segment_bytes = std::size_t{1} << 20) {
  const int p = t.size();
  const int r = t.rank();
  if (root < 0 || root >= p)
    throw config_error(detail::str("broadcast root ", root, " out of [0, ", p, ")"));
  if (p == 1) return;
  segment_bytes = std::max<std::size_t>(segment_bytes, 1);
  const int pos = (r - root + p) % p;  // distance from the root along the ring
  const int left = (r + p - 1) % p;
  const int right = (r + 1) % p;
  const bool receives = pos != 0;
  const bool forwards = pos != p - 1;
  const std::size_t nseg =
      std::max<std::size_t>(1, (data.size() + segment_bytes - 1) / segment_bytes);
  auto seg = [&](std::size_t i) {
    const std::size_t off = i * segment_bytes;
    return data.subspan(off, std::min(segment_bytes, data.size() - off));
  };
  std::optional<typename Transport::send_request> pending;
  for (std::size_t i = 0; i < nseg; ++i) {
    auto s = seg(i);
    if (receives) {
      const std::size_t got = t.recv(left, s);
      if (got != s.size())
        throw peer_error(detail::str("broadcast on rank ", r, ": segment ", i, " from rank ", left,
                                     " has ", got, " bytes, expected ", s.size()));
    }
    if (forwards) {
      if (pending) t.wait(*pending);
      pending.emplace(t.isend(right, s));
    }
  }
  if (pending) t.wait(*pending);
}

}  // namespace greenreduce::collective
