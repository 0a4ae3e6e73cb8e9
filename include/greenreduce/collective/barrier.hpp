// greenreduce/collective/barrier.hpp — every rank waits until all have arrived.
//
// A ring allgather of empty messages (collective/allgather.hpp): rank r leaves
// after it has received p-1 messages, each first sent by a different rank on
// entering, so every rank has entered. p-1 steps of one header-sized message.
#pragma once

#include "greenreduce/collective/allgather.hpp"

namespace greenreduce::collective {

/// Blocks until every rank of `t` has called barrier (bounded by the transport's timeout).
template <transport::transport Transport>
void barrier(Transport& t) {
  allgather<Transport> ag(t, 0);
  ag.run({});
}

}  // namespace greenreduce::collective
