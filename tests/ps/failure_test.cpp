// Bad requests, dead workers and exactly-once application.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <limits>
#include <string>
#include <thread>

#include "ps/harness.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using test::endpoint;
using test::what_has;
using namespace std::chrono_literals;

namespace {
using clk = std::chrono::steady_clock;

/// Sends raw bytes as a request to server rank 0 and parses the reply.
ps::reply_header raw_exchange(endpoint& t, std::span<const std::byte> msg, std::string* text) {
  t.send(0, msg);
  std::vector<std::byte> buf(4096);
  const auto n = t.recv(0, buf);
  const auto v = ps::parse_reply(std::span<const std::byte>(buf).first(n));
  if (text) text->assign(reinterpret_cast<const char*>(v.payload.data()), v.payload.size());
  return v.header;
}
}  // namespace

TEST_CASE("ps: bad pushes and pulls are refused with the key named, parameters unchanged",
          "[ps][errors]") {
  const std::vector<ps::key_spec> keys{{"a", 10}, {"b", 4}};
  const auto init_a = test::normal_floats(10, test::seed(30));
  const auto init_b = test::normal_floats(4, test::seed(31));
  test::ps_world world(2);
  std::vector<float> final_a, final_b;
  ps::server_stats st;
  test::run_ranks(
      world, 1, 2,
      [&](endpoint& t) {
        ps::server<endpoint> srv(t, ps::roles(1, 2), keys, ps::sgd(0.1F));
        srv.init("a", init_a);
        srv.init("b", init_b);
        srv.run();
        final_a = srv.params("a");
        final_b = srv.params("b");
        st = srv.stats();
      },
      [&](endpoint& t) {
        const ps::roles r(1, 2);
        {  // the worker believes "a" is longer and "b" shorter
          ps::worker<endpoint> wk(t, r, {{"a", 12}, {"b", 3}});
          // Too long for the server's buffer: refused before sending.
          CHECK_THROWS_MATCHES(
              wk.push("a", std::vector<float>(12, 1.0F)), mismatch_error,
              what_has("push of key 'a'", "key table differs", "nothing was sent"));
          CHECK_THROWS_MATCHES(
              wk.push("b", std::vector<float>(3, 1.0F)), mismatch_error,
              what_has("push of key 'b'", "4 elements", "says 3", "parameters unchanged"));
          std::vector<float> p(12);
          CHECK_THROWS_MATCHES(wk.pull("a", p), mismatch_error, what_has("pull of key 'a'"));
          // Errors from the server leave the worker usable.
          wk.finish();  // later calls fail locally
          CHECK_THROWS_AS(wk.push("b", std::vector<float>(3, 0.0F)), config_error);
        }
      });
  CHECK(final_a == init_a);
  CHECK(final_b == init_b);
  CHECK(st.rejected == 2);
  CHECK(st.updates == 0);
}

TEST_CASE("ps: wrong codec, unknown key, malformed bytes and local checks", "[ps][errors]") {
  const std::vector<ps::key_spec> keys{{"a", 10}};
  const auto init = test::normal_floats(10, test::seed(32));
  test::ps_world world(4);
  std::vector<float> final_a;
  test::run_ranks(
      world, 1, 4,
      [&](endpoint& t) {
        ps::ps_options o;
        o.mode = ps::consistency::async();
        ps::server<endpoint> srv(t, ps::roles(1, 4), keys, ps::sgd(0.1F), o);
        srv.init("a", init);
        srv.run();
        final_a = srv.params("a");
      },
      [&](endpoint& t) {
        const ps::roles r(1, 4);
        if (t.rank() == 1) {
          ps::worker<endpoint, test::doubled> wk(t, r, keys);
          CHECK_THROWS_MATCHES(wk.push("a", std::vector<float>(10, 1.0F)), mismatch_error,
                               what_has("key 'a'", "decodes none", "parameters unchanged"));
        } else if (t.rank() == 2) {
          ps::worker<endpoint> wk(t, r, {{"a", 10}, {"zz", 3}});
          CHECK_THROWS_MATCHES(wk.push("zz", std::vector<float>(3, 1.0F)), config_error,
                               what_has("push of key 'zz'", "key id 1 is unknown"));
          CHECK_THROWS_MATCHES(wk.push("nope", std::vector<float>(3, 1.0F)), config_error,
                               what_has("'nope'", "no such key"));
          CHECK_THROWS_MATCHES(wk.push("a", std::vector<float>(3, 1.0F)), config_error,
                               what_has("'a'", "3 elements", "has 10"));
          std::vector<float> bad(10, 0.0F);
          bad[7] = std::nanf("");
          CHECK_THROWS_MATCHES(wk.push("a", bad), numeric_error, what_has("element 7"));
        } else {
          // Raw bytes from rank 3: garbage, a truncated frame, a lying length.
          std::string text;
          const auto junk = test::random_bytes(77, test::seed(33));
          CHECK(raw_exchange(t, junk, &text).status == ps::reply_status::bad_request);
          CHECK(text.find("malformed request") != std::string::npos);
          std::vector<std::byte> m(ps::request_header_bytes + frame_header_bytes + 40);
          rng g;
          const std::vector<float> ones(10, 1.0F);
          const auto len = codec::none{}.encode(
              ones, std::span<std::byte>(m).subspan(ps::request_header_bytes), g);
          ps::request_header h;
          h.kind = ps::request_kind::push;
          h.length = 10;
          h.codec_hash = codec::none{}.config_hash();
          h.payload_bytes = len - 4;  // cut the frame's last value
          ps::write_request(m, h);
          CHECK(raw_exchange(t, std::span(m).first(ps::request_header_bytes + len - 4), &text)
                    .status == ps::reply_status::bad_request);
          CHECK(text.find("key 'a'") != std::string::npos);
          {  // a well-formed frame whose element 6 is NaN: the server's finiteness check
            auto nan_frame = m;
            const float nan = std::nanf("");
            std::memcpy(nan_frame.data() + ps::request_header_bytes + frame_header_bytes + 4 * 6,
                        &nan, 4);
            h.payload_bytes = len;
            ps::write_request(nan_frame, h);
            CHECK(raw_exchange(t, std::span(nan_frame).first(ps::request_header_bytes + len), &text)
                      .status == ps::reply_status::bad_request);
            CHECK(text.find("element 6 decodes to nan") != std::string::npos);
          }
          h.payload_bytes = len;
          h.step = 5;  // async accepts only the worker's next step
          ps::write_request(m, h);
          CHECK(raw_exchange(t, std::span(m).first(ps::request_header_bytes + len), &text).status ==
                ps::reply_status::out_of_step);
          h.kind = ps::request_kind::pull;
          h.payload_bytes = 0;
          h.codec_hash = 12345;
          ps::write_request(m, h);
          CHECK(raw_exchange(t, std::span(m).first(ps::request_header_bytes), &text).status ==
                ps::reply_status::wrong_codec);
          ps::worker<endpoint> wk(t, r, keys);  // says bye at the end
        }
      });
  CHECK(final_a == init);
}

TEST_CASE("ps push_pull: parameters the server cannot encode leave the push counted",
          "[ps][errors]") {
  // The first update makes w[0] infinite (fp32 frames refuse it), the second
  // one finite again. The push is applied either way; its reply then carries
  // no parameters, and the worker says so without undoing the push.
  const std::vector<ps::key_spec> keys{{"w", 4}};
  std::vector<std::string> logs;
  std::string first, pulled;
  std::uint64_t step_after = 0;
  std::vector<float> p2(4, 0.0F);
  bool second = false;
  test::ps_world world(2);
  test::run_ranks(
      world, 1, 2,
      [&](endpoint& t) {
        ps::ps_options o;
        o.mode = ps::consistency::async();
        auto rule = ps::update_rule::custom(
            [](const ps::update_context& c, std::span<float> p, std::span<const float> g) {
              for (std::size_t i = 0; i < p.size(); ++i) p[i] -= g[i];
              p[0] = c.step == 0 ? std::numeric_limits<float>::infinity() : 1.0F;
            });
        ps::server<endpoint> srv(t, ps::roles(1, 2), keys, rule, o, codec::none{}, codec::none{},
                                 [&](std::string_view line) { logs.emplace_back(line); });
        srv.run();
      },
      [&](endpoint& t) {
        ps::worker<endpoint> wk(t, ps::roles(1, 2), keys);
        const std::vector<float> g(4, 0.5F);
        std::vector<float> p(4);
        try {
          (void)wk.push_pull("w", g, p);
        } catch (const decode_error& e) {
          first = e.what();
        }
        step_after = wk.step("w");
        try {
          (void)wk.pull("w", p);
        } catch (const decode_error& e) {
          pulled = e.what();
        }
        (void)wk.push_pull("w", g, p2);
        second = true;
      });
  CHECK(first.find("push_pull of key 'w': the server applied the push but could not send") !=
        std::string::npos);
  CHECK(step_after == 1);
  CHECK(pulled.find("could not encode key 'w'") != std::string::npos);
  CHECK(second);
  CHECK(p2[0] == 1.0F);
  CHECK(p2[1] == -1.0F);  // 0 - 0.5 - 0.5: both pushes applied once
  bool logged = false;
  for (const auto& l : logs) logged |= l.find("is applied") != std::string::npos;
  CHECK(logged);
}

TEST_CASE("ps sync: a dead worker gives every other worker peer_error within 2x the timeout",
          "[ps][failure]") {
  const auto timeout = 300ms;
  for (bool closes : {false, true}) {
    const int S = 1, W = 3;
    const std::vector<ps::key_spec> keys{{"p", 8}};
    test::ps_world world(S + W);
    std::vector<std::string> logs;
    std::mutex lm;
    std::atomic<int> peer_errors{0};
    std::vector<float> after_step0, final_p;
    ps::server_stats st;
    test::run_ranks(
        world, S, S + W,
        [&](endpoint& t) {
          ps::ps_options o;
          o.timeout = timeout;
          ps::server<endpoint> srv(t, ps::roles(S, S + W), keys, ps::sgd(0.1F), o, {}, {},
                                   [&](std::string_view l) {
                                     std::lock_guard lock(lm);
                                     logs.emplace_back(l);
                                   });
          srv.run();
          final_p = srv.params("p");
          st = srv.stats();
        },
        [&](endpoint& t) {
          ps::worker<endpoint> wk(t, ps::roles(S, S + W), keys);
          const std::vector<float> g(8, 1.0F);
          wk.push("p", g);  // step 0 completes for everyone
          if (wk.index() == 2) {
            if (closes) {
              t.abort();  // dies: its connection goes away
            } else {
              std::this_thread::sleep_for(3 * timeout);  // hangs, silent
              CHECK_THROWS_MATCHES(wk.push("p", g), peer_error, what_has("dropped worker 2"));
            }
            return;
          }
          if (wk.index() == 0) {
            after_step0.resize(8);
            wk.pull("p", after_step0);
          }
          const auto t0 = clk::now();
          CHECK_THROWS_MATCHES(
              wk.push("p", g), peer_error,
              what_has("push of key 'p'", "worker 2", "sync step cannot complete"));
          const auto waited = clk::now() - t0;
          CHECK(waited < 2 * timeout);
          ++peer_errors;
        });
    INFO("closes " << closes);
    CHECK(peer_errors == 2);
    CHECK(st.dropped == std::vector<int>{2});
    REQUIRE(logs.size() == 1);
    CHECK(logs[0].find("worker 2") != std::string::npos);
    CHECK(final_p == after_step0);  // the failed step left no trace
    CHECK(st.updates == 1);
    CHECK(st.pushes_applied == std::vector<std::uint64_t>{1, 1, 1});
  }
}

TEST_CASE(
    "ps async and ssp: a dead worker is dropped and the rest carry on; acked pushes are applied "
    "exactly once",
    "[ps][failure]") {
  for (const char* mode : {"async", "ssp:1"}) {
    const int S = 2, W = 3, steps = 30;
    const std::vector<ps::key_spec> keys{{"p", 8}, {"q", 5}};
    test::ps_world world(S + W);
    std::atomic<std::uint64_t> rule_calls{0};
    std::vector<std::uint64_t> acked(static_cast<std::size_t>(W), 0);
    std::vector<std::uint64_t> applied(static_cast<std::size_t>(W), 0);
    std::vector<int> dropped;
    std::mutex m;
    test::run_ranks(
        world, S, S + W,
        [&](endpoint& t) {
          ps::ps_options o;
          o.mode = ps::consistency::parse(mode);
          o.timeout = 200ms;
          auto rule = ps::update_rule::custom(
              [&](const ps::update_context&, std::span<float> p, std::span<const float> g) {
                ++rule_calls;
                for (std::size_t i = 0; i < p.size(); ++i) p[i] -= 0.01F * g[i];
              });
          ps::server<endpoint> srv(t, ps::roles(S, S + W), keys, rule, o, {}, {},
                                   [](std::string_view) {});
          srv.run();
          const auto st = srv.stats();
          std::lock_guard lock(m);
          for (int w = 0; w < W; ++w)
            applied[static_cast<std::size_t>(w)] += st.pushes_applied[static_cast<std::size_t>(w)];
          if (!st.dropped.empty()) dropped = st.dropped;
        },
        [&](endpoint& t) {
          ps::worker<endpoint> wk(t, ps::roles(S, S + W), keys);
          const int w = wk.index();
          const std::vector<float> gp(8, 1.0F), gq(5, 1.0F);
          for (int step = 0; step < steps; ++step) {
            if (w == 1 && step == 3) {
              t.abort();  // dies mid-run
              return;
            }
            wk.push("p", gp);
            wk.push("q", gq);
            acked[static_cast<std::size_t>(w)] += 2;
          }
        });
    INFO("mode " << mode);
    CHECK(dropped == std::vector<int>{1});
    CHECK(acked == std::vector<std::uint64_t>{2 * steps, 6, 2 * steps});
    CHECK(applied == acked);
    CHECK(rule_calls == acked[0] + acked[1] + acked[2]);
  }
}

TEST_CASE("ps ssp: a silent worker is dropped after the timeout, releasing the others",
          "[ps][failure]") {
  const int S = 1, W = 2, steps = 10;
  const std::vector<ps::key_spec> keys{{"p", 4}};
  test::ps_world world(S + W);
  std::vector<int> dropped;
  test::run_ranks(
      world, S, S + W,
      [&](endpoint& t) {
        ps::ps_options o;
        o.mode = ps::consistency::bounded_staleness(2);
        o.timeout = 150ms;
        ps::server<endpoint> srv(t, ps::roles(S, S + W), keys, ps::sgd(0.1F), o, {}, {},
                                 [](std::string_view) {});
        srv.run();
        dropped = srv.stats().dropped;
      },
      [&](endpoint& t) {
        ps::worker<endpoint> wk(t, ps::roles(S, S + W), keys);
        const std::vector<float> g(4, 1.0F);
        if (wk.index() == 1) {
          wk.push("p", g);
          std::this_thread::sleep_for(600ms);  // silent well past the timeout
          CHECK_THROWS_AS(wk.push("p", g), peer_error);
          return;  // the destructor's bye ends its receive loop
        }
        const auto t0 = clk::now();
        for (int i = 0; i < steps; ++i) wk.push("p", g);  // blocks at step 3 until the drop
        CHECK(clk::now() - t0 < 450ms);
      });
  CHECK(dropped == std::vector<int>{1});
}
