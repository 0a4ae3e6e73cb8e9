// examples/train/modes_int8.cpp — int8 over the ring (see modes.hpp for why apart).
#include "greenreduce/codec/int8.hpp"
#include "modes.hpp"

namespace greenreduce::examples {

// Per-bucket absmax int8; error feedback on the owned chunk's allgather encode.
rank_outcome run_int8(rank_context& c, transport::tcp& t) {
  return train_ring(c, t, "int8", codec::int8{}, true, false);
}

}  // namespace greenreduce::examples
