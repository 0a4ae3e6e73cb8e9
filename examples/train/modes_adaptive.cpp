// examples/train/modes_adaptive.cpp — the ring with a codec the adaptive policy picks per window.
//
// The exchange is adaptive::adaptive_allreduce over the workers' ring: the
// first 50 steps run fp32 (warm-up), then the controller moves along
// --adaptive-ladder (default none,fp16,int8,ternary) to meet --energy-budget,
// the estimated joules per step of the gradient exchange summed over the
// ranks (0: no budget, the codec stays fp32), or with --energy-budget min to
// run the level predicted cheapest that the accuracy guard allows. Error feedback on the owned
// chunk, flushed across switches (docs/adaptive.md). Everything else — data,
// schedule, SGD with momentum, the energy account — is the ring modes'.
//
// Accuracy guard (--adaptive-guard X, default 0.2; 0 = off): every
// probe_every steps worker 0 computes the mean loss of its current parameters
// on a fixed probe of the first probe_images training images; the mean of the
// last probe_window such losses (a moving average, so that one noisy probe
// does not look like a rise) goes to adaptive_allreduce::set_validation_loss;
// the next exchange shares it with every rank. A probe loss more than X (relative) above the lowest
// one seen moves the codec one rung looser and caps the ladder there. The probe is training data
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

#include "greenreduce/adaptive/adaptive_allreduce.hpp"
#include "harness.hpp"
#include "modes.hpp"

namespace greenreduce::examples {
namespace {

// Codec level per step as a step chart (no dependency, like plot.hpp's SVG).
void write_levels_svg(const std::string& path, const std::vector<std::size_t>& levels,
                      const adaptive::ladder& ladder, const std::string& title) {
  std::ofstream os(path);
  const double W = 900, H = 300, l = 150, r = 880, top = 40, bottom = 250;
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
  os << "\"/>\n</svg>\n";
}

std::string budget_text(const demo_options& o) {
  return o.energy_min ? std::string("minimum energy")
                      : detail::str("budget ", o.energy_budget, " J/step");
}

constexpr std::size_t probe_images = 256;
constexpr std::uint64_t probe_every = 25;
constexpr std::size_t probe_window = 4;  // losses averaged: 100 steps

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
  o.policy.with_ladder(adaptive::ladder::parse(c.opt.adaptive_ladder))
      .with_energy_budget(c.opt.energy_budget)
      .with_minimum_energy(c.opt.energy_min)
      .with_accuracy_guard(c.opt.adaptive_guard)
      .with_model(c.model);
  // The compression error only goes to the log here (the guard watches the
  // loss): a smaller, rarer probe than the default (every window, 65536
  // elements), whose encode and decode cost about 3% of a ternary step.
  o.with_probe(8192, 50);
  o.ring.error_feedback = true;
  o.ring.seed = c.opt.seed;
  o.ring.keep_input = false;
  adaptive::adaptive_allreduce<Transport> ar(t, P, o);
  const bool lead = world.is_lead();
  std::vector<std::size_t> levels;
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
        acc.add(ar.run(grad, collective::reduce_op::average), step);
        if (lead) {
          levels.push_back(ar.last_level());
          for (; logged < ar.policy().log().size(); ++logged)
            if (c.opt.progress)
              std::fprintf(stderr, "\nadaptive step %llu: %s -> %s (%s) %s\n",
                           static_cast<unsigned long long>(ar.policy().log()[logged].step),
                           ar.policy().log()[logged].from_codec.c_str(),
                           ar.policy().log()[logged].to_codec.c_str(),
                           std::string(to_string(ar.policy().log()[logged].why)).c_str(),
                           ar.policy().log()[logged].text.c_str());
        }
        const auto lr =
            static_cast<float>(c.opt.lr * lr_factor(static_cast<double>(step) / total_steps));
        for (std::size_t i = 0; i < P; ++i) {
          velocity[i] = m * velocity[i] + grad[i];
          params[i] -= lr * velocity[i];
        }
        if (lead && c.opt.adaptive_guard > 0 && probe_n > 0 && (step + 1) % probe_every == 0) {
          const double loss =
              probe_net.loss(params, c.train.pixels.data(), c.train.labels.data(), probe_n);
          probe_losses.emplace_back(step, loss);
          if (probe_losses.size() >= probe_window) {
            double mean = 0;
            for (std::size_t k = probe_losses.size() - probe_window; k < probe_losses.size(); ++k)
              mean += probe_losses[k].second;
            ar.set_validation_loss(mean / static_cast<double>(probe_window));
          }
        }
      },
      [&](double, std::uint64_t) { return static_cast<std::size_t>(c.opt.batch); });
  out.wire_bytes = static_cast<double>(t.bytes_sent() + t.bytes_received() - wire0);
  collective::barrier(t);
  out.wall_s = since(start);
  report idle;
  idle.op = "idle";
  idle.seconds = std::max(0.0, out.wall_s - acc.total().seconds);
  acc.add(idle, c.steps_per_epoch * static_cast<std::size_t>(c.opt.epochs));
  out.energy = acc.total().energy;
  if (lead) {
    const auto& ladder = ar.policy().options().ladder;
    std::vector<std::size_t> per_level(ladder.size(), 0);
    for (std::size_t l : levels) ++per_level[l];
    std::string share;
    for (std::size_t k = 0; k < ladder.size(); ++k)
      share += detail::str(k ? ", " : "", ladder[k].spec, " ", per_level[k]);
    if (c.opt.progress) {
      std::fprintf(stderr, "adaptive: %s, %zu decisions, steps per level: %s\n",
                   budget_text(c.opt).c_str(), ar.policy().log().size(), share.c_str());
      if (!probe_losses.empty())
        std::fprintf(stderr,
                     "adaptive: probe loss (%zu images) %.4f at step %llu, %.4f at the end\n",
                     probe_n, probe_losses.front().second,
                     static_cast<unsigned long long>(probe_losses.front().first),
                     probe_losses.back().second);
    }
    if (!c.opt.json.empty()) {
      std::ofstream f(c.opt.json + ".adaptive.jsonl");
      for (const auto& d : ar.policy().log()) f << d.to_json() << '\n';
    }
    if (!c.opt.plot.empty())
      write_levels_svg(
          c.opt.plot + "-adaptive.svg", levels, ladder,
          detail::str("adaptive: codec level per step (", budget_text(c.opt), ", estimated)"));
    out.params = std::move(params);
  }
  return out;
}

const register_mode adaptive_mode{mode_spec{
    "adaptive", "ring whose codec an energy-aware policy picks (--energy-budget J per step)", 70,
    false, false, run_adaptive}};

}  // namespace
}  // namespace greenreduce::examples
