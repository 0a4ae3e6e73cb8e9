// examples/train/modes_int8.cpp — int8 over the ring.
#include "greenreduce/codec/int8.hpp"
#include "harness.hpp"
#include "modes.hpp"

namespace greenreduce::examples {
namespace {

// Per-bucket absmax int8; error feedback on the owned chunk's allgather encode.
rank_outcome run_int8(rank_context& c, demo_world& w) {
  return train_ring(c, w, "int8", codec::int8{}, true, false);
}

const register_mode int8_mode{mode_spec{
    "int8", "ring allreduce of int8 gradients (per-bucket scale)", 40, false, true, run_int8}};

}  // namespace
}  // namespace greenreduce::examples
