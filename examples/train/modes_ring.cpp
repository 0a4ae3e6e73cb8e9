// examples/train/modes_ring.cpp — sync (fp32) and topk over the ring.
#include "greenreduce/codec/none.hpp"
#include "greenreduce/codec/topk.hpp"
#include "modes.hpp"

namespace greenreduce::examples {

rank_outcome run_sync(rank_context& c, transport::tcp& t) {
  return train_ring(c, t, "sync", codec::none{}, false, false);
}

// Top-k of each rank's gradient with error feedback, then the sparse allreduce.
rank_outcome run_topk(rank_context& c, transport::tcp& t) {
  return train_ring(c, t, "topk", codec::topk::ratio(c.opt.topk_ratio), false, true);
}

}  // namespace greenreduce::examples
