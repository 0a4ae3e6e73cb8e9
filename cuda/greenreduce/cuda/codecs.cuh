// greenreduce/cuda/codecs.cuh — every device codec: the CPU codecs' wire
// formats written and read by fused CUDA kernels (docs/cuda.md).
#pragma once

#include "greenreduce/cuda/half.cuh"
#include "greenreduce/cuda/int8.cuh"
#include "greenreduce/cuda/ternary.cuh"
#include "greenreduce/cuda/topk.cuh"
