// greenreduce/kernels/topk.hpp — magnitude selection and index coding for top-k.
//
// Keys: key(x) = bits(x) & 0x7FFFFFFF orders finite |x| exactly like the
// floats (and puts Inf/NaN above every finite value).
//
// Tie rule: the selected set is the k largest keys; among equal keys at the
// boundary the lower indices win. `kth_largest` returns the boundary key T and
// how many elements equal to T are taken (`ties`), so "key > T, or key == T
// and among the first `ties` such elements" is the selection.
//
// `gather` is the one fused streaming pass of sampled top-k (Lin et al., "Deep
// Gradient Compression", ICLR 2018, estimate a threshold from a sample, then
// select by comparison): it forms e = x (+ r), appends (i, e_i) for every
// |e_i| >= threshold to a bounded candidate list in index order, and, with a
// residual, writes r = e with the candidates zeroed (error feedback fused).
//
// Index sections (chosen by size, flagged in the payload):
//   varint  LEB128 of gaps: first index, then idx_j - idx_{j-1} - 1; minimal
//           encodings only (no trailing 0x80 groups)
//   bitmap  ceil(n/8) bytes, bit i%8 of byte i/8 set for a sent index; bits past
//           n are 0
//   u32     little-endian uint32 absolute indices, strictly increasing
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "greenreduce/core/config.hpp"
#include "greenreduce/kernels/random_bits.hpp"

namespace greenreduce::kernels::topk {

inline constexpr std::uint32_t abs_mask = 0x7FFFFFFFU;
inline constexpr std::uint32_t inf_bits = 0x7F800000U;

inline std::uint32_t key(float x) noexcept {
  return std::bit_cast<std::uint32_t>(x) & abs_mask;
}

/// Take every key > `key`, and the first `ties` elements whose key == `key`.
struct threshold {
  std::uint32_t key = 0;
  std::uint64_t ties = 0;
};

/// kth_largest with histogram counts of type Count (which must hold n).
template <class Count, class KeyAt>
threshold kth_largest_counted(std::size_t n, std::uint64_t k, KeyAt key_at) {
  std::vector<Count> hist(2048, 0);
  for (std::size_t i = 0; i < n; ++i) ++hist[key_at(i) >> 20];
  std::uint64_t above = 0;
  std::size_t b = 2047;
  while (above + hist[b] < k) above += hist[b--];
  // The bucket's keys, collected without a branch: every key is stored at
  // the next free slot, which only advances for a key of bucket b (one spare
  // slot takes the last store).
  std::vector<std::uint32_t> in_b(static_cast<std::size_t>(hist[b]) + 1);
  std::size_t c = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t kk = key_at(i);
    in_b[c] = kk;
    c += (kk >> 20) == b;
  }
  const std::size_t r = k - above - 1;
  const auto end = in_b.begin() + static_cast<std::ptrdiff_t>(c);
  std::nth_element(in_b.begin(), in_b.begin() + static_cast<std::ptrdiff_t>(r), end,
                   std::greater<>());
  threshold t;
  t.key = in_b[r];
  std::uint64_t greater = above;
  for (auto it = in_b.begin(); it != end; ++it) greater += *it > t.key;
  t.ties = k - greater;
  return t;
}

/// The boundary of the k largest of n keys (1 <= k <= n); key_at(i) gives key i.
/// A histogram of the top 11 key bits (32-bit counts up to 2^32 keys), then
/// nth_element inside the one bucket that holds the k-th largest.
template <class KeyAt>
threshold kth_largest(std::size_t n, std::uint64_t k, KeyAt key_at) {
  if (n <= UINT32_MAX) return kth_largest_counted<std::uint32_t>(n, k, key_at);
  return kth_largest_counted<std::uint64_t>(n, k, key_at);
}

/// Keeps, in order, the candidates selected by `t`; returns how many remain.
/// Dropped candidates are handed to drop(index, value).
template <class Drop>
std::size_t keep_selected(std::uint64_t* idx, float* val, std::size_t count, threshold t,
                          Drop drop) {
  std::size_t out = 0;
  std::uint64_t ties = t.ties;
  for (std::size_t j = 0; j < count; ++j) {
    const std::uint32_t kk = key(val[j]);
    if (kk > t.key || (kk == t.key && ties > 0)) {
      if (kk == t.key) --ties;
      idx[out] = idx[j];
      val[out] = val[j];
      ++out;
    } else {
      drop(idx[j], val[j]);
    }
  }
  return out;
}

/// Where sampled top-k takes its threshold sample (codec/topk.hpp; the CUDA
/// codec and its host replay use the same plan). m0 = 512 n/k elements (at
/// least 4096, at most n), so that about 640 sampled keys lie above the
/// threshold: its relative spread is then about 1/sqrt(640) = 4%, well inside
/// the [k, 2k] window around the 1.25 k aimed at. Deep Gradient Compression
/// takes one element every n/m0; here the same number comes in runs of `block` consecutive elements
/// (16 floats, one 64-byte line), one run every stride = block * floor(n/m0)
/// elements, each run starting at the stride's middle block: m = block *
/// floor(n/stride) keys, spread over all but fewer than `stride` trailing
/// elements. At k = n/100 that reads one line in twenty (at most two when the
/// data is not 64-byte aligned) instead of every line, so the sample no
/// longer costs a second full read of the data before the gather. The
/// threshold is the rank-th largest sampled key, rank = ceil(1.25 k m / n).
struct sample_plan {
  static constexpr std::uint64_t block = 16;
  std::uint64_t m = 0;       ///< sampled elements, a multiple of block
  std::uint64_t stride = 0;  ///< elements from one run to the next, a multiple of block
  std::uint64_t rank = 0;    ///< the threshold is the rank-th largest sampled key (1..m)
  /// Element index of the first sample of each run within its stride.
  GREENREDUCE_HOST_DEVICE std::uint64_t first() const { return (stride / block - 1) / 2 * block; }
  /// The element index of sample j (0 <= j < m): strictly increasing, below n.
  GREENREDUCE_HOST_DEVICE std::uint64_t position(std::uint64_t j) const {
    return (j / block) * stride + first() + j % block;
  }
};

/// The plan for n elements and k to send; needs n >= 65536 and 1 <= k <= n/8
/// (the sampled mode's range).
inline sample_plan plan_sample(std::uint64_t n, std::uint64_t k) noexcept {
  const std::uint64_t m0 =
      std::min<std::uint64_t>(n, std::max<std::uint64_t>(4096, (512 * n + k - 1) / k));
  sample_plan p;
  p.stride = sample_plan::block * (n / m0);
  p.m = sample_plan::block * (n / p.stride);
  p.rank = std::clamp<std::uint64_t>((5 * k * p.m + 4 * n - 1) / (4 * n), 1, p.m);
  return p;
}

/// sample[j] = key(e) at plan position j, e = x (+ r when r is not null).
inline void sample_keys(const sample_plan& p, const float* x, const float* r,
                        std::uint32_t* sample) noexcept {
  constexpr std::uint64_t b = sample_plan::block;
  const float* xs = x + p.first();
  const float* rs = r == nullptr ? nullptr : r + p.first();
  for (std::uint64_t j = 0; j < p.m; j += b, xs += p.stride, sample += b) {
    if (rs != nullptr) {
      for (std::uint64_t l = 0; l < b; ++l) sample[l] = key(xs[l] + rs[l]);
      rs += p.stride;
    } else {
      for (std::uint64_t l = 0; l < b; ++l) sample[l] = key(xs[l]);
    }
  }
}

/// What gather reads and writes.
enum class source {
  input,         ///< e = x; nothing written
  input_plus_r,  ///< e = x + r; r = e with candidates zeroed
  r_in_place,    ///< e = r; r = e with candidates zeroed
};

struct gather_result {
  std::size_t count = 0;  ///< candidates written (<= cap)
  bool overflow = false;  ///< more than cap qualified: the list is then some prefix of them
                          ///< and no element from the overflow on was zeroed
  bool finite = true;     ///< every e was finite
};

namespace scalar {
/// The reference of gather below, element by element.
inline gather_result gather(source src, const float* x, float* r, std::size_t begin,
                            std::size_t end, float thr, std::size_t cap, std::uint64_t* idx,
                            float* val, gather_result res = {}) noexcept {
  for (std::size_t i = begin; i < end; ++i) {
    const float e = src == source::input ? x[i] : src == source::input_plus_r ? x[i] + r[i] : r[i];
    const std::uint32_t kk = key(e);
    res.finite &= kk < inf_bits;
    const bool take = std::bit_cast<float>(kk) >= thr;
    bool zero = false;
    if (take) {
      if (!res.overflow && res.count < cap) {
        idx[res.count] = i;
        val[res.count] = e;
        ++res.count;
        zero = true;
      } else {
        res.overflow = true;
      }
    }
    if (src != source::input) r[i] = zero ? 0.0F : e;
  }
  return res;
}
}  // namespace scalar

/// Candidates |e_i| >= thr (thr >= 0) in index order, at most cap of them.
template <class Arch = xsimd::default_arch>
gather_result gather(source src, const float* x, float* r, std::size_t n, float thr,
                     std::size_t cap, std::uint64_t* idx, float* val) noexcept {
  using fb = xsimd::batch<float, Arch>;
  using ib = xsimd::batch<std::int32_t, Arch>;
  constexpr std::size_t w = fb::size;
  const fb tv(thr), zero(0.0F);
  const ib absm(static_cast<std::int32_t>(abs_mask));
  ib kmax(0);
  gather_result res;
  alignas(64) float lanes[w];
  std::size_t i = 0;
  for (; i + w <= n; i += w) {
    fb e;
    if (src == source::input)
      e = fb::load_unaligned(x + i);
    else if (src == source::input_plus_r)
      e = fb::load_unaligned(x + i) + fb::load_unaligned(r + i);
    else
      e = fb::load_unaligned(r + i);
    const ib kk = xsimd::bitwise_cast<ib>(e) & absm;
    kmax = xsimd::max(kmax, kk);
    const auto m = xsimd::bitwise_cast<fb>(kk) >= tv;
    std::uint64_t bits = lane_mask<Arch>(m);
    fb store = e;
    if (bits != 0) {
      if (!res.overflow && res.count + static_cast<std::size_t>(std::popcount(bits)) <= cap) {
        e.store_aligned(lanes);
        do {
          const int l = std::countr_zero(bits);
          idx[res.count] = i + static_cast<std::size_t>(l);
          val[res.count] = lanes[l];
          ++res.count;
          bits &= bits - 1;
        } while (bits != 0);
        store = xsimd::select(m, zero, e);
      } else {
        res.overflow = true;
      }
    }
    if (src != source::input) store.store_unaligned(r + i);
  }
  alignas(64) std::int32_t km[w];
  kmax.store_aligned(km);
  for (std::size_t l = 0; l < w; ++l) res.finite &= static_cast<std::uint32_t>(km[l]) < inf_bits;
  return scalar::gather(src, x, r, i, n, thr, cap, idx, val, res);
}

// ---------------------------------------------------------------- index coding

enum class index_coding : std::uint8_t { varint = 0, bitmap = 1, u32 = 2 };

inline std::size_t varint_bytes(std::uint64_t v) noexcept {
  return static_cast<std::size_t>((std::bit_width(v | 1) + 6) / 7);
}

/// Bytes of each index section for strictly increasing idx[0, k) below n;
/// u32 is SIZE_MAX when n > 2^32.
struct index_sizes {
  std::size_t varint = 0, bitmap = 0, u32 = 0;
};
inline index_sizes sizes_of(const std::uint64_t* idx, std::size_t k, std::size_t n) noexcept {
  index_sizes s;
  std::uint64_t prev = 0;
  for (std::size_t j = 0; j < k; ++j) {
    s.varint += varint_bytes(j == 0 ? idx[0] : idx[j] - prev - 1);
    prev = idx[j];
  }
  s.bitmap = (n + 7) / 8;
  s.u32 = n <= (std::uint64_t{1} << 32) ? 4 * k : SIZE_MAX;
  return s;
}

inline void write_indices(index_coding c, const std::uint64_t* idx, std::size_t k, std::size_t n,
                          std::uint8_t* out) noexcept {
  switch (c) {
    case index_coding::varint: {
      std::uint64_t prev = 0;
      for (std::size_t j = 0; j < k; ++j) {
        std::uint64_t v = j == 0 ? idx[0] : idx[j] - prev - 1;
        prev = idx[j];
        while (v >= 0x80) {
          *out++ = static_cast<std::uint8_t>(v | 0x80);
          v >>= 7;
        }
        *out++ = static_cast<std::uint8_t>(v);
      }
      break;
    }
    case index_coding::bitmap:
      std::memset(out, 0, (n + 7) / 8);
      for (std::size_t j = 0; j < k; ++j)
        out[idx[j] / 8] = static_cast<std::uint8_t>(out[idx[j] / 8] | (1U << (idx[j] % 8)));
      break;
    case index_coding::u32:
      for (std::size_t j = 0; j < k; ++j) {
        const auto v = static_cast<std::uint32_t>(idx[j]);
        std::memcpy(out + 4 * j, &v, 4);
      }
      break;
  }
}

/// Calls f(j, index) for the k indices of a section of `bytes` bytes, in order;
/// returns an empty string when the section is well formed (indices strictly
/// increasing, < n, exactly k of them, every byte used), else what is wrong.
template <class F>
std::string read_indices(index_coding c, const std::uint8_t* in, std::size_t bytes, std::size_t k,
                         std::size_t n, F f) {
  using std::to_string;
  switch (c) {
    case index_coding::varint: {
      std::size_t at = 0;
      std::uint64_t prev = 0;
      for (std::size_t j = 0; j < k; ++j) {
        std::uint64_t v = 0;
        for (unsigned shift = 0;; shift += 7) {
          if (at == bytes)
            return "varint index " + to_string(j) + " runs past the end of its section";
          const std::uint8_t b = in[at++];
          if (shift == 63 && b > 1) return "varint index " + to_string(j) + " overflows 64 bits";
          v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
          if (!(b & 0x80)) {
            if (b == 0 && shift > 0)
              return "varint index " + to_string(j) + " is not minimally encoded";
            break;
          }
        }
        std::uint64_t i = v;
        if (j > 0) {
          i = prev + 1 + v;
          if (v > UINT64_MAX - prev - 1 || i <= prev)
            return "index " + to_string(j) + " wraps around (not increasing)";
        }
        if (i >= n)
          return "index " + to_string(j) + " is " + to_string(i) + ", out of range for " +
                 to_string(n) + " elements";
        f(j, i);
        prev = i;
      }
      if (at != bytes)
        return "varint index section has " + to_string(bytes - at) + " unused trailing bytes";
      return {};
    }
    case index_coding::bitmap: {
      if (bytes != (n + 7) / 8)
        return "bitmap index section is " + to_string(bytes) + " bytes, expected " +
               to_string((n + 7) / 8);
      std::size_t j = 0;
      for (std::size_t byte = 0; byte < bytes; ++byte)
        for (unsigned b = in[byte]; b != 0; b &= b - 1) {
          const std::size_t i = 8 * byte + static_cast<std::size_t>(std::countr_zero(b));
          if (i >= n) return "bitmap sets bit " + to_string(i) + " past " + to_string(n);
          if (j == k) return "bitmap sets more than the declared " + to_string(k) + " indices";
          f(j++, i);
        }
      if (j != k)
        return "bitmap sets " + to_string(j) + " indices, the frame declares " + to_string(k);
      return {};
    }
    case index_coding::u32: {
      if (bytes != 4 * k)
        return "u32 index section is " + to_string(bytes) + " bytes, expected " + to_string(4 * k);
      std::uint64_t prev = 0;
      for (std::size_t j = 0; j < k; ++j) {
        std::uint32_t v;
        std::memcpy(&v, in + 4 * j, 4);
        if (v >= n)
          return "index " + to_string(j) + " is " + to_string(v) + ", out of range for " +
                 to_string(n) + " elements";
        if (j > 0 && v <= prev)
          return "index " + to_string(j) + " is " + to_string(v) + ", not above index " +
                 to_string(j - 1) + " (" + to_string(prev) + ")";
        f(j, v);
        prev = v;
      }
      return {};
    }
  }
  return "unknown index coding " + to_string(static_cast<unsigned>(c));
}

}  // namespace greenreduce::kernels::topk
