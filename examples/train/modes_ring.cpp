// examples/train/modes_ring.cpp — sync (fp32) and topk over the ring.
#include "greenreduce/codec/none.hpp"
#include "greenreduce/codec/topk.hpp"
#include "harness.hpp"
#include "modes.hpp"

namespace greenreduce::examples {
namespace {

rank_outcome run_sync(rank_context& c, demo_world& w) {
  return train_ring(c, w, "sync", codec::none{}, false, false);
}

// Top-k of each rank's gradient with error feedback, then the sparse allreduce.
rank_outcome run_topk(rank_context& c, demo_world& w) {
  return train_ring(c, w, "topk", codec::topk::ratio(c.opt.topk_ratio), false, true);
}

const register_mode sync_mode{mode_spec{"sync", "ring allreduce of fp32 gradients (the baseline)",
                                        10, false, true, run_sync}};
const register_mode topk_mode{
    mode_spec{"topk", "ring with top-k gradients, error feedback and momentum correction per rank",
              60, false, true, run_topk}};

}  // namespace
}  // namespace greenreduce::examples
