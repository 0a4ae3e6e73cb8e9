// examples/train/modes_ps.cpp — the parameter-server modes (server inside rank 0).
#include "greenreduce/codec/bf16.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/codec/topk.hpp"
#include "modes.hpp"

namespace greenreduce::examples {

// Bounded staleness, fp32 both ways.
rank_outcome run_async(rank_context& c, transport::tcp& t) {
  return train_ps(c, t, "async", codec::none{}, codec::none{}, false);
}

// Bounded staleness, top-k pushes with the worker's error feedback, bf16 pulls.
rank_outcome run_hybrid(rank_context& c, transport::tcp& t) {
  return train_ps(c, t, "hybrid", codec::topk::ratio(c.opt.topk_ratio), codec::bf16{}, true);
}

}  // namespace greenreduce::examples
