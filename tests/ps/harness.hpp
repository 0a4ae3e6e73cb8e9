// tests/ps/harness.hpp — runs servers and workers as threads of one test over
// transport::inproc with per-peer failure isolation, and two small codecs that
// only the tests need.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "greenreduce/codec/concept.hpp"
#include "greenreduce/ps/server.hpp"
#include "greenreduce/ps/worker.hpp"
#include "greenreduce/transport/inproc.hpp"

namespace greenreduce::test {

using endpoint = transport::inproc;

/// An inproc world whose endpoints isolate peer failures, as the server needs.
/// A worker "dies" with endpoint::abort().
class ps_world {
 public:
  explicit ps_world(int n, std::chrono::milliseconds timeout = std::chrono::seconds(20))
      : w_(n, options(timeout)) {}
  transport::inproc rank(int r) { return w_.rank(r); }
  transport::inproc_world& world() { return w_; }

 private:
  static transport::inproc_options options(std::chrono::milliseconds timeout) {
    transport::inproc_options o;
    o.timeout = timeout;
    o.isolate_peer_failures = true;
    return o;
  }
  transport::inproc_world w_;
};

/// fp32 values times 2 on the wire: exact, but another codec id and hash.
struct doubled {
  static constexpr codec_id wire_id = static_cast<codec_id>(200);
  codec_id id() const { return wire_id; }
  std::string_view name() const { return "doubled"; }
  std::uint64_t config_hash() const { return codec::hash_words({200}); }
  std::size_t max_encoded_bytes(std::size_t n) const { return frame_header_bytes + 4 * n; }
  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng&) const {
    codec::require_output(name(), max_encoded_bytes(in.size()), out.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (!std::isfinite(in[i])) codec::require_finite(name(), in);
      const float v = 2.0F * in[i];
      std::memcpy(out.data() + frame_header_bytes + 4 * i, &v, 4);
    }
    return finish_frame(out, wire_id, in.size(), 4 * in.size());
  }
  void decode(std::span<const std::byte> f, std::span<float> out) const {
    auto v = parse_frame(f, frame_expect{}.of(wire_id).count(out.size()));
    if (v.payload.size() != 4 * out.size()) throw decode_error("doubled: bad payload size");
    for (std::size_t i = 0; i < out.size(); ++i) {
      std::memcpy(&out[i], v.payload.data() + 4 * i, 4);
      out[i] *= 0.5F;
    }
  }
  void decode_add(std::span<const std::byte> f, std::span<float> acc) const {
    std::vector<float> t(acc.size());
    decode(f, t);
    for (std::size_t i = 0; i < acc.size(); ++i) acc[i] += t[i];
  }
  codec::work encode_work(std::size_t n) const { return {8 * n, n}; }
  codec::work decode_work(std::size_t n) const { return {8 * n, n}; }
};
static_assert(codec::codec<doubled>);

/// Rounds every value to a multiple of 1/8: a lossy codec for error feedback.
struct coarse : doubled {
  static constexpr codec_id wire_id = static_cast<codec_id>(201);
  codec_id id() const { return wire_id; }
  std::string_view name() const { return "coarse"; }
  std::uint64_t config_hash() const { return codec::hash_words({201}); }
  std::size_t encode(std::span<const float> in, std::span<std::byte> out, rng&) const {
    codec::require_output(name(), max_encoded_bytes(in.size()), out.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (!std::isfinite(in[i])) codec::require_finite(name(), in);
      const float v = std::round(in[i] * 8.0F) / 8.0F;
      std::memcpy(out.data() + frame_header_bytes + 4 * i, &v, 4);
    }
    return finish_frame(out, wire_id, in.size(), 4 * in.size());
  }
  void decode(std::span<const std::byte> f, std::span<float> out) const {
    auto v = parse_frame(f, frame_expect{}.of(wire_id).count(out.size()));
    if (v.payload.size() != 4 * out.size()) throw decode_error("coarse: bad payload size");
    for (std::size_t i = 0; i < out.size(); ++i) std::memcpy(&out[i], v.payload.data() + 4 * i, 4);
  }
  void decode_add(std::span<const std::byte> f, std::span<float> acc) const {
    std::vector<float> t(acc.size());
    decode(f, t);
    for (std::size_t i = 0; i < acc.size(); ++i) acc[i] += t[i];
  }
};
static_assert(codec::codec<coarse>);

/// Runs `serve(endpoint&)` on ranks [0, S) and `work(endpoint&)` on the rest,
/// each on its own thread; rethrows the first exception after joining all.
inline void run_ranks(ps_world& world, int S, int size, const std::function<void(endpoint&)>& serve,
                      const std::function<void(endpoint&)>& work) {
  std::vector<std::unique_ptr<endpoint>> eps;
  for (int r = 0; r < size; ++r) eps.push_back(std::make_unique<endpoint>(world.rank(r)));
  std::mutex m;
  std::exception_ptr first;
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] {
      try {
        if (r < S)
          serve(*eps[static_cast<std::size_t>(r)]);
        else
          work(*eps[static_cast<std::size_t>(r)]);
      } catch (...) {
        std::lock_guard lock(m);
        if (!first) first = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace greenreduce::test
