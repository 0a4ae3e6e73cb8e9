// Tests of collective/ring_allreduce.hpp over the inproc transport: results
// against a float64 reference, bit-identical ranks, agreement, failures, reports.
#include "greenreduce/collective/ring_allreduce.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "collective/ranks.hpp"
#include "greenreduce/codec/int8.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/codec/topk.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using namespace std::chrono_literals;
using collective::reduce_op;
using collective::ring_options;
using transport::inproc;

namespace {

// The none codec with another configuration fingerprint: a "different codec".
struct other_none : codec::none {
  constexpr std::uint64_t config_hash() const noexcept { return codec::hash_words({0, 42}); }
};

// The none codec that runs a callback on every decode_add (to fail mid-run).
struct hooked_none : codec::none {
  std::function<void()> hook;
  void decode_add(std::span<const std::byte> frame, std::span<float> acc) const {
    if (hook) hook();
    codec::none::decode_add(frame, acc);
  }
};

std::vector<float> input(int rank, std::size_t n, std::uint64_t salt) {
  return test::normal_floats(n, test::seed(salt * 1000 + static_cast<std::uint64_t>(rank)));
}

struct outcome {
  std::vector<std::vector<float>> in, out;
  std::vector<report> reports;
};

template <class Codec = codec::none>
outcome allreduce(int p, std::size_t n, reduce_op op, ring_options opts = {}, Codec c = {},
                  std::uint64_t salt = 1) {
  outcome o;
  o.in.resize(static_cast<std::size_t>(p));
  o.out.resize(static_cast<std::size_t>(p));
  o.reports.resize(static_cast<std::size_t>(p));
  for (int r = 0; r < p; ++r) o.in[static_cast<std::size_t>(r)] = input(r, n, salt);
  auto errors = test::on_ranks(p, [&](inproc& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    collective::ring_allreduce<Codec, inproc> ring(t, n, c, opts);
    o.out[r] = o.in[r];
    o.reports[r] = ring.run(o.out[r], op);
  });
  test::rethrow_any(errors);
  return o;
}

// |result - exact| <= bound(i): fp32 summation of p terms in some order,
// gamma_{p} * sum |x| (Higham, Accuracy and Stability, 2002, eq. 4.4), plus
// one rounding of the division for the average.
void check_exact_up_to_order(const outcome& o, reduce_op op) {
  const std::size_t p = o.in.size();
  const std::size_t n = o.in[0].size();
  const double u = std::ldexp(1.0, -24);
  const double gamma = static_cast<double>(p) * u / (1 - static_cast<double>(p) * u);
  for (std::size_t i = 0; i < n; ++i) {
    double exact = 0, mag = 0;
    for (std::size_t r = 0; r < p; ++r) {
      exact += o.in[r][i];
      mag += std::fabs(o.in[r][i]);
    }
    double bound = gamma * mag;
    if (op == reduce_op::average) {
      exact /= static_cast<double>(p);
      bound = bound / static_cast<double>(p) + u * std::fabs(exact);
    }
    const double err = std::fabs(static_cast<double>(o.out[0][i]) - exact);
    if (err > bound) {
      INFO("element " << i << " of " << n << ": got " << o.out[0][i] << ", exact " << exact
                      << ", bound " << bound);
      REQUIRE(err <= bound);
    }
  }
  for (std::size_t r = 1; r < p; ++r) REQUIRE(test::bit_equal(o.out[0], o.out[r]));
}

// The bytes rank r sends (or receives) with codec none: message headers included.
std::uint64_t none_bytes(std::size_t n, int p, int r, std::size_t seg, bool receive) {
  if (p == 1) return 0;
  const std::uint64_t msg = transport::inproc_header_bytes;
  auto chunk_bytes = [&](int c) {
    const auto ch = collective::ring_detail::chunk(n, p, ((c % p) + p) % p);
    std::uint64_t b = 0;
    for (std::size_t off = 0; off < ch.count; off += seg)
      b += msg + 4 * std::min(seg, ch.count - off);  // fp32 goes unframed
    return b;
  };
  std::uint64_t b =
      static_cast<std::uint64_t>(p - 1) * (collective::ring_detail::agree_bytes + msg);
  if (n == 0) return b;
  const int shift = receive ? -1 : 0;
  for (int s = 0; s + 1 < p; ++s) b += chunk_bytes(r - s + shift);      // reduce-scatter
  for (int s = 0; s + 1 < p; ++s) b += chunk_bytes(r + 1 - s + shift);  // allgather
  return b;
}

}  // namespace

TEST_CASE("ring allreduce with none is exact up to summation order, p = 1..8", "[ring]") {
  for (int p = 1; p <= 8; ++p)
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t(p - 1), std::size_t(p),
                          std::size_t(p + 1), std::size_t{1003}})
      for (auto op : {reduce_op::sum, reduce_op::average})
        for (std::size_t seg_bytes : {std::size_t{4}, std::size_t{64}, std::size_t{512 * 1024}}) {
          if (seg_bytes == 4 && n > 100) continue;  // one element per message: slow, covered small
          INFO("p=" << p << " n=" << n << " op=" << collective::to_string(op)
                    << " segment_bytes=" << seg_bytes);
          ring_options opts;
          opts.segment_bytes = seg_bytes;
          auto o = allreduce(p, n, op, opts, codec::none{}, n + 7 * static_cast<std::size_t>(p));
          check_exact_up_to_order(o, op);
          for (int r = 0; r < p; ++r) {
            const auto& rep = o.reports[static_cast<std::size_t>(r)];
            REQUIRE(rep.bytes_sent == none_bytes(n, p, r, seg_bytes / 4, false));
            REQUIRE(rep.bytes_received == none_bytes(n, p, r, seg_bytes / 4, true));
          }
        }
}

TEST_CASE("ring allreduce on a million elements", "[ring][large]") {
  for (int p : {2, 5}) {
    for (auto op : {reduce_op::sum, reduce_op::average}) {
      INFO("p=" << p << " op=" << collective::to_string(op));
      ring_options opts;
      opts.segment_bytes = 64 * 1024;
      auto o = allreduce(p, 1000003, op, opts, codec::none{}, 5);
      check_exact_up_to_order(o, op);
    }
  }
}

TEST_CASE("ring allreduce report fields", "[ring][report]") {
  const int p = 4;
  const std::size_t n = 1001;
  int annotated = 0;
  std::mutex mu;
  ring_options opts;
  opts.annotate = [&](report& rep) {
    std::lock_guard lk(mu);
    ++annotated;
    rep.energy.method = energy_method::model;
  };
  auto o = allreduce(p, n, reduce_op::sum, opts);
  CHECK(annotated == p);
  for (int r = 0; r < p; ++r) {
    const auto& rep = o.reports[static_cast<std::size_t>(r)];
    CHECK(rep.op == "allreduce");
    CHECK(rep.codec == "none");
    CHECK(rep.algo == "ring");
    CHECK(rep.seconds > 0);
    CHECK(rep.memory_bytes > 0);
    CHECK(rep.compute_ops > 0);
    CHECK(rep.energy.method == energy_method::model);
    // fp32 ring: every chunk but the ones owned by r+1 (reduce-scatter) and r+2 (allgather).
    const auto c1 = collective::ring_detail::chunk(n, p, (r + 1) % p).count;
    const auto c2 = collective::ring_detail::chunk(n, p, (r + 2) % p).count;
    CHECK(rep.raw_bytes == 4 * (2 * n - c1 - c2));
    // none: raw bytes plus frame and message headers, so the ratio is just below 1.
    CHECK(rep.compression_ratio() < 1.0);
    CHECK(rep.compression_ratio() > 0.9);
  }
  auto single = allreduce(1, n, reduce_op::average);
  CHECK(single.reports[0].raw_bytes == 0);
  CHECK(single.reports[0].energy.method == energy_method::model);
  CHECK(single.reports[0].bytes_sent == 0);
  CHECK(test::bit_equal(single.in[0], single.out[0]));
}

TEST_CASE("ring allreduce reports carry an energy estimate without being asked",
          "[ring][report][energy]") {
  const int p = GENERATE(2, 3);
  const std::size_t n = 4099;
  // Default: energy::default_model(); named: exactly that model's estimate.
  for (const bool named : {false, true}) {
    INFO("p=" << p << " named model=" << named);
    const energy::model m = named ? energy::model("wifi_edge") : energy::default_model();
    ring_options opts;
    if (named) opts.energy = m;
    auto o = allreduce(p, n, reduce_op::sum, opts, codec::int8{}, 7);
    for (const auto& rep : o.reports) {
      const auto want = m.estimate(rep);
      CHECK(rep.energy.method == energy_method::model);
      CHECK(rep.energy.network_j == want.network_j);
      CHECK(rep.energy.memory_j == want.memory_j);
      CHECK(rep.energy.compute_j == want.compute_j);
      CHECK(rep.energy.static_j == want.static_j);
      CHECK(rep.energy.network_j > 0);
      CHECK(rep.energy.memory_j > 0);
    }
  }
}

TEST_CASE("ring allreduce can run many times and with shorter vectors", "[ring]") {
  const int p = 3;
  auto errors = test::on_ranks(p, [&](inproc& t) {
    ring_options opts;
    opts.segment_bytes = 256;
    opts.error_feedback = true;  // exact codec: the residual stays zero
    collective::ring_allreduce<codec::none, inproc> ring(t, 5000, {}, opts);
    for (std::size_t n : {std::size_t{5000}, std::size_t{17}, std::size_t{0}, std::size_t{4999}}) {
      std::vector<float> x(n, static_cast<float>(t.rank() + 1));
      ring.run(x, reduce_op::sum);
      for (float v : x) REQUIRE(v == 6.0F);
    }
  });
  test::rethrow_any(errors);
}

TEST_CASE("ring allreduce mismatches throw mismatch_error on every rank", "[ring][mismatch]") {
  const int p = 4;
  const std::size_t n = 100;
  auto expect_all_mismatch = [&](auto body, const char* what) {
    std::vector<std::vector<float>> data(p);
    auto errors = test::on_ranks(
        p,
        [&](inproc& t) {
          auto& x = data[static_cast<std::size_t>(t.rank())];
          x = input(t.rank(), n + 1, 3);
          const auto before = x;
          try {
            body(t, x);
          } catch (...) {
            REQUIRE(test::bit_equal(x, before));
            throw;
          }
        },
        5000ms);
    for (int r = 0; r < p; ++r) {
      INFO("rank " << r);
      REQUIRE(errors[static_cast<std::size_t>(r)]);
      REQUIRE_THROWS_MATCHES(std::rethrow_exception(errors[static_cast<std::size_t>(r)]),
                             mismatch_error, test::what_has(what, "input left unchanged"));
    }
  };
  SECTION("length") {
    expect_all_mismatch(
        [&](inproc& t, std::vector<float>& x) {
          collective::ring_allreduce<codec::none, inproc> ring(t, n + 1);
          ring.run(std::span(x).first(t.rank() == 2 ? n + 1 : n));
        },
        "the length");
  }
  SECTION("codec") {
    expect_all_mismatch(
        [&](inproc& t, std::vector<float>& x) {
          if (t.rank() == 1) {
            collective::ring_allreduce<other_none, inproc> ring(t, n);
            ring.run(std::span(x).first(n));
          } else {
            collective::ring_allreduce<codec::none, inproc> ring(t, n);
            ring.run(std::span(x).first(n));
          }
        },
        "the codec");
  }
  SECTION("op") {
    expect_all_mismatch(
        [&](inproc& t, std::vector<float>& x) {
          collective::ring_allreduce<codec::none, inproc> ring(t, n);
          ring.run(std::span(x).first(n), t.rank() == 3 ? reduce_op::average : reduce_op::sum);
        },
        "the op");
  }
  SECTION("segment size") {
    expect_all_mismatch(
        [&](inproc& t, std::vector<float>& x) {
          ring_options opts;
          opts.segment_bytes = t.rank() == 0 ? 64 : 128;
          collective::ring_allreduce<codec::none, inproc> ring(t, n, {}, opts);
          ring.run(std::span(x).first(n));
        },
        "the segment size");
  }
  SECTION("automatic segment size: 4 MiB for a dense codec") {
    expect_all_mismatch(
        [&](inproc& t, std::vector<float>& x) {
          ring_options opts;  // rank 2 states the entry codecs' size
          if (t.rank() == 2) opts.segment_bytes = collective::default_entry_segment_bytes;
          collective::ring_allreduce<codec::int8, inproc> ring(t, n, codec::int8(), opts);
          ring.run(std::span(x).first(n));
        },
        "the segment size: rank 0 has 1048576 elements but rank 2 has 4194304");
  }
  SECTION("automatic segment size: 16 MiB for top-k") {
    expect_all_mismatch(
        [&](inproc& t, std::vector<float>& x) {
          ring_options opts;  // rank 1 states the dense codecs' size
          if (t.rank() == 1) opts.segment_bytes = collective::default_segment_bytes;
          const auto c = codec::topk::ratio(0.1);
          collective::ring_allreduce<codec::topk, inproc> ring(t, n, c, opts);
          ring.run(std::span(x).first(n));
        },
        "the segment size: rank 0 has 4194304 elements but rank 1 has 1048576");
  }
}

TEST_CASE("ring allreduce: an automatic segment size agrees with the same size stated",
          "[ring][mismatch]") {
  // 0 resolves to the codec family's default on every rank, so ranks that
  // state that size explicitly run with those that leave it automatic.
  const int p = 3;
  const std::size_t n = 1000;
  auto errors = test::on_ranks(p, [&](inproc& t) {
    ring_options opts;
    if (t.rank() == 1) opts.segment_bytes = collective::default_entry_segment_bytes;
    collective::ring_allreduce<codec::topk, inproc> ring(t, n, codec::topk::ratio(0.5), opts);
    auto x = input(t.rank(), n, 7);
    ring.run(x);
    ring_options dense;
    if (t.rank() == 2) dense.segment_bytes = collective::default_segment_bytes;
    collective::ring_allreduce<codec::none, inproc> plain(t, n, {}, dense);
    plain.run(x);
  });
  test::rethrow_any(errors);
}

TEST_CASE("ring allreduce: a length beyond max_count fails on every rank", "[ring][mismatch]") {
  const int p = 3;
  auto errors = test::on_ranks(p, [&](inproc& t) {
    collective::ring_allreduce<codec::none, inproc> ring(t, t.rank() == 1 ? 10 : 20);
    std::vector<float> x(15, 1.0F);
    ring.run(x);
  });
  REQUIRE_THROWS_MATCHES(std::rethrow_exception(errors[1]), config_error,
                         test::what_has("length 15 exceeds the max_count 10"));
  REQUIRE_THROWS_MATCHES(std::rethrow_exception(errors[0]), mismatch_error,
                         test::what_has("rank 1 cannot take length 15"));
  REQUIRE_THROWS_AS(std::rethrow_exception(errors[2]), mismatch_error);
}

TEST_CASE("ring allreduce: a rank dying mid-run fails every survivor fast", "[ring][failure]") {
  const int p = 4;
  const std::size_t n = 50000;
  const auto timeout = 2000ms;
  for (bool keep : {true, false}) {
    INFO("keep_input=" << keep);
    transport::inproc_world world(p, {timeout});
    std::vector<std::vector<float>> data(p), before(p);
    std::vector<std::chrono::steady_clock::duration> took(p);
    auto errors = test::on_ranks(world, [&](inproc& t) {
      const auto r = static_cast<std::size_t>(t.rank());
      data[r] = input(t.rank(), n, 9);
      before[r] = data[r];
      hooked_none c;
      int calls = 0;
      if (t.rank() == 2)
        c.hook = [&] {
          if (++calls == 3) world.kill(2);  // the process "crashes" mid reduce-scatter
        };
      ring_options opts;
      opts.segment_bytes = 4096;
      opts.keep_input = keep;
      collective::ring_allreduce<hooked_none, inproc> ring(t, n, c, opts);
      const auto t0 = std::chrono::steady_clock::now();
      try {
        ring.run(data[r]);
      } catch (...) {
        took[r] = std::chrono::steady_clock::now() - t0;
        throw;
      }
    });
    for (int r = 0; r < p; ++r) {
      INFO("rank " << r);
      const auto ur = static_cast<std::size_t>(r);
      REQUIRE(errors[ur]);
      CHECK(took[ur] < 2 * timeout);
      if (r == 2) continue;
      if (keep) {
        REQUIRE_THROWS_MATCHES(std::rethrow_exception(errors[ur]), peer_error,
                               test::what_has("input left unchanged"));
        CHECK(test::bit_equal(data[ur], before[ur]));
      } else {
        REQUIRE_THROWS_MATCHES(std::rethrow_exception(errors[ur]), peer_error,
                               test::what_has("partially reduced"));
      }
    }
  }
}

namespace {

// inproc whose rank dies (as if its process crashed) at its k-th send: a
// failure at a chosen point of the raw fp32 ring, which has no codec to hook.
struct dying_inproc {
  using send_request = inproc::send_request;
  using recv_request = inproc::recv_request;
  inproc& t;
  transport::inproc_world& world;
  int die_at = -1;
  int sends = 0;
  int rank() const { return t.rank(); }
  int size() const { return t.size(); }
  send_request isend(int peer, std::span<const std::byte> out) {
    if (sends++ == die_at) world.kill(t.rank());
    return t.isend(peer, out);
  }
  recv_request irecv(int peer, std::span<std::byte> in) { return t.irecv(peer, in); }
  void wait(send_request& r) { t.wait(r); }
  std::size_t wait(recv_request& r) { return t.wait(r); }
  void send(int peer, std::span<const std::byte> out) {
    auto r = isend(peer, out);
    wait(r);
  }
  std::size_t recv(int peer, std::span<std::byte> in) { return t.recv(peer, in); }
  std::size_t sendrecv(int dst, std::span<const std::byte> out, int src, std::span<std::byte> in) {
    auto s = isend(dst, out);
    const std::size_t len = t.recv(src, in);
    wait(s);
    return len;
  }
  std::uint64_t bytes_sent() const { return t.bytes_sent(); }
  std::uint64_t bytes_received() const { return t.bytes_received(); }
  void abort() noexcept { t.abort(); }
};
static_assert(transport::transport<dying_inproc>);

}  // namespace

namespace {
// Rank 2 of 3 died during a run: each survivor either failed with peer_error
// and kept its input bit for bit (`before`), or finished, which
// `check_finished(rank)` judges.
template <class Errors, class Finished>
void check_survivors(const Errors& errors, const std::vector<std::vector<float>>& data,
                     const std::vector<std::vector<float>>& before, Finished check_finished) {
  REQUIRE(errors[0]);
  for (std::size_t r = 0; r < 2; ++r) {
    INFO("rank " << r);
    if (errors[r]) {
      REQUIRE_THROWS_MATCHES(std::rethrow_exception(errors[r]), peer_error,
                             test::what_has("input left unchanged"));
      CHECK(test::bit_equal(data[r], before[r]));
    } else {
      check_finished(r);
    }
  }
}
}  // namespace

TEST_CASE("ring allreduce, raw fp32: a rank dying in either phase leaves survivors' input intact",
          "[ring][failure]") {
  // p = 3, 50000 floats in 4 KiB segments: 2 agreement sends, then 34 sends
  // of the reduce-scatter and 34 of the allgather per rank. Rank 0 receives
  // every one of rank 2's messages, so it always fails; rank 1 may finish.
  const int p = 3;
  const std::size_t n = 50000;
  for (int die_at : {2, 5, 20, 35, 36, 50, 69}) {
    INFO("rank 2 dies at its send " << die_at);
    transport::inproc_world world(p, {2000ms});
    std::vector<std::vector<float>> data(p), before(p);
    for (int r = 0; r < p; ++r) {
      data[static_cast<std::size_t>(r)] = input(r, n, 31);
      before[static_cast<std::size_t>(r)] = data[static_cast<std::size_t>(r)];
    }
    auto errors = test::on_ranks(world, [&](inproc& t) {
      dying_inproc d{t, world, t.rank() == 2 ? die_at : -1};
      ring_options opts;
      opts.segment_bytes = 4096;
      collective::ring_allreduce<codec::none, dying_inproc> ring(d, n, codec::none{}, opts);
      ring.run(data[static_cast<std::size_t>(t.rank())]);
    });
    check_survivors(errors, data, before, [&](std::size_t r) {
      // Finished before the death mattered to it: the full sum.
      std::size_t off = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const double want = double(before[0][i]) + double(before[1][i]) + double(before[2][i]);
        off += std::abs(double(data[r][i]) - want) > 1e-5 * (1 + std::abs(want));
      }
      CHECK(off == 0);
    });
  }
}

TEST_CASE("ring allreduce is unusable after a transport error", "[ring][failure]") {
  transport::inproc_world world(2, {100ms});
  auto t = world.rank(0);
  auto other = world.rank(1);  // never runs: rank 0 times out
  collective::ring_allreduce<codec::none, inproc> ring(t, 10);
  std::vector<float> x(10, 1.0F);
  const auto before = x;
  REQUIRE_THROWS_MATCHES(ring.run(x), timeout_error, test::what_has("input left unchanged"));
  CHECK(test::bit_equal(x, before));
  REQUIRE_THROWS_MATCHES(ring.run(x), peer_error, test::what_has("unusable"));
}

TEST_CASE("ring allreduce argument errors", "[ring]") {
  transport::inproc_world world(1);
  auto t = world.rank(0);
  ring_options opts;
  opts.segment_bytes = 3;
  CHECK_THROWS_AS((collective::ring_allreduce<codec::none, inproc>(t, 10, {}, opts)), config_error);
  opts.segment_bytes = 4;
  opts.algo = collective::algorithm::allgather_sparse;
  CHECK_THROWS_MATCHES((collective::ring_allreduce<codec::none, inproc>(t, 10, {}, opts)),
                       config_error, test::what_has("needs a sparse codec"));
  collective::ring_allreduce<codec::none, inproc> ring(t, 10);
  std::vector<float> x(11);
  CHECK_THROWS_AS(ring.run(x), config_error);
  CHECK_THROWS_AS(ring.run(std::span(x).first(3), static_cast<reduce_op>(7)), config_error);
}

namespace {

// codec::topk without decode_entries and encode_with_residual: the ring takes
// its generic path (copy before a decode, decode, r = e - decode(y)), the
// reference the in-place sparse path must match bit for bit.
struct plain_topk {
  codec::topk c;
  static constexpr bool is_sparse = true;
  codec_id id() const noexcept { return c.id(); }
  std::string_view name() const noexcept { return c.name(); }
  std::uint64_t config_hash() const noexcept { return c.config_hash(); }
  std::size_t max_encoded_bytes(std::size_t n) const noexcept { return c.max_encoded_bytes(n); }
  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng& g) const {
    return c.encode(in, out, g);
  }
  void decode(std::span<const std::byte> frame, std::span<float> out) const {
    c.decode(frame, out);
  }
  void decode_add(std::span<const std::byte> frame, std::span<float> acc) const {
    c.decode_add(frame, acc);
  }
  codec::work encode_work(std::size_t n) const noexcept { return c.encode_work(n); }
  codec::work decode_work(std::size_t n) const noexcept { return c.decode_work(n); }
};
static_assert(codec::sparse_codec<plain_topk>);
static_assert(!collective::ring_detail::entry_codec<plain_topk>);
static_assert(!codec::fused_residual<plain_topk>);
static_assert(collective::ring_detail::entry_codec<codec::topk>);
static_assert(codec::fused_residual<codec::topk>);

struct two_runs {
  std::vector<std::vector<float>> out1, out2, residual;
  std::vector<std::uint64_t> sent;
};

// Two runs of one ring object per rank (the second one on top of the first
// one's residual), with inputs from `salt`.
template <class Codec>
two_runs run_twice(int p, std::size_t n, reduce_op op, const ring_options& opts, const Codec& c,
                   std::uint64_t salt) {
  two_runs o;
  const auto up = static_cast<std::size_t>(p);
  o.out1.resize(up);
  o.out2.resize(up);
  o.residual.resize(up);
  o.sent.resize(up);
  auto errors = test::on_ranks(p, [&](inproc& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    collective::ring_allreduce<Codec, inproc> ring(t, n, c, opts);
    o.out1[r] = input(t.rank(), n, salt);
    ring.run(o.out1[r], op);
    o.out2[r] = input(t.rank(), n, salt + 1);
    o.sent[r] = ring.run(o.out2[r], op).bytes_sent;
    o.residual[r].assign(ring.residual().begin(), ring.residual().end());
  });
  test::rethrow_any(errors);
  return o;
}

}  // namespace

TEST_CASE(
    "ring allreduce, top-k: sparse in-place decode and fused residual match the generic "
    "path bit for bit",
    "[ring][sparse]") {
  std::uint64_t salt = 700;
  for (int p : {2, 3, 4})
    for (std::size_t n :
         {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1003}, std::size_t{300001}})
      for (bool sampled : {true, false})
        for (auto op : {reduce_op::sum, reduce_op::average})
          for (bool ef : {false, true})
            for (bool keep : {true, false})
              for (auto algo :
                   {collective::algorithm::ring, collective::algorithm::allgather_sparse}) {
                if (algo == collective::algorithm::allgather_sparse && (ef || !keep)) continue;
                if (!sampled && n > 100000 && p != 3) continue;  // exact on a large n: one p
                salt += 2;
                INFO("p=" << p << " n=" << n << " sampled=" << sampled << " op="
                          << collective::to_string(op) << " ef=" << ef << " keep_input=" << keep
                          << " algo=" << collective::to_string(algo) << " salt=" << salt);
                ring_options opts;
                opts.segment_bytes = n > 100000 ? 256 * 1024 : 1024;  // sampled from 65536
                opts.error_feedback = ef;
                opts.keep_input = keep;
                opts.algo = algo;
                const auto c =
                    sampled ? codec::topk::ratio(0.01).sampled() : codec::topk::ratio(0.01);
                const auto got = run_twice(p, n, op, opts, c, salt);
                const auto want = run_twice(p, n, op, opts, plain_topk{c}, salt);
                for (std::size_t r = 0; r < static_cast<std::size_t>(p); ++r) {
                  INFO("rank " << r);
                  REQUIRE(test::bit_equal(got.out1[r], want.out1[r]));
                  REQUIRE(test::bit_equal(got.out2[r], want.out2[r]));
                  REQUIRE(test::bit_equal(got.residual[r], want.residual[r]));
                  REQUIRE(got.sent[r] == want.sent[r]);
                  REQUIRE(test::bit_equal(got.out2[r], got.out2[0]));
                }
                if (ef && n > 1000 && algo == collective::algorithm::ring)  // something fed back
                  REQUIRE(std::any_of(got.residual[0].begin(), got.residual[0].end(),
                                      [](float v) { return v != 0.0F; }));
              }
}

namespace {

// A coded ring of p = 3 where rank 2 dies at its send `die_at`: each survivor
// either fails with its input bit for bit as passed, or finished with exactly
// the result of a run without the death.
template <class Codec>
void check_coded_death(const Codec& c, std::size_t n, std::size_t segment_bytes, reduce_op op,
                       std::initializer_list<int> die_ats, std::uint64_t salt) {
  const int p = 3;
  ring_options opts;
  opts.segment_bytes = segment_bytes;
  opts.error_feedback = true;
  std::vector<std::vector<float>> before(p), clean(p);
  for (int r = 0; r < p; ++r) {
    before[static_cast<std::size_t>(r)] = input(r, n, salt);
    clean[static_cast<std::size_t>(r)] = before[static_cast<std::size_t>(r)];
  }
  test::rethrow_any(test::on_ranks(p, [&](inproc& t) {
    collective::ring_allreduce<Codec, inproc> ring(t, n, c, opts);
    ring.run(clean[static_cast<std::size_t>(t.rank())], op);
  }));
  for (int die_at : die_ats) {
    INFO("codec " << c.name() << ", op " << collective::to_string(op)
                  << ", rank 2 dies at its send " << die_at);
    transport::inproc_world world(p, {2000ms});
    auto data = before;
    auto errors = test::on_ranks(world, [&](inproc& t) {
      dying_inproc d{t, world, t.rank() == 2 ? die_at : -1};
      collective::ring_allreduce<Codec, dying_inproc> ring(d, n, c, opts);
      ring.run(data[static_cast<std::size_t>(t.rank())], op);
    });
    check_survivors(errors, data, before,
                    [&](std::size_t r) { CHECK(test::bit_equal(data[r], clean[r])); });
  }
}

}  // namespace

TEST_CASE("ring allreduce, coded: a rank dying in either phase leaves survivors' input intact",
          "[ring][failure]") {
  for (auto op : {reduce_op::sum, reduce_op::average}) {
    // 393221 floats in 256 KiB segments: 3 segments per chunk, 2 agreement
    // sends, 6 of the reduce-scatter, 6 of the allgather; sampled selection.
    check_coded_death(codec::topk::ratio(0.01).sampled(), 393221, 256 * 1024, op,
                      {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}, 41);
    check_coded_death(codec::topk::ratio(0.05), 50000, 4096, op, {2, 5, 20, 35, 36, 50, 69}, 43);
    // Dense frames: saved piece by piece before each decode-add.
    check_coded_death(codec::int8{}, 50000, 4096, op, {2, 5, 20, 35, 36, 50, 69}, 45);
  }
}

TEST_CASE("ring allreduce: a caller's note rides on the agreement", "[ring][note]") {
  const std::size_t note_bytes = 40;
  for (int p = 1; p <= 4; ++p) {
    const std::size_t n = 97 + test::seed(60 + static_cast<std::uint64_t>(p)) % 200;
    INFO("p=" << p << " n=" << n);
    ring_options plain;
    ring_options noted;
    noted.note_bytes = note_bytes;
    // The note of rank r in call c: bytes from a seeded stream, so nothing about
    // the layout is assumed.
    auto note_of = [&](int r, int c) {
      std::vector<std::byte> b(note_bytes);
      const auto v = test::normal_floats(note_bytes, test::seed(70 + 10 * r + c));
      for (std::size_t i = 0; i < note_bytes; ++i)
        b[i] = static_cast<std::byte>(static_cast<int>(std::fabs(v[i]) * 1000) & 0xff);
      return b;
    };
    std::vector<std::vector<float>> ref(static_cast<std::size_t>(p)), got(ref);
    std::vector<std::uint64_t> sent_plain(ref.size()), sent_noted(ref.size());
    std::vector<int> bad_notes(ref.size(), 0), calls(ref.size(), 0);
    auto errors = test::on_ranks(p, [&](inproc& t) {
      const auto r = static_cast<std::size_t>(t.rank());
      collective::ring_allreduce<codec::int8, inproc> a(t, n, codec::int8(), plain);
      collective::ring_allreduce<codec::int8, inproc> b(t, n, codec::int8(), noted);
      ref[r] = input(t.rank(), n, 61);
      sent_plain[r] = a.run(ref[r], reduce_op::average).bytes_sent;
      got[r] = input(t.rank(), n, 61);
      for (int c = 0; c < 2; ++c) {
        const auto mine = note_of(t.rank(), c);
        std::vector<float> x = input(t.rank(), n, 61);
        const report rep = b.run(
            x, reduce_op::average, mine, [&](std::span<const std::span<const std::byte>> notes) {
              ++calls[r];
              if (notes.size() != static_cast<std::size_t>(p)) ++bad_notes[r];
              for (int q = 0; q < p && q < static_cast<int>(notes.size()); ++q) {
                const auto want = note_of(q, c);
                const auto seen = notes[static_cast<std::size_t>(q)];
                if (!std::equal(seen.begin(), seen.end(), want.begin(), want.end())) ++bad_notes[r];
              }
            });
        if (c == 0) {
          sent_noted[r] = rep.bytes_sent;
          got[r] = x;
        }
      }
    });
    test::rethrow_any(errors);
    for (std::size_t r = 0; r < ref.size(); ++r) {
      CHECK(calls[r] == 2);
      CHECK(bad_notes[r] == 0);
      // The note changes nothing but the header's size: same result, (p-1) notes more sent.
      CHECK(test::bit_equal(got[r], ref[r]));
      CHECK(sent_noted[r] == sent_plain[r] + static_cast<std::uint64_t>(p - 1) * note_bytes);
    }
  }
}

TEST_CASE("ring allreduce: a note handler's mismatch leaves data and object intact",
          "[ring][note][mismatch]") {
  const int p = 3;
  const std::size_t n = 211;
  ring_options o;
  o.note_bytes = 8;
  std::vector<std::vector<float>> first(p), second(p), before(p);
  auto errors = test::on_ranks(p, [&](inproc& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    collective::ring_allreduce<codec::none, inproc> ring(t, n, {}, o);
    std::vector<std::byte> note(8, static_cast<std::byte>(t.rank() == 1 ? 7 : 0));
    auto x = input(t.rank(), n, 80);
    before[r] = x;
    // Every rank sees rank 1's odd note and refuses, before data moves.
    CHECK_THROWS_MATCHES(
        ring.run(x, reduce_op::sum, note,
                 [&](std::span<const std::span<const std::byte>> notes) {
                   for (std::size_t q = 0; q < notes.size(); ++q)
                     if (notes[q][0] != std::byte{0})
                       throw mismatch_error(detail::str("rank ", q, " sent a note"));
                 }),
        mismatch_error, test::what_has("rank 1 sent a note"));
    first[r] = x;
    // The object is still usable: the same call without the odd note reduces.
    std::fill(note.begin(), note.end(), std::byte{0});
    ring.run(x, reduce_op::sum, note, nullptr);
    second[r] = x;
    // A note of the wrong size, or none of the size at all, is the caller's error.
    std::vector<std::byte> short_note(7);
    auto y = before[r];
    CHECK_THROWS_MATCHES(ring.run(y, reduce_op::sum, short_note, nullptr), config_error,
                         test::what_has("a note of 7 bytes, but note_bytes is 8"));
    CHECK(test::bit_equal(y, before[r]));
  });
  test::rethrow_any(errors);
  for (std::size_t r = 0; r < before.size(); ++r) {
    CHECK(test::bit_equal(first[r], before[r]));
    for (std::size_t i = 0; i < n; ++i) {
      double want = 0;
      for (int q = 0; q < p; ++q) want += before[static_cast<std::size_t>(q)][i];
      REQUIRE(std::fabs(second[r][i] - want) <= 1e-5 * (1 + std::fabs(want)));
    }
  }
  transport::inproc_world w(1);
  auto t = w.rank(0);
  ring_options big;
  big.note_bytes = collective::max_note_bytes + 1;
  CHECK_THROWS_MATCHES((collective::ring_allreduce<codec::none, inproc>(t, 4, {}, big)),
                       config_error, test::what_has("note_bytes must be <= 4096"));
}
