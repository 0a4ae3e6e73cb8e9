// examples/train/modes_ternary.cpp — TernGrad over the ring (see modes.hpp for why apart).
#include "greenreduce/codec/ternary.hpp"
#include "modes.hpp"

namespace greenreduce::examples {

// Stochastic ternary, per-bucket scale; error feedback on the owned chunk.
rank_outcome run_ternary(rank_context& c, transport::tcp& t) {
  return train_ring(c, t, "ternary", codec::ternary{}, true, false);
}

}  // namespace greenreduce::examples
