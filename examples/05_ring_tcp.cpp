// 05_ring_tcp — the ring allreduce of example 04, as separate processes over TCP.
//
// Nothing in the collective changes: ring_allreduce<Codec, Transport> is
// written against the transport concept (transport/concept.hpp: rank, size,
// isend/irecv/wait, byte counters), and `transport::tcp` satisfies it as
// `transport::inproc` does. What changes is how ranks find each other. Each
// process learns its rank, the world size and a meeting point from its
// launcher's environment (transport/rendezvous.hpp), first match wins:
//
//   torchrun    RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//   Open MPI    OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE (+ MASTER_ADDR/MASTER_PORT)
//   PMI, Slurm  PMI_RANK/PMI_SIZE, SLURM_PROCID/SLURM_NTASKS (+ the same pair)
//
// Rank 0 serves a small key-value store at MASTER_ADDR:MASTER_PORT; every rank
// listens on a fresh port, publishes "ip:port" there, reads everyone else's
// and connects a full mesh (transport/tcp.hpp). `tcp_options::from_env()`
// does all of it, and the constructor returns once the mesh is up.
//
// Three ways to launch 4 ranks on this machine:
//
//   1. Self-spawn, like greenreduce-bench --np: with no launcher variables set,
//      the program forks 4 copies of itself with torchrun's variables and a
//      free loopback port (bench/launch.hpp), and exits with the worst status.
//        $ ./build/examples/05_ring_tcp --np 4 --n 1000000 --codec int8
//
//   2. mpirun (Open MPI sets OMPI_COMM_WORLD_*; the meeting point comes from
//      MASTER_ADDR/MASTER_PORT, exported to every rank with -x):
//        $ export MASTER_ADDR=127.0.0.1 MASTER_PORT=29500
//        $ mpirun -np 4 -x MASTER_ADDR -x MASTER_PORT ./build/examples/05_ring_tcp
//      (as root add --allow-run-as-root; on a 2-core machine --oversubscribe;
//      across hosts MASTER_ADDR is rank 0's host and GREENREDUCE_SOCKET_IFNAME
//      picks the interface to listen on)
//
//   3. torchrun, or its environment written by hand, one process per rank:
//        $ torchrun --nproc_per_node 4 --no_python ./build/examples/05_ring_tcp
//        $ export WORLD_SIZE=4 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500
//        $ for r in 0 1 2 3; do RANK=$r ./build/examples/05_ring_tcp & done; wait
//
// Every rank checks its result against the float64 mean it recomputes from
// the seed (each rank's input is a pure function of seed and rank), the ranks
// allgather their byte counts and energy estimates, and rank 0 prints the
// job's totals. A failed check exits 1; a dead or silent peer is a typed
// error (peer_error, timeout_error after GREENREDUCE_TIMEOUT_MS) on every
// other rank, never a hang.
#include <greenreduce/greenreduce.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "launch.hpp"  // bench/launch.hpp: run_tcp spawns the ranks when no launcher did

namespace gr = greenreduce;

namespace {

struct options {
  int np = 0;  // 0: the launcher's world size, or 4 when self-spawning
  std::size_t n = 1 << 20;
  std::string codec = "int8";
  std::string profile = "datacenter_ethernet";
  int iters = 3;
  std::uint64_t seed = 5;
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
    } else if (a == "--codec" && v) {
      o.codec = v, ++i;
    } else if (a == "--profile" && v) {
      o.profile = v, ++i;
    } else if (a == "--iters" && v) {
      o.iters = std::atoi(v), ++i;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--np P] [--n N] [--codec SPEC] [--profile NAME] [--iters K]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  return o;
}

/// Rank r's gradient: a pure function of (seed, rank), so any rank can rebuild any other's.
std::vector<float> gradient_of(int rank, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed * 7919 + static_cast<std::uint64_t>(rank));
  std::uniform_real_distribution<float> u(-1.0F, 1.0F);
  std::vector<float> g(n);
  for (auto& v : g) v = u(gen);
  return g;
}

/// Elements of `result` (the average over p ranks) beyond the codec's bound.
template <class Codec>
std::size_t count_wrong(const Codec& codec, std::span<const float> result, int p,
                        std::uint64_t seed) {
  std::vector<std::vector<float>> in;
  for (int q = 0; q < p; ++q) in.push_back(gradient_of(q, result.size(), seed));
  double mmax = 0;
  for (std::size_t i = 0; i < result.size(); ++i) {
    double mag = 0;
    for (const auto& x : in) mag += std::abs(x[i]);
    mmax = std::max(mmax, mag);
  }
  const gr::collective::ring_error_bound bound(codec, p, mmax, /*average=*/true);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < result.size(); ++i) {
    double exact = 0, mag = 0;
    for (const auto& x : in) {
      exact += x[i];
      mag += std::abs(x[i]);
    }
    exact /= p;
    if (!(std::abs(result[i] - exact) <= bound(mag, exact))) ++wrong;
  }
  return wrong;
}

/// What each rank tells the others at the end (plain bytes through allgather).
struct figures {
  std::uint64_t sent = 0, received = 0, wrong = 0;
  double seconds = 0, joules = 0;
};

/// One rank's whole program, for a transport `t` that is already connected.
template <gr::codec::codec C>
bool rank_main(gr::transport::tcp& t, const C& codec, const options& o) {
  const gr::energy::model model(o.profile);
  gr::collective::ring_options ro;
  ro.seed = o.seed;
  ro.annotate = [&](gr::report& r) { model.annotate(r); };
  gr::collective::ring_allreduce<C, gr::transport::tcp> ring(t, o.n, codec, ro);

  // A training loop would call run() once per step on a new gradient; the
  // buffers were sized by the constructor, so run() allocates nothing.
  figures mine;
  std::vector<float> grad;
  for (int it = 0; it < o.iters; ++it) {
    grad = gradient_of(t.rank(), o.n, o.seed);
    const gr::report rep = ring.run(grad, gr::collective::reduce_op::average);
    mine.sent += rep.bytes_sent;
    mine.received += rep.bytes_received;
    mine.seconds += rep.seconds;
    mine.joules += rep.energy.total_j();
  }
  mine.wrong = count_wrong(codec, grad, t.size(), o.seed);

  // Gather everyone's figures: a collective over the same transport.
  gr::collective::allgather<gr::transport::tcp> ag(t, sizeof(figures));
  const auto blocks = ag.run(std::as_bytes(std::span<const figures>(&mine, 1)));
  figures job;
  for (const auto& b : blocks) {
    figures f;
    std::memcpy(&f, b.data(), sizeof f);
    job.sent += f.sent;
    job.received += f.received;
    job.wrong += f.wrong;
    job.joules += f.joules;
    job.seconds = std::max(job.seconds, f.seconds);
  }
  std::printf(
      "rank %d/%d listening on %s: %d x allreduce of %zu floats with %s, sent %llu B, "
      "%zu elements beyond the bound\n",
      t.rank(), t.size(), t.listen_address().c_str(), o.iters, o.n,
      std::string(codec.name()).c_str(), static_cast<unsigned long long>(mine.sent),
      static_cast<std::size_t>(mine.wrong));
  bool ok = mine.wrong == 0 && job.sent == job.received;
  if (t.rank() == 0) {
    std::printf(
        "job: %llu bytes sent = %llu received, slowest rank %.4f s, %.4g J "
        "(estimate, profile %s), %llu wrong elements: %s\n",
        static_cast<unsigned long long>(job.sent), static_cast<unsigned long long>(job.received),
        job.seconds, job.joules, o.profile.c_str(), static_cast<unsigned long long>(job.wrong),
        job.wrong == 0 && ok ? "all checks passed" : "FAILED");
    ok = ok && job.wrong == 0;
  }
  std::fflush(stdout);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    options o = parse(argc, argv);
    if (!gr::bench::under_launcher() && o.np == 0) o.np = 4;
    const auto codec = gr::codec::parse_codec(o.codec);  // a bad spec fails before any spawn
    bool ok = true;
    // Under a launcher: this process is one rank and the lambda runs once.
    // Otherwise: run_tcp starts o.np ranks of this program and waits for them.
    const int worst = gr::bench::run_tcp(argc, argv, o.np, [&](gr::transport::tcp& t) {
      ok = std::visit([&](const auto& c) { return rank_main(t, c, o); }, codec);
    });
    return worst != 0 ? worst : ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "05_ring_tcp: %s\n", e.what());
    return 1;
  }
}
