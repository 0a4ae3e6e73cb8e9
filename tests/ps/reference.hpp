// tests/ps/reference.hpp — the single-process reference the parameter-server
// tests hold a sync run to: the same gradients, averaged over the workers,
// through momentum SGD in fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "greenreduce/ps/placement.hpp"
#include "support/random.hpp"

namespace greenreduce::test {

/// Worker w's gradient of key k at step t: the same on every run of a seed.
inline std::vector<float> grad_of(std::uint64_t seed, int w, std::size_t k, std::uint64_t t,
                                  std::size_t n) {
  return normal_floats(n, seed ^ (static_cast<std::uint64_t>(w) << 40) ^ (k << 20) ^ t);
}

/// Sync momentum SGD over `keys`: key k starts at normal_floats(length,
/// init_seed + k); step t applies v = mom v + mean_w grad_of(seed, w, k, t),
/// p -= lr v.
struct sync_reference {
  std::vector<std::vector<float>> init;                // per key
  std::vector<std::vector<std::vector<float>>> after;  // per step, per key

  sync_reference(const std::vector<ps::key_spec>& keys, int workers, int steps, float lr, float mom,
                 std::uint64_t seed, std::uint64_t init_seed) {
    std::vector<std::vector<float>> p(keys.size()), vel(keys.size());
    for (std::size_t k = 0; k < keys.size(); ++k) {
      p[k] = normal_floats(keys[k].length, init_seed + k);
      vel[k].assign(keys[k].length, 0.0F);
    }
    init = p;
    for (int t = 0; t < steps; ++t) {
      for (std::size_t k = 0; k < keys.size(); ++k) {
        std::vector<float> g(keys[k].length, 0.0F);
        for (int w = 0; w < workers; ++w) {
          const auto gw = grad_of(seed, w, k, static_cast<std::uint64_t>(t), keys[k].length);
          for (std::size_t i = 0; i < g.size(); ++i) g[i] += gw[i];
        }
        for (std::size_t i = 0; i < g.size(); ++i) {
          vel[k][i] = mom * vel[k][i] + g[i] / static_cast<float>(workers);
          p[k][i] -= lr * vel[k][i];
        }
      }
      after.push_back(p);
    }
  }
  /// The parameters after the last step.
  const std::vector<std::vector<float>>& last() const { return after.back(); }
};

}  // namespace greenreduce::test
