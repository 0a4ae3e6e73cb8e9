// greenreduce/ps/update_rule.hpp — how a server turns a gradient into new parameters.
//
// A rule is a callable plus the number of fp32 state values it keeps per
// parameter (momentum needs 1, Adam would need 2). The server owns that state,
// zero-initialised, next to the fp32 parameters of each key, so a rule object
// is stateless and the same rule serves every key. The server calls it with
// the key's lock held: one call at a time per key.
//
// SGD with momentum (Polyak 1964; the form of PyTorch's torch.optim.SGD):
//   v = momentum * v + g;  p = p - lr * v          (momentum = 0: p -= lr * g)
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <utility>

#include "greenreduce/core/error.hpp"

namespace greenreduce::ps {

/// What the server tells a rule about the update it applies.
struct update_context {
  std::size_t key = 0;           ///< key id
  std::string_view name;         ///< key name
  std::uint64_t step = 0;        ///< the key's update count before this update
  int worker = -1;               ///< the pushing worker (async/SSP), -1 for an aggregate (sync)
  std::size_t contributors = 1;  ///< gradients averaged into `grad`
};

/// An update rule: state_per_element fp32 values of state per parameter.
struct update_rule {
  using fn = std::function<void(const update_context&, std::span<float> params,
                                std::span<const float> grad, std::span<float> state)>;
  std::size_t state_per_element = 0;
  fn apply;

  /// Wraps a stateless callable `f(ctx, params, grad)`.
  template <class F>
  static update_rule custom(F f) {
    return {0, [f = std::move(f)](const update_context& c, std::span<float> p,
                                  std::span<const float> g, std::span<float>) { f(c, p, g); }};
  }
};

/// Plain SGD with optional momentum.
inline update_rule sgd(float lr, float momentum = 0.0F) {
  if (!std::isfinite(lr) || !std::isfinite(momentum) || momentum < 0.0F || momentum >= 1.0F)
    throw config_error(
        detail::str("sgd needs a finite learning rate and momentum in [0, 1), got lr ", lr,
                    ", momentum ", momentum));
  if (momentum == 0.0F)
    return {0, [lr](const update_context&, std::span<float> p, std::span<const float> g,
                    std::span<float>) {
              for (std::size_t i = 0; i < p.size(); ++i) p[i] -= lr * g[i];
            }};
  return {1, [lr, momentum](const update_context&, std::span<float> p, std::span<const float> g,
                            std::span<float> v) {
            for (std::size_t i = 0; i < p.size(); ++i) {
              v[i] = momentum * v[i] + g[i];
              p[i] -= lr * v[i];
            }
          }};
}

}  // namespace greenreduce::ps
