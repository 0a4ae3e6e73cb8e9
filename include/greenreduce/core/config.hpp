// greenreduce/core/config.hpp — compiler glue shared by host and device code.
//
// GREENREDUCE_HD marks math that both the C++ compiler and nvcc compile from
// the same source (bucket scales, packing layouts, the counter-based rng), so
// that the CPU and CUDA codecs cannot drift apart.
#pragma once

#if defined(__CUDACC__)
#define GREENREDUCE_HOST_DEVICE __host__ __device__
#else
#define GREENREDUCE_HOST_DEVICE
#endif

/// For free functions shared by host and device code.
#define GREENREDUCE_HD GREENREDUCE_HOST_DEVICE inline
