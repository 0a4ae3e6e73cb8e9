// greenreduce/codec/topk.hpp — top-k sparsification: the k largest |x| as (index, value) pairs.
//
// k is given directly or as a ratio of n (k = ceil(ratio·n), at least 1 for
// n > 0, at most n). Two selections:
//   exact    the k largest magnitudes; ties at the boundary go to the lower
//            indices (kernels/topk.hpp). Histogram + nth_element, a few passes.
//   sampled  Deep Gradient Compression's estimate (Lin et al., ICLR 2018): the
//            threshold is the ceil(1.25·k·m/n)-th largest |x| of a sample of
//            m ~ max(4096, 512·n/k) elements (capped at n) in runs of 16
//            consecutive elements spread over the data (one cache line in twenty
//            at k = n/100; kernels::topk::sample_plan), then one streaming
//            pass keeps every |x| >= threshold (at most 2k). When more
//            than k qualify, the exact top-k of those is sent — which is the
//            exact top-k of all. When fewer than ceil(k/2) qualify or more than
//            2k do, it falls back to exact selection. So the sampled mode sends
//            k' elements with ceil(k/2) <= k' <= k, and they are always exactly
//            the k' largest (same tie rule). Below n = 65536 or above k = n/8 it
//            is exact.
// With a residual (error_feedback<topk>, Karimireddy et al. 2019), the pass
// forms e = x + r and leaves r = e with the sent entries zeroed: no decode.
//
// Payload (little-endian), after the 32-byte frame header:
//   off        size      field
//   0          1         index coding: 0 varint gaps, 1 bitmap, 2 u32 (kernels/topk.hpp)
//   1          3         zero
//   4          8         count k' (<= k for the frame's n)
//   12         4·k'      fp32 values, in index order
//   12 + 4·k'  rest      index section; the smallest coding is chosen unless forced
// Decoding validates count, finite values and the index section (strictly
// increasing, in range, exactly k' indices, no unused bytes) before writing.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <memory>
#include <span>
#include <vector>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/kernels/topk.hpp"

namespace greenreduce::codec {

class topk {
 public:
  static constexpr codec_id wire_id = codec_id::topk;
  static constexpr bool is_sparse = true;
  enum class selection : std::uint8_t { exact, sampled };
  /// Index coding: by size, or forced.
  enum class indices_as : std::uint8_t { automatic, varint, bitmap, u32 };
  static constexpr std::size_t sampled_min_n = 65536;

  /// k = ceil(r·n) for n elements, 0 < r <= 1.
  static topk ratio(double r) {
    if (!(r > 0.0 && r <= 1.0))
      throw config_error(greenreduce::detail::str("topk ratio must be in (0, 1], got ", r));
    return topk(r, 0);
  }
  /// k elements (or n when n < k), k >= 1.
  static topk count(std::size_t k) {
    if (k == 0) throw config_error("topk count must be at least 1, got 0");
    return topk(0.0, k);
  }
  topk sampled() const { return with_mode(selection::sampled); }
  topk exact() const { return with_mode(selection::exact); }
  topk indices(indices_as c) const {
    topk t = *this;
    t.coding_ = c;
    return t;
  }
  selection mode() const noexcept { return mode_; }

  std::size_t k_of(std::size_t n) const noexcept {
    if (n == 0) return 0;
    if (ratio_ == 0.0) return std::min(k_, n);
    const double k = std::ceil(ratio_ * static_cast<double>(n));
    return std::clamp<std::size_t>(static_cast<std::size_t>(k), 1, n);
  }

  constexpr codec_id id() const noexcept { return wire_id; }
  constexpr std::string_view name() const noexcept { return "topk"; }
  std::uint64_t config_hash() const noexcept {
    return hash_words(
        {static_cast<std::uint64_t>(wire_id), std::bit_cast<std::uint64_t>(ratio_), k_});
  }
  std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    const std::size_t k = k_of(n);
    const std::size_t varint = k * kernels::topk::varint_bytes(n == 0 ? 0 : n - 1);
    const std::size_t bitmap = (n + 7) / 8;
    const std::size_t u32 = n <= (std::uint64_t{1} << 32) ? 4 * k : SIZE_MAX;
    std::size_t section = std::min({varint, bitmap, u32});
    if (coding_ == indices_as::varint) section = varint;
    if (coding_ == indices_as::bitmap) section = bitmap;
    if (coding_ == indices_as::u32) section = 4 * k;
    return frame_header_bytes + 12 + 4 * k + section;
  }

  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng& /*unused*/) const {
    return encode_impl(in, {}, out);
  }
  /// The fused error-feedback step: e = in + residual; sends top-k of e;
  /// residual = e with the sent entries zeroed. On numeric_error the residual
  /// is restored to within one rounding (entries whose e was not finite: 0).
  std::size_t encode_with_residual(std::span<const float> in, std::span<float> residual,
                                   std::span<std::byte> out, rng& /*unused*/) const {
    if (residual.size() != in.size())
      throw config_error(greenreduce::detail::str("topk residual has ", residual.size(),
                                                  " elements, the input ", in.size()));
    return encode_impl(in, residual, out);
  }

  void decode(std::span<const std::byte> frame, std::span<float> out) const {
    const auto p = parse(frame, out.size());
    std::fill(out.begin(), out.end(), 0.0F);
    apply(p, out.size(), [&](std::size_t j, std::size_t i) { out[i] = p.value(j); });
  }
  void decode_add(std::span<const std::byte> frame, std::span<float> acc) const {
    const auto p = parse(frame, acc.size());
    apply(p, acc.size(), [&](std::size_t j, std::size_t i) { acc[i] += p.value(j); });
  }

  // Sampled with residual: read x and r, write r once; values and indices are ~k.
  constexpr work encode_work(std::size_t n) const noexcept { return {12 * n, 4 * n}; }
  work decode_work(std::size_t n) const noexcept {
    const std::size_t k = k_of(n);
    return {16 * k, 2 * k};
  }

 private:
  double ratio_ = 0.0;
  std::size_t k_ = 0;
  selection mode_ = selection::exact;
  indices_as coding_ = indices_as::automatic;

  topk(double r, std::size_t k) : ratio_(r), k_(k) {}
  topk with_mode(selection m) const {
    topk t = *this;
    t.mode_ = m;
    return t;
  }

  struct parsed {
    kernels::topk::index_coding coding;
    std::size_t count;
    const std::byte* values;
    const std::uint8_t* section;
    std::size_t section_bytes;
    float value(std::size_t j) const noexcept {
      return std::bit_cast<float>(load_le<std::uint32_t>(values + 4 * j));
    }
  };

  // The sections of a payload of `bytes` bytes at p whose first 12 bytes
  // declare `count` values (no checks: parse() makes them).
  static parsed sections(const std::byte* p, std::size_t bytes) noexcept {
    const auto count = static_cast<std::size_t>(load_le<std::uint64_t>(p + 4));
    return {static_cast<kernels::topk::index_coding>(load_le<std::uint8_t>(p)), count, p + 12,
            reinterpret_cast<const std::uint8_t*>(p + 12 + 4 * count), bytes - 12 - 4 * count};
  }

  parsed parse(std::span<const std::byte> frame, std::size_t n) const {
    const auto v = parse_frame(frame, frame_expect{}.of(wire_id).count(n));
    const std::size_t bytes = v.payload.size();
    if (bytes < 12)
      throw decode_error(
          greenreduce::detail::str("topk payload is ", bytes, " bytes, needs at least 12"));
    const std::byte* p = v.payload.data();
    const auto coding = load_le<std::uint8_t>(p);
    if (coding > 2)
      throw decode_error(greenreduce::detail::str("topk index coding is ", unsigned{coding},
                                                  ", expected 0 (varint), 1 (bitmap) or 2 (u32)"));
    if (load_le<std::uint8_t>(p + 1) != 0 || load_le<std::uint16_t>(p + 2) != 0)
      throw decode_error("topk payload bytes 1..3 must be zero");
    const auto count = load_le<std::uint64_t>(p + 4);
    const std::size_t k = k_of(n);
    if (count > k)
      throw decode_error(greenreduce::detail::str(
          "topk frame carries ", count, " values, at most k = ", k, " for ", n, " elements"));
    if (bytes - 12 < 4 * count)
      throw decode_error(greenreduce::detail::str("topk frame declares ", count, " values (",
                                                  4 * count, " bytes) but only ", bytes - 12,
                                                  " payload bytes follow"));
    const parsed r = sections(p, bytes);
    for (std::size_t j = 0; j < r.count; ++j)
      if (!std::isfinite(r.value(j)))
        throw decode_error(
            greenreduce::detail::str("topk value ", j, " is ", r.value(j), ", expected finite"));
    const std::string bad = kernels::topk::read_indices(
        r.coding, r.section, r.section_bytes, r.count, n, [](std::size_t, std::size_t) {});
    if (!bad.empty()) throw decode_error("topk " + bad);
    return r;
  }

  template <class F>
  static void apply(const parsed& p, std::size_t n, F f) {
    (void)kernels::topk::read_indices(p.coding, p.section, p.section_bytes, p.count, n, f);
  }

  std::size_t encode_impl(std::span<const float> in, std::span<float> r,
                          std::span<std::byte> out) const;

 public:
  /// Writes the frame of an already made selection: `count` strictly
  /// increasing indices below n and their values (the payload layout above,
  /// index coding chosen as encode chooses it). Returns the frame size. The
  /// selection step of encode, run elsewhere (the CUDA codec selects on the
  /// device), ends here so both write the same bytes.
  std::size_t write_selected(const std::uint64_t* idx, const float* val, std::size_t count,
                             std::size_t n, std::span<std::byte> out) const;
  /// Throws decode_error where decode would, writing nothing.
  void validate(std::span<const std::byte> frame, std::size_t n) const { (void)parse(frame, n); }
  /// Validates `frame` as decode does, then calls f(index, value) for each
  /// sent entry in increasing index order.
  template <class F>
  void decode_entries(std::span<const std::byte> frame, std::size_t n, F f) const {
    const auto p = parse(frame, n);
    apply(p, n, [&](std::size_t j, std::size_t i) { f(i, p.value(j)); });
  }

  /// decode_entries for a frame that passed validate(frame, n) and has not
  /// changed since (or that this codec wrote for n elements): the same calls,
  /// without checking the frame a second time.
  template <class F>
  void decode_validated_entries(std::span<const std::byte> frame, std::size_t n, F f) const {
    const auto payload =  // the frame header's payload_bytes (core/frame.hpp)
        static_cast<std::size_t>(load_le<std::uint64_t>(frame.data() + 16));
    const parsed r = sections(frame.data() + frame_header_bytes, payload);
    apply(r, n, [&](std::size_t j, std::size_t i) { f(i, r.value(j)); });
  }

 private:
  [[noreturn]] void fail_non_finite(std::span<const float> in, std::span<float> r,
                                    const std::uint64_t* idx, const float* val,
                                    std::size_t count) const;
};

inline void topk::fail_non_finite(std::span<const float> in, std::span<float> r,
                                  const std::uint64_t* idx, const float* val,
                                  std::size_t count) const {
  if (r.empty()) require_finite(name(), in);
  for (std::size_t j = 0; j < count; ++j) r[idx[j]] = val[j];  // r = e everywhere again
  std::size_t first = r.size();
  float bad = 0.0F;
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (std::isfinite(r[i])) {
      r[i] -= in[i];
    } else {
      if (first == r.size()) {
        first = i;
        bad = r[i];
      }
      r[i] = 0.0F;
    }
  }
  throw numeric_error(greenreduce::detail::str(name(), " encode: element ", first,
                                               " of input + residual is ", bad,
                                               "; gradients must be finite (residual restored)"));
}

inline std::size_t topk::encode_impl(std::span<const float> in, std::span<float> r,
                                     std::span<std::byte> out) const {
  namespace kk = kernels::topk;
  const std::size_t n = in.size(), k = k_of(n);
  require_output(name(), max_encoded_bytes(n), out.size());
  const bool ef = r.size() == n && n > 0 && r.data() != nullptr;
  // Scratch that every path overwrites before reading: allocated, not zeroed
  // (zeroing 2k candidate slots, 4 MB at n = 2^24, measured ~2% of the encode).
  std::unique_ptr<std::uint64_t[]> idx;
  std::unique_ptr<float[]> val;
  auto reserve = [&](std::size_t slots) {
    idx = std::make_unique_for_overwrite<std::uint64_t[]>(slots);
    val = std::make_unique_for_overwrite<float[]>(slots);
  };
  std::size_t count = 0;
  bool done = false;
  if (mode_ == selection::sampled && n >= sampled_min_n && k <= n / 8) {
    const kk::sample_plan sp = kk::plan_sample(n, k);
    const auto sample = std::make_unique_for_overwrite<std::uint32_t[]>(sp.m);
    kk::sample_keys(sp, in.data(), ef ? r.data() : nullptr, sample.get());
    const kk::threshold t =
        kk::kth_largest(sp.m, sp.rank, [&](std::size_t j) { return sample[j]; });
    reserve(2 * k);
    const auto res = kk::gather(ef ? kk::source::input_plus_r : kk::source::input, in.data(),
                                ef ? r.data() : nullptr, n, std::bit_cast<float>(t.key), 2 * k,
                                idx.get(), val.get());
    if (!res.finite)
      fail_non_finite(in, ef ? r : std::span<float>{}, idx.get(), val.get(), res.count);
    count = res.count;
    if (!res.overflow && count >= (k + 1) / 2) {
      if (count > k) {
        const kk::threshold tk =
            kk::kth_largest(count, k, [&](std::size_t j) { return kk::key(val[j]); });
        count = kk::keep_selected(idx.get(), val.get(), count, tk, [&](std::uint64_t i, float v) {
          if (ef) r[i] = v;
        });
      }
      done = true;
    } else if (ef) {
      for (std::size_t j = 0; j < count; ++j) r[idx[j]] = val[j];  // r = e: go exact on it
    }
  } else if (ef) {  // r = e = x + r, checked finite
    const auto res =
        kk::gather(kk::source::input_plus_r, in.data(), r.data(), n, INFINITY, 0, nullptr, nullptr);
    if (!res.finite) fail_non_finite(in, r, nullptr, nullptr, 0);
  }
  if (!done && k > 0) {  // exact selection over e (r when ef, else in)
    const float* e = ef ? r.data() : in.data();
    if (!ef) {
      const auto res = kk::gather(kk::source::input, e, nullptr, n, INFINITY, 0, nullptr, nullptr);
      if (!res.finite) require_finite(name(), in);
    }
    const kk::threshold t = kk::kth_largest(n, k, [&](std::size_t i) { return kk::key(e[i]); });
    reserve(k);
    count = 0;
    std::uint64_t ties = t.ties;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t key = kk::key(e[i]);
      if (key > t.key || (key == t.key && ties > 0)) {
        if (key == t.key) --ties;
        idx[count] = i;
        val[count] = e[i];
        ++count;
        if (ef) r[i] = 0.0F;
      }
    }
  }
  return write_selected(idx.get(), val.get(), count, n, out);
}

inline std::size_t topk::write_selected(const std::uint64_t* idx, const float* val,
                                        std::size_t count, std::size_t n,
                                        std::span<std::byte> out) const {
  namespace kk = kernels::topk;
  require_output(name(), max_encoded_bytes(n), out.size());
  const auto sizes = kk::sizes_of(idx, count, n);
  kk::index_coding coding = kk::index_coding::varint;
  std::size_t section = sizes.varint;
  switch (coding_) {
    case indices_as::automatic:
      if (sizes.u32 < section) coding = kk::index_coding::u32, section = sizes.u32;
      if (sizes.bitmap < section) coding = kk::index_coding::bitmap, section = sizes.bitmap;
      break;
    case indices_as::varint:
      break;
    case indices_as::bitmap:
      coding = kk::index_coding::bitmap, section = sizes.bitmap;
      break;
    case indices_as::u32:
      if (sizes.u32 == SIZE_MAX)
        throw config_error(
            greenreduce::detail::str("topk u32 indices cannot address ", n, " elements"));
      coding = kk::index_coding::u32, section = sizes.u32;
      break;
  }
  std::byte* p = out.data() + frame_header_bytes;
  store_le<std::uint8_t>(p, static_cast<std::uint8_t>(coding));
  store_le<std::uint8_t>(p + 1, 0);
  store_le<std::uint16_t>(p + 2, 0);
  store_le<std::uint64_t>(p + 4, count);
  if (count > 0) std::memcpy(p + 12, val, 4 * count);
  kk::write_indices(coding, idx, count, n, reinterpret_cast<std::uint8_t*>(p + 12 + 4 * count));
  return finish_frame(out, wire_id, n, 12 + 4 * count + section);
}

static_assert(sparse_codec<topk>);

}  // namespace greenreduce::codec
