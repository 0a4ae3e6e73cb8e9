// examples/train/mlp.cpp — the MLP's forward and backward passes (mlp.hpp).
//
// Out of line so that Eigen's matrix products are compiled once for
// train_demo, not again in every translation unit that runs a training loop.
#include "mlp.hpp"

#include <algorithm>

namespace greenreduce::examples {

float mlp::loss_and_gradient(std::span<const float> params, const float* x, const std::uint8_t* y,
                             std::size_t batch, std::span<float> grad) {
  check(params.size(), "parameters");
  check(grad.size(), "gradient");
  check_aligned(grad.data(), "gradient");
  const int b = static_cast<int>(batch);
  forward(params, x, b);
  const std::size_t layers = sizes_.size() - 1;
  matrix& p = act_[layers];  // softmax probabilities
  float loss = 0;
  for (int j = 0; j < b; ++j) {
    loss -= std::log(std::max(p(y[j], j), 1e-30F));
    p(y[j], j) -= 1.0F;
  }
  matrix dz = p / static_cast<float>(b);
  for (std::size_t l = layers; l-- > 0;) {
    map dw(grad.data() + w_off_[l], sizes_[l + 1], sizes_[l]);
    vmap db(grad.data() + b_off_[l], sizes_[l + 1]);
    if (l == 0) {
      cmap xin(x, sizes_[0], b);
      dw.noalias() = dz * xin.transpose();
    } else {
      dw.noalias() = dz * act_[l].transpose();
    }
    db = dz.rowwise().sum();
    if (l > 0) {
      cmap w(params.data() + w_off_[l], sizes_[l + 1], sizes_[l]);
      matrix da = w.transpose() * dz;
      dz = da.cwiseProduct((pre_[l - 1].array() > 0.0F).cast<float>().matrix());
    }
  }
  return loss / static_cast<float>(b);
}

float mlp::loss(std::span<const float> params, const float* x, const std::uint8_t* y,
                std::size_t batch) {
  check(params.size(), "parameters");
  const int b = static_cast<int>(batch);
  forward(params, x, b);
  const matrix& p = act_[sizes_.size() - 1];
  float loss = 0;
  for (int j = 0; j < b; ++j) loss -= std::log(std::max(p(y[j], j), 1e-30F));
  return loss / static_cast<float>(b);
}

void mlp::predict(std::span<const float> params, const float* x, std::size_t batch,
                  std::uint8_t* out) {
  check(params.size(), "parameters");
  forward(params, x, static_cast<int>(batch));
  const matrix& p = act_[sizes_.size() - 1];
  for (int j = 0; j < static_cast<int>(batch); ++j) {
    Eigen::Index best = 0;
    p.col(j).maxCoeff(&best);
    out[j] = static_cast<std::uint8_t>(best);
  }
}

void mlp::forward(std::span<const float> params, const float* x, int b) {
  check_aligned(params.data(), "parameters");
  check_aligned(x, "input batch");
  const std::size_t layers = sizes_.size() - 1;
  act_.resize(layers + 1);
  pre_.resize(layers);
  for (std::size_t l = 0; l < layers; ++l) {
    cmap w(params.data() + w_off_[l], sizes_[l + 1], sizes_[l]);
    cvmap bias(params.data() + b_off_[l], sizes_[l + 1]);
    matrix& z = pre_[l];
    if (l == 0)
      z.noalias() = w * cmap(x, sizes_[0], b);
    else
      z.noalias() = w * act_[l];
    z.colwise() += bias;
    if (l + 1 < layers) {
      act_[l + 1] = z.cwiseMax(0.0F);
    } else {  // softmax, shifted by the column max for stability
      matrix e = (z.rowwise() - z.colwise().maxCoeff()).array().exp().matrix();
      act_[l + 1] = e.array().rowwise() / e.colwise().sum().array();
    }
  }
}

}  // namespace greenreduce::examples
