// fuzz/codec_specs.hpp — the codec configurations fuzz_codec decodes with; the
// seed corpus (make_corpus.cpp) encodes one frame per entry. A seed's first
// byte indexes this list, so append only: existing seeds keep their codec.
#pragma once

#include <array>
#include <string_view>

namespace greenreduce::fuzz {

inline constexpr std::array<std::string_view, 18> codec_specs = {"none",
                                                                 "fp16",
                                                                 "bf16",
                                                                 "int8",
                                                                 "int8:bucket=64",
                                                                 "int8:stochastic",
                                                                 "ternary",
                                                                 "ternary:bucket=0",
                                                                 "ternary:bucket=256:clip=2.5",
                                                                 "topk",
                                                                 "topk:k=3",
                                                                 "randomk",
                                                                 "sign",
                                                                 "sign:bucket=32",
                                                                 "fp8",
                                                                 "fp8:e5m2:bucket=64",
                                                                 "qsgd",
                                                                 "qsgd:levels=1:bucket=8"};

}  // namespace greenreduce::fuzz
