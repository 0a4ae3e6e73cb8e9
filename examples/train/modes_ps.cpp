// examples/train/modes_ps.cpp — the parameter-server modes (server rank(s) of their own).
#include "greenreduce/codec/bf16.hpp"
#include "greenreduce/codec/int8.hpp"
#include "greenreduce/codec/none.hpp"
#include "harness.hpp"
#include "modes.hpp"

namespace greenreduce::examples {
namespace {

// Bounded staleness, fp32 both ways, a pull before every step.
rank_outcome run_async(rank_context& c, demo_world& w) {
  return train_ps(c, w, "async", codec::none{}, codec::none{}, ps_setup{});
}

// Bounded staleness, int8 pushes with the worker's error feedback, bf16 pulls:
// about a quarter of async's bytes each way. (Top-k pushes at 5-20% lost
// 1.1-2 points here: the bf16 pull is then most of the bytes anyway, and the
// sparse stale pushes hurt more than int8's bounded rounding error.)
rank_outcome run_hybrid(rank_context& c, demo_world& w) {
  ps_setup s;
  s.encoded_pull = true;
  return train_ps(c, w, "hybrid", codec::int8{}, codec::bf16{}, s);
}

const register_mode async_mode{
    mode_spec{"async", "parameter server, bounded staleness (SSP), fp32 pushes and pulls", 20, true,
              true, run_async}};
const register_mode hybrid_mode{
    mode_spec{"hybrid", "parameter server, SSP, int8 pushes with error feedback, bf16 pulls", 30,
              true, true, run_hybrid}};

}  // namespace
}  // namespace greenreduce::examples
