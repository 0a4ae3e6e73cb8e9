// An ordinary MPI program that checks its own MPI_Allreduce results against
// plain MPI (PMPI_Allreduce, the profiling entry point an interposer cannot
// touch) and against a float64 reference. mpi_dropin_test.cpp runs it under
// mpirun with and without libgreenreduce_mpi.so preloaded.
//
//   mpi_probe SEED MODE        MODE: plain | preload | transport
//
// plain: every call must be bit-identical to PMPI_Allreduce. preload: calls
// the interposer is documented to compress (MPI_SUM of MPI_FLOAT, or of
// MPI_DOUBLE with a lossy codec, on an intra-communicator, at least
// GREENREDUCE_MIN_BYTES) must be within the codec's bound (bench/check.hpp)
// of the exact sum, everything else bit-identical to PMPI_Allreduce.
// transport: tests transport::mpi itself. Each rank prints "FAIL ..." lines;
// rank 0 ends with "probe: C checks, F failed, expect intercepted=I
// nonfinite_fallbacks=N" and the exit status is 1 when anything failed.
#include "greenreduce/transport/mpi.hpp"  // first: it keeps MPI's C++ bindings out

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "check.hpp"
#include "greenreduce/codec/registry.hpp"
#include "greenreduce/core/env.hpp"
#include "greenreduce/transport/mpi.hpp"

namespace gr = greenreduce;

namespace {

int world_rank = 0, world_size = 1;
long checks = 0, failures = 0, expect_intercepted = 0, expect_fallbacks = 0;

void check(bool ok, const std::string& what) {
  ++checks;
  if (ok) return;
  ++failures;
  std::printf("FAIL rank %d: %s\n", world_rank, what.c_str());
  std::fflush(stdout);
}

struct setup {
  bool preload = false;
  gr::codec::any_codec codec = gr::codec::none{};
  bool lossy = false;
  bool ef = false;
  std::uint64_t min_bytes = 64 * 1024;
  std::uint64_t seed = 1;
};

setup S;

bool compressed(MPI_Datatype t, int count) {
  if (!S.preload || count <= 0) return false;
  const std::uint64_t size = t == MPI_FLOAT ? 4 : 8;
  if (t == MPI_DOUBLE && !S.lossy) return false;
  return static_cast<std::uint64_t>(count) * size >= S.min_bytes;
}

// |got_i - exact_i| within the bound of bench/check.hpp for a p-rank sum; the
// inputs of rank q are input_value(seed, q, i). `extra_u`: relative rounding
// of the inputs (doubles reduced in float); EF adds one encode per element.
void check_sum(const std::string& name, const std::vector<double>& got, std::uint64_t seed, int p,
               bool lossy_path, double extra_u) {
  const std::size_t n = got.size();
  double mmax = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double m = 0;
    for (int q = 0; q < p; ++q) m += std::fabs(gr::bench::input_value(seed, q, i));
    mmax = std::max(mmax, m);
  }
  const double u = std::ldexp(1.0, -24);
  const double gamma = 2.0 * p * u / (1 - 2.0 * p * u);
  double d = 0;
  if (lossy_path) d = gr::codec::encode_error_bound(S.codec, 1.1 * mmax);
  const double encodes = S.ef ? p + 1 : p;
  std::size_t wrong = 0, first = n;
  for (std::size_t i = 0; i < n; ++i) {
    double exact = 0, mag = 0;
    for (int q = 0; q < p; ++q) {
      const double v = gr::bench::input_value(seed, q, i);
      exact += v;
      mag += std::fabs(v);
    }
    const double bound = gamma * (mag + encodes * d) + encodes * d + extra_u * mag;
    if (!(std::fabs(got[i] - exact) <= bound)) {
      if (first == n) first = i;
      ++wrong;
    }
  }
  check(wrong == 0,
        gr::detail::str(name, ": ", wrong, " of ", n, " elements beyond the bound, first at ",
                        first, first < n ? gr::detail::str(" (got ", got[first], ")") : ""));
}

template <class T>
std::vector<T> inputs(std::uint64_t seed, int rank, int n) {
  std::vector<T> x(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i)
    x[static_cast<std::size_t>(i)] =
        static_cast<T>(gr::bench::input_value(seed, rank, static_cast<std::size_t>(i)));
  return x;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// One MPI_Allreduce(MPI_SUM) of T on `comm` (rank r of p there), checked.
template <class T>
void sum_case(const char* label, MPI_Comm comm, int count, bool in_place, std::uint64_t salt) {
  const MPI_Datatype t = sizeof(T) == 4 ? MPI_FLOAT : MPI_DOUBLE;
  int r = 0, p = 1;
  MPI_Comm_rank(comm, &r);
  MPI_Comm_size(comm, &p);
  const std::uint64_t seed = S.seed + salt;
  const auto x = inputs<T>(seed, r, count);
  std::vector<T> plain(x.size()), got(x.size(), T(-7));
  PMPI_Allreduce(x.data(), plain.data(), count, t, MPI_SUM, comm);
  auto send = x;
  int rc = 0;
  if (in_place) {
    got = x;
    rc = MPI_Allreduce(MPI_IN_PLACE, got.data(), count, t, MPI_SUM, comm);
  } else {
    rc = MPI_Allreduce(send.data(), got.data(), count, t, MPI_SUM, comm);
  }
  const std::string name = gr::detail::str(label, " count=", count, in_place ? " in place" : "",
                                           sizeof(T) == 4 ? " MPI_FLOAT" : " MPI_DOUBLE", " p=", p);
  check(rc == MPI_SUCCESS, name + ": MPI_Allreduce returned an error");
  check(same_bits(send, x), name + ": the send buffer changed");
  if (compressed(t, count)) {
    ++expect_intercepted;
    std::vector<double> g(got.begin(), got.end());
    check_sum(name, g, seed, p, S.lossy, sizeof(T) == 8 ? 2 * std::ldexp(1.0, -24) : 0.0);
  } else {
    check(same_bits(got, plain), name + ": not bit-identical to PMPI_Allreduce");
  }
}

template <class T>
void exact_case(const char* label, MPI_Datatype t, MPI_Op op, MPI_Comm comm, int count,
                bool in_place) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  std::vector<T> x(static_cast<std::size_t>(count)), plain(x.size()), got(x.size());
  for (int i = 0; i < count; ++i)
    x[static_cast<std::size_t>(i)] =
        static_cast<T>(gr::bench::input_value(S.seed + 99, r, static_cast<std::size_t>(i)) * 1000);
  PMPI_Allreduce(x.data(), plain.data(), count, t, op, comm);
  if (in_place) {
    got = x;
    MPI_Allreduce(MPI_IN_PLACE, got.data(), count, t, op, comm);
  } else {
    MPI_Allreduce(x.data(), got.data(), count, t, op, comm);
  }
  check(same_bits(got, plain), gr::detail::str(label, " count=", count, in_place ? " in place" : "",
                                               ": not bit-identical to PMPI_Allreduce"));
}

void allreduce_cases() {
  // Float sums around the threshold, odd and large; out of place and in place.
  const int t4 = static_cast<int>(S.min_bytes / 4);
  for (int count : {0, 1, 17, t4 - 1, t4, t4 + 1, 1000003})
    sum_case<float>("sum", MPI_COMM_WORLD, count, false, 1);
  for (int count : {1, t4 + 1, 1000003}) sum_case<float>("sum", MPI_COMM_WORLD, count, true, 2);
  // Doubles: compressed (in float) only with a lossy codec.
  sum_case<double>("sum", MPI_COMM_WORLD, 100003, false, 3);
  sum_case<double>("sum", MPI_COMM_WORLD, 100003, true, 4);
  // The same buffer again and again (error feedback keeps per-buffer state).
  for (int k = 0; k < 3; ++k) sum_case<float>("repeat", MPI_COMM_WORLD, 50001, false, 5);
  // Other types and ops: MPI's own results, bit for bit.
  exact_case<int>("MPI_INT sum", MPI_INT, MPI_SUM, MPI_COMM_WORLD, 100003, false);
  exact_case<long long>("MPI_LONG_LONG sum", MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD, 100003, true);
  exact_case<float>("MPI_FLOAT max", MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD, 100003, false);
  exact_case<float>("MPI_FLOAT min in place", MPI_FLOAT, MPI_MIN, MPI_COMM_WORLD, 100003, true);
  exact_case<double>("MPI_DOUBLE prod", MPI_DOUBLE, MPI_PROD, MPI_COMM_WORLD, 100003, false);

  // A sub-communicator (created, used, freed: the private duplicate goes with it).
  MPI_Comm half;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank % 2, world_rank, &half);
  sum_case<float>("split", half, 100003, false, 6);
  sum_case<float>("split", half, 100003, true, 7);
  MPI_Comm_free(&half);

  // An inter-communicator between the even and the odd ranks: passed through.
  if (world_size >= 2) {
    MPI_Comm local, inter;
    MPI_Comm_split(MPI_COMM_WORLD, world_rank % 2, world_rank, &local);
    MPI_Intercomm_create(local, 0, MPI_COMM_WORLD, world_rank % 2 == 0 ? 1 : 0, 77, &inter);
    exact_case<float>("inter-communicator MPI_FLOAT sum", MPI_FLOAT, MPI_SUM, inter, 100003, false);
    MPI_Comm_free(&inter);
    MPI_Comm_free(&local);
  }

  // A NaN on one rank: every rank must see MPI's own answer (NaN propagates).
  {
    const int count = 100003;
    auto x = inputs<float>(S.seed + 8, world_rank, count);
    if (world_rank == world_size - 1) x[5] = std::numeric_limits<float>::quiet_NaN();
    if (world_rank == 0) x[9] = std::numeric_limits<float>::infinity();
    std::vector<float> plain(x.size()), got(x.size());
    PMPI_Allreduce(x.data(), plain.data(), count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(x.data(), got.data(), count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    check(std::isnan(got[5]) && std::isinf(got[9]),
          gr::detail::str("non-finite: element 5 is ", got[5], " and 9 is ", got[9],
                          " (plain MPI: ", plain[5], ", ", plain[9], ")"));
    if (compressed(MPI_FLOAT, count) && S.lossy) {
      ++expect_fallbacks;
      check(same_bits(got, plain),
            "non-finite input with a lossy codec: not bit-identical to PMPI_Allreduce");
    } else if (compressed(MPI_FLOAT, count)) {
      ++expect_intercepted;
    } else {
      check(same_bits(got, plain), "non-finite input: not bit-identical to PMPI_Allreduce");
    }
  }
}

template <class F>
bool throws_with(F f, const char* kind, const char* part) {
  try {
    f();
  } catch (const gr::error& e) {
    const std::string w = e.what();
    return w.find(kind) == 0 && w.find(part) != std::string::npos;
  }
  return false;
}

void transport_cases() {
  MPI_Comm mine;
  PMPI_Comm_dup(MPI_COMM_WORLD, &mine);
  {
    gr::transport::mpi t(mine);
    const int p = t.size(), r = t.rank();
    check(r == world_rank && p == world_size, "transport rank/size differ from MPI_COMM_WORLD's");
    // Messages of every length 0..40 to the right, FIFO, with exact counters.
    std::uint64_t expect_sent = 0, expect_recv = 0;
    if (p > 1) {
      const int right = (r + 1) % p, left = (r + p - 1) % p;
      std::vector<std::vector<std::byte>> out;
      for (int len = 0; len <= 40; ++len) {
        std::vector<std::byte> m(static_cast<std::size_t>(len));
        for (int i = 0; i < len; ++i)
          m[static_cast<std::size_t>(i)] = std::byte(static_cast<unsigned char>(r * 31 + len + i));
        out.push_back(std::move(m));
      }
      std::vector<gr::transport::mpi::send_request> sends;
      for (auto& m : out) {
        sends.push_back(t.isend(right, m));
        expect_sent += m.size();
      }
      for (int len = 0; len <= 40; ++len) {
        std::vector<std::byte> in(64);
        const std::size_t got = t.recv(left, in);
        expect_recv += got;
        bool ok = got == static_cast<std::size_t>(len);
        for (int i = 0; ok && i < len; ++i)
          ok = in[static_cast<std::size_t>(i)] ==
               std::byte(static_cast<unsigned char>(left * 31 + len + i));
        check(ok, gr::detail::str("transport message ", len, " from rank ", left, " arrived as ",
                                  got, " wrong bytes"));
      }
      for (auto& s : sends) t.wait(s);
      std::vector<std::byte> a(1000, std::byte{1}), b(1000);
      check(t.sendrecv(right, a, left, b) == 1000, "sendrecv length");
      expect_sent += 1000;
      expect_recv += 1000;
    }
    check(t.bytes_sent() == expect_sent && t.bytes_received() == expect_recv,
          gr::detail::str("transport counters ", t.bytes_sent(), "/", t.bytes_received(),
                          ", expected ", expect_sent, "/", expect_recv));
    check(throws_with([&] { (void)t.isend(r, {}); }, "config_error", "cannot address peer"),
          "isend to self is not a config_error");
    // A message longer than the receive buffer breaks the transport with peer_error.
    if (p > 1) {
      const int right = (r + 1) % p, left = (r + p - 1) % p;
      std::vector<std::byte> big(100), small(10);
      auto s = t.isend(right, big);
      check(throws_with([&] { (void)t.recv(left, small); }, "peer_error",
                        "longer than the receive buffer"),
            "an over-long message is not a peer_error naming it");
      check(throws_with([&] { t.wait(s); }, "peer_error", "unusable"),
            "the transport is usable after an error");
    }
  }
  PMPI_Barrier(MPI_COMM_WORLD);
  PMPI_Comm_free(&mine);
  // A bounded wait on a message nobody sends is a timeout_error naming the bound.
  if (world_size > 1) {
    MPI_Comm other;
    PMPI_Comm_dup(MPI_COMM_WORLD, &other);
    {
      gr::transport::mpi_options o;
      o.timeout = std::chrono::milliseconds(200);
      gr::transport::mpi t(other, o);
      std::vector<std::byte> in(8);
      check(throws_with([&] { (void)t.recv((world_rank + 1) % world_size, in); }, "timeout_error",
                        "did not complete within 200 ms"),
            "an unanswered recv is not a timeout_error naming its bound");
    }
    PMPI_Barrier(MPI_COMM_WORLD);
    PMPI_Comm_free(&other);
  }
  check(throws_with([] { gr::transport::mpi t(MPI_COMM_NULL); }, "config_error", "MPI_COMM_NULL"),
        "MPI_COMM_NULL is not a config_error");
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  const std::string mode = argc > 2 ? argv[2] : "plain";
  S.seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1;
  const auto env = gr::env_source::process();
  S.preload = mode == "preload";
  if (S.preload) {
    S.codec = gr::codec::parse_codec(gr::env_string(env, "GREENREDUCE_CODEC", "none"));
    S.lossy = !std::holds_alternative<gr::codec::none>(S.codec);
    S.ef = gr::env_bool(env, "GREENREDUCE_ERROR_FEEDBACK", false);
    S.min_bytes = gr::env_bytes(env, "GREENREDUCE_MIN_BYTES", 64 * 1024);
  }
  if (mode == "transport")
    transport_cases();
  else
    allreduce_cases();
  long mine[2] = {checks, failures}, all[2] = {0, 0};
  PMPI_Allreduce(mine, all, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  if (world_rank == 0) {
    std::printf("probe: %ld checks, %ld failed, expect intercepted=%ld nonfinite_fallbacks=%ld\n",
                all[0], all[1], expect_intercepted, expect_fallbacks);
    std::fflush(stdout);
  }
  MPI_Finalize();
  return all[1] == 0 ? 0 : 1;
}
