// 02_compress_a_gradient — one gradient through every codec of the registry.
//
// A codec turns n fp32 values (4n bytes) into one wire *frame*: a 32-byte
// header (magic, codec id, element count, payload length; core/frame.hpp)
// followed by a payload whose layout is the codec's own. The receiver decodes
// the frame back into n floats. Lossless codecs give the input back; lossy ones
// trade accuracy for bytes:
//
//   codec     payload per element      what is lost
//   none      4 bytes (fp32)           nothing
//   fp16      2 bytes                  mantissa 23 -> 10 bits (rel. error <= 2^-11)
//   bf16      2 bytes                  mantissa 23 -> 7 bits  (rel. error <= 2^-8)
//   int8      1 byte + 4 per bucket    x ~ q * scale, q in [-127, 127], scale = max|x| / 127
//   ternary   2 bits + 4 per bucket    x ~ s * {-1, 0, +1}, chosen at random so E[x'] = x
//   sign      1 bit + 4 per bucket     x ~ mean|x| * sign(x)
//   topk      value + index, k = 1%    the 99% smallest magnitudes are dropped
//   randomk   value only, k = 1%       99% dropped at random; indices come from the seed
//
// For each codec this program prints the bytes before and after, the error
// of the round trip (relative L2: ||x - x'|| / ||x||; max abs: max |x_i - x'_i|)
// and what the energy model (energy/model.hpp) estimates it costs to move that
// frame across one link: the sender's end (encode + bits out) plus the
// receiver's end (bits in + decode). The estimate is
//
//   joules = 8 * wire bytes * link pJ/bit + memory bytes * pJ/byte + ops * pJ/op
//
// with coefficients from a named profile; pick it with --profile. On Wi-Fi a
// bit costs ~50000x what it costs on a datacenter link, so there the bytes are
// all that matter; over NVLink the codec's own memory traffic can cost more
// than the bits it saves. These are model estimates, not measurements.
//
// Run:
//   $ ./build/examples/02_compress_a_gradient                       # n = 1M, datacenter_ethernet
//   $ ./build/examples/02_compress_a_gradient --profile wifi_edge --n 65536
//   $ ./build/examples/02_compress_a_gradient --codecs "int8:bucket=128,topk:ratio=0.05"
//
// It checks what it prints (exit status 1 otherwise): the frame fits
// max_encoded_bytes, `none` is exact, every other codec sends fewer bytes,
// fp16/bf16/int8 stay inside their error bounds, top-k's error is exactly the
// largest magnitude it dropped, and fewer bytes never cost more network joules.
#include <greenreduce/greenreduce.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace gr = greenreduce;

namespace {

struct options {
  std::size_t n = std::size_t{1} << 20;
  std::string profile = "datacenter_ethernet";
  std::string codecs = "none,fp16,bf16,int8,int8:stochastic,ternary,sign,topk:0.01,randomk:0.01";
  std::uint64_t seed = 2;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--n" && v) {
      o.n = std::strtoull(v, nullptr, 10), ++i;
    } else if (a == "--profile" && v) {
      o.profile = v, ++i;
    } else if (a == "--codecs" && v) {
      o.codecs = v, ++i;
    } else if (a == "--seed" && v) {
      o.seed = std::strtoull(v, nullptr, 10), ++i;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--n N] [--profile NAME] [--codecs SPEC,...] [--seed S]\n"
                   "  profiles: %s\n  codec specs: %s\n",
                   argv[0], gr::energy::profile_names().c_str(),
                   std::string(gr::codec::codec_spec_help).c_str());
      std::exit(2);
    }
  }
  return o;
}

/// What one round trip through a codec gave.
struct result {
  std::string name;
  std::size_t bytes = 0;  // the frame: header + payload
  double rel_l2 = 0, max_abs = 0;
  gr::energy_estimate energy;  // sender's end + receiver's end of one link
};

/// Encodes x, decodes it back, measures the error and prices the frame.
template <gr::codec::codec Codec>
result round_trip(const Codec& c, std::span<const float> x, const gr::energy::model& model,
                  std::uint64_t seed) {
  // 1. Encode. The caller owns every buffer: max_encoded_bytes(n) is the most
  //    a frame of n elements can take, so one allocation serves every call.
  gr::byte_buffer frame(c.max_encoded_bytes(x.size()));
  gr::rng g(seed);  // stochastic codecs (int8:stochastic, ternary, randomk) draw from it
  const std::size_t len = c.encode(x, frame, g);

  // 2. Decode. A receiver gets exactly `len` bytes; decode validates the frame
  //    (codec id, element count, payload size) before it writes anything.
  std::vector<float> y(x.size());
  c.decode(std::span<const std::byte>(frame.data(), len), y);

  // 3. Error of the round trip, in double.
  result r;
  r.name = std::string(c.name());
  r.bytes = len;
  double err2 = 0, norm2 = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - y[i];
    err2 += d * d;
    norm2 += static_cast<double>(x[i]) * x[i];
    r.max_abs = std::max(r.max_abs, std::abs(d));
  }
  r.rel_l2 = norm2 > 0 ? std::sqrt(err2 / norm2) : 0.0;

  // 4. Energy. A report is the library's account of one operation; the model
  //    prices it. Here we fill two by hand: the sender encodes and puts `len`
  //    bytes on the wire, the receiver takes them off and decodes. The codec
  //    says how much memory traffic and arithmetic its kernels do (the `work`
  //    of concept.hpp). seconds stays 0, so the static-power part is 0: a
  //    single codec call is too short to time meaningfully.
  gr::report sender, receiver;
  sender.bytes_sent = len;
  sender.memory_bytes = c.encode_work(x.size()).memory_bytes;
  sender.compute_ops = c.encode_work(x.size()).ops;
  receiver.bytes_received = len;
  receiver.memory_bytes = c.decode_work(x.size()).memory_bytes;
  receiver.compute_ops = c.decode_work(x.size()).ops;
  r.energy = model.estimate(sender);
  r.energy += model.estimate(receiver);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse(argc, argv);

  // A synthetic gradient: normal values, seeded so every run is the same.
  std::vector<float> grad(opt.n);
  std::mt19937_64 gen(opt.seed);
  std::normal_distribution<float> normal(0.0F, 1e-3F);
  for (auto& v : grad) v = normal(gen);
  float absmax = 0;
  for (float v : grad) absmax = std::max(absmax, std::abs(v));

  const gr::energy::model model(opt.profile);  // config_error for an unknown name
  std::printf("gradient: n = %zu fp32 = %zu bytes, max|x| = %.3g; link profile: %s\n\n", opt.n,
              4 * opt.n, static_cast<double>(absmax), opt.profile.c_str());
  std::printf("%-16s %10s %7s %11s %11s %12s %12s\n", "codec", "bytes", "ratio", "rel_l2",
              "max_abs", "network_J", "total_J");

  // The registry turns a text spec into a std::variant of the built-in codecs;
  // std::visit calls the template above with the concrete type, so every
  // codec runs its own inlined kernels.
  int failures = 0;
  auto fail = [&](const std::string& what) {
    std::printf("FAILED: %s\n", what.c_str());
    ++failures;
  };
  const auto codecs = gr::codec::parse_codec_list(opt.codecs);
  std::vector<result> results;
  for (const auto& any : codecs) {
    std::visit(
        [&](const auto& c) {
          const result r = round_trip(c, grad, model, opt.seed);
          results.push_back(r);
          const double ratio = static_cast<double>(4 * opt.n) / static_cast<double>(r.bytes);
          std::printf("%-16s %10zu %6.1fx %11.3e %11.3e %12.3e %12.3e\n", r.name.c_str(), r.bytes,
                      ratio, r.rel_l2, r.max_abs, r.energy.network_j, r.energy.total_j());

          // --- the claims, checked ---
          if (r.bytes > c.max_encoded_bytes(opt.n))
            fail(r.name + ": frame beyond max_encoded_bytes");
          const double m = absmax;
          if (r.name == "none") {
            if (r.max_abs != 0) fail("none is not exact");
          } else if (opt.n >= 1024 && r.bytes >= 4 * opt.n) {
            fail(r.name + " did not compress");
          }
          // Round to nearest with 10 (fp16) or 7 (bf16) mantissa bits: the
          // error is at most half a unit in the last place.
          if (r.name == "fp16" && r.max_abs > std::ldexp(m, -11) + 0x1p-25)
            fail("fp16 error bound");
          if (r.name == "bf16" && r.max_abs > std::ldexp(m, -8)) fail("bf16 error bound");
          // Bucket scale >= bucket max / 127; nearest rounding errs by half a
          // step, stochastic by up to one step (plus fp32 rounding).
          if (r.name == "int8" && r.max_abs > 0.5 * m / 127 * (1 + 1e-4)) fail("int8 error bound");
          if (r.name == "int8_stochastic" && r.max_abs > m / 127 * (1 + 1e-4))
            fail("int8_stochastic error bound");
          if constexpr (std::is_same_v<std::decay_t<decltype(c)>, gr::codec::topk>) {
            // Top-k sends the k largest |x| exactly, so the worst error is the
            // largest magnitude it dropped: the (k+1)-th largest |x|.
            const std::size_t k = c.k_of(opt.n);
            if (k < opt.n) {
              std::vector<float> mags(opt.n);
              for (std::size_t i = 0; i < opt.n; ++i) mags[i] = std::abs(grad[i]);
              std::nth_element(mags.begin(), mags.begin() + static_cast<std::ptrdiff_t>(k),
                               mags.end(), std::greater<>());
              if (r.max_abs != mags[k]) fail("topk max error is not the largest dropped |x|");
            }
          }
          if (!std::isfinite(r.rel_l2) || !(r.energy.total_j() > 0)) fail(r.name + ": bad figures");
        },
        any);
  }

  // Network joules are linear in the bytes: fewer bytes, fewer joules.
  for (const auto& a : results)
    for (const auto& b : results)
      if (a.bytes < b.bytes && a.energy.network_j > b.energy.network_j)
        fail(a.name + " sends fewer bytes than " + b.name + " but costs more network joules");

  std::printf("\nenergy method: %s (an estimate from counted bytes and operations)\n",
              std::string(gr::to_string(results.front().energy.method)).c_str());
  if (failures) return 1;
  std::printf("all checks passed\n");
  return 0;
}
