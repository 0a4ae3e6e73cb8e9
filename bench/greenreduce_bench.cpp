// greenreduce-bench — the collective benchmark CLI, in the spirit of nccl-tests.
//
//   greenreduce-bench --np 4 --codec none,int8 --min-bytes 1K --max-bytes 64M --check
//   greenreduce-bench --np 2 --transport tcp --bytes 64M --json
//   torchrun --nproc-per-node 4 greenreduce-bench --transport tcp ...   (one rank each)
//
// For every size and codec it times `--iters` in-place ring allreduces (after
// `--warmup` untimed ones) and prints, on rank 0, one row: size, count, codec,
// algo, np, time(us) (mean of rank 0's report.seconds; each timed run starts
// after the input is reset and a barrier, so no rank's reset copy is timed),
// algbw = size / time,
// busbw = algbw * 2(np-1)/np (GB = 1e9 bytes), wire bytes (bytes_sent +
// bytes_received of rank 0 for one operation), ratio (raw_bytes / bytes_sent)
// and #wrong. `--json` prints one JSON object per line instead.
//
// Energy: every report is annotated by energy::model (profile from
// --energy-profile NAME, else GREENREDUCE_ENERGY_PROFILE and the
// GREENREDUCE_ENERGY_* overrides; default datacenter_ethernet). `joules` is
// the estimate summed over all ranks for one operation (for --algo ps: the
// workers' push and pull reports plus the servers' own work, bench/ps_bench.hpp)
// and `J/GB` divides it
// by the operation's size in GB (1e9 bytes of fp32 gradient reduced), so codecs
// compare by the energy each GB of gradient costs. Both are model estimates.
//
// --check compares each rank's result with a float64 reference and counts the
// elements beyond the bound of bench/check.hpp; #wrong sums all ranks.
// --algo ps --servers S --mode sync|async|ssp:K runs the parameter server
// instead (bench/ps_bench.hpp): ranks [0, S) serve, the rest push and pull.
// Argument errors print a message and exit with status 2.
//
// --transport nccl (built only when CUDA and NCCL are found): one process
// drives all local GPUs (ncclCommInitAll) and runs the device ring of
// cuda/ring_allreduce.cuh with the dense codecs, plus the uncompressed
// ncclAllReduce baseline for codec none (bench/nccl_bench.cu). Same columns;
// --np is the number of GPUs (default all); the energy profile defaults to
// nvlink, and joules are NVML measurements when the GPUs' counters allow.
// Without a GPU it exits with status 1 and says so.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "check.hpp"
#include "greenreduce/codec/registry.hpp"
#include "greenreduce/collective/barrier.hpp"
#include "greenreduce/collective/ring_allreduce.hpp"
#include "greenreduce/core/env.hpp"
#include "greenreduce/energy/model.hpp"
#include "greenreduce/transport/inproc.hpp"
#include "launch.hpp"
#include "ps_bench.hpp"

#ifndef GREENREDUCE_BENCH_NCCL
#define GREENREDUCE_BENCH_NCCL 0
#endif
#if GREENREDUCE_BENCH_NCCL
#include "nccl_bench.hpp"
#endif

namespace gr = greenreduce;

namespace {

struct config {
  int np = 0;  // 0: from the launcher's environment, else 1
  std::string transport = "inproc";
  std::vector<gr::codec::any_codec> codecs;
  std::vector<std::string> codec_specs;
  std::vector<std::uint64_t> sizes;
  int iters = 20;
  int warmup = 5;
  bool check = false;
  bool json = false;
  std::uint64_t seed = 1;
  std::size_t segment_bytes = 0;  // 0: the ring's automatic choice
  gr::collective::reduce_op op = gr::collective::reduce_op::sum;
  bool error_feedback = false;
  std::string energy_profile;  // empty: from the environment
  gr::energy::model energy;
  std::string algo = "ring";
  int servers = 1;
  gr::ps::consistency mode = gr::ps::consistency::sync();
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr,
               "greenreduce-bench: %s\n"
               "usage: greenreduce-bench [--np N] [--transport inproc|tcp|nccl] [--codec LIST]\n"
               "       [--bytes B | --min-bytes B --max-bytes B --factor F] [--iters N]\n"
               "       [--warmup N] [--check] [--json] [--seed S] [--segment-bytes B]\n"
               "       [--op sum|average] [--error-feedback] [--energy-profile NAME]\n"
               "       [--algo ring|ps] [--servers S] [--mode sync|async|ssp:K]\n"
               "codecs: %s\n",
               msg.c_str(), std::string(gr::codec::codec_spec_help).c_str());
  std::exit(2);
}

std::int64_t int_arg(const std::string& opt, const std::string& v, std::int64_t lo,
                     std::int64_t hi) {
  return gr::env_int(gr::env_source::from_map({{opt, v}}), opt, 0, lo, hi);
}

std::uint64_t bytes_arg(const std::string& opt, const std::string& v) {
  return gr::env_bytes(gr::env_source::from_map({{opt, v}}), opt, 0, std::uint64_t{1} << 40);
}

config parse(int argc, char** argv) {
  config c;
  std::optional<std::uint64_t> bytes, min_bytes, max_bytes;
  double factor = 2;
  std::string codecs = "none";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--np")
      c.np = static_cast<int>(int_arg(a, value(), 1, 1024));
    else if (a == "--transport") {
      c.transport = value();
      if (c.transport != "inproc" && c.transport != "tcp" && c.transport != "nccl")
        usage_error("--transport must be inproc, tcp or nccl, got \"" + c.transport + "\"");
    } else if (a == "--codec")
      codecs = value();
    else if (a == "--bytes")
      bytes = bytes_arg(a, value());
    else if (a == "--min-bytes")
      min_bytes = bytes_arg(a, value());
    else if (a == "--max-bytes")
      max_bytes = bytes_arg(a, value());
    else if (a == "--factor") {
      factor = gr::env_double(gr::env_source::from_map({{a, value()}}), a, 2, 1.0001, 1e6);
    } else if (a == "--iters")
      c.iters = static_cast<int>(int_arg(a, value(), 1, 1000000));
    else if (a == "--warmup")
      c.warmup = static_cast<int>(int_arg(a, value(), 0, 1000000));
    else if (a == "--seed")
      c.seed = static_cast<std::uint64_t>(int_arg(a, value(), 0, INT64_MAX));
    else if (a == "--segment-bytes")
      c.segment_bytes = bytes_arg(a, value());
    else if (a == "--op") {
      const std::string v = value();
      if (v == "sum")
        c.op = gr::collective::reduce_op::sum;
      else if (v == "average")
        c.op = gr::collective::reduce_op::average;
      else
        usage_error("--op must be sum or average, got \"" + v + "\"");
    } else if (a == "--check")
      c.check = true;
    else if (a == "--energy-profile")
      c.energy_profile = value();
    else if (a == "--json")
      c.json = true;
    else if (a == "--error-feedback")
      c.error_feedback = true;
    else if (a == "--algo") {
      c.algo = value();
      if (c.algo != "ring" && c.algo != "ps")
        usage_error("--algo must be ring or ps, got \"" + c.algo + "\"");
    } else if (a == "--servers")
      c.servers = static_cast<int>(int_arg(a, value(), 1, 1023));
    else if (a == "--mode")
      c.mode = gr::ps::consistency::parse(value());
    else if (a == "--help" || a == "-h")
      usage_error("help");
    else
      usage_error("unknown argument \"" + a + "\"");
  }
  c.codecs = gr::codec::parse_codec_list(codecs);
  for (auto spec : gr::codec::registry_detail::split(codecs, ','))
    if (!spec.empty()) c.codec_specs.emplace_back(spec);
  if (bytes && (min_bytes || max_bytes)) usage_error("--bytes excludes --min-bytes/--max-bytes");
  if (bytes) {
    c.sizes = {*bytes};
  } else {
    const std::uint64_t lo = min_bytes.value_or(4);
    const std::uint64_t hi = max_bytes.value_or(std::max<std::uint64_t>(lo, 64 * 1024 * 1024));
    if (lo > hi) usage_error("--min-bytes is larger than --max-bytes");
    for (double s = static_cast<double>(lo); s <= static_cast<double>(hi) * (1 + 1e-9);
         s *= factor) {
      const auto b = static_cast<std::uint64_t>(s);
      if (c.sizes.empty() || c.sizes.back() / 4 != b / 4) c.sizes.push_back(b);
    }
  }
  for (auto& s : c.sizes) s = s / 4 * 4;  // whole floats
  if (c.segment_bytes != 0 && c.segment_bytes < 4)
    usage_error("--segment-bytes must be >= 4 (or 0: automatic)");
  const auto process = gr::env_source::process();
  std::string profile = c.energy_profile;
  if (profile.empty() && c.transport == "nccl" && !process.get("GREENREDUCE_ENERGY_PROFILE"))
    profile = "nvlink";  // GPUs in one node: the NVLink profile unless told otherwise
  c.energy = gr::energy::model::from_env(gr::env_source(
      [process, profile](const std::string& name) -> std::optional<std::string> {
        if (!profile.empty() && name == "GREENREDUCE_ENERGY_PROFILE") return profile;
        return process.get(name);
      }));
  if (c.algo == "ps" && c.np > 0 && c.np <= c.servers)
    usage_error(gr::detail::str("--algo ps needs more ranks (--np ", c.np, ") than servers (",
                                c.servers, ")"));
  return c;
}

void print_header(const config& c) {
  if (c.json) return;
  if (c.algo == "ps")
    std::printf(
        "# greenreduce-bench: parameter server, %d server(s), mode %s, transport %s, "
        "iters %d, warmup %d\n",
        c.servers, c.mode.to_string().c_str(), c.transport.c_str(), c.iters, c.warmup);
  else
    std::printf("# greenreduce-bench: allreduce %s, transport %s, iters %d, warmup %d\n",
                std::string(gr::collective::to_string(c.op)).c_str(), c.transport.c_str(), c.iters,
                c.warmup);
  std::printf("%12s %12s %20s %17s %4s %11s %11s %11s %14s %8s %10s %10s %8s\n", "size", "count",
              "codec", "algo", "np", "time(us)", "algbw(GB/s)", "busbw(GB/s)", "wire bytes",
              "ratio", "joules", "J/GB", "#wrong");
  std::fflush(stdout);
}

struct row {
  std::uint64_t size, count;
  std::string codec, algo;
  int np;
  double time_us;
  std::uint64_t wire, raw, sent;
  std::int64_t wrong;      // -1: not checked
  double joules = 0;       // estimate, all ranks (ps: all workers), one operation
  double bus_factor = -1;  // busbw / algbw; < 0: the ring's 2(np-1)/np
  std::string method = "model";  // or "nvml": how joules were obtained
};

void print_row(const config& c, const row& r) {
  const double algbw = r.time_us > 0 ? static_cast<double>(r.size) / (r.time_us * 1e3) : 0;
  const double busbw = r.bus_factor >= 0 ? algbw * r.bus_factor
                       : r.np > 1        ? algbw * 2.0 * (r.np - 1) / r.np
                                         : 0;
  const double ratio = r.sent == 0 ? 1.0 : static_cast<double>(r.raw) / static_cast<double>(r.sent);
  const double j_per_gb = r.size == 0 ? 0 : r.joules / (static_cast<double>(r.size) / 1e9);
  if (c.json) {
    std::printf(
        "{\"size\":%llu,\"count\":%llu,\"codec\":\"%s\",\"algo\":\"%s\",\"np\":%d,"
        "\"time_us\":%.3f,\"algbw_GBps\":%.6f,\"busbw_GBps\":%.6f,\"wire_bytes\":%llu,"
        "\"raw_bytes\":%llu,\"ratio\":%.4f,\"wrong\":%lld,\"transport\":\"%s\",\"op\":\"%s\","
        "\"joules\":%.6g,\"j_per_gb\":%.6g,\"energy_method\":\"%s\"}\n",
        static_cast<unsigned long long>(r.size), static_cast<unsigned long long>(r.count),
        r.codec.c_str(), r.algo.c_str(), r.np, r.time_us, algbw, busbw,
        static_cast<unsigned long long>(r.wire), static_cast<unsigned long long>(r.raw), ratio,
        static_cast<long long>(r.wrong), c.transport.c_str(),
        c.algo == "ps" ? c.mode.to_string().c_str()
                       : std::string(gr::collective::to_string(c.op)).c_str(),
        r.joules, j_per_gb, r.method.c_str());
  } else {
    const std::string wrong = r.wrong < 0 ? "N/A" : std::to_string(r.wrong);
    std::printf("%12llu %12llu %20s %17s %4d %11.1f %11.3f %11.3f %14llu %8.2f %10.4g %10.4g %8s\n",
                static_cast<unsigned long long>(r.size), static_cast<unsigned long long>(r.count),
                r.codec.c_str(), r.algo.c_str(), r.np, r.time_us, algbw, busbw,
                static_cast<unsigned long long>(r.wire), ratio, r.joules, j_per_gb,
                wrong.c_str());
  }
  std::fflush(stdout);
}

// The parameter server's sweep; rank 0 (a server) prints.
template <class Transport>
void ps_main(Transport& t, const config& c) {
  const int p = t.size();
  if (p <= c.servers)
    throw gr::config_error(
        gr::detail::str("--algo ps needs more ranks (", p, ") than servers (", c.servers, ")"));
  gr::bench::ps_config pc;
  pc.servers = c.servers;
  pc.mode = c.mode;
  pc.iters = c.iters;
  pc.warmup = c.warmup;
  pc.check = c.check;
  pc.error_feedback = c.error_feedback;
  pc.seed = c.seed;
  pc.energy = c.energy;
  if (t.rank() == 0) print_header(c);
  for (std::uint64_t size : c.sizes) {
    const std::size_t n = size / 4;
    for (std::size_t k = 0; k < c.codecs.size(); ++k) {
      std::visit(
          [&](const auto& codec) {
            const auto res = gr::bench::ps_run_one(t, pc, n, codec);
            if (t.rank() != 0) return;
            const auto& figs = res.workers;
            double seconds = 0;
            std::int64_t wrong = -1;
            for (const auto& f : figs) {
              seconds += f.seconds;
              if (f.wrong >= 0) wrong = (wrong < 0 ? 0 : wrong) + f.wrong;
            }
            const double time_us = seconds / static_cast<double>(figs.size()) / c.iters * 1e6;
            const auto& f0 = figs.front();
            row r{size, n, c.codec_specs[k], "ps", p, time_us, f0.wire, f0.raw, f0.sent, wrong};
            r.bus_factor = 2;
            // The workers' push+pull estimates and the servers' share, per operation.
            r.joules = res.server_joules;
            for (const auto& f : figs) r.joules += f.joules / c.iters;
            print_row(c, r);
          },
          c.codecs[k]);
    }
  }
}

// One rank's whole sweep; rank 0 prints.
template <class Transport>
void rank_main(Transport& t, const config& c) {
  if (c.algo == "ps") return ps_main(t, c);
  const int p = t.size();
  const int r = t.rank();
  if (r == 0) print_header(c);
  for (std::uint64_t size : c.sizes) {
    const std::size_t n = size / 4;
    std::vector<float> input(n), work(n);
    gr::bench::fill_input(input, c.seed, r);
    for (std::size_t k = 0; k < c.codecs.size(); ++k) {
      std::visit(
          [&](const auto& codec) {
            using C = std::decay_t<decltype(codec)>;
            gr::collective::ring_options opts;
            opts.segment_bytes = c.segment_bytes;
            opts.seed = c.seed;
            opts.error_feedback = c.error_feedback;
            opts.energy = c.energy;
            gr::collective::ring_allreduce<C, Transport> ring(t, n, codec, opts);
            for (int i = 0; i < c.warmup; ++i) {
              work = input;
              ring.run(work, c.op);
            }
            gr::collective::barrier(t);
            double seconds = 0, energy_j = 0;
            gr::report rep;
            for (int i = 0; i < c.iters; ++i) {
              work = input;
              // Start together: rank 0's time is then the allreduce's own, not
              // also the wait for a peer still copying its input.
              gr::collective::barrier(t);
              rep = ring.run(work, c.op);
              seconds += rep.seconds;
              energy_j += rep.energy.total_j();
            }
            std::int64_t wrong = -1;
            if (c.check) {
              float local = static_cast<float>(gr::bench::count_wrong(
                  codec, work, c.seed, p, c.op == gr::collective::reduce_op::average));
              gr::collective::ring_allreduce<gr::codec::none, Transport> sum(t, 1);
              sum.run(std::span<float>(&local, 1));
              wrong = static_cast<std::int64_t>(local);
            }
            // The operation's energy is every rank's estimate; a 1-element sum gathers it.
            float joules = static_cast<float>(energy_j / c.iters);
            {
              gr::collective::ring_allreduce<gr::codec::none, Transport> sum(t, 1);
              sum.run(std::span<float>(&joules, 1));
            }
            if (r == 0)
              print_row(c, {size, n, c.codec_specs[k], rep.algo, p, seconds / c.iters * 1e6,
                            rep.wire_bytes(), rep.raw_bytes, rep.bytes_sent, wrong, joules});
          },
          c.codecs[k]);
    }
  }
}

int run_inproc(const config& c) {
  const int p = c.np > 0 ? c.np : 1;
  gr::transport::inproc_options o;
  o.isolate_peer_failures = c.algo == "ps";  // the server needs it, the ring must not have it
  gr::transport::inproc_world world(p, o);
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(p));
  for (int r = 0; r < p; ++r)
    threads.emplace_back([&, r] {
      try {
        auto t = world.rank(r);
        rank_main(t, c);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  for (auto& th : threads) th.join();
  int rc = 0;
  for (int r = 0; r < p; ++r)
    if (errors[static_cast<std::size_t>(r)]) {
      try {
        std::rethrow_exception(errors[static_cast<std::size_t>(r)]);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "greenreduce-bench: rank %d: %s\n", r, e.what());
      }
      rc = 1;
    }
  return rc;
}

int run_nccl(const config& c) {
#if GREENREDUCE_BENCH_NCCL
  if (c.algo != "ring") throw gr::config_error("--transport nccl runs --algo ring only");
  gr::bench::nccl_bench_config nc;
  nc.sizes = c.sizes;
  nc.codec_specs = c.codec_specs;
  nc.iters = c.iters;
  nc.warmup = c.warmup;
  nc.check = c.check;
  nc.average = c.op == gr::collective::reduce_op::average;
  nc.seed = c.seed;
  nc.devices = c.np;
  nc.energy = c.energy;
  bool started = false;  // the header waits for the first row: no GPU, no table
  gr::bench::run_nccl_bench(nc, [&](const gr::bench::nccl_bench_row& n) {
    if (!started) print_header(c);
    started = true;
    row r{n.size, n.count, n.codec, n.algo, n.np, n.time_us, n.wire, n.raw, n.sent, n.wrong,
          n.joules};
    r.method = n.method;
    print_row(c, r);
  });
  return 0;
#else
  (void)c;
  std::fprintf(stderr,
               "greenreduce-bench: --transport nccl is not available: this binary was built "
               "without CUDA and NCCL (configure with GREENREDUCE_WITH_CUDA=ON where nvcc and "
               "NCCL are installed)\n");
  return 1;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  config c;
  try {
    c = parse(argc, argv);
  } catch (const gr::config_error& e) {
    usage_error(e.what());
  }
  try {
    if (c.transport == "nccl") return run_nccl(c);
    if (c.transport == "inproc") return run_inproc(c);
    return gr::bench::run_tcp(
        argc, argv, c.np, [&](auto& t) { rank_main(t, c); }, c.algo == "ps");
  } catch (const gr::config_error& e) {
    usage_error(e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "greenreduce-bench: %s\n", e.what());
    return 1;
  }
}
