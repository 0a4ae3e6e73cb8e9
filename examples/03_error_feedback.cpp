// 03_error_feedback — why a sparsifying codec needs a memory of what it dropped.
//
// Example 02 showed that top-k with k = 5% of n sends 20x fewer bytes but
// throws away most of the gradient. Does training still converge? Here four
// workers solve one least-squares problem together by gradient descent:
//
//   minimise  f(x) = 1/(2M) sum_w ||A_w x - b_w||^2      (M rows in total)
//   worker w: g_w = A_w^T (A_w x - b_w) / M               so grad f = sum_w g_w
//   step:     x <- x - lr * sum_w decode(C(g_w))
//
// Each worker holds different data (its b_w fits a different x), as when
// every worker sees its own slice of a dataset. At the optimum x* the *sum*
// of the gradients is zero, but no single g_w is. Plain top-k sends the k
// largest entries of each g_w; at x* those do not cancel, so x* is not even
// a fixed point and descent stalls at a loss above f(x*).
//
// Error feedback (Karimireddy et al., ICML 2019; codec/error_feedback.hpp)
// keeps, per worker, the residual r of what was not sent and adds it back
// before the next selection:
//
//   e = g + r;   y = C(e);   r = e - decode(y)
//
// Nothing is lost, only delayed: after T steps sum_t decode(y_t) + r_T equals
// sum_t g_t. So x stays within lr * sum_w r_w of the iterate uncompressed
// descent would have: the residuals stay bounded (top-k always sends the
// largest part of e), hence with a constant step size x reaches a neighbourhood
// of x* whose size is proportional to lr, and with a decaying step size
// (lr_t = lr / (1 + t / decay), the default here) it closes in on x* itself.
// Plain top-k has no such guarantee. `codec::error_feedback<topk>`
// wraps the same codec object; its frames are ordinary top-k frames that the
// receiver decodes with `topk` itself. Top-k folds the residual update into
// its selection pass (no decode needed).
//
// The program runs three optimisers from the same start — uncompressed
// (codec::none), top-k, top-k + error feedback — prints f(x) - f(x*) every few
// steps, writes the curves to 03_error_feedback.csv and a gnuplot script
// 03_error_feedback.gp (`gnuplot 03_error_feedback.gp` draws
// 03_error_feedback.svg) in --out DIR (default: the current directory), and
// exits 1 unless error feedback ends at a loss at least 2x lower than plain
// top-k's.
//
//   $ ./build/examples/03_error_feedback --out /tmp
//   $ ./build/examples/03_error_feedback --steps 2000 --ratio 0.02
//   $ ./build/examples/03_error_feedback --decay 0      # constant lr: EF stalls at O(lr)
//
// f(x*) comes from Eigen's QR solve of the stacked system.
#include <greenreduce/greenreduce.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace gr = greenreduce;

namespace {

struct options {
  int workers = 4;
  int dim = 64;
  int rows = 128;  // per worker
  int steps = 600;
  double ratio = 0.05;  // top-k keeps ceil(ratio * dim) entries
  float lr = 0.1F;
  float decay = 50;  // steps over which the step size halves (0: constant)
  std::string out = ".";
  std::uint64_t seed = 3;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--steps" && v) {
      o.steps = std::atoi(v), ++i;
    } else if (a == "--ratio" && v) {
      o.ratio = std::atof(v), ++i;
    } else if (a == "--lr" && v) {
      o.lr = static_cast<float>(std::atof(v)), ++i;
    } else if (a == "--decay" && v) {
      o.decay = static_cast<float>(std::atof(v)), ++i;
    } else if (a == "--out" && v) {
      o.out = v, ++i;
    } else if (a == "--seed" && v) {
      o.seed = std::strtoull(v, nullptr, 10), ++i;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--steps N] [--ratio R] [--lr LR] [--decay STEPS] [--out DIR] "
                   "[--seed S]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  return o;
}

/// The data of one worker.
struct shard {
  Eigen::MatrixXf a;
  Eigen::VectorXf b;
};

/// f(x) = 1/(2M) sum_w ||A_w x - b_w||^2.
double loss(const std::vector<shard>& data, const Eigen::VectorXf& x, int total_rows) {
  double s = 0;
  for (const auto& d : data)
    s += (d.a.cast<double>() * x.cast<double>() - d.b.cast<double>()).squaredNorm();
  return s / (2.0 * total_rows);
}

/// The step size: lr / (1 + step / decay), or lr throughout when decay is 0.
float lr_at(const options& o, int step) {
  return o.decay > 0 ? o.lr / (1.0F + static_cast<float>(step) / o.decay) : o.lr;
}

/// Gradient descent where every worker's gradient goes through `send`, a
/// callable (worker, gradient, decoded) that stands for encode -> wire ->
/// decode. Returns f(x) - f* after every step.
template <class Send>
std::vector<double> descend(const std::vector<shard>& data, const options& o, double f_star,
                            Send&& send) {
  const int total = o.workers * o.rows;
  Eigen::VectorXf x = Eigen::VectorXf::Zero(o.dim);
  Eigen::VectorXf g(o.dim), decoded(o.dim), update(o.dim);
  std::vector<double> curve;
  curve.push_back(loss(data, x, total) - f_star);
  for (int step = 0; step < o.steps; ++step) {
    update.setZero();
    for (int w = 0; w < o.workers; ++w) {
      const auto& d = data[static_cast<std::size_t>(w)];
      g = d.a.transpose() * (d.a * x - d.b) / static_cast<float>(total);
      send(w, std::span<const float>(g.data(), g.size()),
           std::span<float>(decoded.data(), decoded.size()));
      update += decoded;  // what a server (or an allreduce) would sum
    }
    x -= lr_at(o, step) * update;
    curve.push_back(loss(data, x, total) - f_star);
  }
  return curve;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);

  // --- the problem: each worker's rows fit its own x_w = x_common + offset_w
  std::mt19937_64 gen(o.seed);
  std::normal_distribution<float> normal(0.0F, 1.0F);
  Eigen::VectorXf common(o.dim);
  for (auto& v : common) v = normal(gen);
  std::vector<shard> data(static_cast<std::size_t>(o.workers));
  for (auto& d : data) {
    d.a.resize(o.rows, o.dim);
    for (int j = 0; j < o.dim; ++j)
      for (int i = 0; i < o.rows; ++i) d.a(i, j) = normal(gen);
    Eigen::VectorXf mine = common;
    for (auto& v : mine) v += 2.0F * normal(gen);  // heterogeneous workers
    d.b = d.a * mine;
  }
  // The optimum of the whole problem, for reference: least squares on the stacked rows.
  const int total = o.workers * o.rows;
  Eigen::MatrixXd a_all(total, o.dim);
  Eigen::VectorXd b_all(total);
  for (int w = 0; w < o.workers; ++w) {
    a_all.middleRows(w * o.rows, o.rows) = data[static_cast<std::size_t>(w)].a.cast<double>();
    b_all.segment(w * o.rows, o.rows) = data[static_cast<std::size_t>(w)].b.cast<double>();
  }
  const Eigen::VectorXd x_star = a_all.colPivHouseholderQr().solve(b_all);
  const double f_star = (a_all * x_star - b_all).squaredNorm() / (2.0 * total);

  // --- the three ways to send a gradient
  const auto topk = gr::codec::topk::ratio(o.ratio);
  gr::byte_buffer frame(topk.max_encoded_bytes(static_cast<std::size_t>(o.dim)) +
                        gr::codec::none{}.max_encoded_bytes(static_cast<std::size_t>(o.dim)));
  gr::rng g(o.seed);  // none and top-k are deterministic; the concept still asks for an rng

  auto exact = [&](int, std::span<const float> grad, std::span<float> out) {
    const gr::codec::none c;
    const std::size_t len = c.encode(grad, frame, g);
    c.decode(std::span<const std::byte>(frame.data(), len), out);
  };
  auto plain = [&](int, std::span<const float> grad, std::span<float> out) {
    const std::size_t len = topk.encode(grad, frame, g);
    topk.decode(std::span<const std::byte>(frame.data(), len), out);
  };
  // One residual per worker: error feedback is state that lives where the
  // gradient is produced, next to the encoder.
  std::vector<gr::codec::error_feedback<gr::codec::topk>> ef;
  for (int w = 0; w < o.workers; ++w) ef.emplace_back(topk, static_cast<std::size_t>(o.dim));
  auto with_ef = [&](int w, std::span<const float> grad, std::span<float> out) {
    const std::size_t len = ef[static_cast<std::size_t>(w)].encode(grad, frame, g);
    topk.decode(std::span<const std::byte>(frame.data(), len), out);  // a plain top-k frame
  };

  const auto c_none = descend(data, o, f_star, exact);
  const auto c_topk = descend(data, o, f_star, plain);
  const auto c_ef = descend(data, o, f_star, with_ef);

  // --- print and write the curves
  std::printf("least squares: %d workers x %d rows, dim %d, f* = %.6g; top-k keeps %zu of %d\n\n",
              o.workers, o.rows, o.dim, f_star, topk.k_of(static_cast<std::size_t>(o.dim)), o.dim);
  std::printf("%6s %14s %14s %14s   (f(x) - f*)\n", "step", "none", "topk", "topk+EF");
  const int every = std::max(1, o.steps / 12);
  for (int s = 0; s <= o.steps; s += every)
    std::printf("%6d %14.6e %14.6e %14.6e\n", s, c_none[static_cast<std::size_t>(s)],
                c_topk[static_cast<std::size_t>(s)], c_ef[static_cast<std::size_t>(s)]);

  const std::string csv = o.out + "/03_error_feedback.csv";
  const std::string gp = o.out + "/03_error_feedback.gp";
  {
    std::ofstream f(csv);
    f << "step,none,topk,topk_ef\n";
    for (std::size_t s = 0; s < c_none.size(); ++s)
      f << s << ',' << c_none[s] << ',' << c_topk[s] << ',' << c_ef[s] << '\n';
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", csv.c_str());
      return 1;
    }
  }
  {
    std::ofstream f(gp);
    f << "# gnuplot " << gp << "  ->  03_error_feedback.svg\n"
      << "set terminal svg size 720,440\n"
      << "set output '03_error_feedback.svg'\n"
      << "set datafile separator ','\n"
      << "set logscale y\nset xlabel 'step'\nset ylabel 'f(x) - f*'\n"
      << "set title 'top-k (" << o.ratio << ") with and without error feedback'\n"
      << "plot '03_error_feedback.csv' using 1:2 with lines title 'none (fp32)', \\\n"
      << "     '' using 1:3 with lines title 'topk', \\\n"
      << "     '' using 1:4 with lines title 'topk + error feedback'\n";
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", gp.c_str());
      return 1;
    }
  }
  std::printf("\nwrote %s and %s (run gnuplot in %s)\n", csv.c_str(), gp.c_str(), o.out.c_str());

  // --- the claim, checked
  const double end_none = c_none.back(), end_topk = c_topk.back(), end_ef = c_ef.back();
  std::printf("final f(x) - f*: none %.3e, topk %.3e, topk+EF %.3e\n", end_none, end_topk, end_ef);
  if (!(end_ef < end_topk / 2)) {
    std::printf("FAILED: error feedback did not lower the final loss 2x below plain top-k's\n");
    return 1;
  }
  std::printf("error feedback lowers the final loss %.0fx\n", end_topk / std::max(end_ef, 1e-30));
  return 0;
}
