// greenreduce/codec/fp8.hpp — 8-bit floats (OCP FP8 E4M3 or E5M2) with one scale per bucket.
//
// Formats (OCP 8-bit Floating Point Specification, OFP8, rev. 1.0, 2023):
//   E4M3: 1 sign, 4 exponent (bias 7), 3 mantissa bits; max 448, min normal
//         2^-6, subnormal step 2^-9; S.1111.111 is NaN, there is no infinity.
//   E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa bits; max 57344, min
//         normal 2^-14, subnormal step 2^-16; exponent 11111 is Inf/NaN.
// Math: each bucket sends scale = max|x| / max_fp8 (fp32, rounded up to 16
// significant bits so that scale * v is exact in fp32 for every fp8 value v)
// and q = fp8(x / scale) with round-to-nearest-even, subnormals kept. Decoding
// is x' = scale * v(q). Per element, with y = x / scale and m the mantissa bits:
//   |x - x'| <= scale * max(|y| * 2^-(m+1), 2^(emin - m - 1))  (+ fp32 rounding of y)
// i.e. a relative error of 2^-4 (E4M3) or 2^-3 (E5M2) above the subnormal
// range. Deterministic: the rng is not used. encode never emits NaN/Inf codes;
// decode rejects them (decode_error) before writing anything.
//
// Wire payload (after the 32-byte frame header), nb = ceil(n / bucket):
//
//   off       size  field
//     0       4     bucket size, uint32 little-endian (must equal the codec's)
//     4       4 nb  scales, fp32 little-endian, one per bucket, finite and >= 0
//     4+4nb   n     q, one fp8 code per element, element order
//
// The frame's codec id names the format (fp8_e4m3 or fp8_e5m2).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include <xsimd/xsimd.hpp>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/core/bytes.hpp"

namespace greenreduce::codec {

enum class fp8_format : std::uint8_t { e4m3, e5m2 };

namespace fp8_detail {

/// The constants of one format.
struct traits {
  int mbits;    ///< mantissa bits
  int bias;     ///< exponent bias
  int emin;     ///< exponent of the smallest normal (1 - bias)
  float max;    ///< largest finite value
  codec_id id;  ///< wire id
  std::string_view name;
};

constexpr traits of(fp8_format f) noexcept {
  return f == fp8_format::e4m3 ? traits{3, 7, -6, 448.0F, codec_id::fp8_e4m3, "fp8_e4m3"}
                               : traits{2, 15, -14, 57344.0F, codec_id::fp8_e5m2, "fp8_e5m2"};
}

/// True for the codes a format reserves for NaN/Inf (never emitted).
constexpr bool invalid(std::uint8_t q, const traits& t) noexcept {
  return t.mbits == 3 ? (q & 0x7FU) == 0x7FU : (q & 0x7CU) == 0x7CU;
}

/// The value of code q (0 for invalid codes; callers reject those first).
inline float value(std::uint8_t q, const traits& t) noexcept {
  if (invalid(q, t)) return 0.0F;
  const unsigned mmask = (1U << t.mbits) - 1U;
  const int e = static_cast<int>((q & 0x7FU) >> t.mbits);
  const auto mant = static_cast<float>(q & mmask);
  const float mag = e == 0
                        ? std::ldexp(mant, t.emin - t.mbits)
                        : std::ldexp(1.0F + mant / static_cast<float>(1U << t.mbits), e - t.bias);
  return (q & 0x80U) != 0 ? -mag : mag;
}

/// float -> fp8, round to nearest even, |y| clamped to the format's max
/// (y finite). Adding and subtracting c = 2^(E - m + 23) rounds |y| to a
/// multiple of the step 2^(E - m) of its binade E (clamped at emin for
/// subnormals) in fp32's own round-to-nearest-even; the code is then read off
/// r's bits. Only integer operations after that, so the SIMD form below is
/// the same function lane by lane.
template <int M, int Bias, int Emin>
std::uint8_t encode_one(float y, float maxv) noexcept {
  const auto b = std::bit_cast<std::int32_t>(y);
  const std::int32_t sgn = (b >> 24) & 0x80;
  const std::int32_t ab = std::min(b & 0x7FFFFFFF, std::bit_cast<std::int32_t>(maxv));
  const std::int32_t e = std::max((ab >> 23) - 127, Emin);
  const float a = std::bit_cast<float>(ab);
  const float c = std::bit_cast<float>((e + 150 - M) << 23);
  const float r = (a + c) - c;
  const auto rb = std::bit_cast<std::int32_t>(r);
  const std::int32_t er = (rb >> 23) - 127;
  const std::int32_t normal = ((er + Bias) << M) | ((rb >> (23 - M)) & ((1 << M) - 1));
  // Below the smallest normal, r = j * 2^(Emin - M) with j < 2^M: j is r's
  // significand shifted right; r == 0 (er = -127) gives 0.
  const std::int32_t sub =
      er >= Emin - M && er < Emin ? ((rb & 0x7FFFFF) | 0x800000) >> (23 - M + Emin - er) : 0;
  return static_cast<std::uint8_t>((er >= Emin ? normal : sub) | sgn);
}

/// q[i] = encode_one((x[i] * pre) * inv) for i < n, whole SIMD batches then a scalar tail.
template <int M, int Bias, int Emin, class Arch = xsimd::default_arch>
void encode_codes(const float* x, std::uint8_t* q, std::size_t n, float pre, float inv,
                  float maxv) noexcept {
  using fb = xsimd::batch<float, Arch>;
  using ib = xsimd::batch<std::int32_t, Arch>;
  constexpr std::size_t w = fb::size;
  const fb vpre(pre), vinv(inv);
  const ib maxb(std::bit_cast<std::int32_t>(maxv)), absm(0x7FFFFFFF), emin(Emin),
      mmask((1 << M) - 1), implicit(0x800000), zero(0);
  alignas(64) std::int32_t lanes[w];
  std::size_t i = 0;
  for (; i + w <= n; i += w) {
    const ib b = xsimd::bitwise_cast<ib>((fb::load_unaligned(x + i) * vpre) * vinv);
    const ib sgn = (b >> 24) & ib(0x80);
    const ib ab = xsimd::min(b & absm, maxb);
    const ib e = xsimd::max((ab >> 23) - ib(127), emin);
    const fb a = xsimd::bitwise_cast<fb>(ab);
    const fb c = xsimd::bitwise_cast<fb>((e + ib(150 - M)) << 23);
    const ib rb = xsimd::bitwise_cast<ib>((a + c) - c);
    const ib er = (rb >> 23) - ib(127);
    const ib normal = ((er + ib(Bias)) << M) | ((rb >> (23 - M)) & mmask);
    // The shift is only used below emin; clamped so that no lane ever shifts
    // by a negative count or past 31.
    const ib shift = xsimd::min(xsimd::max(ib(23 - M + Emin) - er, zero), ib(31));
    const ib sub =
        xsimd::select(er >= ib(Emin - M), ((rb & ib(0x7FFFFF)) | implicit) >> shift, zero);
    (xsimd::select(er >= emin, normal, sub) | sgn).store_aligned(lanes);
    for (std::size_t l = 0; l < w; ++l) q[i + l] = static_cast<std::uint8_t>(lanes[l]);
  }
  for (; i < n; ++i) q[i] = encode_one<M, Bias, Emin>((x[i] * pre) * inv, maxv);
}

/// out[i] (+)= s * value(q[i]) for valid codes: the code's bits placed in an
/// fp32 and multiplied by 2^(127 - bias) give its value, subnormals included.
template <int M, int Bias, bool Add>
void decode_codes(const std::uint8_t* q, float* out, std::size_t n, float s) noexcept {
  constexpr float unbias = std::bit_cast<float>(static_cast<std::uint32_t>(254 - Bias) << 23);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t c = q[i];
    const float mag = std::bit_cast<float>((c & 0x7FU) << (23 - M)) * unbias;
    const float v = std::bit_cast<float>(std::bit_cast<std::uint32_t>(mag) | ((c & 0x80U) << 24));
    if constexpr (Add)
      out[i] += v * s;
    else
      out[i] = v * s;
  }
}

/// The parameters of one bucket from its absmax (finite).
struct bucket {
  float scale = 0.0F;  ///< the wire value
  float pre = 1.0F;    ///< 2^64 when absmax < 2^-64 (keeps inv finite), else 1
  float inv = 0.0F;    ///< 1 / (scale * pre); 0 for an all-zero bucket

  static bucket of(float absmax, float maxv) noexcept {
    bucket k;
    const float raw = absmax / maxv;
    // Clear the low 8 mantissa bits rounding up (16 significant bits), except
    // within 2^-16 of FLT_MAX / maxv where that would overflow scale * maxv.
    k.scale = raw > 0x1.fffep127F / maxv
                  ? std::bit_cast<float>(std::bit_cast<std::uint32_t>(raw) & ~0xFFU)
                  : std::bit_cast<float>((std::bit_cast<std::uint32_t>(raw) + 0xFFU) & ~0xFFU);
    k.pre = absmax < 0x1p-64F ? 0x1p64F : 1.0F;
    k.inv = k.scale > 0.0F ? 1.0F / (k.scale * k.pre) : 0.0F;
    return k;
  }
};

}  // namespace fp8_detail

/// Per-bucket scaled FP8. `codec::fp8{}` (E4M3, buckets of 512),
/// `codec::fp8{codec::fp8_format::e5m2, 256}`.
class fp8 {
 public:
  static constexpr std::size_t default_bucket = 512;
  static constexpr std::size_t max_bucket = std::size_t{1} << 30;

  /// Throws config_error unless 1 <= bucket <= max_bucket.
  explicit fp8(fp8_format f = fp8_format::e4m3, std::size_t bucket = default_bucket)
      : format_(f), t_(fp8_detail::of(f)), bucket_(bucket) {
    if (bucket == 0 || bucket > max_bucket)
      throw config_error(greenreduce::detail::str(t_.name, " bucket size must be in [1, ",
                                                  max_bucket, "], got ", bucket));
  }

  fp8_format format() const noexcept { return format_; }
  std::size_t bucket() const noexcept { return bucket_; }
  int mantissa_bits() const noexcept { return t_.mbits; }
  int min_exponent() const noexcept { return t_.emin; }
  float max_value() const noexcept { return t_.max; }

  codec_id id() const noexcept { return t_.id; }
  std::string_view name() const noexcept { return t_.name; }
  std::uint64_t config_hash() const noexcept {
    return hash_words({static_cast<std::uint64_t>(t_.id), bucket_});
  }
  std::size_t buckets(std::size_t n) const noexcept { return (n + bucket_ - 1) / bucket_; }
  std::size_t payload_bytes(std::size_t n) const noexcept { return 4 + 4 * buckets(n) + n; }
  std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    return frame_header_bytes + payload_bytes(n);
  }

  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng& /*unused*/) const {
    const std::size_t n = in.size(), payload = payload_bytes(n);
    require_output(name(), frame_header_bytes + payload, out.size());
    std::byte* p = out.data() + frame_header_bytes;
    store_le<std::uint32_t>(p, static_cast<std::uint32_t>(bucket_));
    auto* q = reinterpret_cast<std::uint8_t*>(p + 4 + 4 * buckets(n));
    const float maxv = t_.max;
    for (std::size_t k = 0, lo = 0; lo < n; ++k, lo += bucket_) {
      const std::size_t hi = std::min(n, lo + bucket_);
      std::uint32_t amax = 0;
      for (std::size_t i = lo; i < hi; ++i)
        amax = std::max(amax, std::bit_cast<std::uint32_t>(in[i]) & 0x7FFFFFFFU);
      if (amax >= 0x7F800000U) require_finite(name(), in);  // names the first NaN/Inf
      const auto b = fp8_detail::bucket::of(std::bit_cast<float>(amax), maxv);
      store_le<std::uint32_t>(p + 4 + 4 * k, std::bit_cast<std::uint32_t>(b.scale));
      if (format_ == fp8_format::e4m3)
        fp8_detail::encode_codes<3, 7, -6>(in.data() + lo, q + lo, hi - lo, b.pre, b.inv, maxv);
      else
        fp8_detail::encode_codes<2, 15, -14>(in.data() + lo, q + lo, hi - lo, b.pre, b.inv, maxv);
    }
    return finish_frame(out, t_.id, n, payload);
  }

  void decode(std::span<const std::byte> frame, std::span<float> out) const {
    apply<false>(frame, out);
  }
  void decode_add(std::span<const std::byte> frame, std::span<float> acc) const {
    apply<true>(frame, acc);
  }

  /// encode: read 4n, write n + 4nb; abs-max pass, scale, round, repack (~12 ops).
  work encode_work(std::size_t n) const noexcept { return {5 * n + 4 * buckets(n), 12 * n}; }
  /// decode_add: read n + 4nb + 4n, write 4n; table lookup, multiply, add.
  work decode_work(std::size_t n) const noexcept { return {9 * n + 4 * buckets(n), 3 * n}; }

 private:
  fp8_format format_;
  fp8_detail::traits t_;
  std::size_t bucket_;

  template <bool Add>
  void apply(std::span<const std::byte> frame, std::span<float> out) const {
    const std::size_t n = out.size(), nb = buckets(n);
    const auto v = parse_frame(frame, frame_expect{}.of(t_.id).count(n));
    const std::byte* p = v.payload.data();
    if (v.payload.size() >= 4 && load_le<std::uint32_t>(p) != bucket_)
      throw decode_error(greenreduce::detail::str(name(), " frame was encoded with buckets of ",
                                                  load_le<std::uint32_t>(p),
                                                  " elements, this codec uses ", bucket_));
    if (v.payload.size() != payload_bytes(n))
      throw decode_error(greenreduce::detail::str(name(), " frame declares ", n,
                                                  " elements but carries ", v.payload.size(),
                                                  " payload bytes (needs ", payload_bytes(n), ")"));
    for (std::size_t k = 0; k < nb; ++k) {
      const auto bits = load_le<std::uint32_t>(p + 4 + 4 * k);
      if (bits >= 0x7F800000U)  // negative, Inf or NaN
        throw decode_error(greenreduce::detail::str(name(), " scale ", k, " is ",
                                                    std::bit_cast<float>(bits),
                                                    ", expected a finite value >= 0"));
    }
    const auto* q = reinterpret_cast<const std::uint8_t*>(p + 4 + 4 * nb);
    bool bad = false;
    for (std::size_t i = 0; i < n; ++i) bad |= fp8_detail::invalid(q[i], t_);
    if (bad)
      for (std::size_t i = 0; i < n; ++i)
        if (fp8_detail::invalid(q[i], t_))
          throw decode_error(greenreduce::detail::str(name(), " element ", i, " has code 0x",
                                                      std::hex, unsigned{q[i]},
                                                      ", a NaN/Inf code this codec never sends"));
    for (std::size_t k = 0, lo = 0; lo < n; ++k, lo += bucket_) {
      const float s = std::bit_cast<float>(load_le<std::uint32_t>(p + 4 + 4 * k));
      const std::size_t m = std::min(n, lo + bucket_) - lo;
      if (format_ == fp8_format::e4m3)
        fp8_detail::decode_codes<3, 7, Add>(q + lo, out.data() + lo, m, s);
      else
        fp8_detail::decode_codes<2, 15, Add>(q + lo, out.data() + lo, m, s);
    }
  }
};

static_assert(codec<fp8>);

}  // namespace greenreduce::codec
