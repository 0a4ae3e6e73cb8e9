// greenreduce_bench_gloo — the baseline: Gloo's gloo::AllreduceRingChunked<float>
// over Gloo's own TCP transport, with the same columns as greenreduce-bench.
//
//   greenreduce_bench_gloo --np 4 --min-bytes 1K --max-bytes 64M --factor 4
//   torchrun/mpirun/srun ... greenreduce_bench_gloo --bytes 64M --json
//
// --np N forks N local ranks that meet through a gloo::rendezvous::FileStore
// in a fresh temporary folder, on 127.0.0.1 (or --addr). Without --np the
// process is one rank of a launched job: world info from the launcher's
// environment (greenreduce::transport::world_from_env), rendezvous through
// greenreduce's store on rank 0 (MASTER_ADDR:MASTER_PORT), and Gloo listens
// on the address greenreduce's tcp transport would choose
// (GREENREDUCE_SOCKET_ADDR, GREENREDUCE_SOCKET_IFNAME, or the route to the
// master).
//
// Columns (rank 0 prints): size (bytes per rank), count (floats), codec
// "gloo", algo "gloo_ring_chunked", np, time_us (mean per allreduce between
// barriers), algbw_GBps = size / time, busbw_GBps = algbw * 2(n-1)/n (GB = 1e9
// bytes), wire_bytes = payload bytes one rank sends per allreduce, which is
// 2(n-1)/n * size for this ring (Gloo exposes no counters, so its few header
// bytes are not included), raw_bytes = what fp32 moves (the same here),
// ratio = raw / wire, wrong = elements that differ from the exact sum in a
// separate checked run.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

// greenreduce first: it includes <utility> before Boost.Asio.
#include "greenreduce/core/env.hpp"
#include "greenreduce/transport/rendezvous.hpp"
#include "greenreduce/transport/store.hpp"

#include <gloo/allreduce_ring_chunked.h>
#include <gloo/barrier_all_to_all.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

namespace grt = greenreduce::transport;
using greenreduce::detail::str;
using clock_type = std::chrono::steady_clock;

namespace {

struct args {
  int np = 0;
  std::vector<std::size_t> sizes;
  int iters = 20;
  int warmup = 5;
  bool json = false;
  std::string addr;
  std::chrono::milliseconds timeout{60000};
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "greenreduce_bench_gloo: %s\n"
               "usage: greenreduce_bench_gloo [--np N] [--bytes S | --min-bytes A --max-bytes B "
               "[--factor F]]\n"
               "         [--iters I] [--warmup W] [--json] [--addr IPV4] [--timeout-ms T]\n"
               "sizes take K/M/G (1000s) or KiB/MiB/GiB suffixes; without --np the ranks come "
               "from torchrun/mpirun/srun\n",
               why.c_str());
  std::exit(2);
}

std::uint64_t bytes_arg(const std::string& name, const std::string& v) {
  return greenreduce::env_bytes(greenreduce::env_source::from_map({{name, v}}), name, 0);
}
long long int_arg(const std::string& name, const std::string& v, long long lo, long long hi) {
  return greenreduce::env_int(greenreduce::env_source::from_map({{name, v}}), name, 0, lo, hi);
}

args parse(int argc, char** argv) {
  args a;
  std::optional<std::uint64_t> bytes, lo, hi;
  std::uint64_t factor = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(k + " needs a value");
      return argv[++i];
    };
    if (k == "--np")
      a.np = static_cast<int>(int_arg(k, val(), 1, 1024));
    else if (k == "--bytes")
      bytes = bytes_arg(k, val());
    else if (k == "--min-bytes")
      lo = bytes_arg(k, val());
    else if (k == "--max-bytes")
      hi = bytes_arg(k, val());
    else if (k == "--factor")
      factor = static_cast<std::uint64_t>(int_arg(k, val(), 2, 1 << 20));
    else if (k == "--iters")
      a.iters = static_cast<int>(int_arg(k, val(), 1, 1 << 24));
    else if (k == "--warmup")
      a.warmup = static_cast<int>(int_arg(k, val(), 0, 1 << 24));
    else if (k == "--json")
      a.json = true;
    else if (k == "--addr")
      a.addr = val();
    else if (k == "--timeout-ms")
      a.timeout = std::chrono::milliseconds(int_arg(k, val(), 1, 86400000));
    else if (k == "-h" || k == "--help")
      usage("help");
    else
      usage("unknown argument " + k);
  }
  if (bytes) {
    a.sizes.push_back(*bytes);
  } else {
    const std::uint64_t from = lo.value_or(4), to = hi.value_or(lo.value_or(64ULL << 20));
    if (from > to) usage("--min-bytes exceeds --max-bytes");
    for (std::uint64_t s = from; s <= to; s *= factor) {
      a.sizes.push_back(s);
      if (s == 0) break;
    }
  }
  for (auto& s : a.sizes) s = std::max<std::size_t>(4, s / 4 * 4);  // whole floats, at least one
  return a;
}

// Gloo's Store over greenreduce's rendezvous store (rank 0 serves it).
class greenreduce_store : public gloo::rendezvous::Store {
 public:
  greenreduce_store(grt::store_client& c, std::chrono::milliseconds timeout)
      : c_(c), timeout_(timeout) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    c_.set("gloo/" + key, std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    const auto v = c_.get("gloo/" + key, timeout_);
    return {v.begin(), v.end()};
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& t) override {
    for (const auto& k : keys) c_.get("gloo/" + k, t);
  }

 private:
  grt::store_client& c_;
  std::chrono::milliseconds timeout_;
};

void print_header(const args& a, int np) {
  if (a.json) return;
  std::printf(
      "# greenreduce_bench_gloo: gloo::AllreduceRingChunked<float> over gloo tcp, np %d, "
      "iters %d, warmup %d\n",
      np, a.iters, a.warmup);
  std::printf("# %12s %12s %6s %18s %4s %12s %11s %11s %12s %12s %6s %6s\n", "size", "count",
              "codec", "algo", "np", "time_us", "algbw_GBps", "busbw_GBps", "wire_bytes",
              "raw_bytes", "ratio", "wrong");
}

void run(const args& a, int rank, int size, gloo::rendezvous::Store& store, const std::string& ip) {
  gloo::transport::tcp::attr attr;
  attr.hostname = ip;
  attr.ai_family = AF_INET;
  auto dev = gloo::transport::tcp::CreateDevice(attr);
  auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
  ctx->setTimeout(a.timeout);
  ctx->connectFullMesh(store, dev);
  if (rank == 0) print_header(a, size);
  gloo::BarrierAllToAll barrier(ctx);

  for (const std::size_t bytes : a.sizes) {
    const std::size_t count = bytes / sizeof(float);
    std::vector<float> data(count, 0.0F);
    gloo::AllreduceRingChunked<float> algo(ctx, {data.data()}, static_cast<int>(count));
    // Checked run: rank r holds (r + 1) * (i % 7 + 1); the sum is exact in fp32.
    for (std::size_t i = 0; i < count; ++i) data[i] = float(rank + 1) * float(i % 7 + 1);
    algo.run();
    std::size_t wrong = 0;
    const float ranks_sum = float(size) * float(size + 1) / 2.0F;
    for (std::size_t i = 0; i < count; ++i) wrong += data[i] != ranks_sum * float(i % 7 + 1);
    // Timed runs on zeros (values stay bounded however many iterations run).
    std::fill(data.begin(), data.end(), 0.0F);
    for (int w = 0; w < a.warmup; ++w) algo.run();
    barrier.run();
    const auto t0 = clock_type::now();
    for (int it = 0; it < a.iters; ++it) algo.run();
    barrier.run();
    const double us =
        std::chrono::duration<double, std::micro>(clock_type::now() - t0).count() / a.iters;
    if (rank != 0) continue;
    const double algbw = double(bytes) / (us * 1e-6) / 1e9;
    const double share = size > 1 ? 2.0 * (size - 1) / size : 0.0;
    const auto wire = static_cast<std::uint64_t>(share * double(bytes));
    const double ratio = wire ? 1.0 : 0.0;
    if (a.json)
      std::printf(
          "{\"size\": %zu, \"count\": %zu, \"codec\": \"gloo\", \"algo\": "
          "\"gloo_ring_chunked\", \"np\": %d, \"time_us\": %.3f, \"algbw_GBps\": %.6f, "
          "\"busbw_GBps\": %.6f, \"wire_bytes\": %llu, \"raw_bytes\": %llu, "
          "\"ratio\": %.4f, \"wrong\": %zu}\n",
          bytes, count, size, us, algbw, algbw * share, (unsigned long long)wire,
          (unsigned long long)wire, ratio, wrong);
    else
      std::printf("  %12zu %12zu %6s %18s %4d %12.2f %11.4f %11.4f %12llu %12llu %6.2f %6zu\n",
                  bytes, count, "gloo", "gloo_ring_chunked", size, us, algbw, algbw * share,
                  (unsigned long long)wire, (unsigned long long)wire, ratio, wrong);
    std::fflush(stdout);
  }
}

// --np N: fork N ranks (before any thread exists), FileStore in a temp folder.
int spawn(const args& a) {
  char tmpl[] = "/tmp/greenreduce-gloo-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  const std::string ip = a.addr.empty() ? "127.0.0.1" : a.addr;
  std::vector<pid_t> pids;
  for (int r = 0; r < a.np; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 0;
      try {
        gloo::rendezvous::FileStore store(dir);
        run(a, r, a.np, store, ip);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "greenreduce_bench_gloo: rank %d: %s\n", r, e.what());
        code = 1;
      }
      std::fflush(stdout);
      ::_exit(code);
    }
    pids.push_back(pid);
  }
  int failed = 0;
  for (auto pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return failed ? 1 : 0;
}

// One rank of a launched job.
int launched(const args& a) {
  const auto env = greenreduce::env_source::process();
  const auto w = grt::world_from_env(env);
  const auto connect_ms = std::chrono::milliseconds(
      greenreduce::env_int(env, "GREENREDUCE_CONNECT_TIMEOUT_MS", 60000, 1, 86400000));
  if (w.size == 1) {
    gloo::rendezvous::FileStore dummy("/tmp");  // a world of one never reads it
    run(a, 0, 1, dummy, "127.0.0.1");
    return 0;
  }
  const std::string master = grt::resolve_ipv4(w.master_addr, "MASTER_ADDR");
  std::string ip =
      a.addr.empty() ? greenreduce::env_string(env, "GREENREDUCE_SOCKET_ADDR") : a.addr;
  if (ip.empty()) {
    const auto ifname = greenreduce::env_string(env, "GREENREDUCE_SOCKET_IFNAME");
    ip = ifname.empty() ? grt::route_ipv4_to(master, w.master_port) : grt::interface_ipv4(ifname);
  }
  std::optional<grt::store_server> server;
  if (w.rank == 0) {
    grt::store_server_options so;
    so.idle_timeout = std::chrono::hours(24);  // clients sit idle while the sizes run
    server.emplace(master, w.master_port, so);
  }
  grt::store_client client(master, w.master_port, connect_ms, a.timeout);
  greenreduce_store store(client, connect_ms);
  run(a, w.rank, w.size, store, ip);
  // Rank 0 keeps the store until everyone has finished with it.
  client.set(str("done/", w.rank), "1");
  if (w.rank == 0)
    for (int r = 0; r < w.size; ++r) client.get(str("done/", r), a.timeout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const args a = parse(argc, argv);
    return a.np > 0 ? spawn(a) : launched(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "greenreduce_bench_gloo: %s\n", e.what());
    return 1;
  }
}
