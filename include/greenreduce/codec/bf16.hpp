// greenreduce/codec/bf16.hpp — bfloat16 on the wire.
//
// Halves the bytes of fp32 and keeps its exponent range, with 8 significant
// bits: for |x| in the normal range, |x - x'| <= 2^-8 |x| (round to nearest
// even; bf16 = the top 16 bits of the rounded fp32, Kalamkar et al. 2019).
// fp32 subnormals round like any other value. Range rule: NaN/Inf input, and
// finite input that rounds beyond bf16's largest value 0x1.fep127
// (|x| >= 0x1.ffp127), is a numeric_error naming the first such element.
//
// Wire payload (after the 32-byte frame header, core/frame.hpp):
//
//   off   size  field
//     0   2n    bfloat16 values (high half of the fp32 pattern), little-endian
//
// Kernels: kernels/half.hpp.
#pragma once

#include "greenreduce/codec/half_codec.hpp"

namespace greenreduce::codec {

/// fp32 -> bfloat16 -> fp32. `codec::bf16{}`; it has no parameters.
struct bf16 : half_codec<kernels::bf16_format, codec_id::bf16> {};

static_assert(codec<bf16>);

}  // namespace greenreduce::codec
