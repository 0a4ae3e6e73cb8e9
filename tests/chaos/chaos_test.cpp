// Chaos over TCP: 4 ranks (forked processes on 127.0.0.1) run a few compressed
// ring allreduces (int8 or ternary, 1 to 200k elements, a short timeout) per
// job, while the test, at a random moment, SIGSTOPs (then SIGCONTs) or
// SIGKILLs a rank, and before the mesh is complete pushes garbage into rank
// 0's listening port and the store's port. Every job starts afresh (a failed
// transport is unusable by contract).
//
// Asserted for every rank of every job:
//  - it reports every result correct (within bench/check.hpp's codec bound) or
//    throws one of greenreduce's typed errors; a survivor of a fault throws
//    within 2x the timeout of the fault;
//  - nothing hangs: every rank reports within its bound;
//  - no process dies of a signal except the SIGKILL the test sent, and every
//    other exits with the code its report implies;
//  - a result outside the bound reported as success fails the test.
//
//   GREENREDUCE_CHAOS_ITERATIONS=200 ./chaos_test     # the full run
//   GREENREDUCE_CHAOS_TIMEOUT_MS=2000                 # the transport's timeout
//   GREENREDUCE_CHAOS_REPORT=out.json                 # outcome counts as JSON
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "greenreduce/collective/ring_allreduce.hpp"
#include "greenreduce/core/env.hpp"
#include "greenreduce/transport/tcp.hpp"
#include "support/random.hpp"
#include "transport/tcp_harness.hpp"

namespace gr = greenreduce;
namespace grt = greenreduce::transport;
namespace net = boost::asio;
using greenreduce::test::expect;
using greenreduce::test::rank_group;
using namespace std::chrono_literals;

namespace {

constexpr int p = 4;
constexpr int ops_per_job = 3;

enum class fault { none, stop, kill };

struct job {
  std::uint64_t seed = 0;
  bool ternary = false;
  std::size_t n = 0;
  fault what = fault::none;
  int victim = 0;
  int delay_us = 0;
  bool garbage = false;
};

// The body of one rank: set up, say "ready", wait for go, run the ops.
void rank_body(const job& j, std::uint16_t port, int go_fd, int garbage_fd,
               std::chrono::milliseconds timeout, int rank, rank_group::reporter& say) {
  char c;
  if (rank == p - 1 && j.garbage) expect(::read(garbage_fd, &c, 1) == 1, "garbage pipe");
  grt::tcp_options o;
  o.rank = rank;
  o.size = p;
  o.master_addr = "127.0.0.1";
  o.master_port = port;
  o.listen_addr = "127.0.0.1";
  o.timeout = timeout;
  o.connect_timeout = 20s;
  o.handshake_timeout = 2s;
  o.log = [](const std::string&) {};
  grt::tcp t(o);
  say("ready");
  expect(::read(go_fd, &c, 1) == 1, "go pipe");
  auto run = [&](auto codec) {
    using C = decltype(codec);
    gr::collective::ring_allreduce<C, grt::tcp> ring(t, j.n, codec);
    std::vector<float> x(j.n);
    for (int k = 0; k < ops_per_job; ++k) {
      const std::uint64_t s = j.seed + static_cast<std::uint64_t>(k);
      gr::bench::fill_input(x, s, rank);
      ring.run(x, gr::collective::reduce_op::sum);
      const auto wrong = gr::bench::count_wrong(codec, x, s, p, false);
      say(wrong == 0 ? "ok" : gr::detail::str("WRONG ", wrong, " elements of ", j.n));
    }
  };
  if (j.ternary)
    run(gr::codec::ternary{});
  else
    run(gr::codec::int8{});
  say("done");
}

struct tally {
  int jobs = 0, faults_stop = 0, faults_kill = 0, garbage = 0;
  int ranks_completed = 0, victims_completed = 0, wrong = 0;
  std::map<std::string, int> errors;  // by type
  double worst_survivor_ms = 0;       // from the fault to a survivor's error
};

std::string error_type(const std::string& line) {
  const auto colon = line.find(':');
  return colon == std::string::npos ? line : line.substr(0, colon);
}

bool typed(const std::string& type) {
  return type == "timeout_error" || type == "peer_error" || type == "mismatch_error" ||
         type == "decode_error" || type == "config_error" || type == "numeric_error";
}

// Waits for `pid` to exit (bounded); the status, or nullopt on a hang.
std::optional<int> reap(pid_t pid, std::chrono::milliseconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

void push_garbage(std::uint16_t store_port, std::mt19937_64& g) {
  grt::store_client store("127.0.0.1", store_port, 20s, 5s);
  const auto addr = store.get("greenreduce/addr/0", 20s);
  const auto colon = addr.rfind(':');
  net::io_context io;
  const net::ip::tcp::endpoint ep(net::ip::make_address_v4(addr.substr(0, colon)),
                                  static_cast<std::uint16_t>(std::stoi(addr.substr(colon + 1))));
  for (const auto& to :
       {ep, net::ip::tcp::endpoint(net::ip::make_address_v4("127.0.0.1"), store_port)}) {
    net::ip::tcp::socket s(io);
    s.connect(to);
    std::vector<unsigned char> junk(1 + g() % 200);
    for (auto& b : junk) b = static_cast<unsigned char>(g());
    boost::system::error_code ec;
    net::write(s, net::buffer(junk), ec);
  }  // closed again: the ranks see garbage, then EOF
}

void run_job(const job& j, std::chrono::milliseconds timeout, std::mt19937_64& g, tally& t) {
  const auto port = greenreduce::test::free_port();
  int go[2], garbage[2];
  REQUIRE(::pipe(go) == 0);
  REQUIRE(::pipe(garbage) == 0);
  rank_group ranks(p, [&](int rank, rank_group::reporter& say) {
    ::close(go[1]);
    ::close(garbage[1]);
    rank_body(j, port, go[0], garbage[0], timeout, rank, say);
  });
  ::close(go[0]);
  ::close(garbage[0]);
  INFO("job seed " << j.seed << (j.ternary ? " ternary" : " int8") << " n " << j.n << " fault "
                   << int(j.what) << " victim " << j.victim << " delay " << j.delay_us
                   << " us garbage " << j.garbage);
  if (j.garbage) {
    push_garbage(port, g);
    REQUIRE(::write(garbage[1], "g", 1) == 1);
    ++t.garbage;
  }
  const auto ready = ranks.collect(30s);
  for (int r = 0; r < p; ++r) {
    INFO("rank " << r << ": " << (ready[r] ? ready[r]->text : "<no report>"));
    REQUIRE(ready[r]);
    REQUIRE(ready[r]->text == "ready");
  }
  REQUIRE(::write(go[1], "gggg", p) == p);
  std::optional<std::chrono::steady_clock::time_point> fault_at;
  if (j.what != fault::none) {
    std::this_thread::sleep_for(std::chrono::microseconds(j.delay_us));
    ::kill(ranks.pid(j.victim), j.what == fault::stop ? SIGSTOP : SIGKILL);
    fault_at = std::chrono::steady_clock::now();
    ++(j.what == fault::stop ? t.faults_stop : t.faults_kill);
  }
  // Each rank: ops_per_job "ok" lines then "done", or an error line.
  std::vector<std::string> final(p);
  std::vector<std::chrono::steady_clock::time_point> final_at(p);
  const auto bound = 4 * timeout + 20s;  // generous: only a hang crosses it
  for (int r = 0; r < p; ++r) {
    if (j.what == fault::stop && r == j.victim) continue;  // read after SIGCONT
    for (int k = 0; k <= ops_per_job; ++k) {
      const auto line = ranks.collect(bound, {r})[r];
      INFO("rank " << r << " line " << k);
      REQUIRE(line);  // no hang
      final[r] = line->text;
      final_at[r] = line->at;
      if (line->text != "ok") break;
    }
  }
  if (j.what == fault::stop) {
    ::kill(ranks.pid(j.victim), SIGCONT);
    for (int k = 0; k <= ops_per_job; ++k) {
      const auto line = ranks.collect(bound, {j.victim})[j.victim];
      REQUIRE(line);
      final[j.victim] = line->text;
      if (line->text != "ok") break;
    }
  }
  for (int r = 0; r < p; ++r) {
    const bool killed = j.what == fault::kill && r == j.victim;
    INFO("rank " << r << ": " << final[r]);
    if (final[r].find("WRONG") != std::string::npos) ++t.wrong;
    CHECK(final[r].find("WRONG") == std::string::npos);  // never a wrong result as success
    if (killed) {
      CHECK((final[r] == "done" || final[r] == "<exited without a report>"));
    } else {
      CHECK((final[r] == "done" || typed(error_type(final[r]))));
    }
    if (final[r] == "done") {
      ++t.ranks_completed;
      if (j.what != fault::none && r == j.victim) ++t.victims_completed;
    } else if (!killed || final[r] != "<exited without a report>") {
      ++t.errors[error_type(final[r])];
    }
    // A survivor of a fault fails within 2x the timeout of it.
    if (fault_at && r != j.victim && final[r] != "done") {
      const auto ms = std::chrono::duration<double, std::milli>(final_at[r] - *fault_at).count();
      t.worst_survivor_ms = std::max(t.worst_survivor_ms, ms);
      CHECK(ms < 2.0 * static_cast<double>(timeout.count()));
    }
    if (j.what == fault::none) CHECK(final[r] == "done");
  }
  // Exit statuses: no signal death but the injected SIGKILL.
  for (int r = 0; r < p; ++r) {
    const auto status = reap(ranks.pid(r), 30s);
    INFO("rank " << r << " exit");
    REQUIRE(status);
    if (j.what == fault::kill && r == j.victim && WIFSIGNALED(*status)) {
      CHECK(WTERMSIG(*status) == SIGKILL);
      continue;
    }
    CHECK(WIFEXITED(*status));
    if (WIFEXITED(*status)) CHECK(WEXITSTATUS(*status) == (final[r] == "done" ? 0 : 1));
  }
  ::close(go[1]);
  ::close(garbage[1]);
  ++t.jobs;
}

}  // namespace

TEST_CASE("chaos: stopped, killed and garbage-fed ranks never hang, crash or lie",
          "[chaos][tcp][fault]") {
  const auto env = gr::env_source::process();
  const int iterations =
      static_cast<int>(gr::env_int(env, "GREENREDUCE_CHAOS_ITERATIONS", 60, 1, 100000));
  const auto timeout =
      std::chrono::milliseconds(gr::env_int(env, "GREENREDUCE_CHAOS_TIMEOUT_MS", 2000, 100, 60000));
  const auto seed = greenreduce::test::seed(77);
  std::mt19937_64 g(seed);
  tally t;
  const auto t0 = std::chrono::steady_clock::now();
  for (int it = 0; it < iterations; ++it) {
    job j;
    j.seed = g();
    j.ternary = g() % 2 == 1;
    const std::size_t sizes[] = {1, 3, 1000, 4097, 65536, 200000};
    j.n = sizes[g() % 6] + (g() % 2 ? g() % 1000 : 0);
    const auto roll = g() % 100;
    j.what = roll < 60 ? fault::none : roll < 80 ? fault::stop : fault::kill;
    j.victim = static_cast<int>(g() % p);
    j.delay_us = static_cast<int>(g() % 20000);
    j.garbage = g() % 2 == 0;
    INFO("iteration " << it << " of " << iterations << " (test seed " << seed << ")");
    run_job(j, timeout, g, t);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string errors;
  for (const auto& [type, count] : t.errors)
    errors += gr::detail::str(errors.empty() ? "" : ", ", "\"", type, "\": ", count);
  const std::string json = gr::detail::str(
      "{\"jobs\": ", t.jobs, ", \"ranks\": ", t.jobs * p, ", \"allreduces_per_job\": ", ops_per_job,
      ", \"timeout_ms\": ", timeout.count(), ", \"faults_stop\": ", t.faults_stop,
      ", \"faults_kill\": ", t.faults_kill, ", \"garbage_jobs\": ", t.garbage,
      ", \"ranks_completed\": ", t.ranks_completed,
      ", \"victims_completed\": ", t.victims_completed, ", \"typed_errors\": {", errors,
      "}, \"worst_survivor_error_ms\": ", t.worst_survivor_ms, ", \"wrong_results\": ", t.wrong,
      ", \"seconds\": ", secs, "}");
  std::printf("chaos: %s\n", json.c_str());
  if (const auto path = env.get("GREENREDUCE_CHAOS_REPORT")) std::ofstream(*path) << json << "\n";
}
