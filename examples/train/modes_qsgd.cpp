// examples/train/modes_qsgd.cpp — QSGD over the ring: 4-bit codes, below int8's bytes.
#include "greenreduce/codec/qsgd.hpp"
#include "harness.hpp"
#include "modes.hpp"

namespace greenreduce::examples {
namespace {

// 7 levels of the norm of buckets of 64 (4-bit sign-magnitude codes plus one
// fp32 norm per 64 values: 4.5 bits per value, about 7x fewer bytes than
// fp32); small buckets keep the level step near the values' own size.
// Error feedback on the owned chunk's allgather encode.
rank_outcome run_qsgd(rank_context& c, demo_world& w) {
  return train_ring(c, w, "qsgd", codec::qsgd{7, 64}, true, false);
}

const register_mode qsgd_mode{mode_spec{
    "qsgd", "ring allreduce of QSGD gradients (4-bit levels of the bucket norm)", 45, false,
    true, run_qsgd}};

}  // namespace
}  // namespace greenreduce::examples
