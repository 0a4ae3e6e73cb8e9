// greenreduce/adaptive/controller.hpp — an energy-aware policy: picks the codec and the sync mode.
//
//   adaptive::controller ctl(adaptive::controller_options().with_energy_budget(2.0));
//   for (step...) {
//     auto& lvl = ctl.current();                       // codec of this step: lvl.codec
//     report rep = /* allreduce with lvl.codec */;
//     for (const auto& d : ctl.observe(observation::from_report(rep, step)))
//       log << d.to_json() << '\n';                    // applies from the next step
//   }
//
// The policy (docs/adaptive.md has the full rules):
//
// * Warm-up: the first warmup_steps run level 0 (uncompressed); their median
//   step time is the baseline of max_slowdown. A warm-up of at least
//   hysteresis_windows windows counts as that many windows held at level 0:
//   the first decision is taken on its last step, with no further wait.
// * Link estimate: comm seconds per step = latency + wire bytes x seconds per
//   byte (an alpha-beta model). The latency — what a step's exchange costs
//   whatever its size: message round trips, the agreement header, codec
//   calls — comes from two levels that ran recently with different wire bytes
//   per step (the line through their last windows, clamped to [0, the smaller
//   of the two], then an EWMA); 0 until two such levels ran. Seconds per byte = (comm - latency) /
//   wire of each window, kept as an EWMA (weight ewma_alpha per window);
//   predictions use the slower of that average and the last window, so a drop
//   is believed at once and a recovery once the average follows. Likewise
//   EWMAs of raw bytes per step, compute time (step - comm), each level's
//   measured compression ratio and kernel work per raw byte, and a calibration
//   of the energy model against the observed joules. From these it predicts
//   every level's step time and joules (energy::model with the caller's
//   coefficients), so a slower link alone makes stronger levels look better.
// * Every window_steps it compares the window means with the objectives. The
//   current level is judged by what was observed, the others by prediction:
//     - over the energy budget or the slowdown limit: target the loosest
//       other allowed level predicted to meet both (a looser one with
//       loosen_margin to spare); if none is, the level predicted cheapest in
//       what is violated, when it saves loosen_margin over the current one;
//       else hold the current level and log budget_unattainable (once)
//       instead of moving. With a slower link the cheapest is the strongest;
//       where codec work costs more than the bytes it saves (loopback) it
//       can be a looser one;
//     - within limits: target the loosest looser level predicted to meet both
//       with loosen_margin to spare (room_to_loosen).
//   With minimize_energy instead of a budget: target the allowed level
//   predicted cheapest per step when it saves loosen_margin over the current
//   level's observed joules (cheaper_level); with max_slowdown, among the
//   levels predicted within it.
//   A move happens when the target lies in the same direction for
//   hysteresis_windows consecutive windows and the dwell has passed since the
//   last move, so a signal that flips faster than that never moves it. The
//   dwell starts at dwell_windows and doubles (up to max_dwell_windows) each
//   time a move reverses the previous one within twice the dwell; a move after
//   four quiet dwells restores it. A slow square wave therefore moves the
//   level a few times and then at most once per max_dwell_windows.
// * Accuracy guard (before the objectives): a window whose last validation loss
//   exceeds the reference by more than max_loss_increase, or whose mean
//   compression error exceeds max_compression_error, for guard_windows windows,
//   moves one level looser and caps every later target below the level that
//   failed (the cap only falls), so guard and budget cannot ping-pong. With
//   adapt_consistency a loss rise may instead lower the staleness one rung
//   and cap it there: the guard undoes the kind of tightening (codec or
//   staleness) made last; compression error only ever loosens the codec.
// * Consistency (adapt_consistency): a step-time spread above spread_high (or a
//   comm fraction above comm_fraction_high) for hysteresis_windows windows
//   moves one rung up staleness_ladder (never above the guard's cap, never
//   while the guard waits); below spread_low (and the comm fraction below
//   comm_fraction_low) one rung down; the same dwell rule applies. A change
//   of consistency drops the latency estimate, which is refitted from windows
//   run under the new mode (a step's exchange costs differ there).
//
// Determinism: decisions are a pure function of the options and the sequence of
// observations — no clock, no randomness — so ranks fed identical observations
// decide identically (adaptive_allreduce relies on it).
//
// Bounds: moves of one kind are at least dwell_windows windows apart (the guard
// may undo a tightening at once); the guard moves at most ladder.size() - 1 +
// staleness_ladder.size() - 1 times in a run.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "greenreduce/adaptive/decision.hpp"
#include "greenreduce/adaptive/ladder.hpp"
#include "greenreduce/adaptive/observation.hpp"
#include "greenreduce/adaptive/options.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/core/report.hpp"
#include "greenreduce/ps/options.hpp"

namespace greenreduce::adaptive {

/// What the controller expects of one level.
struct prediction {
  double joules = 0;      ///< per step, in the unit of the observations
  double seconds = 0;     ///< per step
  double ratio = 1;       ///< compression ratio assumed
  bool measured = false;  ///< the ratio and work were measured on this level
};

class controller {
  static constexpr double nan = std::numeric_limits<double>::quiet_NaN();

 public:
  explicit controller(controller_options o = {}) : o_(std::move(o)) {
    o_.validate();
    stats_.resize(o_.ladder.size());
    codec_d_ = damper(o_.dwell_windows);
    mode_d_ = damper(o_.dwell_windows);
    state_d_ = damper(o_.dwell_windows);
    ceiling_ = o_.ladder.size() - 1;
    stale_ceiling_ = o_.staleness_ladder.size() - 1;
    if (o_.warmup_steps == 0) state_ = policy_state::tracking;
  }

  const controller_options& options() const noexcept { return o_; }
  /// Index of the level to run next.
  std::size_t level() const noexcept { return level_; }
  /// The level to run next (its codec and spec).
  const adaptive::level& current() const { return o_.ladder[level_]; }
  /// The consistency mode to run next (sync unless adapt_consistency moved it).
  ps::consistency consistency() const {
    return ps::consistency::bounded_staleness(o_.staleness_ladder[stale_]);
  }
  policy_state state() const noexcept { return state_; }
  /// The strongest level the accuracy guard still allows.
  std::size_t ceiling() const noexcept { return ceiling_; }
  /// The highest staleness_ladder index the accuracy guard still allows.
  std::size_t staleness_ceiling() const noexcept { return stale_ceiling_; }
  /// Every decision so far, oldest first.
  const std::vector<decision>& log() const noexcept { return log_; }
  std::uint64_t steps_observed() const noexcept { return steps_; }
  /// Achieved bandwidth estimate in wire bytes per second, beyond the
  /// latency (NaN before the first window with communication).
  double bandwidth() const noexcept {
    return sec_per_byte_.ok() && sec_per_byte_.value > 0 ? 1 / sec_per_byte_.value : nan;
  }
  /// Comm seconds per step that do not scale with wire bytes (0 until two
  /// levels with different wire bytes per step have run).
  double latency_seconds() const noexcept { return latency_.or_zero(); }
  /// Median warm-up step time (NaN until the warm-up is over).
  double baseline_seconds() const noexcept { return baseline_; }

  /// What level `l` is expected to cost per step under the current estimates.
  prediction predict(std::size_t l) const {
    const auto& st = stats_.at(l);
    prediction p;
    p.measured = st.measured;
    p.ratio = st.measured ? st.ratio.value : o_.ladder[l].nominal_ratio;
    const double raw = raw_.or_zero();
    const double wire = raw / p.ratio * (wire_per_sent_.ok() ? wire_per_sent_.value : 2.0);
    const double comm = latency_seconds() + wire * seconds_per_byte();
    p.seconds = compute_.or_zero() + comm;
    double mem = 0;
    double ops = 0;
    if (st.measured) {
      mem = st.mem_per_raw.value * raw;
      ops = st.ops_per_raw.value * raw;
    } else if (const std::size_t m = nearest_measured(l); m < stats_.size()) {
      // Scaled from the measured level whose codec work is most alike.
      const double scale_m = work_of(l).first / std::max(1.0, work_of(m).first);
      const double scale_o = work_of(l).second / std::max(1.0, work_of(m).second);
      mem = stats_[m].mem_per_raw.value * raw * scale_m;
      ops = stats_[m].ops_per_raw.value * raw * scale_o;
    }
    p.joules = calib_.ok() ? calib_.value * model_joules(wire, mem, ops, comm) : nan;
    return p;
  }

  /// Feeds the observation of one step. Returns the decisions it triggered
  /// (usually none); they apply from the next step. The span is valid until
  /// the next call.
  std::span<const decision> observe(const observation& o) {
    check(o);
    const std::size_t before = log_.size();
    ++steps_;
    last_step_ = o.step;
    track_loss(o);
    acc_.add(o);
    if (steps_ <= o_.warmup_steps) {
      warm_times_.push_back(o.effective_step_seconds());
      if (steps_ == o_.warmup_steps) {
        learn(acc_);
        end_warmup(o.step);
        // The warm-up held one level for warmup_steps: when that covers the
        // hysteresis, its estimates decide now instead of after
        // hysteresis_windows more windows at level 0.
        if (warmup_covers_hysteresis()) evaluate(o.step);
        acc_ = {};
      } else if (acc_.n >= o_.window_steps) {
        learn(acc_);
        acc_ = {};
      }
      return std::span<const decision>(log_).subspan(before);
    }
    if (acc_.n >= o_.window_steps) {
      learn(acc_);
      evaluate(o.step);
      acc_ = {};
    }
    return std::span<const decision>(log_).subspan(before);
  }

 private:
  struct ewma {
    double value = nan;
    bool ok() const noexcept { return !std::isnan(value); }
    double or_zero() const noexcept { return ok() ? value : 0; }
    void add(double x, double a) { value = ok() ? a * x + (1 - a) * value : x; }
  };
  struct level_stats {
    bool measured = false;
    ewma ratio, mem_per_raw, ops_per_raw;
    double wire = 0, comm = 0;      // per step, in the last window at this level
    std::uint64_t last_window = 0;  // when it last ran (windows_ then)
  };
  struct window {
    std::uint64_t n = 0;
    double comm = 0, step = 0, joules = 0, spread = 0, err = 0;
    double wire = 0, sent = 0, raw = 0, mem = 0, ops = 0;
    std::uint64_t err_n = 0;
    double last_loss = nan;
    double loss_ref = nan;  // the reference in force when last_loss arrived
    void add(const observation& o) {
      ++n;
      comm += o.comm_seconds;
      step += o.effective_step_seconds();
      joules += o.joules;
      spread += o.step_spread;
      wire += static_cast<double>(o.wire_bytes);
      sent += static_cast<double>(o.bytes_sent);
      raw += static_cast<double>(o.raw_bytes);
      mem += static_cast<double>(o.memory_bytes);
      ops += static_cast<double>(o.compute_ops);
      if (o.has_compression_error()) {
        err += o.compression_error;
        ++err_n;
      }
    }
    double mean(double s) const { return n ? s / static_cast<double>(n) : nan; }
  };
  // The dwell rule with back-off: a move that reverses the previous one within
  // twice the current dwell doubles the dwell (up to max_dwell_windows); a
  // move after four dwells without one restores dwell_windows.
  struct damper {
    std::uint32_t base = 0, dwell = 0, since = 0;
    int last_dir = 0;
    damper() = default;
    explicit damper(std::uint32_t d) : base(d), dwell(d), since(d) {}
    bool ready() const noexcept { return since >= dwell; }
    /// Records a move in direction dir; true when the dwell grew.
    bool moved(int dir, std::uint32_t cap) {
      const std::uint32_t old = dwell;
      if (last_dir != 0 && dir != last_dir && since < 2 * std::max<std::uint32_t>(dwell, 1))
        dwell = std::max(dwell, std::min(cap, 2 * std::max<std::uint32_t>(dwell, 1)));
      else if (since >= 4 * dwell)
        dwell = base;
      last_dir = dir;
      since = 0;
      return dwell > old;
    }
  };
  struct hysteresis {
    int dir = 0;
    std::uint32_t count = 0;
    void see(int want) {
      if (want != 0 && want == dir) {
        ++count;
      } else {
        dir = want;
        count = want != 0 ? 1 : 0;
      }
    }
  };

  controller_options o_;
  std::vector<level_stats> stats_;
  std::vector<decision> log_;
  std::vector<double> warm_times_;
  window acc_;
  ewma sec_per_byte_, raw_, wire_per_sent_, compute_, calib_, latency_;
  std::uint64_t windows_ = 0;
  double last_sec_per_byte_ = 0;
  double baseline_ = nan;
  double best_loss_ = nan;
  std::uint64_t steps_ = 0;
  std::uint64_t last_step_ = 0;
  std::size_t level_ = 0;
  std::size_t stale_ = 0;
  std::size_t ceiling_ = 0;
  std::size_t stale_ceiling_ = 0;
  // What the last tightening move changed (what the accuracy guard undoes
  // first), and what the guard changed when the last move was the guard's.
  enum class move_kind : std::uint8_t { none, codec, staleness };
  move_kind last_tightening_ = move_kind::none, last_guard_move_ = move_kind::none;
  std::uint32_t guard_bad_ = 0, met_windows_ = 0, unmet_windows_ = 0;
  hysteresis codec_h_, mode_h_;
  damper codec_d_, mode_d_, state_d_;  // state_d_: budget_(un)attainable records
  policy_state state_ = policy_state::warmup;

  void check(const observation& o) const {
    auto bad = [&](const char* field, double v) {
      throw config_error(detail::str("adaptive observation of step ", o.step, ": ", field, " = ", v,
                                     " (must be finite and >= 0)"));
    };
    for (auto [field, v] :
         {std::pair{"comm_seconds", o.comm_seconds}, std::pair{"step_seconds", o.step_seconds},
          std::pair{"joules", o.joules}, std::pair{"step_spread", o.step_spread}})
      if (!std::isfinite(v) || v < 0) bad(field, v);
    if (!std::isfinite(o.compression_error)) bad("compression_error", o.compression_error);
    if (std::isinf(o.val_loss)) bad("val_loss", o.val_loss);
    if (steps_ > 0 && o.step <= last_step_)
      throw config_error(detail::str("adaptive observation of step ", o.step, " comes after step ",
                                     last_step_, "; steps must increase"));
  }

  // The slower of the EWMA and the last window: a drop in bandwidth is
  // believed at once, a recovery once the average follows.
  double seconds_per_byte() const noexcept {
    return std::max(sec_per_byte_.or_zero(), last_sec_per_byte_);
  }

  // The measured level whose codec memory work is nearest to level l's (by
  // ratio; the lower index on a tie), or stats_.size() when none is measured.
  std::size_t nearest_measured(std::size_t l) const {
    std::size_t best = stats_.size();
    double best_d = 0;
    const double wl = std::max(1.0, work_of(l).first);
    for (std::size_t m = 0; m < stats_.size(); ++m) {
      if (!stats_[m].measured) continue;
      const double d = std::fabs(std::log(wl / std::max(1.0, work_of(m).first)));
      if (best == stats_.size() || d < best_d) {
        best = m;
        best_d = d;
      }
    }
    return best;
  }

  std::pair<double, double> work_of(std::size_t l) const {
    return std::visit(
        [](const auto& c) {
          const auto e = c.encode_work(ladder::reference_elements);
          const auto d = c.decode_work(ladder::reference_elements);
          return std::pair{static_cast<double>(e.memory_bytes + d.memory_bytes),
                           static_cast<double>(e.ops + d.ops)};
        },
        o_.ladder[l].codec);
  }

  double model_joules(double wire, double mem, double ops, double seconds) const {
    report r;
    r.bytes_sent = static_cast<std::uint64_t>(std::llround(wire));
    r.memory_bytes = static_cast<std::uint64_t>(std::llround(mem));
    r.compute_ops = static_cast<std::uint64_t>(std::llround(ops));
    r.seconds = seconds;
    return o_.model.estimate(r).total_j();
  }

  // The estimates (EWMA over windows) from one window's sums. Seconds per
  // byte rather than bytes per second: its mean predicts mean times.
  void learn(const window& w) {
    const double a = o_.ewma_alpha;
    const double n = static_cast<double>(w.n);
    if (w.n == 0) return;
    auto& cur = stats_[level_];
    if (w.comm > 0 && w.wire > 0) {
      cur.wire = w.wire / n;
      cur.comm = w.comm / n;
      cur.last_window = ++windows_;
      learn_latency(a);
      const double spb = std::max(0.0, w.comm - latency_seconds() * n) / w.wire;
      sec_per_byte_.add(spb, a);
      last_sec_per_byte_ = spb;
    }
    if (w.raw > 0) raw_.add(w.raw / n, a);
    if (w.sent > 0) wire_per_sent_.add(w.wire / w.sent, a);
    compute_.add(std::max(0.0, w.step - w.comm) / n, a);
    auto& st = stats_[level_];
    if (w.raw > 0 && w.sent > 0) {
      st.ratio.add(w.raw / w.sent, a);
      st.mem_per_raw.add(w.mem / w.raw, a);
      st.ops_per_raw.add(w.ops / w.raw, a);
      st.measured = true;
    }
    const double mj = model_joules(w.wire, w.mem, w.ops, w.comm);
    if (mj > 0 && w.joules > 0) calib_.add(w.joules / mj, a);
  }

  // The latency from the line through this window's (wire, comm) per step
  // and the last window of the level that ran most recently with at least
  // 1.5x more or fewer wire bytes per step, if that was within the last
  // latency_windows windows (an older point may predate a change of the
  // link); clamped to [0, the smaller comm of the two]. Averaged as an EWMA.
  void learn_latency(double a) {
    static constexpr std::uint64_t latency_windows = 8;
    const auto& cur = stats_[level_];
    std::size_t j = stats_.size();
    for (std::size_t l = 0; l < stats_.size(); ++l) {
      const auto& st = stats_[l];
      if (l == level_ || st.last_window == 0 || st.wire <= 0) continue;
      if (st.last_window + latency_windows < windows_) continue;
      const double r = cur.wire / st.wire;
      if (r < 1.5 && r > 1 / 1.5) continue;
      if (j == stats_.size() || st.last_window > stats_[j].last_window) j = l;
    }
    if (j == stats_.size()) return;
    const double w1 = cur.wire, c1 = cur.comm;
    const double w2 = stats_[j].wire, c2 = stats_[j].comm;
    const double slope = (c1 - c2) / (w1 - w2);
    const double alpha = std::clamp(c1 - slope * w1, 0.0, std::min(c1, c2));
    latency_.add(alpha, a);
  }

  void track_loss(const observation& o) {
    if (o.has_val_loss()) {
      acc_.loss_ref = std::isnan(o_.reference_loss) ? best_loss_ : o_.reference_loss;
      acc_.last_loss = o.val_loss;
      if (std::isnan(best_loss_) || o.val_loss < best_loss_) best_loss_ = o.val_loss;
    }
  }

  signals window_signals() const {
    signals s;
    s.joules = acc_.mean(acc_.joules);
    s.step_seconds = acc_.mean(acc_.step);
    s.comm_seconds = acc_.mean(acc_.comm);
    s.bandwidth = bandwidth();
    s.compression_ratio = acc_.sent > 0 ? acc_.raw / acc_.sent : nan;
    s.compression_error = acc_.err_n ? acc_.err / static_cast<double>(acc_.err_n) : nan;
    s.val_loss = acc_.last_loss;
    s.reference_loss = acc_.loss_ref;
    s.step_spread = acc_.mean(acc_.spread);
    s.baseline_seconds = baseline_;
    return s;
  }

  void end_warmup(std::uint64_t step) {
    if (!warm_times_.empty()) {
      std::vector<double> t = warm_times_;
      std::sort(t.begin(), t.end());
      const std::size_t m = t.size() / 2;
      baseline_ = t.size() % 2 ? t[m] : 0.5 * (t[m - 1] + t[m]);
    }
    state_ = policy_state::tracking;
    signals s = window_signals();
    record(step, level_, stale_, reason::warmup_done,
           detail::str("warm-up of ", o_.warmup_steps, " steps over: baseline step time ",
                       baseline_, " s, achieved bandwidth ", bandwidth(), " B/s"),
           s);
  }

  bool warmup_covers_hysteresis() const noexcept {
    return o_.warmup_steps >= std::uint64_t{o_.hysteresis_windows} * o_.window_steps;
  }

  double slowdown_limit() const {
    return o_.max_slowdown > 0 && baseline_ > 0 ? o_.max_slowdown * baseline_ : 0;
  }
  std::string slowdown_text(const signals& s) const {
    return detail::str("step time ", s.step_seconds, " s above ", o_.max_slowdown,
                       " x the warm-up ", baseline_, " s");
  }
  bool meets(double joules, double seconds, double slack) const {
    const double lim = slowdown_limit();
    return (o_.energy_budget_j <= 0 || joules <= o_.energy_budget_j * slack) &&
           (lim <= 0 || seconds <= lim * slack);
  }

  void evaluate(std::uint64_t step) {
    ++codec_d_.since;
    ++state_d_.since;
    ++mode_d_.since;
    signals s = window_signals();
    if (std::isnan(baseline_)) baseline_ = s.step_seconds;  // warmup_steps == 0
    s.baseline_seconds = baseline_;
    const int g = guard(step, s);
    if (g == 0) objectives(step, s, true);
    if (g < 0) objectives(step, s, false);
    if (o_.adapt_consistency && g == 0) congestion(step, s);
    if (o_.adapt_consistency && g < 0) mode_h_.see(0);  // nothing may tighten while it waits
  }

  // The accuracy guard: 1 when it moved, -1 when accuracy is bad but it may not
  // move yet (then nothing may tighten), 0 when accuracy is fine.
  int guard(std::uint64_t step, signals& s) {
    const bool loss_bad =
        o_.max_loss_increase > 0 && !std::isnan(s.val_loss) && !std::isnan(s.reference_loss) &&
        s.val_loss > s.reference_loss + o_.max_loss_increase * std::fabs(s.reference_loss);
    const bool err_bad = o_.max_compression_error > 0 && !std::isnan(s.compression_error) &&
                         s.compression_error > o_.max_compression_error;
    // A loss rise may come from staleness too; compression error only from the codec.
    const bool can_codec = level_ > 0;
    const bool can_stale = loss_bad && stale_ > 0;
    guard_bad_ =
        (loss_bad && (can_codec || can_stale)) || (err_bad && can_codec) ? guard_bad_ + 1 : 0;
    if (guard_bad_ == 0) return 0;
    if (guard_bad_ < o_.guard_windows) return -1;
    // Guard moves are a dwell apart (of the kind it moved last).
    if (last_guard_move_ != move_kind::none &&
        !(last_guard_move_ == move_kind::staleness ? mode_d_ : codec_d_).ready())
      return -1;
    // Undo the most recent kind of tightening (the other when that one cannot move).
    const bool undo_stale =
        can_stale && (!can_codec || (!err_bad && last_tightening_ == move_kind::staleness));
    if (undo_stale) {
      const std::size_t to = stale_ - 1;
      stale_ceiling_ = std::min(stale_ceiling_, to);
      std::string text =
          detail::str("validation loss ", s.val_loss, " exceeds the reference ", s.reference_loss,
                      " by more than ", o_.max_loss_increase * 100, "%; staleness ",
                      o_.staleness_ladder[to], " and capping it there");
      if (mode_d_.moved(-1, max_dwell()))
        text += detail::str("; reverses a recent move, dwell now ", mode_d_.dwell, " windows");
      if (state_ == policy_state::budget_unattainable) state_ = policy_state::tracking;
      record(step, level_, to, reason::accuracy_loss, std::move(text), s);
      set_staleness(to);
      last_tightening_ = move_kind::none;
      last_guard_move_ = move_kind::staleness;
      guard_bad_ = 0;
      return 1;
    }
    const std::size_t to = level_ - 1;
    ceiling_ = std::min(ceiling_, to);
    const auto p = predict(to);
    s.predicted_joules = p.joules;
    s.predicted_seconds = p.seconds;
    const std::string text =
        loss_bad ? detail::str("validation loss ", s.val_loss, " exceeds the reference ",
                               s.reference_loss, " by more than ", o_.max_loss_increase * 100,
                               "%; loosening and capping the ladder at level ", ceiling_)
                 : detail::str("compression error ", s.compression_error, " exceeds ",
                               o_.max_compression_error,
                               "; loosening and capping the ladder at level ", ceiling_);
    if (state_ == policy_state::budget_unattainable) state_ = policy_state::tracking;
    move_codec(step, to, loss_bad ? reason::accuracy_loss : reason::accuracy_error, text, s);
    last_tightening_ = move_kind::none;
    last_guard_move_ = move_kind::codec;
    guard_bad_ = 0;
    return 1;
  }

  void objectives(std::uint64_t step, signals& s, bool may_tighten) {
    if (o_.minimize_energy) {
      cheapest(step, s, may_tighten);
      return;
    }
    const bool over_budget = o_.energy_budget_j > 0 && s.joules > o_.energy_budget_j;
    const double lim = slowdown_limit();
    const bool over_time = lim > 0 && s.step_seconds > lim;
    std::size_t target = level_;
    reason why = reason::room_to_loosen;
    std::string text;
    if ((over_budget || over_time) && !may_tighten) {
      codec_h_.see(0);
      return;
    }
    if (over_budget || over_time)
      met_windows_ = 0;
    else
      unmet_windows_ = 0;
    if (over_budget || over_time) {
      why = over_budget ? reason::over_budget : reason::over_slowdown;
      const std::string what = over_budget
                                   ? detail::str("energy ", s.joules, " J/step above the budget ",
                                                 o_.energy_budget_j, " J")
                                   : slowdown_text(s);
      // The loosest other level predicted to meet the objectives (a looser one
      // with loosen_margin to spare: it costs the accuracy nothing to try).
      bool found = false;
      for (std::size_t l = 0; l <= ceiling_ && !found; ++l) {
        if (l == level_) continue;
        const auto p = predict(l);
        if (meets(p.joules, p.seconds, l < level_ ? 1 - o_.loosen_margin : 1.0)) {
          target = l;
          found = true;
          text = detail::str(what, "; level ", l, " (", o_.ladder[l].spec, ") predicted ", p.joules,
                             " J/step, ", p.seconds, " s/step");
        }
      }
      if (!found) {
        // None is predicted to: the cheapest level by what is violated (the
        // current one as observed), if it saves loosen_margin; else hold.
        auto cost = [&](std::size_t l) {
          if (l == level_) return over_budget ? s.joules : s.step_seconds;
          const auto p = predict(l);
          return over_budget ? p.joules : p.seconds;
        };
        std::size_t best = level_;
        for (std::size_t l = 0; l <= ceiling_; ++l)
          if (cost(l) < cost(best)) best = l;
        if (best != level_ && cost(best) < (1 - o_.loosen_margin) * cost(level_)) {
          target = best;
          text = detail::str(what, "; no level is predicted to meet it, level ", best, " (",
                             o_.ladder[best].spec, ") is predicted cheapest at ", cost(best),
                             over_budget ? " J/step" : " s/step");
        } else {
          codec_h_.see(0);
          if (state_ != policy_state::budget_unattainable &&
              ++unmet_windows_ >= o_.hysteresis_windows && state_d_.ready()) {
            state_ = policy_state::budget_unattainable;
            std::string text =
                detail::str(what, " at level ", level_, " (", o_.ladder[level_].spec,
                            "), the cheapest of levels 0..", ceiling_, " allowed; holding it");
            if (state_d_.moved(+1, max_dwell()))
              text += detail::str("; state changes now ", state_d_.dwell, " windows apart");
            record(step, level_, stale_, reason::budget_unattainable, std::move(text), s);
          }
          return;
        }
      }
    } else {
      // Leaving the unattainable state takes hysteresis_windows good windows
      // and, like entering it, the dwell rule with back-off, so a signal
      // hovering at the budget does not flood the log.
      if (state_ == policy_state::budget_unattainable && ++met_windows_ >= o_.hysteresis_windows &&
          state_d_.ready()) {
        state_ = policy_state::tracking;
        std::string text =
            detail::str("objectives met again at level ", level_, " (", o_.ladder[level_].spec,
                        "): ", s.joules, " J/step, ", s.step_seconds, " s/step");
        if (state_d_.moved(-1, max_dwell()))
          text += detail::str("; state changes now ", state_d_.dwell, " windows apart");
        record(step, level_, stale_, reason::budget_attainable, std::move(text), s);
      }
      const double slack = 1 - o_.loosen_margin;
      for (std::size_t l = 0; l < level_; ++l) {
        const auto p = predict(l);
        if (meets(p.joules, p.seconds, slack)) {
          target = l;
          text = detail::str("level ", l, " (", o_.ladder[l].spec, ") predicted ", p.joules,
                             " J/step, ", p.seconds, " s/step: within the objectives with ",
                             o_.loosen_margin * 100, "% margin");
          break;
        }
      }
    }
    propose(step, target, why, std::move(text), s);
  }

  // minimize_energy: the allowed level (at most the guard's ceiling; no
  // stronger one while the guard waits) predicted cheapest per step, when it
  // saves loosen_margin over the current level's observed joules. With
  // max_slowdown only levels within it compete; a current level over it must
  // move to the cheapest one within it, or (none is) to the fastest when that
  // saves loosen_margin of step time.
  void cheapest(std::uint64_t step, signals& s, bool may_tighten) {
    const double lim = slowdown_limit();
    const auto in_time = [&](double sec) { return lim <= 0 || sec <= lim; };
    const bool current_ok = in_time(s.step_seconds);
    const double keep = 1 - o_.loosen_margin;
    std::size_t best = level_, fastest = level_;
    double best_j = current_ok ? keep * s.joules : std::numeric_limits<double>::infinity();
    double fastest_s = keep * s.step_seconds;
    for (std::size_t l = 0; l <= ceiling_; ++l) {
      if (l == level_ || (l > level_ && !may_tighten)) continue;
      const auto p = predict(l);
      if (p.seconds < fastest_s) {
        fastest = l;
        fastest_s = p.seconds;
      }
      if (!std::isnan(p.joules) && in_time(p.seconds) && p.joules < best_j) {
        best = l;
        best_j = p.joules;
      }
    }
    std::size_t target = best;
    reason why = reason::cheaper_level;
    std::string text;
    if (best != level_) {
      const auto p = predict(best);
      text =
          current_ok
              ? detail::str("level ", best, " (", o_.ladder[best].spec, ") predicted ", p.joules,
                            " J/step, ", p.seconds, " s/step against ", s.joules,
                            " J/step observed at level ", level_, " (", o_.ladder[level_].spec, ")")
              : detail::str(slowdown_text(s), "; level ", best, " (", o_.ladder[best].spec,
                            ") is the cheapest within it at ", p.joules, " J/step");
      if (!current_ok) why = reason::over_slowdown;
    } else if (!current_ok && fastest != level_) {
      target = fastest;
      why = reason::over_slowdown;
      text = detail::str(slowdown_text(s), " and no level is predicted within it; level ", fastest,
                         " (", o_.ladder[fastest].spec, ") is predicted fastest at ", fastest_s,
                         " s/step");
    }
    propose(step, target, why, std::move(text), s);
  }

  // A codec move toward `target` (the current level: none), made once its
  // direction held for hysteresis_windows windows and the dwell has passed.
  void propose(std::uint64_t step, std::size_t target, reason why, std::string text, signals& s) {
    const int want = target > level_ ? +1 : target < level_ ? -1 : 0;
    codec_h_.see(want);
    // On the warm-up's last step (evaluated only when the warm-up covers the
    // hysteresis) the direction counts as held for the whole warm-up.
    if (steps_ == o_.warmup_steps && want != 0)
      codec_h_.count = std::max(codec_h_.count, o_.hysteresis_windows);
    if (want == 0 || codec_h_.count < o_.hysteresis_windows || !codec_d_.ready()) return;
    const auto p = predict(target);
    s.predicted_joules = p.joules;
    s.predicted_seconds = p.seconds;
    move_codec(step, target, why, std::move(text), s);
    last_guard_move_ = move_kind::none;
  }

  void congestion(std::uint64_t step, signals& s) {
    const double frac = s.step_seconds > 0 ? s.comm_seconds / s.step_seconds : 0;
    const bool use_frac = o_.comm_fraction_high > 0;
    const bool high = s.step_spread > o_.spread_high || (use_frac && frac > o_.comm_fraction_high);
    const bool low = s.step_spread < o_.spread_low && (!use_frac || frac < o_.comm_fraction_low);
    int want = 0;
    if (high && stale_ < stale_ceiling_) want = +1;
    if (low && !high && stale_ > 0) want = -1;
    mode_h_.see(want);
    if (want == 0 || mode_h_.count < o_.hysteresis_windows || !mode_d_.ready()) return;
    const std::size_t to = want > 0 ? stale_ + 1 : stale_ - 1;
    const bool by_spread = s.step_spread > o_.spread_high;
    std::string text =
        want > 0 ? (by_spread
                        ? detail::str("step-time spread ", s.step_spread, " above ", o_.spread_high)
                        : detail::str("comm fraction ", frac, " above ", o_.comm_fraction_high))
                 : detail::str("step-time spread ", s.step_spread, " below ", o_.spread_low,
                               use_frac ? detail::str(" and comm fraction ", frac, " below ",
                                                      o_.comm_fraction_low)
                                        : std::string());
    text += detail::str(" for ", mode_h_.count, " windows: staleness ", o_.staleness_ladder[to]);
    if (mode_d_.moved(want, max_dwell()))
      text += detail::str("; reverses a recent move, dwell now ", mode_d_.dwell, " windows");
    record(step, level_, to, want > 0 ? reason::congestion : reason::congestion_cleared,
           std::move(text), s);
    set_staleness(to);
    if (want > 0) last_tightening_ = move_kind::staleness;
    last_guard_move_ = move_kind::none;
  }

  // A new consistency mode changes what a step's communication costs (fewer,
  // larger or later exchanges): the latency line is refitted from windows
  // measured under it.
  void set_staleness(std::size_t to) {
    stale_ = to;
    mode_h_ = {};
    latency_ = {};
    for (auto& st : stats_) st.last_window = 0;
  }

  std::uint32_t max_dwell() const noexcept {
    return std::max(o_.dwell_windows, o_.max_dwell_windows);
  }

  void move_codec(std::uint64_t step, std::size_t to, reason why, std::string text,
                  const signals& s) {
    if (why == reason::over_budget || why == reason::over_slowdown ||
        why == reason::room_to_loosen || why == reason::cheaper_level)
      state_ = policy_state::tracking;
    if (codec_d_.moved(to > level_ ? +1 : -1, max_dwell()))
      text += detail::str("; reverses a recent move, dwell now ", codec_d_.dwell, " windows");
    record(step, to, stale_, why, std::move(text), s);
    if (to > level_) last_tightening_ = move_kind::codec;
    level_ = to;
    codec_h_ = {};
  }

  void record(std::uint64_t step, std::size_t to_level, std::size_t to_stale, reason why,
              std::string text, const signals& s) {
    decision d;
    d.step = step;
    d.from_level = level_;
    d.to_level = to_level;
    d.from_codec = o_.ladder[level_].spec;
    d.to_codec = o_.ladder[to_level].spec;
    d.from_mode = ps::consistency::bounded_staleness(o_.staleness_ladder[stale_]);
    d.to_mode = ps::consistency::bounded_staleness(o_.staleness_ladder[to_stale]);
    d.why = why;
    d.text = std::move(text);
    d.state = state_;
    d.measured = s;
    log_.push_back(std::move(d));
  }
};

}  // namespace greenreduce::adaptive
