// examples/train/modes_adaptive.cpp — local SGD whose codec and averaging period an energy-aware
// policy picks.
//
// The exchange is adaptive::model_averaging over the workers' ring: every
// rank runs SGD with momentum on its own gradient and the ranks average their
// parameters (their change since the last average, through
// adaptive_allreduce) every period steps — period 1 is the synchronous ring
// exactly (up to rounding). The first 50 exchanges run fp32 every step
// (warm-up); then the controller moves along --adaptive-ladder (default
// none,fp16,int8,ternary) to meet --energy-budget, the estimated joules per
// step of the exchange summed over the ranks (0: no budget, the codec stays
// fp32), or with --energy-budget min to run the level predicted cheapest that
// the accuracy guard allows; and along --adaptive-periods (default 1,2,4):
// one period longer while the exchange takes more than comm_high of the step
// (a slow or busy link), one shorter below comm_low. Error feedback on the
// owned chunk, flushed across codec switches (docs/adaptive.md). Everything
// else — data, schedule, the energy account — is the ring modes'.
//
// Accuracy guard (--adaptive-guard X, default 0.2; 0 = off): every
// probe_every steps worker 0 computes the mean loss of its current parameters
// on a fixed probe of the first probe_images training images; the mean of the
// last probe_window such losses (a moving average, so that one noisy probe
// does not look like a rise) goes to model_averaging::set_validation_loss;
// the next exchange shares it with every rank. A probe loss more than X
// (relative) above the lowest one seen undoes the last tightening — the codec
// one rung looser or the period one rung shorter — and caps that ladder
// there. The probe is training data
// (the demo keeps no separate validation split, and the test set stays for the final accuracy); its
// cost (a forward pass over the probe) is in the mode's wall time.
//
// Rank 0 prints each decision as it is made; with --json FILE it writes the
// log to FILE.adaptive.jsonl, and with --plot PATH the codec level of every
// step to PATH-adaptive.svg.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "greenreduce/adaptive/model_averaging.hpp"
#include "harness.hpp"
#include "modes.hpp"

namespace greenreduce::examples {
namespace {

// Codec level per step as a step chart (no dependency, like plot.hpp's SVG).
// The averaging period per step is a second (blue) line against the right axis.
void write_levels_svg(const std::string& path, const std::vector<std::size_t>& levels,
                      const std::vector<std::uint64_t>& periods,
                      const std::vector<std::uint32_t>& period_ladder,
                      const adaptive::ladder& ladder, const std::string& title) {
  std::ofstream os(path);
  const double W = 960, H = 300, l = 150, r = 880, top = 46, bottom = 250;
  const double n = static_cast<double>(std::max<std::size_t>(levels.size(), 1));
  const double rungs = static_cast<double>(std::max<std::size_t>(ladder.size() - 1, 1));
  auto x = [&](double s) { return l + (r - l) * s / n; };
  auto y = [&](double v) { return bottom - (bottom - top) * v / rungs; };
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
     << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
     << "fill=\"white\"/>\n<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\">" << title
     << "</text>\n<rect x=\"" << l << "\" y=\"" << top << "\" width=\"" << r - l << "\" height=\""
     << bottom - top << "\" fill=\"none\" stroke=\"black\"/>\n";
  for (std::size_t k = 0; k < ladder.size(); ++k)
    os << "<text x=\"" << l - 6 << "\" y=\"" << y(static_cast<double>(k)) + 4
       << "\" text-anchor=\"end\">" << ladder[k].spec << "</text>\n";
  for (int k = 0; k <= 4; ++k)
    os << "<text x=\"" << x(n * k / 4) << "\" y=\"" << bottom + 16 << "\" text-anchor=\"middle\">"
       << static_cast<long long>(n * k / 4) << "</text>\n";
  os << "<text x=\"" << (l + r) / 2 << "\" y=\"" << bottom + 36
     << "\" text-anchor=\"middle\">step</text>\n<polyline fill=\"none\" stroke=\"#d62728\" "
     << "stroke-width=\"2\" points=\"";
  for (std::size_t s = 0; s < levels.size(); ++s) {  // a corner at each change only
    const double v = static_cast<double>(levels[s]);
    if (s == 0 || levels[s] != levels[s - 1]) {
      if (s > 0)
        os << x(static_cast<double>(s)) << ',' << y(static_cast<double>(levels[s - 1])) << ' ';
      os << x(static_cast<double>(s)) << ',' << y(v) << ' ';
    }
  }
  if (!levels.empty()) os << x(n) << ',' << y(static_cast<double>(levels.back())) << ' ';
  os << "\"/>\n";
  // Periods on their own scale: rung k of --adaptive-periods at the height of rung k of the ladder
  // when both have as many rungs, else spread over the same height.
  const double prungs = static_cast<double>(std::max<std::size_t>(period_ladder.size() - 1, 1));
  auto rung = [&](std::uint64_t p) {
    std::size_t k = 0;
    while (k + 1 < period_ladder.size() && period_ladder[k] < p) ++k;
    return static_cast<double>(k);
  };
  auto yp = [&](double k) { return bottom - (bottom - top) * k / prungs; };
  for (std::size_t k = 0; k < period_ladder.size(); ++k)
    os << "<text x=\"" << r + 6 << "\" y=\"" << yp(static_cast<double>(k)) + 4
       << "\" fill=\"#1f77b4\">every " << period_ladder[k] << "</text>\n";
  os << "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" stroke-dasharray=\"6,3\" "
        "points=\"";
  for (std::size_t s = 0; s < periods.size(); ++s) {
    if (s == 0 || periods[s] != periods[s - 1]) {
      if (s > 0) os << x(static_cast<double>(s)) << ',' << yp(rung(periods[s - 1])) << ' ';
      os << x(static_cast<double>(s)) << ',' << yp(rung(periods[s])) << ' ';
    }
  }
  if (!periods.empty()) os << x(n) << ',' << yp(rung(periods.back())) << ' ';
  os << "\"/>\n<text x=\"" << l << "\" y=\"" << top - 6
     << "\" font-size=\"11\" fill=\"#d62728\">codec (left, solid)</text><text x=\"" << r
     << "\" y=\"" << top - 6
     << "\" font-size=\"11\" text-anchor=\"end\" fill=\"#1f77b4\">averaging period in steps "
        "(right, dashed)</text>\n</svg>\n";
}

std::string budget_text(const demo_options& o) {
  return o.energy_min ? std::string("minimum energy")
                      : detail::str("budget ", o.energy_budget, " J/step");
}

constexpr std::size_t probe_images = 256;
constexpr std::uint64_t probe_every = 25;
constexpr std::size_t probe_window = 4;  // losses averaged: 100 steps
// Exchange seconds / step seconds above which the period grows, below which it
// shrinks. The 1 Gbit/s demo link measured 0.6 at period 1 with ternary
// (latency-bound: 0.32 ms of a 0.52 ms step), 0.44 at 2 and 0.29 at 4.
constexpr double comm_high = 0.4, comm_low = 0.15;

rank_outcome run_adaptive(rank_context& c, demo_world& world) {
  rank_outcome out;
  if (world.is_server()) return out;  // the ring is the workers' alone
  if (c.opt.balance)
    throw config_error("--balance is not supported by the adaptive mode (it keeps batches fixed)");
  using Transport = rank_range<transport::tcp>;
  Transport& t = world.workers;
  const std::string mode = "adaptive";
  account acc(c.model, c.ledger, mode);
  fvec params = c.init, velocity(c.init.size(), 0.0F);
  const std::size_t P = params.size();

  adaptive::adaptive_allreduce_options o;
  std::vector<std::uint32_t> staleness;
  for (std::uint32_t p : c.opt.adaptive_periods) staleness.push_back(p - 1);
  o.policy.with_ladder(adaptive::ladder::parse(c.opt.adaptive_ladder))
      .with_energy_budget(c.opt.energy_budget)
      .with_minimum_energy(c.opt.energy_min)
      .with_accuracy_guard(c.opt.adaptive_guard)
      .with_model(c.model)
      .with_consistency(true)
      .with_staleness_ladder(staleness)
      .with_comm_fraction_thresholds(comm_high, comm_low)
      // Only the comm fraction moves the period: a spread of the ranks' compute
      // times says a node is slow, which a longer period does not fix.
      .with_spread_thresholds(1e9, 1e9);
  // The compression error only goes to the log here (the guard watches the
  // loss): a smaller, rarer probe than the default (every window, 65536
  // elements), whose encode and decode cost about 3% of a ternary step.
  o.with_probe(8192, 50);
  o.ring.error_feedback = true;
  o.ring.seed = c.opt.seed;
  o.ring.keep_input = false;
  adaptive::model_averaging<Transport> avg(t, params, o);
  const bool lead = world.is_lead();
  std::vector<std::size_t> levels;
  std::vector<std::uint64_t> periods;
  std::size_t logged = 0;
  const auto m = static_cast<float>(c.opt.momentum);
  const double total_steps = static_cast<double>(c.steps_per_epoch) * c.opt.epochs;
  mlp probe_net;
  const std::size_t probe_n = std::min(probe_images, c.train.size());
  std::vector<std::pair<std::uint64_t, double>> probe_losses;

  collective::barrier(t);
  const auto start = steady::now();
  const std::uint64_t wire0 = t.bytes_sent() + t.bytes_received();
  train_loop(
      c, mode, true, acc, params, out, [](fvec&, std::uint64_t) {},
      [&](fvec& grad, std::size_t, std::uint64_t step) {
        const auto lr =
            static_cast<float>(c.opt.lr * lr_factor(static_cast<double>(step) / total_steps));
        for (std::size_t i = 0; i < P; ++i) {
          velocity[i] = m * velocity[i] + grad[i];
          params[i] -= lr * velocity[i];
        }
        if (lead) periods.push_back(avg.period());
        if (auto rep = avg.step(params)) acc.add(*rep, step);
        if (lead) {
          levels.push_back(avg.allreduce().last_level());
          const auto& log = avg.policy().log();
          for (; logged < log.size(); ++logged)
            if (c.opt.progress)
              std::fprintf(
                  stderr,
                  "\nadaptive exchange %llu (step %llu): %s -> %s, every %u -> %u (%s) %s\n",
                  static_cast<unsigned long long>(log[logged].step),
                  static_cast<unsigned long long>(step), log[logged].from_codec.c_str(),
                  log[logged].to_codec.c_str(), log[logged].from_mode.staleness + 1,
                  log[logged].to_mode.staleness + 1,
                  std::string(to_string(log[logged].why)).c_str(), log[logged].text.c_str());
        }
        if (lead && c.opt.adaptive_guard > 0 && probe_n > 0 && (step + 1) % probe_every == 0) {
          const double loss =
              probe_net.loss(params, c.train.pixels.data(), c.train.labels.data(), probe_n);
          probe_losses.emplace_back(step, loss);
          if (probe_losses.size() >= probe_window) {
            double mean = 0;
            for (std::size_t k = probe_losses.size() - probe_window; k < probe_losses.size(); ++k)
              mean += probe_losses[k].second;
            avg.set_validation_loss(mean / static_cast<double>(probe_window));
          }
        }
      },
      [&](double, std::uint64_t) { return static_cast<std::size_t>(c.opt.batch); });
  // Every rank ends with the same parameters: the steps since the last average.
  acc.add(avg.finish(params), c.steps_per_epoch * static_cast<std::size_t>(c.opt.epochs));
  out.wire_bytes = static_cast<double>(t.bytes_sent() + t.bytes_received() - wire0);
  collective::barrier(t);
  out.wall_s = since(start);
  report idle;
  idle.op = "idle";
  idle.seconds = std::max(0.0, out.wall_s - acc.total().seconds);
  acc.add(idle, c.steps_per_epoch * static_cast<std::size_t>(c.opt.epochs));
  out.energy = acc.total().energy;
  if (lead) {
    const auto& ladder = avg.policy().options().ladder;
    std::vector<std::size_t> per_level(ladder.size(), 0);
    for (std::size_t l : levels) ++per_level[l];
    std::string share;
    for (std::size_t k = 0; k < ladder.size(); ++k)
      share += detail::str(k ? ", " : "", ladder[k].spec, " ", per_level[k]);
    std::string period_share;
    for (std::uint32_t p : c.opt.adaptive_periods)
      period_share += detail::str(period_share.empty() ? "" : ", ", "every ", p, ": ",
                                  std::count(periods.begin(), periods.end(), p));
    if (c.opt.progress) {
      std::fprintf(stderr,
                   "adaptive: %s, %zu decisions, %llu exchanges, steps per level: %s; steps per "
                   "period: %s\n",
                   budget_text(c.opt).c_str(), avg.policy().log().size(),
                   static_cast<unsigned long long>(avg.exchanges()), share.c_str(),
                   period_share.c_str());
      if (!probe_losses.empty())
        std::fprintf(stderr,
                     "adaptive: probe loss (%zu images) %.4f at step %llu, %.4f at the end\n",
                     probe_n, probe_losses.front().second,
                     static_cast<unsigned long long>(probe_losses.front().first),
                     probe_losses.back().second);
    }
    if (!c.opt.json.empty()) {
      std::ofstream f(c.opt.json + ".adaptive.jsonl");
      for (const auto& d : avg.policy().log()) f << d.to_json() << '\n';
    }
    if (!c.opt.plot.empty())
      write_levels_svg(c.opt.plot + "-adaptive.svg", levels, periods, c.opt.adaptive_periods,
                       ladder,
                       detail::str("adaptive: codec and averaging period per step (",
                                   budget_text(c.opt), ", estimated)"));
    out.params = std::move(params);
  }
  return out;
}

const register_mode adaptive_mode{mode_spec{
    "adaptive", "ring whose codec an energy-aware policy picks (--energy-budget J per step)", 70,
    false, false, run_adaptive}};

}  // namespace
}  // namespace greenreduce::examples
