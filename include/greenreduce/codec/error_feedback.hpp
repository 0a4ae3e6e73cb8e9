// greenreduce/codec/error_feedback.hpp — error feedback around any codec, for one tensor.
//
// Karimireddy, Rebjock, Stich, Jaggi: "Error Feedback Fixes SignSGD and other
// Gradient Compression Schemes", ICML 2019. Each step
//     e = x + r;   y = C(e);   r = e - decode(y)
// so what a codec drops is not lost but sent later. Invariant: after T steps,
// sum of decode(y_t) + r_T == sum of x_t (up to fp32 rounding of the updates).
//
// Unlike a codec, error_feedback<C> owns state: the residual r of one tensor,
// whose length is fixed at construction or at the first encode (another
// length is a config_error). Codecs that offer
// `encode_with_residual(in, residual, out, rng)` (top-k) update r in the same
// pass that selects — no decode — and say what becomes of r on an error; for
// every other codec e is formed in a scratch buffer, so an encode that throws
// (numeric_error on a non-finite x + r) leaves r exactly as it was.
// Frames are the wrapped codec's frames: peers decode them with C itself.
#pragma once

#include <algorithm>
#include <optional>
#include <span>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/core/buffer.hpp"

namespace greenreduce::codec {

/// A codec whose encode can fold the error-feedback update into its own pass.
template <class C>
concept fused_residual = requires(const C& c, std::span<const float> in, std::span<float> r,
                                  std::span<std::byte> out, rng& g) {
  { c.encode_with_residual(in, r, out, g) } -> std::same_as<std::size_t>;
};

template <codec C>
class error_feedback {
 public:
  /// The residual's length is fixed by the first encode.
  explicit error_feedback(C c) : codec_(std::move(c)) {}
  /// The residual has n elements, zero to start with.
  error_feedback(C c, std::size_t n) : codec_(std::move(c)) { size_to(n); }

  const C& codec() const noexcept { return codec_; }
  /// Elements of the residual, once fixed.
  std::optional<std::size_t> size() const noexcept { return size_; }
  std::span<const float> residual() const noexcept { return residual_; }
  /// Forgets the accumulated error (the length stays fixed).
  void reset() noexcept { std::fill(residual_.begin(), residual_.end(), 0.0F); }
  /// Sets the residual, e.g. back to a copy taken before an encode whose frame
  /// was never delivered (two-phase use: copy, encode, send, restore on refusal).
  void restore(std::span<const float> r) {
    if (!size_) size_to(r.size());
    if (r.size() != *size_)
      throw config_error(greenreduce::detail::str("error_feedback<", codec_.name(),
                                                  "> holds the residual of ", *size_,
                                                  " elements, restore got ", r.size()));
    std::copy(r.begin(), r.end(), residual_.begin());
  }

  /// One step: writes C's frame of x + residual into out and updates the residual.
  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng& g) {
    if (!size_) size_to(in.size());
    if (in.size() != *size_)
      throw config_error(greenreduce::detail::str("error_feedback<", codec_.name(),
                                                  "> holds the residual of ", *size_,
                                                  " elements, got an input of ", in.size()));
    if constexpr (fused_residual<C>) {
      return codec_.encode_with_residual(in, std::span<float>(residual_), out, g);
    } else {
      const std::size_t n = in.size();
      for (std::size_t i = 0; i < n; ++i) scratch_[i] = in[i] + residual_[i];
      const std::size_t len = codec_.encode(std::span<const float>(scratch_), out, g);
      codec_.decode(std::span<const std::byte>(out.data(), len), std::span<float>(residual_));
      for (std::size_t i = 0; i < n; ++i) residual_[i] = scratch_[i] - residual_[i];
      return len;
    }
  }

 private:
  C codec_;
  std::optional<std::size_t> size_;
  aligned_vector<float> residual_, scratch_;

  void size_to(std::size_t n) {
    size_ = n;
    residual_.assign(n, 0.0F);
    if constexpr (!fused_residual<C>) scratch_.assign(n, 0.0F);
  }
};

}  // namespace greenreduce::codec
