// greenreduce/ps/worker.hpp — the worker side of the parameter server.
//
// A worker pushes gradients of named keys to the server that owns each key
// (ps/placement.hpp) and pulls parameters back. Pushes are encoded with any
// codec; with error feedback on, the worker keeps one codec::error_feedback<C>
// per key (Seide et al. 2014; Karimireddy et al. 2019: e = g + r, send C(e),
// r = e - decode(C(e))) and keeps a copy of the residual until the server
// acknowledged the push; a refused or failed push restores it, so it loses
// nothing. Pulls come back as
// plain fp32 or, with encoded_pull, encoded by the server with PullCodec.
//
// Every push and pull returns a report: op "push"/"pull", algo "ps", the wire
// bytes of this rank's transport during the call, raw_bytes = 4n, the wall
// time, the codec work and the energy estimate of worker_options::energy (the
// process default model when empty). A worker uses its transport from one thread (the
// caller's) and has at most one request in flight.
//
// Blocking: in sync mode a push returns once every live worker pushed that key
// for that step and the update was applied, so workers must push keys in the
// same order; in SSP a push returns once the worker is within the staleness
// bound. Errors name the key: config_error (unknown key, wrong gradient size),
// mismatch_error (the server disagrees on length, codec or step),
// decode_error (a malformed exchange), peer_error (a worker died in sync mode,
// or this worker was dropped).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/codec/error_feedback.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/core/buffer.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/core/report.hpp"
#include "greenreduce/core/rng.hpp"
#include "greenreduce/energy/model.hpp"
#include "greenreduce/ps/options.hpp"
#include "greenreduce/ps/placement.hpp"
#include "greenreduce/ps/protocol.hpp"
#include "greenreduce/transport/concept.hpp"

namespace greenreduce::ps {

struct worker_options {
  /// Keep a residual per key (ignored for codec::none, which is exact).
  bool error_feedback = true;
  /// Ask servers to send parameters encoded with PullCodec instead of fp32.
  bool encoded_pull = false;
  /// Seed of the push codec's rng (stream = worker rank).
  std::uint64_t seed = 0x67726565ULL;
  /// The model that fills every push/pull report's energy estimate; empty
  /// means energy::default_model() (GREENREDUCE_ENERGY_* of the process).
  std::optional<energy::model> energy;
  /// Called on every push/pull report after the estimate, e.g. to add a meter's reading.
  std::function<void(report&)> annotate;
};

template <transport::transport Transport, codec::codec Codec = codec::none,
          codec::codec PullCodec = codec::none>
class worker {
  using clock = std::chrono::steady_clock;
  static constexpr bool exact_codec = std::is_same_v<Codec, codec::none>;

 public:
  worker(Transport& t, roles r, std::vector<key_spec> keys, worker_options opt = {},
         Codec c = Codec(), PullCodec pc = PullCodec())
      : t_(t),
        roles_(r),
        keys_(std::move(keys)),
        place_(place(keys_, r.servers)),
        opt_(opt),
        model_(opt_.energy ? *opt_.energy : energy::default_model()),
        codec_(std::move(c)),
        pull_codec_(std::move(pc)),
        rng_(opt.seed, static_cast<std::uint64_t>(t.rank())),
        steps_(keys_.size(), 0),
        bounds_(static_cast<std::size_t>(r.servers), 0),
        pull_checked_(static_cast<std::size_t>(r.servers), 0),
        outside_at_push_(keys_.size(), 0),
        last_return_(clock::now()) {
    if (r.size != t.size())
      throw config_error(detail::str("ps worker: roles describe ", r.size,
                                     " ranks but the transport has ", t.size()));
    if (!r.is_worker(t.rank()))
      throw config_error(detail::str("ps worker: rank ", t.rank(),
                                     " is a server (servers are ranks [0, ", r.servers, "))"));
    std::size_t max_len = 0;
    for (const auto& k : keys_) max_len = std::max(max_len, k.length);
    if (use_ef()) {
      ef_.reserve(keys_.size());
      for (std::size_t k = 0; k < keys_.size(); ++k) ef_.emplace_back(codec_, keys_[k].length);
      ef_saved_.resize(max_len);
    }
    const std::size_t pull_cap =
        std::max(codec::none{}.max_encoded_bytes(max_len), pull_codec_.max_encoded_bytes(max_len));
    send_buf_.resize(request_header_bytes + codec_.max_encoded_bytes(max_len));
    // Replies: a pull frame, the shares of every worker, or an error text.
    recv_buf_.resize(
        reply_header_bytes +
        std::max({pull_cap, static_cast<std::size_t>(8 * r.workers()), max_error_text}));
  }

  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;
  /// Says bye to every server (errors ignored); see finish().
  ~worker() {
    try {
      finish();
    } catch (...) {
    }
  }

  /// Pushes the gradient of `key` for this worker's next step of that key.
  report push(std::string_view key, std::span<const float> grad) {
    return push_impl(key, grad, {}, false);
  }

  /// push(key, grad), then the key's parameters into `params` (plain or
  /// encoded, as pull), in one round trip: the server answers the push, once
  /// it acknowledges it (sync: the step completed; SSP: within the bound),
  /// with what a pull right after would return. Half the requests of push +
  /// pull. Encoded, the first one to each server is preceded by a pull of the
  /// key, which checks the server's pull codec (a push carries only the push
  /// codec's hash). After the server acknowledged the push, a reply that does
  /// not decode throws decode_error with the push counted (not repeated).
  report push_pull(std::string_view key, std::span<const float> grad, std::span<float> params) {
    return push_impl(key, grad, params, true);
  }

 private:
  report push_impl(std::string_view key, std::span<const float> grad, std::span<float> params,
                   bool with_params) {
    const char* const op = with_params ? "push_pull" : "push";
    const std::size_t k = key_id(key, op);
    const auto& spec = keys_[k];
    if (grad.size() != spec.length)
      throw config_error(detail::str(op, " of key '", spec.name, "': the gradient has ",
                                     grad.size(), " elements, the key has ", spec.length));
    if (with_params && params.size() != spec.length)
      throw config_error(detail::str(op, " of key '", spec.name, "': the output has ",
                                     params.size(), " elements, the key has ", spec.length));
    const auto start = clock::now();
    report rep = begin(op);  // the checking pull's bytes, time and work count too
    if (with_params && opt_.encoded_pull &&
        !pull_checked_[static_cast<std::size_t>(place_.owner[k])]) {
      const report pr = pull(key, params);
      rep.raw_bytes += pr.raw_bytes;
      rep.memory_bytes += pr.memory_bytes;
      rep.compute_ops += pr.compute_ops;
    }
    (void)enter();
    const call_scope scope{this};
    rep.codec = std::string(codec_.name());
    rep.raw_bytes += 4 * static_cast<std::uint64_t>(spec.length);
    // Encode (with the residual when error feedback is on) after the header.
    const auto body = std::span<std::byte>(send_buf_).subspan(request_header_bytes);
    std::size_t len = 0;
    message_view<reply_header> reply;
    // The residual before this push: restored unless the server acknowledges it.
    const auto saved = std::span<float>(ef_saved_).first(use_ef() ? spec.length : 0);
    if (use_ef()) {
      const auto r = ef_[k].residual();
      std::copy(r.begin(), r.end(), saved.begin());
    }
    try {
      if (use_ef()) {
        len = ef_[k].encode(grad, body, rng_);
        rep.memory_bytes += 24 * spec.length;
        rep.compute_ops += 3 * spec.length;
        add_work(rep, codec_.decode_work(spec.length));
      } else {
        len = codec_.encode(grad, body, rng_);
      }
      add_work(rep, codec_.encode_work(spec.length));
      request_header h;
      h.kind = request_kind::push;
      if (with_params)
        h.flags = opt_.encoded_pull ? request_flags::with_params | request_flags::encoded_params
                                    : request_flags::with_params;
      h.key = static_cast<std::uint32_t>(k);
      h.samples = samples_;
      h.step = steps_[k];
      h.length = spec.length;
      h.codec_hash = codec_.config_hash();
      h.compute_ns = steps_[k] == 0            ? 0
                     : stated_compute_ns_ != 0 ? stated_compute_ns_
                                               : outside_ns_ - outside_at_push_[k];
      h.payload_bytes = len;
      write_request(send_buf_, h);
      const int owner = place_.owner[k];
      if (request_header_bytes + len > bound_of(owner))
        throw mismatch_error(detail::str(
            "push of key '", spec.name, "': the request needs ", request_header_bytes + len,
            " bytes but server rank ", roles_.server_rank(owner), " accepts at most ",
            bound_of(owner), ", so its key table differs from this worker's (key '", spec.name,
            "' has ", spec.length, " elements here); nothing was sent"));
      outside_at_push_[k] = outside_ns_;
      reply = exchange(k, std::span<const std::byte>(send_buf_).first(request_header_bytes + len),
                       request_kind::push, spec.name);
    } catch (...) {
      if (use_ef()) ef_[k].restore(saved);
      throw;
    }
    ++steps_[k];
    if (with_params) {  // the push landed: from here on an error does not undo it
      rep.raw_bytes += 4 * static_cast<std::uint64_t>(spec.length);
      add_work(rep, decode_params(reply, spec, params, op));
    }
    return finish_report(rep, start);
  }

  /// Decodes the parameters a pull or push_pull reply carries; returns the work.
  codec::work decode_params(const message_view<reply_header>& reply, const key_spec& spec,
                            std::span<float> params, const char* op) {
    if (reply.header.length == 0 && reply.payload.empty() && spec.length != 0 &&
        reply.header.kind == request_kind::push)
      throw decode_error(detail::str(op, " of key '", spec.name,
                                     "': the server applied the push but could not send the "
                                     "parameters (a pull names the cause)"));
    if (reply.header.length != spec.length)
      throw decode_error(detail::str(op, " of key '", spec.name, "': the reply declares ",
                                     reply.header.length, " elements, the key has ", spec.length));
    try {
      if (opt_.encoded_pull) {
        pull_codec_.decode(reply.payload, params);
        return pull_codec_.decode_work(spec.length);
      }
      codec::none{}.decode(reply.payload, params);
      return codec::none{}.decode_work(spec.length);
    } catch (const decode_error& e) {
      throw decode_error(detail::str(op, " of key '", spec.name, "': ", e.what()));
    }
  }

 public:
  /// Pulls the parameters of `key` into `params` (plain or encoded, see worker_options).
  report pull(std::string_view key, std::span<float> params) {
    const auto t0 = enter();
    const call_scope scope{this};
    const std::size_t k = key_id(key, "pull");
    const auto& spec = keys_[k];
    if (params.size() != spec.length)
      throw config_error(detail::str("pull of key '", spec.name, "': the output has ",
                                     params.size(), " elements, the key has ", spec.length));
    report rep = begin("pull");
    rep.raw_bytes = 4 * static_cast<std::uint64_t>(spec.length);
    request_header h;
    h.kind = request_kind::pull;
    h.key = static_cast<std::uint32_t>(k);
    h.length = spec.length;
    h.codec_hash = opt_.encoded_pull ? pull_codec_.config_hash() : codec::none{}.config_hash();
    write_request(send_buf_, h);
    const auto reply =
        exchange(k, std::span<const std::byte>(send_buf_).first(request_header_bytes),
                 request_kind::pull, spec.name);
    rep.codec = opt_.encoded_pull ? std::string(pull_codec_.name()) : "none";
    add_work(rep, decode_params(reply, spec, params, "pull"));
    // The server accepted this worker's pull codec (hash checked): push_pull may skip the check.
    pull_checked_[static_cast<std::size_t>(place_.owner[k])] = 1;
    return finish_report(rep, t0);
  }

  /// Batch shares per worker index (sum 1), measured by the server that owns
  /// the largest key. Scale your global batch by shares()[my_index()].
  std::vector<double> shares() {
    enter();
    const call_scope scope{this};
    request_header h;
    h.kind = request_kind::shares;
    write_request(send_buf_, h);
    const auto reply = exchange_with(
        largest_owner(), std::span<const std::byte>(send_buf_).first(request_header_bytes),
        request_kind::shares, "(shares)");
    const auto W = static_cast<std::size_t>(roles_.workers());
    if (reply.header.length != W || reply.payload.size() != 8 * W)
      throw decode_error(detail::str("shares reply carries ", reply.header.length, " values in ",
                                     reply.payload.size(), " bytes, expected ", W, " in ", 8 * W));
    std::vector<double> sh(W);
    for (std::size_t i = 0; i < W; ++i) {
      const auto bits = load_le<std::uint64_t>(reply.payload.data() + 8 * i);
      std::memcpy(&sh[i], &bits, 8);
    }
    return sh;
  }

  /// Schedules consistency mode `m` on every server from step `from_step` of
  /// every key on (0: the earliest step no worker has reached on the first
  /// server, then the same step on the others); returns that step. Every push
  /// of a step >= it is then served under `m`, whichever worker pushes it.
  /// Several workers may ask for the same change (the same m and step): each
  /// is accepted. config_error when a server refuses it (that step already
  /// reached, or an invalid mode), mismatch_error when another change is
  /// scheduled at or after that step. Servers asked before a refusing one keep
  /// the change; ask for a step every worker is still before (in SSP with
  /// bound s, at least s + 2 steps after this worker's) so none refuses.
  std::uint64_t change_consistency(consistency m, std::uint64_t from_step = 0) {
    enter();
    const call_scope scope{this};
    request_header h;
    h.kind = request_kind::mode;
    h.samples = m.mode == consistency::kind::sync    ? 1U
                : m.mode == consistency::kind::async ? 2U
                                                     : 3U;
    h.length = m.staleness;
    std::uint64_t at = from_step;
    for (int s = 0; s < roles_.servers; ++s) {
      h.step = at;
      write_request(send_buf_, h);
      const auto reply =
          exchange_with(s, std::span<const std::byte>(send_buf_).first(request_header_bytes),
                        request_kind::mode, detail::str("(consistency ", m.to_string(), ")"));
      if (s > 0 && reply.header.step != at)
        throw decode_error(detail::str("consistency change to ", m.to_string(), ": server rank ",
                                       roles_.server_rank(s), " applies it from step ",
                                       reply.header.step, ", asked for ", at));
      at = reply.header.step;
    }
    return at;
  }

  /// Samples this worker processes per step, reported with each push so the
  /// servers can measure its throughput (default 1: steps per second).
  void set_samples(std::uint32_t n) noexcept { samples_ = n; }

  /// The compute time of one step, stated instead of measured: from now on
  /// each push (after a key's first) reports `per_step` as the time since that
  /// key's previous push, in place of the measured time spent outside the
  /// library. For a step timed elsewhere (GPU events, a simulated slow node)
  /// or a host whose wall clock is shared with other work. Zero (the default)
  /// measures again; a negative duration is a config_error.
  void set_compute_time(std::chrono::nanoseconds per_step) {
    if (per_step.count() < 0)
      throw config_error(detail::str("ps worker: set_compute_time(", per_step.count(),
                                     " ns): a compute time cannot be negative"));
    stated_compute_ns_ = static_cast<std::uint64_t>(per_step.count());
  }

  /// Tells every server this worker is done. Idempotent; later pushes/pulls fail.
  void finish() {
    if (finished_) return;
    finished_ = true;
    if (broken_) return;
    request_header h;
    h.kind = request_kind::bye;
    write_request(send_buf_, h);
    for (int s = 0; s < roles_.servers; ++s)
      t_.send(roles_.server_rank(s),
              std::span<const std::byte>(send_buf_).first(request_header_bytes));
  }

  /// This worker's index among the workers.
  int index() const noexcept { return roles_.worker_index(t_.rank()); }
  /// Pushes of `key` acknowledged so far (the step of the next push).
  std::uint64_t step(std::string_view key) const { return steps_[key_id(key, "step")]; }
  const placement& layout() const noexcept { return place_; }

 private:
  bool use_ef() const noexcept { return !exact_codec && opt_.error_feedback; }

  /// Marks the end of a library call (normal or by exception) for the
  /// compute-time measurement.
  struct call_scope {
    worker* self;
    ~call_scope() { self->last_return_ = clock::now(); }
  };

  clock::time_point enter() {
    if (finished_) throw config_error("ps worker: finish() was called; build a new worker");
    if (broken_)
      throw peer_error(detail::str("ps worker rank ", t_.rank(),
                                   " is unusable after an earlier transport error: ", broken_why_));
    const auto now = clock::now();
    outside_ns_ += static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_return_).count());
    return now;
  }

  report begin(std::string op) {
    report r;
    r.op = std::move(op);
    r.algo = "ps";
    r.bytes_sent = t_.bytes_sent();
    r.bytes_received = t_.bytes_received();
    return r;
  }
  report finish_report(report& r, clock::time_point t0) {
    r.bytes_sent = t_.bytes_sent() - r.bytes_sent;
    r.bytes_received = t_.bytes_received() - r.bytes_received;
    r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    model_.annotate(r);
    if (opt_.annotate) opt_.annotate(r);
    return r;
  }
  static void add_work(report& r, const codec::work& w) {
    r.memory_bytes += w.memory_bytes;
    r.compute_ops += w.ops;
  }

  /// The largest request server s accepts, asked once with a hello.
  std::uint64_t bound_of(int s) {
    auto& b = bounds_[static_cast<std::size_t>(s)];
    if (b == 0) {
      request_header h;
      h.kind = request_kind::hello;
      byte_buffer req(request_header_bytes);
      write_request(req, h);
      b = exchange_with(s, req, request_kind::hello, "(hello)").header.length;
    }
    return b;
  }

  int largest_owner() const {
    std::size_t best = 0;
    for (std::size_t k = 1; k < keys_.size(); ++k)
      if (keys_[k].length > keys_[best].length) best = k;
    return keys_.empty() ? 0 : place_.owner[best];
  }

  message_view<reply_header> exchange(std::size_t k, std::span<const std::byte> req,
                                      request_kind kind, std::string_view name) {
    return exchange_with(place_.owner[k], req, kind, name);
  }

  /// Sends one request to server `s` and receives its reply; turns an error
  /// reply into the matching exception, prefixed with the key's name.
  message_view<reply_header> exchange_with(int s, std::span<const std::byte> req, request_kind kind,
                                           std::string_view name) {
    const int peer = roles_.server_rank(s);
    std::size_t n = 0;
    try {
      t_.send(peer, req);
      n = t_.recv(peer, recv_buf_);
    } catch (const std::exception& e) {
      broken_ = true;
      broken_why_ = e.what();
      throw;
    }
    message_view<reply_header> v;
    try {
      v = parse_reply(std::span<const std::byte>(recv_buf_).first(n));
    } catch (const decode_error& e) {
      throw decode_error(detail::str(to_string(kind), " of key '", name, "': server rank ", peer,
                                     " sent a malformed reply: ", e.what()));
    }
    if (v.header.status != reply_status::ok) {
      const std::string_view text(reinterpret_cast<const char*>(v.payload.data()),
                                  v.payload.size());
      throw_reply_error(v.header.status,
                        detail::str(to_string(kind), " of key '", name, "' refused by server rank ",
                                    peer, ": ", text));
    }
    if (v.header.kind != kind)
      throw decode_error(detail::str(to_string(kind), " of key '", name, "': server rank ", peer,
                                     " answered a ", to_string(v.header.kind), " request"));
    return v;
  }

  std::size_t key_id(std::string_view name, std::string_view op) const {
    for (std::size_t k = 0; k < keys_.size(); ++k)
      if (keys_[k].name == name) return k;
    throw config_error(
        detail::str(op, " of key '", name, "': no such key (", keys_.size(), " keys declared)"));
  }

  Transport& t_;
  roles roles_;
  std::vector<key_spec> keys_;
  placement place_;
  worker_options opt_;
  energy::model model_;
  Codec codec_;
  PullCodec pull_codec_;
  rng rng_;
  std::vector<std::uint64_t> steps_;
  std::vector<std::uint64_t> bounds_;  // per server: its receive bound (0: not asked yet)
  std::vector<char> pull_checked_;     // per server: a pull succeeded (its pull codec matches)
  std::vector<codec::error_feedback<Codec>> ef_;  // per key, when use_ef()
  aligned_vector<float> ef_saved_;
  byte_buffer send_buf_, recv_buf_;
  std::uint32_t samples_ = 1;
  std::uint64_t outside_ns_ = 0;
  std::uint64_t stated_compute_ns_ = 0;  // set_compute_time(); 0: measure
  std::vector<std::uint64_t> outside_at_push_;
  clock::time_point last_return_;
  bool finished_ = false;
  bool broken_ = false;
  std::string broken_why_;
};

}  // namespace greenreduce::ps
