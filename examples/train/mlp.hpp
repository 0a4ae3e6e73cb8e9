// examples/train/mlp.hpp — a small multilayer perceptron on Eigen.
//
// Fully connected layers with ReLU between them and softmax cross-entropy at
// the end (784-64-32-10 for Fashion-MNIST, the architecture of the
// energy-optimisation study this demo follows). All parameters live in ONE
// flat fp32 vector, and the gradient is one flat vector of the same layout, so
// a data-parallel step hands a single contiguous span to an allreduce or a
// parameter server. Layer l owns W_l (out x in, column-major) then b_l (out).
//
// Backpropagation (batch B, one sample per column):
//   dZ_L = (softmax(Z_L) - onehot(y)) / B
//   dW_l = dZ_l * A_{l-1}^T,  db_l = rowsum(dZ_l),  dZ_{l-1} = (W_l^T dZ_l) .* [Z_{l-1} > 0]
#pragma once

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "fvec.hpp"
#include "greenreduce/core/error.hpp"

namespace greenreduce::examples {

class mlp {
 public:
  using matrix = Eigen::MatrixXf;
  using map = Eigen::Map<matrix>;
  using cmap = Eigen::Map<const matrix>;
  using vmap = Eigen::Map<Eigen::VectorXf>;
  using cvmap = Eigen::Map<const Eigen::VectorXf>;

  explicit mlp(std::vector<int> sizes = {784, 64, 32, 10}) : sizes_(std::move(sizes)) {
    if (sizes_.size() < 2)
      throw config_error(
          greenreduce::detail::str("an MLP needs at least 2 layer sizes, got ", sizes_.size()));
    std::size_t off = 0;
    for (std::size_t l = 1; l < sizes_.size(); ++l) {
      if (sizes_[l] <= 0 || sizes_[l - 1] <= 0) throw config_error("MLP layer sizes must be > 0");
      w_off_.push_back(off);
      off += static_cast<std::size_t>(sizes_[l]) * static_cast<std::size_t>(sizes_[l - 1]);
      b_off_.push_back(off);
      off += static_cast<std::size_t>(sizes_[l]);
    }
    count_ = off;
  }

  std::size_t parameter_count() const noexcept { return count_; }
  int inputs() const noexcept { return sizes_.front(); }
  int classes() const noexcept { return sizes_.back(); }
  const std::vector<int>& sizes() const noexcept { return sizes_; }

  /// He-normal weights, zero biases, from `seed`.
  void init(std::span<float> params, std::uint64_t seed) const {
    check(params.size(), "parameters");
    std::mt19937_64 gen(seed);
    for (std::size_t l = 0; l + 1 < sizes_.size(); ++l) {
      std::normal_distribution<float> d(0.0F, std::sqrt(2.0F / static_cast<float>(sizes_[l])));
      for (std::size_t i = w_off_[l]; i < b_off_[l]; ++i) params[i] = d(gen);
      for (std::size_t i = b_off_[l]; i < b_off_[l] + static_cast<std::size_t>(sizes_[l + 1]); ++i)
        params[i] = 0.0F;
    }
  }

  /// Mean cross-entropy of the batch; writes its mean gradient into `grad`.
  /// `x` holds `batch` samples of inputs() floats each, `y` their labels.
  float loss_and_gradient(std::span<const float> params, const float* x, const std::uint8_t* y,
                          std::size_t batch, std::span<float> grad);

  /// Mean cross-entropy of the batch, forward pass only (a third of
  /// loss_and_gradient's work); the same value loss_and_gradient returns.
  float loss(std::span<const float> params, const float* x, const std::uint8_t* y,
             std::size_t batch);

  /// Predicted classes of `batch` samples (argmax of the logits).
  void predict(std::span<const float> params, const float* x, std::size_t batch, std::uint8_t* out);

 private:
  void check(std::size_t n, const char* what) const {
    if (n != count_)
      throw config_error(
          greenreduce::detail::str("MLP ", what, " span has ", n, " floats, expected ", count_));
  }
  /// Eigen's products and sums over a map round differently with its
  /// alignment; the MLP takes aligned buffers (fvec) only, so a result never
  /// depends on where the heap put them.
  static void check_aligned(const void* p, const char* what) {
    if (reinterpret_cast<std::uintptr_t>(p) % alignment != 0)
      throw config_error(greenreduce::detail::str("MLP ", what, " at ", p, " is not ", alignment,
                                                  "-byte aligned (use fvec)"));
  }

 public:
  /// The alignment the MLP requires of parameters, gradients and inputs.
  static constexpr std::size_t alignment = EIGEN_MAX_ALIGN_BYTES > 16 ? EIGEN_MAX_ALIGN_BYTES : 16;

 private:
  void forward(std::span<const float> params, const float* x, int b);

  std::vector<int> sizes_;
  std::vector<std::size_t> w_off_, b_off_;
  std::size_t count_ = 0;
  std::vector<matrix> act_, pre_;  // scratch: activations and pre-activations per layer
};

}  // namespace greenreduce::examples
