// greenreduce/collective/allgather.hpp — ring allgather of variable-size byte blocks.
//
//   collective::allgather<T> ag(transport, max_block_bytes);
//   auto blocks = ag.run(my_bytes);      // blocks[q] = rank q's bytes, on every rank
//
// The ring algorithm (Patarasuk & Yuan, "Bandwidth optimal all-reduce
// algorithms for clusters of workstations", JPDC 2009): in step s = 0..p-2 rank
// r forwards block (r - s) mod p to its right neighbour and receives block
// (r - s - 1) mod p from its left one. Each rank sends p-1 blocks. Blocks may
// differ in size between ranks; every block must fit `max_block_bytes`, which
// bounds every receive (a longer one is the transport's peer_error).
//
// The constructor allocates p * max_block_bytes; run() only moves bytes. The
// returned spans point into the object and stay valid until the next run().
// `barrier` is the same ring with empty blocks: when rank r has received p-1
// of them, every rank has entered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "greenreduce/core/buffer.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/concept.hpp"

namespace greenreduce::collective {

template <transport::transport Transport>
class allgather {
 public:
  allgather(Transport& t, std::size_t max_block_bytes)
      : t_(t),
        max_(max_block_bytes),
        store_(static_cast<std::size_t>(t.size()) * max_block_bytes),
        len_(static_cast<std::size_t>(t.size()), 0),
        views_(static_cast<std::size_t>(t.size())) {}

  std::size_t max_block_bytes() const noexcept { return max_; }

  /// Gathers every rank's `mine`; result[q] is rank q's block.
  std::span<const std::span<const std::byte>> run(std::span<const std::byte> mine) {
    const int p = t_.size();
    const int r = t_.rank();
    if (mine.size() > max_)
      throw config_error(detail::str("allgather on rank ", r, ": block of ", mine.size(),
                                     " bytes exceeds max_block_bytes ", max_));
    if (!mine.empty()) std::memcpy(slot(r).data(), mine.data(), mine.size());
    len_[static_cast<std::size_t>(r)] = mine.size();
    const int right = (r + 1) % p;
    const int left = (r + p - 1) % p;
    for (int s = 0; s + 1 < p; ++s) {
      const int out = ((r - s) % p + p) % p;
      const int in = ((r - s - 1) % p + p) % p;
      auto rr = t_.irecv(left, slot(in));
      auto sr = t_.isend(right, slot(out).first(len_[static_cast<std::size_t>(out)]));
      len_[static_cast<std::size_t>(in)] = t_.wait(rr);
      t_.wait(sr);
    }
    for (int q = 0; q < p; ++q)
      views_[static_cast<std::size_t>(q)] = slot(q).first(len_[static_cast<std::size_t>(q)]);
    return views_;
  }

 private:
  std::span<std::byte> slot(int q) {
    return std::span<std::byte>(store_).subspan(static_cast<std::size_t>(q) * max_, max_);
  }

  Transport& t_;
  std::size_t max_;
  byte_buffer store_;
  std::vector<std::size_t> len_;
  std::vector<std::span<const std::byte>> views_;
};

}  // namespace greenreduce::collective
