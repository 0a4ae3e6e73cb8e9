// greenreduce/adaptive/adaptive_allreduce.hpp — a ring allreduce whose codec a controller picks.
//
//   adaptive::adaptive_allreduce_options o;
//   o.policy.with_energy_budget(0.5).with_warmup_steps(50);
//   o.ring.error_feedback = true;
//   adaptive::adaptive_allreduce<transport::tcp> ar(t, n, o);
//   for (step...) {
//     report rep = ar.run(grad, collective::reduce_op::average);
//     if (validated) ar.set_validation_loss(loss);
//   }
//   for (const auto& d : ar.policy().log()) std::cout << d.to_json() << '\n';
//
// It holds one collective::ring_allreduce per ladder level (built on first use:
// each allocates its own buffers for max_count elements) and runs the ring of
// the controller's current level.
//
// Rank agreement. Every run() for step t > 0 carries a 128-byte record on
// the ring's own agreement header (ring_options::note_bytes; no collective of
// its own): this rank's observation of step t-1 (comm and step seconds, wire,
// raw and sent bytes, kernel work, joules, compression error, validation
// loss) and its policy state (step, level, staleness, number of decisions).
// Once the ring's header checks pass and before data moves, any difference in
// the policy state is a mismatch_error on every rank ("input left unchanged").
// Every rank merges the p records in rank order into one job-wide observation
// — comm and step seconds: the maximum; bytes and work: the mean per rank;
// joules: the sum over ranks (the budget is job-wide); compression error and
// validation loss: the mean of the ranks that measured one; step_spread: (max
// - min) / mean of the ranks' compute time (step minus comm seconds), which is
// where a straggler shows in a synchronous ring — and, once step t's ring has
// succeeded, feeds it to its own controller. So the observation of step t-1
// decides the level of step t+1 (one step of lag: the level of step t must be
// known before its header goes out), and the one observation made at the old
// level after a switch is not fed (its costs are not the new level's; a
// validation loss it carries goes with the next one). Identical bytes into the same
// deterministic controller give identical decisions, so all ranks switch at
// the same step; the policy check and the ring's own codec agreement turn any
// divergence (e.g. ranks built differently) into an error instead of a hang.
// The step time of step t-1 is the time between the starts of runs t-1 and t.
// The observation of the last step is never fed (there is no next run).
//
// Compression error: every probe_every steps, before the ring runs, the first
// probe_elements elements of the input are encoded and decoded with the
// current codec and ||x - decode(encode(x))|| / ||x|| is recorded.
//
// Error feedback across a switch (ring_options::error_feedback): each level's
// ring keeps the residual of the chunk this rank owns. When the level changes,
// the old ring's residual is taken out (and zeroed there) and flushed into the
// next step's input: p * r (reduce_op::average) or r (sum) is added to the
// owned chunk before the new ring runs, so the result of that step carries
// what the old codec still owed. If that run fails, the input is restored and
// the residual stays pending; if the next length differs, it is dropped.
//
// Periodic averaging (local_sgd): a ring is synchronous, so the consistency
// decision has no meaning for a gradient allreduce and adaptive_allreduce
// turns policy.adapt_consistency off — unless the caller runs local SGD
// (adaptive::model_averaging): every rank steps its own parameters and
// averages them (their change since the last average) every period() steps.
// Then the controller's staleness s sets the period, s + 1 steps (a rank's
// parameters miss at most s steps of the others' updates), each run() is one
// exchange covering period() steps, and the observation each run carries is
// per training step: its seconds, bytes, work and joules divided by the
// period, so budgets and predictions stay per step. The observation made
// under a period the controller has since left is not fed, as after a codec
// switch.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "greenreduce/adaptive/controller.hpp"
#include "greenreduce/collective/ring_allreduce.hpp"
#include "greenreduce/core/buffer.hpp"
#include "greenreduce/core/bytes.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/core/report.hpp"
#include "greenreduce/core/rng.hpp"
#include "greenreduce/transport/concept.hpp"

namespace greenreduce::adaptive {

struct adaptive_allreduce_options {
  controller_options policy;             ///< the controller's objectives and ladder
  collective::ring_options ring;         ///< options of every level's ring
  std::size_t probe_elements = 1 << 16;  ///< compression-error probe size; 0 = never probe
  std::uint64_t probe_every = 0;         ///< steps between probes; 0 = policy.window_steps
  /// The caller averages parameters every period() steps (model_averaging):
  /// the controller's staleness s sets the period, s + 1 (see the header).
  bool local_sgd = false;

  adaptive_allreduce_options& with_policy(controller_options p) {
    return policy = std::move(p), *this;
  }
  adaptive_allreduce_options& with_ring(collective::ring_options r) {
    return ring = std::move(r), *this;
  }
  adaptive_allreduce_options& with_local_sgd(bool on = true) { return local_sgd = on, *this; }
  adaptive_allreduce_options& with_probe(std::size_t elements, std::uint64_t every) {
    probe_elements = elements;
    probe_every = every;
    return *this;
  }
};

namespace allreduce_detail {

inline constexpr std::uint32_t record_magic = 0x47524144;  // "GRAD"
inline constexpr std::size_t record_bytes = 128;

struct record {
  std::uint64_t step = 0, level = 0, stale = 0, decisions = 0;
  double comm = 0, step_s = 0, joules = 0, err = -1, loss = 0;
  std::uint64_t wire = 0, sent = 0, raw = 0, mem = 0, ops = 0;
};

inline void write(std::span<std::byte> o, const record& r) {
  std::fill(o.begin(), o.end(), std::byte{0});
  std::byte* p = o.data();
  store_le<std::uint32_t>(p, record_magic);
  const std::uint64_t words[] = {r.step,
                                 r.level,
                                 r.stale,
                                 r.decisions,
                                 std::bit_cast<std::uint64_t>(r.comm),
                                 std::bit_cast<std::uint64_t>(r.step_s),
                                 std::bit_cast<std::uint64_t>(r.joules),
                                 std::bit_cast<std::uint64_t>(r.err),
                                 std::bit_cast<std::uint64_t>(r.loss),
                                 r.wire,
                                 r.sent,
                                 r.raw,
                                 r.mem,
                                 r.ops};
  for (std::size_t i = 0; i < std::size(words); ++i)
    store_le<std::uint64_t>(p + 8 + 8 * i, words[i]);
}

inline record read(std::span<const std::byte> in, int from) {
  if (in.size() != record_bytes || load_le<std::uint32_t>(in.data()) != record_magic)
    throw peer_error(detail::str("adaptive_allreduce record from rank ", from, " has ", in.size(),
                                 " bytes or a bad magic (not an adaptive_allreduce peer?)"));
  auto w = [&](std::size_t i) { return load_le<std::uint64_t>(in.data() + 8 + 8 * i); };
  auto d = [&](std::size_t i) { return std::bit_cast<double>(w(i)); };
  record r;
  r.step = w(0);
  r.level = w(1);
  r.stale = w(2);
  r.decisions = w(3);
  r.comm = d(4);
  r.step_s = d(5);
  r.joules = d(6);
  r.err = d(7);
  r.loss = d(8);
  r.wire = w(9);
  r.sent = w(10);
  r.raw = w(11);
  r.mem = w(12);
  r.ops = w(13);
  return r;
}

/// One job-wide observation from every rank's record (rank order, so every
/// rank computes the same bits).
inline observation merge(std::span<const record> rs) {
  const double p = static_cast<double>(rs.size());
  observation o;
  o.step = rs[0].step;
  std::uint64_t wire = 0, sent = 0, raw = 0, mem = 0, ops = 0;
  double err = 0, loss = 0, cmin = 0, cmax = 0, csum = 0;
  std::size_t err_n = 0, loss_n = 0;
  for (std::size_t q = 0; q < rs.size(); ++q) {
    const auto& r = rs[q];
    o.comm_seconds = std::max(o.comm_seconds, r.comm);
    o.step_seconds = std::max(o.step_seconds, r.step_s);
    o.joules += r.joules;
    wire += r.wire;
    sent += r.sent;
    raw += r.raw;
    mem += r.mem;
    ops += r.ops;
    if (r.err >= 0) {
      err += r.err;
      ++err_n;
    }
    if (!std::isnan(r.loss)) {
      loss += r.loss;
      ++loss_n;
    }
    const double c = std::max(0.0, r.step_s - r.comm);
    cmin = q == 0 ? c : std::min(cmin, c);
    cmax = q == 0 ? c : std::max(cmax, c);
    csum += c;
  }
  const auto n = static_cast<std::uint64_t>(rs.size());
  o.wire_bytes = wire / n;
  o.bytes_sent = sent / n;
  o.raw_bytes = raw / n;
  o.memory_bytes = mem / n;
  o.compute_ops = ops / n;
  if (err_n) o.compression_error = err / static_cast<double>(err_n);
  if (loss_n) o.val_loss = loss / static_cast<double>(loss_n);
  o.step_spread = csum > 0 ? (cmax - cmin) / (csum / p) : 0;
  return o;
}

}  // namespace allreduce_detail

template <transport::transport Transport>
class adaptive_allreduce {
  using clock = std::chrono::steady_clock;

 public:
  adaptive_allreduce(Transport& t, std::size_t max_count, adaptive_allreduce_options o = {})
      : t_(t),
        opts_(std::move(o)),
        ctl_(ring_policy(opts_.policy, opts_.local_sgd)),
        max_count_(max_count),
        rings_(opts_.policy.ladder.size()),
        probe_rng_(opts_.ring.seed ^ 0x70726f6265ULL, static_cast<std::uint64_t>(t.rank())) {
    if (opts_.probe_every == 0) opts_.probe_every = opts_.policy.window_steps;
    opts_.ring.note_bytes = allreduce_detail::record_bytes;  // the records ride on the agreement
    const std::size_t m = std::min(max_count, opts_.probe_elements);
    if (m > 0) {
      std::size_t cap = 0;
      for (const auto& l : opts_.policy.ladder)
        cap = std::max(cap,
                       std::visit([&](const auto& c) { return c.max_encoded_bytes(m); }, l.codec));
      probe_frame_.resize(cap);
      probe_in_.resize(m);
      probe_out_.resize(m);
    }
  }

  adaptive_allreduce(const adaptive_allreduce&) = delete;
  adaptive_allreduce& operator=(const adaptive_allreduce&) = delete;

  /// The controller (its log holds every decision).
  const controller& policy() const noexcept { return ctl_; }
  /// The level the last run used (the next one may differ).
  std::size_t last_level() const noexcept { return last_level_; }
  /// Runs so far.
  std::uint64_t steps() const noexcept { return step_; }
  std::size_t max_count() const noexcept { return max_count_; }
  /// Training steps the next run() covers: 1, or with local_sgd the
  /// controller's staleness + 1 (the same on every rank).
  std::uint64_t period() const noexcept {
    return opts_.local_sgd ? std::uint64_t{ctl_.consistency().staleness} + 1 : 1;
  }

  /// The validation loss of the step just run; reported with its observation.
  void set_validation_loss(double loss) {
    if (!std::isfinite(loss))
      throw config_error(
          detail::str("adaptive_allreduce: validation loss ", loss, " is not finite"));
    loss_ = loss;
  }

  /// The residual the last run's ring holds (see ring_allreduce::residual())
  /// and its element offset; when that run ended in a switch, the residual
  /// taken from its ring, which the next run flushes into its input.
  std::span<const float> residual() const noexcept {
    if (!pending_.empty()) return pending_;
    return rings_[last_level_] ? rings_[last_level_]->residual() : std::span<const float>{};
  }
  std::size_t residual_offset() const noexcept {
    if (!pending_.empty()) return pending_off_;
    return rings_[last_level_] ? rings_[last_level_]->residual_offset() : 0;
  }

  /// Reduces `data` over all ranks in place with the current level's codec.
  report run(std::span<float> data, collective::reduce_op op = collective::reduce_op::sum) {
    const auto start = clock::now();
    std::array<std::byte, allreduce_detail::record_bytes> note{};
    if (step_ > 0) allreduce_detail::write(note, record_of_last(start));
    const std::size_t lvl = ctl_.level();
    const std::uint64_t period_now = period();
    ring_base& ring = ring_for(lvl);
    probe(data, lvl);
    const std::size_t n = data.size();
    const bool flush = !pending_.empty() && pending_n_ == n;
    if (!flush) pending_.clear();
    if (flush) {
      saved_.assign(data.begin(), data.end());
      const float scale =
          op == collective::reduce_op::average ? static_cast<float>(t_.size()) : 1.0F;
      for (std::size_t k = 0; k < pending_.size(); ++k)
        data[pending_off_ + k] += scale * pending_[k];
    }
    std::optional<observation> seen;
    std::size_t seen_level = 0;
    std::uint64_t seen_period = 1;
    report rep;
    try {
      rep = ring.run(data, op, note, [&](std::span<const std::span<const std::byte>> notes) {
        if (step_ > 0) seen = merge_records(notes, seen_level, seen_period);
      });
    } catch (...) {
      if (flush) std::copy(saved_.begin(), saved_.end(), data.begin());
      throw;
    }
    if (flush) pending_.clear();
    if (rep.energy.method == energy_method::none) opts_.policy.model.annotate(rep);
    last_ = rep;
    last_start_ = start;
    last_level_ = lvl;
    last_period_ = period_now;
    last_n_ = n;
    ++step_;
    if (seen && (seen_level != ctl_.level() || seen_period != period())) {
      // Made at a level or period the controller has already left (the step
      // after a switch): its costs are not the current ones; only a loss carries.
      if (seen->has_val_loss()) carried_loss_ = seen->val_loss;
    } else if (seen) {
      if (!seen->has_val_loss() && carried_loss_) seen->val_loss = *carried_loss_;
      carried_loss_.reset();
      const std::size_t before = ctl_.level();
      ctl_.observe(*seen);
      if (ctl_.level() != before) take_residual(before);
    }
    return rep;
  }

 private:
  static controller_options ring_policy(controller_options p, bool local_sgd) {
    p.adapt_consistency = p.adapt_consistency && local_sgd;  // else the ring is synchronous
    return p;
  }

  struct ring_base {
    virtual ~ring_base() = default;
    virtual report run(std::span<float> data, collective::reduce_op op,
                       std::span<const std::byte> note,
                       const collective::note_handler& on_notes) = 0;
    virtual std::span<const float> residual() const noexcept = 0;
    virtual std::size_t residual_offset() const noexcept = 0;
    virtual void clear_residual() noexcept = 0;
  };
  template <class Codec>
  struct ring_of final : ring_base {
    collective::ring_allreduce<Codec, Transport> ring;
    ring_of(Transport& t, std::size_t n, const Codec& c, const collective::ring_options& o)
        : ring(t, n, c, o) {}
    report run(std::span<float> data, collective::reduce_op op, std::span<const std::byte> note,
               const collective::note_handler& on_notes) override {
      return ring.run(data, op, note, on_notes);
    }
    std::span<const float> residual() const noexcept override { return ring.residual(); }
    std::size_t residual_offset() const noexcept override { return ring.residual_offset(); }
    void clear_residual() noexcept override { ring.clear_residual(); }
  };

  ring_base& ring_for(std::size_t l) {
    if (!rings_[l])
      rings_[l] = std::visit(
          [&](const auto& c) -> std::unique_ptr<ring_base> {
            using C = std::decay_t<decltype(c)>;
            return std::make_unique<ring_of<C>>(t_, max_count_, c, opts_.ring);
          },
          opts_.policy.ladder[l].codec);
    return *rings_[l];
  }

  void probe(std::span<const float> data, std::size_t lvl) {
    err_ = -1;
    const std::size_t m = std::min(data.size(), probe_in_.size());
    if (m == 0 || step_ % opts_.probe_every != 0) return;
    const auto in = std::span<float>(probe_in_).first(m);
    std::copy(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(m), in.begin());
    try {
      std::visit(
          [&](const auto& c) {
            const std::size_t len = c.encode(in, probe_frame_, probe_rng_);
            c.decode(std::span<const std::byte>(probe_frame_).first(len),
                     std::span<float>(probe_out_).first(m));
          },
          opts_.policy.ladder[lvl].codec);
    } catch (const numeric_error&) {
      return;  // non-finite input: the ring reports it
    }
    double num = 0;
    double den = 0;
    for (std::size_t i = 0; i < m; ++i) {
      const double d = static_cast<double>(in[i]) - static_cast<double>(probe_out_[i]);
      num += d * d;
      den += static_cast<double>(in[i]) * static_cast<double>(in[i]);
    }
    err_ = den > 0 ? std::sqrt(num / den) : 0;
  }

  // This rank's record of the last step (run() at `now` carries it).
  allreduce_detail::record record_of_last(clock::time_point now) {
    allreduce_detail::record mine;
    mine.step = step_ - 1;
    mine.level = last_level_;
    // Per training step: the last run covered last_period_ steps.
    const double per = static_cast<double>(last_period_);
    const auto per_step = [&](std::uint64_t v) { return v / last_period_; };
    mine.stale = last_period_ - 1;
    mine.decisions = ctl_.log().size();
    mine.comm = last_.seconds / per;
    mine.step_s = std::chrono::duration<double>(now - last_start_).count() / per;
    mine.joules = last_.energy.total_j() / per;
    mine.err = err_;  // the probe of step t-1 (run() probes after building the record)
    mine.loss = loss_.value_or(std::numeric_limits<double>::quiet_NaN());
    mine.wire = per_step(last_.wire_bytes());
    mine.sent = per_step(last_.bytes_sent);
    mine.raw = per_step(last_.raw_bytes);
    mine.mem = per_step(last_.memory_bytes);
    mine.ops = per_step(last_.compute_ops);
    loss_.reset();
    return mine;
  }

  // Every rank's record (from the ring's agreement) into one observation;
  // a rank whose policy state differs is a mismatch_error before data moves.
  observation merge_records(std::span<const std::span<const std::byte>> notes, std::size_t& level,
                            std::uint64_t& period) const {
    std::vector<allreduce_detail::record> all;
    all.reserve(notes.size());
    for (std::size_t q = 0; q < notes.size(); ++q) {
      if (notes[q].size() >= 4 && load_le<std::uint32_t>(notes[q].data()) == 0)
        throw mismatch_error(detail::str("adaptive_allreduce on rank ", t_.rank(), ": rank ", q,
                                         " runs its first step, this rank its step ", step_,
                                         "; input left unchanged"));
      all.push_back(allreduce_detail::read(notes[q], static_cast<int>(q)));
    }
    for (std::size_t q = 1; q < all.size(); ++q) {
      const auto& a = all[0];
      const auto& b = all[q];
      if (a.step != b.step || a.level != b.level || a.stale != b.stale ||
          a.decisions != b.decisions)
        throw mismatch_error(detail::str("adaptive_allreduce on rank ", t_.rank(),
                                         ": ranks disagree on the policy: rank 0 "
                                         "is at step ",
                                         a.step, ", level ", a.level, " after ", a.decisions,
                                         " decisions but rank ", q, " at step ", b.step, ", level ",
                                         b.level, " after ", b.decisions,
                                         "; input left unchanged"));
    }
    level = static_cast<std::size_t>(all[0].level);
    period = all[0].stale + 1;
    return allreduce_detail::merge(all);
  }

  // The old level's residual becomes the next input's flush (see the header).
  void take_residual(std::size_t old) {
    pending_.clear();
    if (!rings_[old]) return;
    const auto r = rings_[old]->residual();
    if (r.empty()) return;
    pending_.assign(r.begin(), r.end());
    pending_off_ = rings_[old]->residual_offset();
    pending_n_ = last_n_;
    rings_[old]->clear_residual();
  }

  Transport& t_;
  adaptive_allreduce_options opts_;
  controller ctl_;
  std::size_t max_count_;
  std::vector<std::unique_ptr<ring_base>> rings_;
  rng probe_rng_;
  byte_buffer probe_frame_;
  aligned_vector<float> probe_in_, probe_out_;
  std::vector<float> pending_, saved_;
  std::size_t pending_off_ = 0, pending_n_ = 0;
  report last_;
  clock::time_point last_start_{};
  std::size_t last_level_ = 0;
  std::uint64_t last_period_ = 1;
  std::size_t last_n_ = 0;
  std::uint64_t step_ = 0;
  double err_ = -1;
  std::optional<double> loss_;
  std::optional<double> carried_loss_;  // from an observation not fed (see run())
};

}  // namespace greenreduce::adaptive
