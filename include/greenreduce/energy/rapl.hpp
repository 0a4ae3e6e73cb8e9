// greenreduce/energy/rapl.hpp — CPU energy measured by RAPL through Linux powercap sysfs.
//
// Source: Linux Documentation/power/powercap/powercap.rst (zones, energy_uj,
// max_energy_range_uj) and Intel SDM vol. 3B, "Running Average Power Limit"
// (domains, ~1 ms counter update). Zones live under /sys/class/powercap (or
// GREENREDUCE_POWERCAP_ROOT): `intel-rapl:N` are top-level zones whose `name`
// is `package-N` or `psys`; `intel-rapl:N:M` are subzones (`core`, `uncore`,
// `dram`). AMD's RAPL driver uses the same names.
//
// What is summed (no joule counted twice):
//   - `psys` (the whole platform, a superset of the packages) alone when present
//     and the scope is platform_if_present (the default);
//   - otherwise every `package-N` plus every `dram` domain: on server parts DRAM
//     is powered outside the package, so package energy does not include it;
//     `core` and `uncore` are inside their package and are skipped;
//   - `intel-rapl-mmio:*` zones mirror the MSR package zone and are skipped.
// Counters wrap at max_energy_range_uj; one wrap per window is undone, so a
// window must stay shorter than max_energy_range_uj / power (minutes at
// hundreds of watts).
//
// Invariants: the constructor and start()/stop() never throw and never crash on
// a missing or unreadable tree (EACCES is the norm since Linux 5.10 made
// energy_uj root-only): the meter is then unavailable and says why.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "greenreduce/core/env.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/energy/meter.hpp"

namespace greenreduce::energy {

/// RAPL energy status counters update about every millisecond (Intel SDM).
inline constexpr double rapl_update_period_s = 1e-3;

/// The text of a small file, or why it could not be read.
struct file_result {
  bool ok = false;
  std::string text;
  std::string error;  ///< e.g. "Permission denied" (errno text) when !ok
};

/// Reads a whole file; the meter takes one so tests can inject failures.
using file_reader = std::function<file_result(const std::filesystem::path&)>;

/// Reads a sysfs-sized file with open/read, keeping errno's message on failure.
inline file_result read_small_file(const std::filesystem::path& p) {
  file_result r;
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.error = std::error_code(errno, std::generic_category()).message();
    return r;
  }
  char buf[256];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      r.error = std::error_code(errno, std::generic_category()).message();
      ::close(fd);
      return r;
    }
    if (n == 0) break;
    r.text.append(buf, static_cast<std::size_t>(n));
    if (r.text.size() > 4096) {
      r.error = "file is larger than 4096 bytes";
      ::close(fd);
      return r;
    }
  }
  ::close(fd);
  r.ok = true;
  return r;
}

/// Which domains a rapl_meter sums (see the header comment).
enum class rapl_scope : std::uint8_t {
  platform_if_present,  ///< psys alone when it exists, else packages + dram
  packages,             ///< packages + dram, even when psys exists
};

/// One summed RAPL domain.
struct rapl_domain {
  std::string zone;              ///< "intel-rapl:0", "intel-rapl:0:2"
  std::string name;              ///< "package-0", "dram", "psys"
  std::filesystem::path dir;     ///< the zone's directory
  std::uint64_t max_range_uj{};  ///< where energy_uj wraps to 0
};

/// Counter values at start(); pass it to stop().
struct rapl_snapshot {
  bool ok = false;
  std::string reason;
  double t = 0;
  std::vector<std::uint64_t> uj;
};

struct rapl_options {
  rapl_scope scope = rapl_scope::platform_if_present;
  file_reader reader = read_small_file;
  seconds_clock clock = steady_seconds;
  double update_period_s = rapl_update_period_s;
};

namespace detail {
inline bool parse_u64(const std::string& text, std::uint64_t& out) {
  std::string_view s = text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r'))
    s.remove_suffix(1);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

/// "intel-rapl:N" -> 1, "intel-rapl:N:M" -> 2, anything else -> 0.
inline int rapl_zone_depth(const std::string& name) {
  constexpr std::string_view prefix = "intel-rapl:";
  if (name.rfind(prefix, 0) != 0) return 0;
  int parts = 1;
  bool digit = false;
  for (std::size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] == ':') {
      if (!digit) return 0;
      ++parts;
      digit = false;
    } else if (name[i] >= '0' && name[i] <= '9') {
      digit = true;
    } else {
      return 0;
    }
  }
  return digit && parts <= 2 ? parts : 0;
}
}  // namespace detail

/// Measures the CPU energy of a window from the RAPL counters.
class rapl_meter {
 public:
  static constexpr const char* root_env = "GREENREDUCE_POWERCAP_ROOT";
  static constexpr const char* default_root = "/sys/class/powercap";

  /// The tree at GREENREDUCE_POWERCAP_ROOT, or /sys/class/powercap.
  explicit rapl_meter(const env_source& env, rapl_options opt = {})
      : rapl_meter(std::filesystem::path(env_string(env, root_env, default_root)), std::move(opt)) {
  }

  explicit rapl_meter(std::filesystem::path root, rapl_options opt = {})
      : root_(std::move(root)), opt_(std::move(opt)) {
    try {
      discover();
    } catch (const std::exception& e) {
      domains_.clear();
      reason_ = greenreduce::detail::str("RAPL discovery failed: ", e.what());
    }
  }

  bool available() const noexcept { return !domains_.empty(); }
  /// Why the meter is unavailable (empty when available).
  const std::string& reason() const noexcept { return reason_; }
  const std::filesystem::path& root() const noexcept { return root_; }
  /// The domains summed, sorted by zone.
  const std::vector<rapl_domain>& domains() const noexcept { return domains_; }

  rapl_snapshot start() const {
    rapl_snapshot s;
    try {
      if (!available()) {
        s.reason = reason_;
        return s;
      }
      s.t = opt_.clock();
      s.ok = read_all(s.uj, s.reason);
    } catch (const std::exception& e) {
      s.ok = false;
      s.reason = e.what();
    }
    return s;
  }

  measurement stop(const rapl_snapshot& s) const {
    measurement m;
    m.method = energy_method::rapl;
    try {
      if (!s.ok) {
        m.reason = s.reason.empty() ? "the start snapshot is not valid" : s.reason;
        return m;
      }
      if (s.uj.size() != domains_.size()) {
        m.reason = greenreduce::detail::str("the start snapshot holds ", s.uj.size(),
                                            " counters, this meter ", domains_.size());
        return m;
      }
      std::vector<std::uint64_t> end;
      if (!read_all(end, m.reason)) return m;
      m.seconds = opt_.clock() - s.t;
      std::uint64_t total_uj = 0;
      for (std::size_t i = 0; i < end.size(); ++i) {
        const auto& d = domains_[i];
        if (s.uj[i] > d.max_range_uj || end[i] > d.max_range_uj) {
          m.reason =
              greenreduce::detail::str(d.zone, "/energy_uj is above max_energy_range_uj ",
                                       d.max_range_uj, " (read ", s.uj[i], " then ", end[i], ")");
          return m;
        }
        // One wrap is undone the way powercap tools do it: end + (max - start).
        total_uj += end[i] >= s.uj[i] ? end[i] - s.uj[i] : end[i] + (d.max_range_uj - s.uj[i]);
      }
      m.joules = static_cast<double>(total_uj) * 1e-6;
      if (!(m.seconds >= opt_.update_period_s)) {
        m.too_short = true;
        m.reason = greenreduce::detail::str("window of ", m.seconds,
                                            " s is shorter than the RAPL update period ",
                                            opt_.update_period_s, " s");
        return m;
      }
      m.valid = true;
    } catch (const std::exception& e) {
      m.valid = false;
      m.reason = e.what();
    }
    return m;
  }

 private:
  bool read_counter(const rapl_domain& d, const char* file, std::uint64_t& out,
                    std::string& why) const {
    const auto path = d.dir / file;
    const file_result r = opt_.reader(path);
    if (!r.ok) {
      why = greenreduce::detail::str("cannot read ", path.string(), ": ", r.error);
      return false;
    }
    if (!detail::parse_u64(r.text, out)) {
      why = greenreduce::detail::str(path.string(), " holds \"", r.text,
                                     "\", expected an unsigned integer");
      return false;
    }
    return true;
  }

  bool read_all(std::vector<std::uint64_t>& out, std::string& why) const {
    out.assign(domains_.size(), 0);
    for (std::size_t i = 0; i < domains_.size(); ++i)
      if (!read_counter(domains_[i], "energy_uj", out[i], why)) return false;
    return true;
  }

  void discover() {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(root_, ec)) {
      reason_ = greenreduce::detail::str(
          "powercap root ", root_.string(),
          " is not a readable directory (no RAPL driver, or not exposed here)");
      return;
    }
    std::map<std::string, fs::path> zones;  // sorted, deduplicated by zone name
    auto scan = [&](const fs::path& dir) {
      std::error_code e;
      for (fs::directory_iterator it(dir, e), end; !e && it != end; it.increment(e)) {
        const std::string n = it->path().filename().string();
        if (detail::rapl_zone_depth(n) > 0) zones.emplace(n, it->path());
      }
    };
    scan(root_);
    // Subzones may sit only inside their parent's directory.
    for (const auto& [name, dir] : std::map<std::string, fs::path>(zones))
      if (detail::rapl_zone_depth(name) == 1) scan(dir);

    std::vector<rapl_domain> packages, drams, psys;
    for (const auto& [zone, dir] : zones) {
      const file_result r = opt_.reader(dir / "name");
      if (!r.ok) {
        reason_ = greenreduce::detail::str("cannot read ", (dir / "name").string(), ": ", r.error);
        return;
      }
      std::string name = r.text;
      while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
      rapl_domain d{zone, name, dir, 0};
      if (detail::rapl_zone_depth(zone) == 1 && name.rfind("package", 0) == 0)
        packages.push_back(d);
      else if (detail::rapl_zone_depth(zone) == 1 && name == "psys")
        psys.push_back(d);
      else if (name == "dram")
        drams.push_back(d);
      // core, uncore and unknown names are inside a package or unknown: not summed.
    }
    std::vector<rapl_domain> chosen;
    if (!psys.empty() && opt_.scope == rapl_scope::platform_if_present) {
      chosen = psys;
    } else if (!packages.empty()) {  // dram alone would miss the CPUs: not a measurement
      chosen = packages;
      chosen.insert(chosen.end(), drams.begin(), drams.end());
    }
    if (chosen.empty()) {
      reason_ = greenreduce::detail::str("no RAPL package or psys zone under ", root_.string(),
                                         " (found ", zones.size(), " intel-rapl zones)");
      return;
    }
    for (auto& d : chosen) {
      std::string why;
      std::uint64_t probe = 0;
      if (!read_counter(d, "max_energy_range_uj", d.max_range_uj, why) ||
          !read_counter(d, "energy_uj", probe, why)) {
        // Since Linux 5.10 energy_uj is readable by root only (CVE-2020-8694).
        reason_ = why;
        return;
      }
      if (d.max_range_uj == 0) {
        reason_ = greenreduce::detail::str((d.dir / "max_energy_range_uj").string(),
                                           " is 0, expected > 0");
        return;
      }
    }
    std::sort(chosen.begin(), chosen.end(),
              [](const rapl_domain& a, const rapl_domain& b) { return a.zone < b.zone; });
    domains_ = std::move(chosen);
  }

  std::filesystem::path root_;
  rapl_options opt_;
  std::vector<rapl_domain> domains_;
  std::string reason_;
};

}  // namespace greenreduce::energy
