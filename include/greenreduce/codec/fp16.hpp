// greenreduce/codec/fp16.hpp — IEEE-754 binary16 (half precision) on the wire.
//
// Halves the bytes of fp32 with 11 significant bits: for |x| in the normal
// range [2^-14, 65504], |x - x'| <= 2^-11 |x| (round to nearest even);
// below 2^-14 the error is at most 2^-25 absolute (subnormals are kept).
// Range rule: NaN/Inf input, and finite input that rounds beyond 65504
// (|x| >= 65520), is a numeric_error naming the first such element — nothing
// saturates silently. Gradients that large want bf16 or a scaled codec.
//
// Wire payload (after the 32-byte frame header, core/frame.hpp):
//
//   off   size  field
//     0   2n    binary16 values, little-endian, element order
//
// Kernels: kernels/half.hpp (integer round-to-nearest-even, bit-exact with
// F16C's vcvtps2ph on every instruction set).
#pragma once

#include "greenreduce/codec/half_codec.hpp"

namespace greenreduce::codec {

/// fp32 -> binary16 -> fp32. `codec::fp16{}`; it has no parameters.
struct fp16 : half_codec<kernels::fp16_format, codec_id::fp16> {};

static_assert(codec<fp16>);

}  // namespace greenreduce::codec
