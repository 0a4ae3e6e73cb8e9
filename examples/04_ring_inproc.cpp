// 04_ring_inproc — a compressed ring allreduce, and the report it returns, field by field.
//
// Data-parallel training ends every step with an allreduce: each of p ranks
// holds a gradient of n floats, and every rank needs their sum (or mean).
// The ring algorithm cuts the vector into p chunks and passes them around the
// ring twice (collective/ring_allreduce.hpp, docs/collectives.md):
//
//   reduce-scatter  p-1 steps: send a chunk right, add the one from the left;
//                   afterwards rank r owns the full sum of chunk r+1
//   allgather       p-1 steps: the owner's reduced chunk travels round the ring
//
// Each rank sends 2(p-1)/p * 4n bytes whatever p is: bandwidth-optimal. With
// a codec each hop sends a frame instead of fp32 (decode-add the incoming
// frame, re-encode the sum), so the bytes shrink by the codec's ratio, at the
// price of p-1 quantisations in reduce-scatter plus one in the allgather. The
// owner overwrites its chunk with the decoded frame too, so every rank ends
// with bit-identical results.
//
// Ranks here are threads with `transport::inproc` (a mailbox per rank pair);
// example 05 runs the very same code as processes over TCP. The collective is
// a class: the constructor does all set-up (buffers, segment sizes), run() is
// the hot loop and returns a `report` (core/report.hpp):
//
//   op              "allreduce"
//   codec           the codec's name
//   algo            "ring", or "allgather_sparse" when a sparse codec's frames
//                   are cheaper to gather whole than to reduce hop by hop
//   bytes_sent      bytes this rank put on the wire, every header included
//   bytes_received  bytes it took off the wire
//   raw_bytes       what the fp32 ring would have sent from this rank
//   seconds         wall time of run() on this rank
//   memory_bytes    bytes the codec kernels read and wrote (for the energy model)
//   compute_ops     arithmetic operations they did (idem)
//   energy          joules split into network / memory / compute / static, and
//                   the method: "model" is an estimate (ring_options::annotate
//                   runs energy::model on the report); only a hardware meter
//                   (RAPL, NVML) gives "rapl"/"nvml" measurements
//
// Mind the static part: it is seconds x the profile's idle watts (50 W per
// rank for datacenter_ethernet), priced on the wall time of threads sharing
// this machine's cores, which says little about a real cluster. The network
// and memory parts come from counted bytes and carry over; --profile loopback
// (no static power) prices the run as what it is, memory copies.
//
// Run:
//   $ ./build/examples/04_ring_inproc                          # 4 ranks, none then int8
//   $ ./build/examples/04_ring_inproc --np 8 --n 1000003 --codecs none,fp16,topk:0.05
//
// Checks (exit 1 otherwise): every rank's result agrees with a float64
// reference within the codec's error bound, all ranks hold the same bits,
// every byte sent was received, raw_bytes is the ring's formula, a compressing
// codec sends fewer bytes than raw_bytes, and the energy parts add up.
#include <greenreduce/greenreduce.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

namespace gr = greenreduce;

namespace {

struct options {
  int np = 4;
  std::size_t n = 100003;  // odd on purpose: chunks differ by one element
  std::string codecs = "none,int8";
  std::string profile = "datacenter_ethernet";
  std::uint64_t seed = 4;
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
    } else if (a == "--codecs" && v) {
      o.codecs = v, ++i;
    } else if (a == "--profile" && v) {
      o.profile = v, ++i;
    } else {
      std::fprintf(stderr, "usage: %s [--np P] [--n N] [--codecs SPEC,...] [--profile NAME]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  return o;
}

/// Rank r's gradient: seeded per rank, so anyone can recompute anyone's.
std::vector<float> gradient_of(int rank, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed * 7919 + static_cast<std::uint64_t>(rank));
  std::uniform_real_distribution<float> u(-1.0F, 1.0F);
  std::vector<float> g(n);
  for (auto& v : g) v = u(gen);
  return g;
}

void print_report(const gr::report& r) {
  const auto& e = r.energy;
  std::printf("  op              %s\n", r.op.c_str());
  std::printf("  codec           %s\n", r.codec.c_str());
  std::printf("  algo            %s\n", r.algo.c_str());
  std::printf("  bytes_sent      %llu\n", static_cast<unsigned long long>(r.bytes_sent));
  std::printf("  bytes_received  %llu\n", static_cast<unsigned long long>(r.bytes_received));
  std::printf("  raw_bytes       %llu   (fp32 ring; ratio raw/sent = %.2fx)\n",
              static_cast<unsigned long long>(r.raw_bytes), r.compression_ratio());
  std::printf("  seconds         %.6f\n", r.seconds);
  std::printf("  memory_bytes    %llu\n", static_cast<unsigned long long>(r.memory_bytes));
  std::printf("  compute_ops     %llu\n", static_cast<unsigned long long>(r.compute_ops));
  std::printf(
      "  energy          %.4g J = network %.3g + memory %.3g + compute %.3g + static %.3g"
      " (method: %s)\n",
      e.total_j(), e.network_j, e.memory_j, e.compute_j, e.static_j,
      std::string(gr::to_string(e.method)).c_str());
}

/// Runs one allreduce of every rank's gradient with codec C; returns the number of failed checks.
template <gr::codec::codec C>
int run_codec(const C& codec, const options& o, const gr::energy::model& model) {
  const int p = o.np;
  const std::size_t n = o.n;
  std::vector<std::vector<float>> data(static_cast<std::size_t>(p));
  for (int r = 0; r < p; ++r) data[static_cast<std::size_t>(r)] = gradient_of(r, n, o.seed);
  std::vector<gr::report> reports(static_cast<std::size_t>(p));
  std::vector<std::size_t> raw_formula(static_cast<std::size_t>(p));

  // One world = the mailboxes of p ranks; world.rank(r) is rank r's endpoint.
  gr::transport::inproc_world world(p);
  std::vector<std::thread> threads;
  for (int r = 0; r < p; ++r)
    threads.emplace_back([&, r] {
      auto t = world.rank(r);
      gr::collective::ring_options ro;
      ro.seed = o.seed;  // stochastic codecs: rng stream = rank
      ro.annotate = [&](gr::report& rep) { model.annotate(rep); };
      gr::collective::ring_allreduce<C, gr::transport::inproc> ring(t, n, codec, ro);
      auto& mine = data[static_cast<std::size_t>(r)];
      reports[static_cast<std::size_t>(r)] = ring.run(mine, gr::collective::reduce_op::average);
      raw_formula[static_cast<std::size_t>(r)] = ring.raw_bytes(n);
    });
  for (auto& th : threads) th.join();

  std::printf("\n--- codec %s: rank 0's report ---\n", std::string(codec.name()).c_str());
  print_report(reports[0]);

  int failed = 0;
  auto fail = [&](const std::string& what) {
    std::printf("  FAILED: %s\n", what.c_str());
    ++failed;
  };

  // Against a float64 reference: the exact mean, and the library's bound
  // (collective/error_bound.hpp), which grows with the p encodes each element
  // goes through (codec::encode_error_bound of each) and with fp32 summation
  // rounding (Higham 2002, gamma_k = k u / (1 - k u)).
  std::vector<std::vector<float>> inputs;
  for (int r = 0; r < p; ++r) inputs.push_back(gradient_of(r, n, o.seed));
  double mmax = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double mag = 0;
    for (const auto& in : inputs) mag += std::abs(in[i]);
    mmax = std::max(mmax, mag);
  }
  const gr::collective::ring_error_bound bound_of(codec, p, mmax, /*average=*/true);
  double worst = 0, worst_ratio = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double exact = 0, mag = 0;
    for (const auto& in : inputs) {
      exact += in[i];
      mag += std::abs(in[i]);
    }
    exact /= p;
    const double bound = bound_of(mag, exact);
    const double err = std::abs(data[0][i] - exact);
    worst = std::max(worst, err);
    worst_ratio = std::max(worst_ratio, bound > 0 ? err / bound : err > 0 ? 2.0 : 0.0);
  }
  std::printf("  check: max |result - float64 mean| = %.3e (%.2f of the bound)\n", worst,
              worst_ratio);
  if (worst_ratio > 1) fail("result beyond the codec's error bound");
  for (int r = 1; r < p; ++r)
    if (std::memcmp(data[0].data(), data[static_cast<std::size_t>(r)].data(), 4 * n) != 0)
      fail("rank " + std::to_string(r) + " holds other bits than rank 0");

  // The accounting: every byte sent by one rank is received by another.
  gr::report job;  // reports add up with +=
  job.operations = 0;
  for (const auto& rep : reports) job += rep;
  std::printf("  all %d ranks: sent %llu = received %llu bytes; job energy %.4g J (%s)\n", p,
              static_cast<unsigned long long>(job.bytes_sent),
              static_cast<unsigned long long>(job.bytes_received), job.energy.total_j(),
              std::string(gr::to_string(job.energy.method)).c_str());
  if (job.bytes_sent != job.bytes_received) fail("bytes sent != bytes received over the job");
  for (int r = 0; r < p; ++r) {
    const auto& rep = reports[static_cast<std::size_t>(r)];
    if (rep.raw_bytes != raw_formula[static_cast<std::size_t>(r)]) fail("raw_bytes formula");
    const auto& e = rep.energy;
    if (e.method != gr::energy_method::model ||
        std::abs(e.total_j() - (e.network_j + e.memory_j + e.compute_j + e.static_j)) >
            1e-12 * e.total_j())
      fail("energy parts do not add up to the total");
    // Frame headers (32 bytes per segment, 16 per message) dominate tiny vectors.
    if (codec.name() != std::string_view("none") && n >= 1024 * static_cast<std::size_t>(p) &&
        rep.bytes_sent >= rep.raw_bytes)
      fail("a compressing codec sent at least the fp32 bytes");
  }
  // fp32 ring: 2(p-1)/p of the data, up to chunk rounding.
  const double share = 2.0 * (p - 1) / p * 4.0 * static_cast<double>(n);
  if (p > 1 && std::abs(static_cast<double>(reports[0].raw_bytes) - share) > 8.0 * p)
    fail("raw_bytes is not 2(p-1)/p of 4n");
  return failed;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const gr::energy::model model(o.profile);
  std::printf(
      "ring allreduce (average) of n = %zu floats over %d inproc ranks; energy profile %s\n", o.n,
      o.np, o.profile.c_str());
  int failed = 0;
  for (const auto& any : gr::codec::parse_codec_list(o.codecs))
    failed += std::visit([&](const auto& c) { return run_codec(c, o, model); }, any);
  if (failed) return 1;
  std::printf("\nall checks passed\n");
  return 0;
}
