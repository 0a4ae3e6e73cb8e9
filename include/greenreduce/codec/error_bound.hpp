// greenreduce/codec/error_bound.hpp — what one encode may cost in accuracy.
//
//   double d = codec::encode_error_bound(codec::int8{}, 2.0);   // 2 / 127
//
// encode_error_bound(c, m) bounds |x_i - decode(encode(x))_i| for every
// element of any vector whose magnitudes are at most m, for one encode (any
// seed, any bucket split):
//
//   none      0                       exact
//   fp16      2^-11 m + 2^-25         round to nearest; subnormal spacing 2^-24
//   bf16      2^-8 m                  round to nearest
//   int8      m / 127                 one step of the bucket scale max|x| / 127
//                                     (nearest rounding errs by half of it)
//   fp8       2^-4 m (E4M3), 2^-3 m   half a step of 3 or 2 mantissa bits of
//             (E5M2), +1%             the scaled value (the subnormal step of
//                                     the scaled range is below it)
//   qsgd      sqrt(bucket) m / s,     one of s levels of the bucket's 2-norm,
//             +1%                     which is at most sqrt(bucket) m
//   ternary, sign, topk, randomk      2 m: a value may be dropped, or replaced
//                                     by a scale of at most m of either sign
//
// A codec of your own states its bound with a member
// `double encode_error_bound(double m) const`; a codec without one gets 2 m,
// which holds for any codec whose decoded values never exceed the input's
// largest magnitude (qsgd's can: its levels are fractions of the bucket norm).
// collective/error_bound.hpp turns this into a bound on a ring's result.
#pragma once

#include <cmath>
#include <type_traits>
#include <variant>

#include "greenreduce/codec/registry.hpp"

namespace greenreduce::codec {

template <class Codec>
double encode_error_bound(const Codec& c, double m) {
  if constexpr (requires {
                  { c.encode_error_bound(m) } -> std::convertible_to<double>;
                }) {
    return c.encode_error_bound(m);
  } else if constexpr (std::is_same_v<Codec, none>) {
    return 0;
  } else if constexpr (std::is_same_v<Codec, fp16>) {
    return std::ldexp(m, -11) + std::ldexp(1.0, -25);
  } else if constexpr (std::is_same_v<Codec, bf16>) {
    return std::ldexp(m, -8);
  } else if constexpr (std::is_same_v<Codec, int8>) {
    return m / 127;
  } else if constexpr (std::is_same_v<Codec, fp8>) {
    return std::ldexp(m, c.format() == fp8_format::e4m3 ? -4 : -3) * 1.01;
  } else if constexpr (std::is_same_v<Codec, qsgd>) {
    return std::sqrt(static_cast<double>(c.bucket())) * m / c.levels() * 1.01;
  } else {
    return 2 * m;
  }
}

/// The bound of whichever codec `c` holds.
inline double encode_error_bound(const any_codec& c, double m) {
  return std::visit([m](const auto& x) { return encode_error_bound(x, m); }, c);
}

}  // namespace greenreduce::codec
