// examples/train/modes_ps.cpp — the parameter-server modes (server rank(s) of their own).
#include "greenreduce/codec/bf16.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/codec/topk.hpp"
#include "harness.hpp"
#include "modes.hpp"

namespace greenreduce::examples {
namespace {

// Bounded staleness, fp32 both ways, a pull before every step.
rank_outcome run_async(rank_context& c, demo_world& w) {
  return train_ps(c, w, "async", codec::none{}, codec::none{}, ps_setup{});
}

// Bounded staleness, top-k pushes with the worker's error feedback, bf16 pulls.
rank_outcome run_hybrid(rank_context& c, demo_world& w) {
  ps_setup s;
  s.encoded_pull = true;
  return train_ps(c, w, "hybrid", codec::topk::ratio(c.opt.topk_ratio), codec::bf16{}, s);
}

const register_mode async_mode{
    mode_spec{"async", "parameter server, bounded staleness (SSP), fp32 pushes and pulls", 20, true,
              true, run_async}};
const register_mode hybrid_mode{
    mode_spec{"hybrid", "parameter server, SSP, top-k pushes with error feedback, encoded pulls",
              30, true, true, run_hybrid}};

}  // namespace
}  // namespace greenreduce::examples
