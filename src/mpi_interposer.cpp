// libgreenreduce_mpi.so — MPI_Allreduce through greenreduce's compressed ring,
// for unmodified MPI programs:
//
//   mpirun -np 4 -x LD_PRELOAD=/path/libgreenreduce_mpi.so -x GREENREDUCE_CODEC=int8 ./app
//
// docs/dropin.md is the reference (rules, variables, report, limits). In short:
// an MPI_Allreduce with MPI_SUM on an intra-communicator, of MPI_FLOAT, or of
// MPI_DOUBLE with a codec other than none (reduced in float, converted back),
// with count * type size >= GREENREDUCE_MIN_BYTES, runs
// collective::ring_allreduce over transport::mpi on a private duplicate of the
// communicator. Everything else goes to PMPI_Allreduce untouched. With a lossy
// codec the ranks first agree (one 4-byte PMPI_Allreduce) that every value is
// finite and small enough that no partial sum overflows float; otherwise the
// call is passed to PMPI_Allreduce too, so NaN/Inf propagate as MPI defines.
// MPI_Iallreduce is passed through (counted), never compressed.
#include "greenreduce/transport/mpi.hpp"  // first: it keeps MPI's C++ bindings out

#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "any_ring.hpp"
#include "greenreduce/codec/registry.hpp"
#include "greenreduce/collective/ring_allreduce.hpp"
#include "greenreduce/core/env.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/core/report.hpp"
#include "greenreduce/energy/model.hpp"
#include "greenreduce/transport/mpi.hpp"

#define GR_EXPORT extern "C" __attribute__((visibility("default")))

namespace gr = greenreduce;

namespace {

// ------------------------------------------------------------------ settings
struct settings {
  std::optional<gr::codec::any_codec> codec;  // unset: pass everything through
  std::string codec_spec;
  std::uint64_t min_bytes = 64 * 1024;
  bool report = false;
  bool error_feedback = false;
  std::size_t ef_entries = 16;
  std::size_t segment_bytes = 0;  // the ring's automatic choice; measured: docs/dropin.md
  std::chrono::milliseconds timeout{0};
  gr::energy::coefficients energy;
  std::string energy_profile;
};

settings read_settings(const gr::env_source& env) {
  settings s;
  s.codec_spec = gr::env_string(env, "GREENREDUCE_CODEC");
  if (!s.codec_spec.empty()) {
    try {
      s.codec = gr::codec::parse_codec(s.codec_spec);
    } catch (const gr::config_error& e) {
      const std::string w = e.what();
      throw gr::config_error(gr::detail::str("GREENREDUCE_CODEC=\"", s.codec_spec,
                                             "\" is invalid: ", w.substr(w.find(": ") + 2)));
    }
  }
  s.min_bytes = gr::env_bytes(env, "GREENREDUCE_MIN_BYTES", s.min_bytes);
  s.report = gr::env_bool(env, "GREENREDUCE_REPORT", false);
  s.error_feedback = gr::env_bool(env, "GREENREDUCE_ERROR_FEEDBACK", false);
  s.ef_entries =
      static_cast<std::size_t>(gr::env_int(env, "GREENREDUCE_EF_ENTRIES", 16, 1, 1 << 20));
  s.segment_bytes = static_cast<std::size_t>(
      gr::env_bytes(env, "GREENREDUCE_SEGMENT_BYTES", s.segment_bytes, std::uint64_t{1} << 30));
  if (s.segment_bytes != 0 && s.segment_bytes < 4)
    gr::detail::bad_env("GREENREDUCE_SEGMENT_BYTES", std::to_string(s.segment_bytes),
                        "a byte count of at least 4, or 0 (automatic)");
  s.timeout = std::chrono::milliseconds(
      gr::env_int(env, "GREENREDUCE_TIMEOUT_MS", 0, 0, 24LL * 3600 * 1000));
  s.energy = gr::energy::coefficients_from_env(env);
  s.energy_profile = gr::env_string(env, gr::energy::env_names::profile,
                                    std::string(gr::energy::profiles[0].name));
  return s;
}

using ring_base = gr::dropin::any_ring<gr::transport::mpi>;

std::shared_ptr<ring_base> make_ring(const gr::codec::any_codec& c, gr::transport::mpi& t,
                                     std::size_t n, bool error_feedback,
                                     std::size_t segment_bytes) {
  gr::collective::ring_options o;
  o.error_feedback = error_feedback;
  o.segment_bytes = segment_bytes;
  return gr::dropin::make_ring(c, t, n, o);
}

// ------------------------------------------------------------------ state
struct comm_state {
  MPI_Comm user = MPI_COMM_NULL;
  MPI_Comm dup = MPI_COMM_NULL;
  std::unique_ptr<gr::transport::mpi> t;
  std::shared_ptr<ring_base> shared;  // no error feedback; grows to the largest count
  std::vector<float> scratch;         // MPI_DOUBLE in float
  std::string broken;
  std::mutex mu;
};

// Error-feedback residuals live in ring objects keyed by (input buffer,
// count, datatype, communicator), least recently used first out.
using ef_key = std::tuple<const void*, int, MPI_Datatype, comm_state*>;

struct stats {
  std::uint64_t intercepted = 0, passed = 0, fallbacks = 0, iallreduce = 0;
  std::uint64_t raw_bytes = 0, uncompressed_wire = 0;
  std::uint64_t ef_evicted = 0;
  gr::report total;
};

struct globals {
  std::mutex mu;
  bool ready = false;
  settings cfg;
  int keyval = MPI_KEYVAL_INVALID;
  std::set<comm_state*> comms;
  std::list<std::pair<ef_key, std::shared_ptr<ring_base>>> lru;  // front: most recent
  std::map<ef_key, decltype(lru)::iterator> lru_index;
  stats st;
};

// Never destroyed: nothing may run after the program's static destructors.
globals& G() {
  static auto* g = new globals;
  return *g;
}

int world_rank() {
  int r = -1, init = 0, fin = 0;
  PMPI_Initialized(&init);
  PMPI_Finalized(&fin);
  if (init && !fin) PMPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

void say(const std::string& text) {
  std::fprintf(stderr, "greenreduce (rank %d): %s\n", world_rank(), text.c_str());
  std::fflush(stderr);
}

// Frees what greenreduce holds for one user communicator. Caller holds no lock.
void release(comm_state* s) {
  {
    auto& g = G();
    std::lock_guard lk(g.mu);
    g.comms.erase(s);
    for (auto it = g.lru.begin(); it != g.lru.end();) {
      if (std::get<3>(it->first) == s) {
        g.lru_index.erase(it->first);
        it = g.lru.erase(it);
      } else {
        ++it;
      }
    }
  }
  s->shared.reset();
  s->t.reset();
  if (s->dup != MPI_COMM_NULL) PMPI_Comm_free(&s->dup);
  delete s;
}

int delete_attr(MPI_Comm, int, void* value, void*) {
  release(static_cast<comm_state*>(value));
  return MPI_SUCCESS;
}

// The state of `comm`, created (PMPI_Comm_dup, collective) on first use.
comm_state* state_for(MPI_Comm comm) {
  auto& g = G();
  void* value = nullptr;
  int found = 0;
  PMPI_Comm_get_attr(comm, g.keyval, &value, &found);
  if (found) return static_cast<comm_state*>(value);
  auto s = std::make_unique<comm_state>();
  s->user = comm;
  if (PMPI_Comm_dup(comm, &s->dup) != MPI_SUCCESS)
    throw gr::peer_error("MPI_Comm_dup of the caller's communicator failed");
  gr::transport::mpi_options o;
  o.timeout = g.cfg.timeout;
  s->t = std::make_unique<gr::transport::mpi>(s->dup, o);
  PMPI_Comm_set_attr(comm, g.keyval, s.get());
  std::lock_guard lk(g.mu);
  g.comms.insert(s.get());
  return s.release();
}

std::shared_ptr<ring_base> ring_for(comm_state& s, const void* in, int count, MPI_Datatype type) {
  auto& g = G();
  const auto n = static_cast<std::size_t>(count);
  if (!g.cfg.error_feedback) {
    if (!s.shared || s.shared->capacity() < n) {
      s.shared.reset();  // free the old buffers before allocating the new ones
      s.shared = make_ring(*g.cfg.codec, *s.t, n, false, g.cfg.segment_bytes);
    }
    return s.shared;
  }
  const ef_key key{in, count, type, &s};
  {
    std::lock_guard lk(g.mu);
    if (auto it = g.lru_index.find(key); it != g.lru_index.end()) {
      g.lru.splice(g.lru.begin(), g.lru, it->second);
      return it->second->second;
    }
  }
  auto ring = make_ring(*g.cfg.codec, *s.t, n, true, g.cfg.segment_bytes);
  std::lock_guard lk(g.mu);
  g.lru.emplace_front(key, ring);
  g.lru_index[key] = g.lru.begin();
  while (g.lru.size() > g.cfg.ef_entries) {
    g.lru_index.erase(g.lru.back().first);
    g.lru.pop_back();
    ++g.st.ef_evicted;
  }
  return ring;
}

bool is_none(const gr::codec::any_codec& c) {
  return std::holds_alternative<gr::codec::none>(c);
}

// Whether this call goes through greenreduce (the same answer on every rank
// of a correct program: it depends only on arguments MPI requires to match).
bool intercept(const void* sendbuf, const void* recvbuf, int count, MPI_Datatype type, MPI_Op op,
               MPI_Comm comm) {
  auto& g = G();
  if (!g.ready || !g.cfg.codec || op != MPI_SUM || count <= 0 || comm == MPI_COMM_NULL)
    return false;
  std::size_t elem = 0;
  if (type == MPI_FLOAT)
    elem = sizeof(float);
  else if (type == MPI_DOUBLE && !is_none(*g.cfg.codec))
    elem = sizeof(double);
  else
    return false;
  if (static_cast<std::uint64_t>(count) * elem < g.cfg.min_bytes) return false;
  if (recvbuf == MPI_IN_PLACE || sendbuf == recvbuf) return false;  // erroneous: MPI says so
  int inter = 0;
  if (PMPI_Comm_test_inter(comm, &inter) != MPI_SUCCESS || inter) return false;
  return true;
}

template <class T>
int finite_and_small(const T* x, std::size_t n, int p) {
  // No partial sum of p such values can overflow float.
  const double lim = static_cast<double>(FLT_MAX) / (2.0 * p);
  for (std::size_t i = 0; i < n; ++i)
    if (!(std::fabs(static_cast<double>(x[i])) <= lim)) return 0;
  return 1;
}

int fail(MPI_Comm comm, int code, const std::string& text) {
  say(text);
  PMPI_Comm_call_errhandler(comm, code);
  return code;
}

int compressed(const void* sendbuf, void* recvbuf, int count, MPI_Datatype type, MPI_Op op,
               MPI_Comm comm) {
  auto& g = G();
  const auto n = static_cast<std::size_t>(count);
  const bool dbl = type == MPI_DOUBLE;
  const void* in = sendbuf == MPI_IN_PLACE ? recvbuf : sendbuf;
  const char* what = dbl ? "MPI_DOUBLE" : "MPI_FLOAT";
  comm_state* s = nullptr;
  try {
    s = state_for(comm);
  } catch (const std::exception& e) {
    return fail(comm, MPI_ERR_OTHER, e.what());
  }
  std::unique_lock lk(s->mu);
  if (!s->broken.empty())
    return fail(comm, MPI_ERR_OTHER,
                gr::detail::str("MPI_Allreduce on a communicator unusable after an earlier "
                                "greenreduce error: ",
                                s->broken));
  try {
    if (!is_none(*g.cfg.codec)) {
      int ok = dbl ? finite_and_small(static_cast<const double*>(in), n, s->t->size())
                   : finite_and_small(static_cast<const float*>(in), n, s->t->size());
      int all = 0;
      if (PMPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, s->dup) != MPI_SUCCESS)
        throw gr::peer_error("the finiteness vote (PMPI_Allreduce of one int) failed");
      if (!all) {
        lk.unlock();
        {
          std::lock_guard glk(g.mu);
          ++g.st.fallbacks;
          ++g.st.passed;
        }
        return PMPI_Allreduce(sendbuf, recvbuf, count, type, op, comm);
      }
    }
    auto ring = ring_for(*s, in, count, type);
    std::span<float> work;
    if (dbl) {
      s->scratch.resize(n);
      const auto* d = static_cast<const double*>(in);
      for (std::size_t i = 0; i < n; ++i) s->scratch[i] = static_cast<float>(d[i]);
      work = std::span<float>(s->scratch.data(), n);
    } else {
      if (in != recvbuf) std::memcpy(recvbuf, in, n * sizeof(float));
      work = std::span<float>(static_cast<float*>(recvbuf), n);
    }
    gr::report rep = ring->run(work, gr::collective::reduce_op::sum);
    if (dbl) {
      auto* d = static_cast<double*>(recvbuf);
      for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<double>(s->scratch[i]);
    }
    const gr::energy::model model(g.cfg.energy);
    model.annotate(rep);
    const std::uint64_t scale = dbl ? 2 : 1;  // the caller's datatype, not float
    std::lock_guard glk(g.mu);
    ++g.st.intercepted;
    g.st.raw_bytes += rep.raw_bytes * scale;
    g.st.uncompressed_wire += 2 * rep.raw_bytes * scale;
    g.st.total += rep;
    return MPI_SUCCESS;
  } catch (const gr::mismatch_error& e) {  // nothing moved: the communicator stays usable
    lk.unlock();
    return fail(
        comm, MPI_ERR_OTHER,
        gr::detail::str("MPI_Allreduce(count=", count, ", ", what, ", MPI_SUM): ", e.what()));
  } catch (const std::bad_alloc&) {
    s->broken = "out of memory";
    lk.unlock();
    return fail(comm, MPI_ERR_NO_MEM,
                gr::detail::str("MPI_Allreduce(count=", count, ", ", what,
                                ", MPI_SUM): out of memory for the compressed ring"));
  } catch (const std::exception& e) {
    s->broken = e.what();
    lk.unlock();
    return fail(
        comm, MPI_ERR_OTHER,
        gr::detail::str("MPI_Allreduce(count=", count, ", ", what, ", MPI_SUM): ", e.what()));
  }
}

// Runs once after PMPI_Init*: reads the settings, checks that every rank read
// the same ones, and prepares the attribute key. Aborts the job on an error.
void setup() {
  auto& g = G();
  try {
    g.cfg = read_settings(gr::env_source::process());
  } catch (const std::exception& e) {
    say(gr::detail::str(e.what(), "; aborting (MPI_Abort with error code 2)"));
    PMPI_Abort(MPI_COMM_WORLD, 2);
  }
  const std::string mine = gr::detail::str("GREENREDUCE_CODEC=\"", g.cfg.codec_spec,
                                           "\" GREENREDUCE_MIN_BYTES=", g.cfg.min_bytes,
                                           " GREENREDUCE_ERROR_FEEDBACK=", g.cfg.error_feedback);
  const int h = static_cast<int>(std::hash<std::string>{}(mine)&0x3fffffff);
  int in[2] = {h, -h}, out[2] = {0, 0};
  PMPI_Allreduce(in, out, 2, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (out[0] != -out[1]) {  // min != max
    say(gr::detail::str("config_error: ranks disagree on the greenreduce settings; this rank has ",
                        mine, "; aborting (MPI_Abort with error code 2)"));
    PMPI_Abort(MPI_COMM_WORLD, 2);
  }
  PMPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, delete_attr, &g.keyval, nullptr);
  g.ready = true;
}

void print_report() {
  auto& g = G();
  const auto& st = g.st;
  int p = 0;
  PMPI_Comm_size(MPI_COMM_WORLD, &p);
  const std::string head = gr::detail::str("report of rank ", world_rank(), " of ", p, ": ");
  const std::uint64_t sent = st.total.bytes_sent;
  const std::uint64_t saved = st.raw_bytes > sent ? st.raw_bytes - sent : 0;
  gr::report raw;
  raw.bytes_sent = st.uncompressed_wire;  // network part only: sent + received
  const auto e = st.total.energy;
  const double e_raw = gr::energy::model(g.cfg.energy).estimate(raw).network_j;
  say(head + gr::detail::str("codec=", g.cfg.codec ? g.cfg.codec_spec : "(unset)",
                             " min_bytes=", g.cfg.min_bytes, " intercepted=", st.intercepted,
                             " passed_through=", st.passed, " nonfinite_fallbacks=", st.fallbacks,
                             " iallreduce_passed_through=", st.iallreduce));
  say(head + gr::detail::str("raw_bytes=", st.raw_bytes, " bytes_sent=", sent,
                             " bytes_received=", st.total.bytes_received, " bytes_saved=", saved,
                             " seconds=", st.total.seconds,
                             " (raw: what an uncompressed ring in the caller's datatype sends)"));
  say(head + gr::detail::str("estimated energy (model estimate, not a measurement; profile ",
                             g.cfg.energy_profile, "): total_j=", e.total_j(), " network_j=",
                             e.network_j, " memory_j=", e.memory_j, " compute_j=", e.compute_j,
                             " static_j=", e.static_j, " network_j_uncompressed=", e_raw));
  say(head + gr::detail::str("error_feedback=", g.cfg.error_feedback ? "on" : "off", " entries=",
                             g.lru.size(), " cap=", g.cfg.ef_entries, " evicted=", st.ef_evicted));
}

}  // namespace

GR_EXPORT int MPI_Init(int* argc, char*** argv) {
  const int rc = PMPI_Init(argc, argv);
  if (rc == MPI_SUCCESS) setup();
  return rc;
}

GR_EXPORT int MPI_Init_thread(int* argc, char*** argv, int required, int* provided) {
  const int rc = PMPI_Init_thread(argc, argv, required, provided);
  if (rc == MPI_SUCCESS) setup();
  return rc;
}

GR_EXPORT int MPI_Allreduce(const void* sendbuf, void* recvbuf, int count, MPI_Datatype datatype,
                            MPI_Op op, MPI_Comm comm) {
  if (!intercept(sendbuf, recvbuf, count, datatype, op, comm)) {
    {
      auto& g = G();
      std::lock_guard lk(g.mu);
      ++g.st.passed;
    }
    return PMPI_Allreduce(sendbuf, recvbuf, count, datatype, op, comm);
  }
  return compressed(sendbuf, recvbuf, count, datatype, op, comm);
}

// Not compressed: an honest non-blocking ring needs a progress engine of its
// own. Counted and handed to MPI unchanged.
GR_EXPORT int MPI_Iallreduce(const void* sendbuf, void* recvbuf, int count, MPI_Datatype datatype,
                             MPI_Op op, MPI_Comm comm, MPI_Request* request) {
  {
    auto& g = G();
    std::lock_guard lk(g.mu);
    ++g.st.iallreduce;
  }
  return PMPI_Iallreduce(sendbuf, recvbuf, count, datatype, op, comm, request);
}

GR_EXPORT int MPI_Finalize() {
  auto& g = G();
  if (g.ready) {
    if (g.cfg.report) print_report();
    std::vector<comm_state*> live;
    {
      std::lock_guard lk(g.mu);
      live.assign(g.comms.begin(), g.comms.end());
    }
    for (comm_state* s : live) PMPI_Comm_delete_attr(s->user, g.keyval);  // runs delete_attr
    PMPI_Comm_free_keyval(&g.keyval);
    g.ready = false;
  }
  return PMPI_Finalize();
}
