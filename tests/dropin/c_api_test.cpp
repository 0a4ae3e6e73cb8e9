// The C API (greenreduce/c_api.h) with ranks as forked processes meeting over
// TCP loopback through the torchrun environment: results within each codec's
// bound, every error code on every rank that should see it, the communicator
// usable after argument errors and unusable after a dead peer.
#include "greenreduce/c_api.h"

#include <poll.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "check.hpp"
#include "support/random.hpp"
#include "transport/tcp_harness.hpp"

namespace gr = greenreduce;
using gr::test::expect;
using gr::test::rank_group;

namespace {

// A communicator for rank `rank` of `p` (in a forked child).
gr_comm_t* join(int rank, int p, std::uint16_t port, const char* timeout_ms = "20000") {
  for (const auto& [k, v] : gr::test::launcher_env("torchrun", rank, p, port))
    ::setenv(k.c_str(), v.c_str(), 1);
  ::setenv("GREENREDUCE_TIMEOUT_MS", timeout_ms, 1);
  gr_comm_t* c = nullptr;
  const gr_result_t rc = gr_comm_init_from_env(&c);
  expect(rc == GR_SUCCESS && c != nullptr,
         std::string("gr_comm_init_from_env: ") + gr_last_error_message(nullptr));
  int r = -1, n = -1;
  expect(gr_comm_rank(c, &r) == GR_SUCCESS && r == rank, "gr_comm_rank");
  expect(gr_comm_size(c, &n) == GR_SUCCESS && n == p, "gr_comm_size");
  return c;
}

std::string has(const std::string& text, const std::string& part) {
  return text.find(part) == std::string::npos ? "message \"" + text + "\" lacks \"" + part + "\""
                                              : "";
}

void expect_code(gr_comm_t* c, gr_result_t got, gr_result_t want, const std::string& part,
                 const std::string& what) {
  const std::string msg = gr_last_error_message(c);
  expect(got == want, gr::detail::str(what, ": got ", gr_error_string(got), " (", msg,
                                      "), expected ", gr_error_string(want)));
  const std::string miss = has(msg, part);
  expect(miss.empty(), what + ": " + miss);
}

void check_all_ok(rank_group& g, int p, int seconds = 120) {
  const auto lines = g.collect(std::chrono::seconds(seconds));
  for (int r = 0; r < p; ++r) {
    INFO("rank " << r << ": "
                 << (lines[static_cast<std::size_t>(r)] ? lines[static_cast<std::size_t>(r)]->text
                                                        : "<no report>"));
    CHECK((lines[static_cast<std::size_t>(r)] && lines[static_cast<std::size_t>(r)]->text == "ok"));
  }
}

// Sum of `count` elements of rank r = input_value(seed, r, i), checked against
// bench/check.hpp's bound for `codec`.
template <class Codec>
void sum_ok(gr_comm_t* c, int rank, int p, const char* spec, const Codec& codec, std::size_t count,
            bool in_place, bool avg, std::uint64_t seed) {
  std::vector<float> x(count), y(count, -3.0F);
  gr::bench::fill_input(x, seed, rank);
  const auto before = x;
  const gr_result_t rc =
      in_place
          ? gr_allreduce(x.data(), x.data(), count, GR_FLOAT32, avg ? GR_AVG : GR_SUM, c, spec)
          : gr_allreduce(x.data(), y.data(), count, GR_FLOAT32, avg ? GR_AVG : GR_SUM, c, spec);
  const std::string what = gr::detail::str(spec, " count=", count, in_place ? " in place" : "",
                                           avg ? " avg" : " sum", " seed=", seed);
  expect_code(c, rc, GR_SUCCESS, "", what);
  if (!in_place) expect(x == before, what + ": sendbuf changed");
  const auto& out = in_place ? x : y;
  const auto wrong = gr::bench::count_wrong(codec, out, seed, p, avg);
  expect(wrong == 0, gr::detail::str(what, ": ", wrong, " elements beyond the bound"));
  gr_report_t rep;
  expect(gr_last_report(c, &rep) == GR_SUCCESS, "gr_last_report");
  if (p > 1 && count >= static_cast<std::size_t>(p)) {
    expect(rep.bytes_sent > 0 && rep.bytes_received > 0 && rep.raw_bytes > 0 && rep.seconds > 0,
           what + ": empty report");
    const double parts = rep.network_j + rep.memory_j + rep.compute_j + rep.static_j;
    expect(rep.total_j > 0 && std::fabs(rep.total_j - parts) <= 1e-9 * rep.total_j,
           what + ": total_j is not the sum of its parts");
    if (std::string(spec) == "int8" && count > 10000)
      expect(rep.bytes_sent * 3 < rep.raw_bytes, what + ": int8 did not send 3x fewer bytes");
  }
}

void results_body(int rank, int p, std::uint16_t port, std::uint64_t seed) {
  gr_comm_t* c = join(rank, p, port);
  std::uint64_t k = 0;
  for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{17}, std::size_t{100003}}) {
    sum_ok(c, rank, p, "none", gr::codec::none{}, count, false, false, seed + k++);
    sum_ok(c, rank, p, "int8", gr::codec::int8{}, count, true, false, seed + k++);
    sum_ok(c, rank, p, "ternary", gr::codec::ternary{}, count, false, true, seed + k++);
  }
  sum_ok(c, rank, p, "none", gr::codec::none{}, 1000, true, true, seed + k++);
  // NULL codec means none: the same bound (exact up to float summation).
  {
    std::vector<float> x(999);
    gr::bench::fill_input(x, seed + 50, rank);
    expect_code(c, gr_allreduce(x.data(), x.data(), x.size(), GR_FLOAT32, GR_SUM, c, nullptr),
                GR_SUCCESS, "", "NULL codec");
    expect(gr::bench::count_wrong(gr::codec::none{}, x, seed + 50, p, false) == 0,
           "NULL codec result");
  }
  // GR_FLOAT64 through int8: reduced in float, within the int8 bound plus input rounding.
  {
    const std::size_t n = 30001;
    std::vector<double> x(n), y(n);
    for (std::size_t i = 0; i < n; ++i) x[i] = gr::bench::input_value(seed + 60, rank, i);
    expect_code(c, gr_allreduce(x.data(), y.data(), n, GR_FLOAT64, GR_SUM, c, "int8"), GR_SUCCESS,
                "", "GR_FLOAT64 int8");
    std::vector<float> yf(y.begin(), y.end());
    expect(gr::bench::count_wrong(gr::codec::int8{}, yf, seed + 60, p, false) == 0,
           "GR_FLOAT64 int8 result beyond the bound");
  }
  expect(gr_comm_destroy(c) == GR_SUCCESS, "gr_comm_destroy");
}

void errors_body(int rank, int p, std::uint16_t port) {
  gr_comm_t* c = join(rank, p, port);
  std::vector<float> x(1000, 1.0F);
  std::vector<double> d(1000, 1.0);
  const auto n = x.size();
  expect_code(c, gr_allreduce(x.data(), x.data(), n, GR_INT32, GR_SUM, c, "none"),
              GR_ERROR_UNSUPPORTED_DATATYPE, "GR_INT32", "GR_INT32");
  expect_code(c, gr_allreduce(d.data(), d.data(), n, GR_FLOAT64, GR_SUM, c, "none"),
              GR_ERROR_UNSUPPORTED_DATATYPE, "GR_FLOAT64 with codec none", "GR_FLOAT64 none");
  expect_code(
      c, gr_allreduce(x.data(), x.data(), n, static_cast<gr_datatype_t>(77), GR_SUM, c, "none"),
      GR_ERROR_UNSUPPORTED_DATATYPE, "(77)", "datatype 77");
  expect_code(c, gr_allreduce(x.data(), x.data(), n, GR_FLOAT32, GR_MAX, c, "int8"),
              GR_ERROR_UNSUPPORTED_OP, "GR_MAX", "GR_MAX");
  expect_code(c,
              gr_allreduce(x.data(), x.data(), n, GR_FLOAT32, static_cast<gr_op_t>(9), c, "int8"),
              GR_ERROR_UNSUPPORTED_OP, "(9)", "op 9");
  expect_code(c, gr_allreduce(x.data(), x.data(), n, GR_FLOAT32, GR_SUM, c, "int9"),
              GR_ERROR_CONFIG, "unknown codec \"int9\"", "codec int9");
  // A NULL buffer on the last rank only: it says so, the others learn of it.
  const bool last = rank == p - 1;
  expect_code(c,
              gr_allreduce(last ? nullptr : x.data(), x.data(), n, GR_FLOAT32, GR_SUM, c, "none"),
              last ? GR_ERROR_INVALID_ARGUMENT : GR_ERROR_MISMATCH,
              last ? "sendbuf is NULL" : gr::detail::str("rank ", p - 1, " rejected its arguments"),
              "NULL sendbuf on the last rank");
  expect_code(
      c, gr_allreduce(x.data(), last ? nullptr : x.data(), n, GR_FLOAT32, GR_SUM, c, "none"),
      last ? GR_ERROR_INVALID_ARGUMENT : GR_ERROR_MISMATCH,
      last ? "recvbuf is NULL" : "GR_ERROR_INVALID_ARGUMENT", "NULL recvbuf on the last rank");
  // Ranks that disagree.
  expect_code(c, gr_allreduce(x.data(), x.data(), last ? n - 1 : n, GR_FLOAT32, GR_SUM, c, "none"),
              GR_ERROR_MISMATCH, "disagree on the count", "count mismatch");
  expect_code(c, gr_allreduce(x.data(), x.data(), n, GR_FLOAT32, GR_SUM, c, last ? "int8" : "none"),
              GR_ERROR_MISMATCH, "disagree on the codec", "codec mismatch");
  expect_code(c, gr_allreduce(x.data(), x.data(), n, GR_FLOAT32, last ? GR_AVG : GR_SUM, c, "none"),
              GR_ERROR_MISMATCH, "disagree on the op", "op mismatch");
  // A NaN on one rank with a lossy codec: GR_ERROR_NUMERIC everywhere, data untouched.
  {
    std::vector<float> y(n, 2.0F);
    if (last) y[123] = std::numeric_limits<float>::quiet_NaN();
    const auto before = y;
    expect_code(c, gr_allreduce(y.data(), y.data(), n, GR_FLOAT32, GR_SUM, c, "int8"),
                GR_ERROR_NUMERIC, last ? "element 123 is nan" : "element 123", "NaN");
    for (std::size_t i = 0; i < n; ++i)
      expect(i == 123 && last ? std::isnan(y[i]) : y[i] == before[i], "NaN call changed the data");
  }
  // Still usable: a correct call gives the exact sum.
  expect_code(c, gr_allreduce(x.data(), x.data(), n, GR_FLOAT32, GR_SUM, c, "none"), GR_SUCCESS, "",
              "after the errors");
  for (float v : x) expect(v == static_cast<float>(p), "after the errors: wrong sum");
  expect(gr_comm_destroy(c) == GR_SUCCESS, "gr_comm_destroy");
}

}  // namespace

TEST_CASE("C API: NULL pointers and codes without a communicator", "[dropin][capi]") {
  CHECK(gr_comm_init_from_env(nullptr) == GR_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(gr_last_error_message(nullptr)).find("comm is NULL") != std::string::npos);
  float x = 1;
  CHECK(gr_allreduce(&x, &x, 1, GR_FLOAT32, GR_SUM, nullptr, "none") == GR_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(gr_last_error_message(nullptr)).find("gr_allreduce: comm is NULL") !=
        std::string::npos);
  int r = 0;
  gr_report_t rep;
  CHECK(gr_comm_rank(nullptr, &r) == GR_ERROR_INVALID_ARGUMENT);
  CHECK(gr_comm_size(nullptr, &r) == GR_ERROR_INVALID_ARGUMENT);
  CHECK(gr_last_report(nullptr, &rep) == GR_ERROR_INVALID_ARGUMENT);
  CHECK(gr_comm_destroy(nullptr) == GR_SUCCESS);
  std::set<std::string> texts;
  for (int code = GR_SUCCESS; code <= GR_ERROR_INTERNAL; ++code) {
    const std::string s = gr_error_string(static_cast<gr_result_t>(code));
    CHECK(s.rfind("GR_", 0) == 0);
    texts.insert(s);
  }
  CHECK(texts.size() == GR_ERROR_INTERNAL + 1);
  CHECK(std::string(gr_error_string(static_cast<gr_result_t>(99))).find("unknown") !=
        std::string::npos);
}

TEST_CASE("C API: bad environment is GR_ERROR_CONFIG naming the variable", "[dropin][capi]") {
  auto one = [](std::vector<std::pair<const char*, const char*>> env) {
    rank_group g(1, [&](int, rank_group::reporter& say) {
      for (const char* v :
           {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID", "SLURM_NTASKS"})
        ::unsetenv(v);
      for (auto [k, v] : env) ::setenv(k, v, 1);
      gr_comm_t* c = reinterpret_cast<gr_comm_t*>(&say);  // must be reset to NULL
      const gr_result_t rc = gr_comm_init_from_env(&c);
      say(gr::detail::str(int(rc), c == nullptr ? " null " : " set ",
                          gr_last_error_message(nullptr)));
    });
    const auto lines = g.collect(std::chrono::seconds(30));
    return lines[0] ? lines[0]->text : std::string("<no report>");
  };
  const std::string config = std::to_string(GR_ERROR_CONFIG) + " null ";
  std::string t = one({{"RANK", "0"}});
  CHECK(t.rfind(config, 0) == 0);
  CHECK(t.find("WORLD_SIZE") != std::string::npos);
  t = one({{"GREENREDUCE_ENERGY_PROFILE", "steam"}});
  CHECK(t.rfind(config, 0) == 0);
  CHECK(t.find("GREENREDUCE_ENERGY_PROFILE=\"steam\"") != std::string::npos);
  t = one({{"OMPI_COMM_WORLD_RANK", "0"},
           {"OMPI_COMM_WORLD_SIZE", "1"},
           {"GREENREDUCE_TIMEOUT_MS", "-5"}});
  INFO(t);
  CHECK(t.rfind(config, 0) == 0);
  CHECK(t.find("GREENREDUCE_TIMEOUT_MS=\"-5\"") != std::string::npos);
  t = one({});
  CHECK(t.rfind(config, 0) == 0);
  CHECK(t.find("no launcher environment") != std::string::npos);
  // A world of one needs no master.
  t = one({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "1"}});
  INFO(t);
  CHECK(t.rfind("0 set", 0) == 0);
}

TEST_CASE("C API: results with 1 to 4 processes", "[dropin][capi]") {
  for (int p : {1, 2, 3, 4}) {
    INFO("p=" << p);
    const auto port = gr::test::free_port();
    const std::uint64_t seed = gr::test::seed(static_cast<std::uint64_t>(p) + 700);
    rank_group g(p, [&](int rank, rank_group::reporter&) { results_body(rank, p, port, seed); });
    check_all_ok(g, p, 180);
  }
}

TEST_CASE("C API: every argument, mismatch and numeric error on every rank", "[dropin][capi]") {
  for (int p : {2, 3}) {
    INFO("p=" << p);
    const auto port = gr::test::free_port();
    rank_group g(p, [&](int rank, rank_group::reporter&) { errors_body(rank, p, port); });
    check_all_ok(g, p);
  }
}

TEST_CASE("C API: a dead peer is GR_ERROR_PEER, and the communicator stays broken",
          "[dropin][capi]") {
  const int p = 3;
  const auto port = gr::test::free_port();
  // The survivors tell the last rank, through this pipe, that their first call
  // completed: a peer that dies while another rank is still inside a call fails
  // that call at once (the transport's documented rule), so dying earlier would
  // make "before the death" depend on scheduling.
  int done[2];
  REQUIRE(::pipe(done) == 0);
  rank_group g(p, [&](int rank, rank_group::reporter& say) {
    gr_comm_t* c = join(rank, p, port, "10000");
    std::vector<float> x(100000, 1.0F);
    // Everyone completes one call, then the last rank dies.
    expect_code(c, gr_allreduce(x.data(), x.data(), x.size(), GR_FLOAT32, GR_SUM, c, "int8"),
                GR_SUCCESS, "", "before the death");
    if (rank == p - 1) {
      for (int got = 0; got < p - 1;) {
        pollfd w{done[0], POLLIN, 0};
        expect(::poll(&w, 1, 60000) == 1, "the survivors never finished their first call");
        char b[8];
        const auto n = ::read(done[0], b, static_cast<std::size_t>(p - 1 - got));
        expect(n > 0, "reading the survivors' pipe");
        got += static_cast<int>(n);
      }
      ::_exit(0);
    }
    expect(::write(done[1], "x", 1) == 1, "writing the survivors' pipe");
    const std::vector<float> before = x;
    const gr_result_t rc =
        gr_allreduce(x.data(), x.data(), x.size(), GR_FLOAT32, GR_SUM, c, "int8");
    const std::string msg = gr_last_error_message(c);
    expect(x == before, "a failed call changed the input");
    const gr_result_t again =
        gr_allreduce(x.data(), x.data(), x.size(), GR_FLOAT32, GR_SUM, c, "int8");
    const std::string msg2 = gr_last_error_message(c);
    say(gr::detail::str(int(rc), " ", int(again), " | ", msg, " | ", msg2));
    gr_comm_destroy(c);
  });
  const auto lines = g.collect(std::chrono::seconds(60), {0, 1});
  ::close(done[0]);
  ::close(done[1]);
  for (int r : {0, 1}) {
    REQUIRE(lines[static_cast<std::size_t>(r)]);
    const std::string& t = lines[static_cast<std::size_t>(r)]->text;
    INFO("rank " << r << ": " << t);
    const std::string peer = std::to_string(GR_ERROR_PEER);
    CHECK(t.rfind(peer + " " + peer + " | ", 0) == 0);
    CHECK(t.find("peer_error") != std::string::npos);
    CHECK(t.find("unusable after an earlier error") != std::string::npos);
  }
}

TEST_CASE("C API: a silent peer is GR_ERROR_TIMEOUT", "[dropin][capi]") {
  const int p = 2;
  const auto port = gr::test::free_port();
  rank_group g(p, [&](int rank, rank_group::reporter& say) {
    gr_comm_t* c = join(rank, p, port, "300");
    if (rank == 1) {
      ::sleep(30);  // alive, never calls; killed by the group
      return;
    }
    std::vector<float> x(1000, 1.0F);
    const gr_result_t rc =
        gr_allreduce(x.data(), x.data(), x.size(), GR_FLOAT32, GR_SUM, c, "none");
    say(gr::detail::str(int(rc), " | ", gr_last_error_message(c)));
  });
  const auto lines = g.collect(std::chrono::seconds(30), {0});
  REQUIRE(lines[0]);
  INFO(lines[0]->text);
  CHECK(lines[0]->text.rfind(std::to_string(GR_ERROR_TIMEOUT) + " | ", 0) == 0);
  CHECK(lines[0]->text.find("300") != std::string::npos);
}
