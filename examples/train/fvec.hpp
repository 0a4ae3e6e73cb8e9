// examples/train/fvec.hpp — the demo's float buffer type.
#pragma once

#include <Eigen/Core>
#include <vector>

namespace greenreduce::examples {

/// The demo's float buffers (parameters, gradients, images, batches): aligned
/// as Eigen's own matrices are, so that a vectorised product or sum over a map
/// of them takes the same path, and rounds the same way, wherever the heap put
/// them. With std::vector's 16-byte alignment the results depended on heap
/// layout: the same run gave another accuracy after an unrelated option
/// changed what was allocated before it.
using fvec = std::vector<float, Eigen::aligned_allocator<float>>;

}  // namespace greenreduce::examples
