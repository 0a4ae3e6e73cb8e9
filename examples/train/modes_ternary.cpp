// examples/train/modes_ternary.cpp — TernGrad over the ring.
#include "greenreduce/codec/ternary.hpp"
#include "harness.hpp"
#include "modes.hpp"

namespace greenreduce::examples {
namespace {

// Stochastic ternary, per-bucket scale; error feedback on the owned chunk.
rank_outcome run_ternary(rank_context& c, demo_world& w) {
  return train_ring(c, w, "ternary", codec::ternary{}, true, false);
}

const register_mode ternary_mode{
    mode_spec{"ternary", "ring allreduce of TernGrad gradients (2 bits per value)", 50, false, true,
              run_ternary}};

}  // namespace
}  // namespace greenreduce::examples
