// 07_your_own_codec — write a codec, prove it keeps the contract, plug it into the ring.
//
// A codec is a policy: a small value type that the collectives take as a
// template parameter, checked by the C++20 concept `codec::codec`
// (codec/concept.hpp). Anything that has these members is one:
//
//   id()                     a codec_id: ids >= 128 are free for your own codecs
//   name(), config_hash()    a name, and a fingerprint of every wire parameter
//                            (ranks compare it before a collective)
//   max_encoded_bytes(n)     the most encode may write for n elements
//   encode(in, out, rng)     one frame (core/frame.hpp header + your payload)
//   decode(frame, out)       out = values;  decode_add(frame, acc): acc += values
//   encode_work(n), decode_work(n)  memory bytes and operations, for the energy model
//
// Here: `q4`, 4-bit uniform quantisation with one scale per bucket and
// stochastic rounding (QSGD-like; Alistarh et al., NeurIPS 2017). For a bucket
// with scale s = max|x| / 7, element x becomes the integer level q in [-7, 7]
//
//   v = x / s,  q = floor(v) + [u < v - floor(v)],  u uniform in [0, 1)
//
// so E[q s] = x exactly: rounding up with probability equal to the fraction
// makes the error unbiased, which averaging over ranks and steps then shrinks
// (nearest rounding would repeat the same bias every step). |x - q s| < s.
// u comes from the caller's counter-based Philox rng (core/rng.hpp): element
// i uses 32-bit word i % 4 of block i / 4, and encode then advances the rng
// past the blocks it used, so the same (seed, stream, offset) gives the same
// bytes on any machine, and the next call gets fresh bits.
//
// Payload after the 32-byte frame header, little-endian, nb = ceil(n / bucket):
//   off       size          field
//   0         4             bucket size (must equal the decoder's)
//   4         4 nb          fp32 scale per bucket, finite and >= 0
//   4 + 4nb   ceil(n / 2)   q + 8 as 4-bit nibbles, element 2j low, 2j+1 high;
//                           values 1..15 (0 is never written), padding nibble 0
//
// 4.25 bits per element for buckets of 128: 7.5x fewer bytes than fp32.
//
// The rules a decoder must keep are what make a codec safe on a network:
// validate the whole frame before writing a single output (a short, long,
// foreign or corrupt frame is a decode_error and leaves acc untouched), never
// read past the bytes given, and refuse NaN/Inf input with a numeric_error
// naming the element. `codec::check_codec(c, seed)` (codec/checks.hpp) tests
// all of that on random inputs, truncations and corruptions; this program runs
// it, then runs q4 inside ring_allreduce exactly as the built-in codecs run.
//
//   $ ./build/examples/07_your_own_codec
//   $ ./build/examples/07_your_own_codec --np 6 --n 1000000 --bucket 64
#include <greenreduce/greenreduce.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace gr = greenreduce;

// ------------------------------------------------------------------ the codec
class q4 {
 public:
  static constexpr gr::codec_id wire_id = static_cast<gr::codec_id>(130);  // a user id

  explicit q4(std::size_t bucket = 128) : bucket_(bucket) {
    if (bucket == 0 || bucket > (std::size_t{1} << 30))
      throw gr::config_error(gr::detail::str("q4 bucket must be in [1, 2^30], got ", bucket));
  }

  gr::codec_id id() const noexcept { return wire_id; }
  std::string_view name() const noexcept { return "q4"; }
  std::uint64_t config_hash() const noexcept {
    return gr::codec::hash_words({static_cast<std::uint64_t>(wire_id), bucket_});
  }
  std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    return gr::frame_header_bytes + payload_bytes(n);
  }

  std::size_t encode(std::span<const float> in, std::span<std::byte> out, gr::rng& g) const {
    const std::size_t n = in.size(), nb = buckets(n);
    // The bound is max_encoded_bytes whatever this input needs (the contract).
    gr::codec::require_output(name(), max_encoded_bytes(n), out.size());
    std::byte* p = out.data() + gr::frame_header_bytes;
    gr::store_le<std::uint32_t>(p, static_cast<std::uint32_t>(bucket_));
    std::byte* scales = p + 4;
    std::byte* nibbles = scales + 4 * nb;
    std::fill(nibbles, nibbles + (n + 1) / 2, std::byte{0});
    for (std::size_t b = 0; b < nb; ++b) {
      const std::size_t lo = b * bucket_, hi = std::min(n, lo + bucket_);
      // std::max(m, NaN) is m: an absmax alone would let NaN through, and
      // check_codec would flag it. x - x is 0 for finite x and NaN for NaN or
      // Inf, so one running sum tells.
      float absmax = 0, probe = 0;
      for (std::size_t i = lo; i < hi; ++i) {
        absmax = std::max(absmax, std::abs(in[i]));
        probe += in[i] - in[i];
      }
      if (probe != 0 || !std::isfinite(absmax))
        gr::codec::require_finite(name(), in);  // throws numeric_error naming the element
      const float s = absmax / 7.0F;
      gr::store_le<std::uint32_t>(scales + 4 * b, std::bit_cast<std::uint32_t>(s));
      for (std::size_t i = lo; i < hi; ++i) {
        int q = 0;
        if (s > 0) {
          const float v = in[i] / s;
          const float fl = std::floor(v);
          const float u = gr::uniform_float(g.block(i / 4)[static_cast<int>(i % 4)]);
          q = static_cast<int>(fl) + (u < v - fl ? 1 : 0);
          q = std::clamp(q, -7, 7);  // v may exceed 7 by one rounding
        }
        const auto nib = static_cast<std::uint8_t>(q + 8);
        auto& byte = reinterpret_cast<std::uint8_t&>(nibbles[i / 2]);
        byte = static_cast<std::uint8_t>(byte | (i % 2 ? nib << 4 : nib));
      }
    }
    g.advance((n + 3) / 4);  // the blocks this call consumed
    return gr::finish_frame(out, wire_id, n, payload_bytes(n));
  }

  void decode(std::span<const std::byte> frame, std::span<float> out) const {
    const view v = validated(frame, out.size());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = value(v, i);
  }
  void decode_add(std::span<const std::byte> frame, std::span<float> acc) const {
    const view v = validated(frame, acc.size());  // everything checked before acc changes
    for (std::size_t i = 0; i < acc.size(); ++i) acc[i] += value(v, i);
  }

  // encode: read 4n, write n/2 + 4nb; abs, divide, floor, compare, pack, and a
  // quarter Philox block (~20 ops) per element. decode_add: read n/2 + 4nb + 4n, write 4n.
  gr::codec::work encode_work(std::size_t n) const noexcept {
    return {4 * n + n / 2 + 4 * buckets(n), 28 * n};
  }
  gr::codec::work decode_work(std::size_t n) const noexcept {
    return {8 * n + n / 2 + 4 * buckets(n), 3 * n};
  }

 private:
  struct view {
    const std::byte* scales;
    const std::uint8_t* nibbles;
    std::size_t bucket;
  };

  std::size_t buckets(std::size_t n) const noexcept { return (n + bucket_ - 1) / bucket_; }
  std::size_t payload_bytes(std::size_t n) const noexcept {
    return 4 + 4 * buckets(n) + (n + 1) / 2;
  }

  static float value(const view& v, std::size_t i) noexcept {
    const std::uint8_t byte = v.nibbles[i / 2];
    const int q = (i % 2 ? byte >> 4 : byte & 0xF) - 8;
    const float s = std::bit_cast<float>(gr::load_le<std::uint32_t>(v.scales + 4 * (i / v.bucket)));
    return static_cast<float>(q) * s;
  }

  view validated(std::span<const std::byte> frame, std::size_t n) const {
    // parse_frame checks magic, version, codec id, element count and that the
    // declared payload is exactly what follows the header.
    const auto f = gr::parse_frame(frame, gr::frame_expect{}.of(wire_id).count(n));
    if (f.payload.size() != payload_bytes(n))
      throw gr::decode_error(gr::detail::str("q4 frame declares ", n, " elements but carries ",
                                             f.payload.size(), " payload bytes (needs ",
                                             payload_bytes(n), ")"));
    const auto bucket = gr::load_le<std::uint32_t>(f.payload.data());
    if (bucket != bucket_)
      throw gr::decode_error(gr::detail::str("q4 frame was encoded with buckets of ", bucket,
                                             " elements, this codec uses ", bucket_));
    const std::byte* scales = f.payload.data() + 4;
    for (std::size_t b = 0; b < buckets(n); ++b) {
      const float s = std::bit_cast<float>(gr::load_le<std::uint32_t>(scales + 4 * b));
      if (!(s >= 0 && std::isfinite(s)))
        throw gr::decode_error(gr::detail::str("q4 frame: bucket ", b, " has scale ", s,
                                               ", expected finite and >= 0"));
    }
    const auto* nib = reinterpret_cast<const std::uint8_t*>(scales + 4 * buckets(n));
    for (std::size_t i = 0; i < n; ++i)
      if (((i % 2 ? nib[i / 2] >> 4 : nib[i / 2]) & 0xF) == 0)
        throw gr::decode_error(gr::detail::str("q4 frame: element ", i, " has level code 0"));
    if (n % 2 && (nib[n / 2] >> 4) != 0)
      throw gr::decode_error("q4 frame: the padding nibble is not 0");
    return {scales, nib, bucket_};
  }

  std::size_t bucket_;
};

// One line that fails to compile, with the reason, if a member is missing.
static_assert(gr::codec::codec<q4>);

// ------------------------------------------------------------------ the tour
namespace {

struct options {
  int np = 4;
  std::size_t n = 200003;
  std::size_t bucket = 128;
  std::uint64_t seed = 7;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--np" && v) {
      o.np = std::atoi(v), ++i;
    } else if (a == "--n" && v) {
      o.n = std::strtoull(v, nullptr, 10), ++i;
    } else if (a == "--bucket" && v) {
      o.bucket = std::strtoull(v, nullptr, 10), ++i;
    } else if (a == "--seed" && v) {
      o.seed = std::strtoull(v, nullptr, 10), ++i;
    } else {
      std::fprintf(stderr, "usage: %s [--np P] [--n N] [--bucket B] [--seed S]\n", argv[0]);
      std::exit(2);
    }
  }
  return o;
}

std::vector<float> gradient_of(int rank, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed * 7919 + static_cast<std::uint64_t>(rank));
  std::uniform_real_distribution<float> u(-1.0F, 1.0F);
  std::vector<float> g(n);
  for (auto& v : g) v = u(gen);
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const q4 codec(o.bucket);
  int failed = 0;

  // 1. The contract, as code: lengths 0, 1, odd, bucket edges; truncations,
  //    corruptions, wrong ids and counts, NaN/Inf, reproducibility.
  const auto broken = gr::codec::check_codec(codec, o.seed);
  for (const auto& line : broken) std::printf("check_codec: %s\n", line.c_str());
  std::printf("1. check_codec: %s\n", broken.empty() ? "conforming" : "BROKEN");
  failed += broken.empty() ? 0 : 1;

  // 2. Unbiased: the mean of many encodes (fresh rng bits each time) tends to x,
  //    with standard deviation <= s / (2 sqrt(K)).
  {
    const std::size_t n = 1000;
    const int K = 400;
    const auto x = gradient_of(0, n, o.seed);
    std::vector<double> mean(n, 0.0);
    std::vector<float> y(n);
    gr::byte_buffer frame(codec.max_encoded_bytes(n));
    gr::rng g(o.seed);
    for (int k = 0; k < K; ++k) {
      const std::size_t len = codec.encode(x, frame, g);  // advances g
      codec.decode(std::span<const std::byte>(frame.data(), len), y);
      for (std::size_t i = 0; i < n; ++i) mean[i] += y[i] / K;
    }
    const double step = 1.0 / 7;  // |x| < 1: no scale exceeds 1/7
    double worst = 0;
    for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(mean[i] - x[i]));
    std::printf("2. mean of %d encodes: max |mean - x| = %.4f (one level = %.4f)\n", K, worst,
                step);
    if (!(worst < 0.25 * step)) {
      std::printf("   FAILED: stochastic rounding looks biased\n");
      ++failed;
    }
  }

  // 3. Into the ring, unchanged: the same template the built-in codecs go through.
  const int p = o.np;
  std::vector<std::vector<float>> data;
  for (int r = 0; r < p; ++r) data.push_back(gradient_of(r, o.n, o.seed));
  std::vector<gr::report> reports(static_cast<std::size_t>(p));
  gr::transport::inproc_world world(p);
  std::vector<std::thread> threads;
  for (int r = 0; r < p; ++r)
    threads.emplace_back([&, r] {
      auto t = world.rank(r);
      gr::collective::ring_options ro;
      ro.seed = o.seed;
      gr::collective::ring_allreduce<q4, gr::transport::inproc> ring(t, o.n, codec, ro);
      reports[static_cast<std::size_t>(r)] =
          ring.run(data[static_cast<std::size_t>(r)], gr::collective::reduce_op::sum);
    });
  for (auto& th : threads) th.join();
  // Each element is encoded at most p times on its way (p-1 reduce-scatter hops
  // and the allgather); each encode errs by less than one level of its bucket's
  // scale, and a partial sum's magnitude is at most the sum of |inputs| <= p
  // (plus the errors of earlier hops: 10% covers them), so a level <= 1.1 p / 7.
  std::vector<double> exact(o.n, 0.0);
  for (int r = 0; r < p; ++r) {
    const auto in = gradient_of(r, o.n, o.seed);
    for (std::size_t i = 0; i < o.n; ++i) exact[i] += in[i];
  }
  double worst = 0;
  for (std::size_t i = 0; i < o.n; ++i) worst = std::max(worst, std::abs(data[0][i] - exact[i]));
  const double bound = p * (1.1 * p / 7.0);
  const auto& rep = reports[0];
  std::printf(
      "3. ring_allreduce<q4> over %d ranks, n = %zu: sent %llu bytes, %.2fx fewer than "
      "fp32; max |sum - exact| = %.4f (bound %.3f)\n",
      p, o.n, static_cast<unsigned long long>(rep.bytes_sent), rep.compression_ratio(), worst,
      bound);
  if (!(worst <= bound)) {
    std::printf("   FAILED: ring result beyond the bound\n");
    ++failed;
  }
  if (o.n >= 1024 * static_cast<std::size_t>(p) && !(rep.compression_ratio() > 6)) {
    std::printf("   FAILED: q4 should send ~7.5x fewer bytes than fp32\n");
    ++failed;
  }
  for (int r = 1; r < p; ++r)
    if (data[static_cast<std::size_t>(r)] != data[0]) {
      std::printf("   FAILED: rank %d holds other values than rank 0\n", r);
      ++failed;
    }
  if (failed) return 1;
  std::printf("all checks passed\n");
  return 0;
}
