// examples/train/plot.hpp — the demo's figure: accuracy vs joules, and loss curves.
//
// Two panels: left, one point per mode at (estimated joules, test accuracy),
// so the better trade-off is up and to the left; right, each mode's training
// loss against epochs. write_svg() draws it with no dependency; write_png()
// hands the same data to gnuplot (Debian package gnuplot-nox) and returns
// false when gnuplot is missing or fails, so the caller can fall back to SVG.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace greenreduce::examples {

struct plot_series {
  std::string name;
  double accuracy = 0;                          ///< test accuracy, percent
  double joules = 0;                            ///< estimated joules of the run
  std::vector<std::pair<double, double>> loss;  ///< (epoch, training loss)
};

namespace plot_detail {

inline const char* colour(std::size_t i) {
  static const char* c[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                            "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
  return c[i % 8];
}

inline std::string xml_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '<')
      o += "&lt;";
    else if (ch == '>')
      o += "&gt;";
    else if (ch == '&')
      o += "&amp;";
    else if (ch == '"')
      o += "&quot;";
    else
      o += ch;
  }
  return o;
}

/// A range padded by 5% (or +-1 when empty), for an axis.
inline std::pair<double, double> padded(double lo, double hi) {
  if (!(hi > lo)) return {lo - 1, hi + 1};
  const double pad = 0.05 * (hi - lo);
  return {lo - pad, hi + pad};
}

inline std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

}  // namespace plot_detail

/// Writes the figure as a standalone SVG document.
inline void write_svg(std::ostream& os, const std::vector<plot_series>& s,
                      const std::string& title) {
  using namespace plot_detail;
  const double W = 1000, H = 440, top = 50, bottom = 380, l1 = 70, r1 = 470, l2 = 560, r2 = 960;
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
     << "\" viewBox=\"0 0 " << W << ' ' << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
     << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
     << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">"
     << xml_escape(title) << "</text>\n";
  auto frame = [&](double l, double r, const char* xl, const char* yl, std::pair<double, double> xr,
                   std::pair<double, double> yr) {
    os << "<rect x=\"" << l << "\" y=\"" << top << "\" width=\"" << r - l << "\" height=\""
       << bottom - top << "\" fill=\"none\" stroke=\"black\"/>\n";
    for (int k = 0; k <= 4; ++k) {
      const double fx = l + (r - l) * k / 4.0, fy = bottom - (bottom - top) * k / 4.0;
      os << "<text x=\"" << fx << "\" y=\"" << bottom + 16 << "\" text-anchor=\"middle\">"
         << num(xr.first + (xr.second - xr.first) * k / 4.0) << "</text>\n";
      os << "<text x=\"" << l - 6 << "\" y=\"" << fy + 4 << "\" text-anchor=\"end\">"
         << num(yr.first + (yr.second - yr.first) * k / 4.0) << "</text>\n";
    }
    os << "<text x=\"" << (l + r) / 2 << "\" y=\"" << bottom + 36 << "\" text-anchor=\"middle\">"
       << xl << "</text>\n";
    os << "<text transform=\"translate(" << l - 50 << ',' << (top + bottom) / 2
       << ") rotate(-90)\" text-anchor=\"middle\">" << yl << "</text>\n";
  };
  // Left: accuracy vs joules.
  double jlo = 1e300, jhi = -1e300, alo = 1e300, ahi = -1e300;
  for (const auto& x : s) {
    jlo = std::min(jlo, x.joules);
    jhi = std::max(jhi, x.joules);
    alo = std::min(alo, x.accuracy);
    ahi = std::max(ahi, x.accuracy);
  }
  if (s.empty()) jlo = jhi = alo = ahi = 0;
  const auto jr = padded(jlo, jhi), ar = padded(alo, ahi);
  frame(l1, r1, "estimated energy (J)", "test accuracy (%)", jr, ar);
  for (std::size_t i = 0; i < s.size(); ++i) {
    const double x = l1 + (r1 - l1) * (s[i].joules - jr.first) / (jr.second - jr.first);
    const double y = bottom - (bottom - top) * (s[i].accuracy - ar.first) / (ar.second - ar.first);
    os << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"5\" fill=\"" << colour(i)
       << "\"/>\n<text x=\"" << x + 8 << "\" y=\"" << y - 6 << "\" fill=\"" << colour(i) << "\">"
       << xml_escape(s[i].name) << "</text>\n";
  }
  // Right: loss curves.
  double elo = 1e300, ehi = -1e300, llo = 1e300, lhi = -1e300;
  for (const auto& x : s)
    for (auto [e, l] : x.loss) {
      elo = std::min(elo, e);
      ehi = std::max(ehi, e);
      llo = std::min(llo, l);
      lhi = std::max(lhi, l);
    }
  if (elo > ehi) elo = ehi = llo = lhi = 0;
  const auto er = padded(elo, ehi), lr = padded(llo, lhi);
  frame(l2, r2, "epoch", "training loss", er, lr);
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i].loss.empty()) continue;
    os << "<polyline fill=\"none\" stroke-width=\"1.5\" stroke=\"" << colour(i) << "\" points=\"";
    for (auto [e, l] : s[i].loss)
      os << num(l2 + (r2 - l2) * (e - er.first) / (er.second - er.first)) << ','
         << num(bottom - (bottom - top) * (l - lr.first) / (lr.second - lr.first)) << ' ';
    os << "\"/>\n";
    const double ly = top + 16 + 16.0 * static_cast<double>(i);
    os << "<line x1=\"" << r2 - 110 << "\" y1=\"" << ly - 4 << "\" x2=\"" << r2 - 90 << "\" y2=\""
       << ly - 4 << "\" stroke=\"" << colour(i) << "\" stroke-width=\"2\"/>\n<text x=\"" << r2 - 84
       << "\" y=\"" << ly << "\">" << xml_escape(s[i].name) << "</text>\n";
  }
  os << "</svg>\n";
}

/// Renders `path_png` with gnuplot; false (and nothing claimed) when gnuplot
/// is not installed or fails.
inline bool write_png(const std::string& path_png, const std::vector<plot_series>& s,
                      const std::string& title) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return false;
  const std::string dat = path_png + ".dat", gp = path_png + ".gp";
  {
    std::ofstream d(dat);
    d << "# block 0: mode joules accuracy; then one block per mode: epoch loss\n";
    for (const auto& x : s) d << '"' << x.name << "\" " << x.joules << ' ' << x.accuracy << '\n';
    for (const auto& x : s) {
      d << "\n\n";
      for (auto [e, l] : x.loss) d << e << ' ' << l << '\n';
    }
    std::ofstream g(gp);
    g << "set terminal pngcairo noenhanced size 1000,440 font 'sans,10'\n"
      << "set output '" << path_png << "'\n"
      << "set multiplot layout 1,2 title '" << title << "'\n"
      << "set xlabel 'estimated energy (J)'\nset ylabel 'test accuracy (%)'\nset grid\n"
      << "set offsets graph 0.08, graph 0.15, graph 0.1, graph 0.1\n"
      << "plot '" << dat << "' index 0 using 2:3 with points pt 7 ps 1.5 notitle, \\\n"
      << "     '' index 0 using 2:3:1 with labels offset 1,1 notitle\n"
      << "set xlabel 'epoch'\nset ylabel 'training loss'\nset offsets 0,0,0,0\n"
      << "plot ";
    for (std::size_t i = 0; i < s.size(); ++i)
      g << (i ? ", " : "") << "'" << dat << "' index " << i + 1
        << " using 1:2 with lines lw 2 title '" << s[i].name << "'";
    g << "\nunset multiplot\n";
  }
  const std::string cmd = "gnuplot '" + gp + "' >/dev/null 2>&1";
  const bool ok = std::system(cmd.c_str()) == 0 && std::filesystem::exists(path_png) &&
                  std::filesystem::file_size(path_png) > 0;
  std::error_code ec;
  std::filesystem::remove(dat, ec);
  std::filesystem::remove(gp, ec);
  return ok;
}

}  // namespace greenreduce::examples
