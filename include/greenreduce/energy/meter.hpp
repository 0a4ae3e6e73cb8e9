// greenreduce/energy/meter.hpp — what an energy meter hands back.
//
// A meter (energy/rapl.hpp, energy/nvml.hpp) reads a cumulative hardware energy
// counter at start() and at stop(); the difference over the wall time between
// them is a `measurement`. Hardware counters update at a fixed period (RAPL
// about every 1 ms, Intel SDM vol. 3B 14.9; NVML's board energy far slower), so
// a window shorter than that period is flagged `too_short` instead of being
// reported as a (meaningless) zero.
//
// Invariants: a meter never throws from start()/stop() and never crashes on an
// unreadable counter: it returns valid == false and says why in `reason`. A
// valid measurement has joules >= 0 and seconds >= the meter's update period.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "greenreduce/core/report.hpp"

namespace greenreduce::energy {

/// Seconds from a monotonic clock; meters take one so tests can drive time.
using seconds_clock = std::function<double()>;

/// std::chrono::steady_clock in seconds.
inline double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// The energy one meter saw between start() and stop().
struct measurement {
  energy_method method = energy_method::none;  ///< rapl or nvml
  bool valid = false;                          ///< joules is a usable reading of the window
  bool too_short = false;  ///< the window is shorter than the counter's update period
  double joules = 0;       ///< counter difference (also filled, unreliable, when too_short)
  double seconds = 0;      ///< wall time of the window
  std::string reason;      ///< why !valid (unavailable meter, failed read, too short)

  /// Average power over the window, 0 when the window has no length.
  double watts() const noexcept { return seconds > 0 ? joules / seconds : 0.0; }

  /// The measurement as a report's energy: all joules in measured_j, method
  /// rapl/nvml. An invalid measurement gives an empty estimate (method none), so
  /// a caller can fall back to the model.
  energy_estimate to_estimate() const noexcept {
    energy_estimate e;
    if (!valid) return e;
    e.method = method;
    e.measured_j = joules;
    return e;
  }
};

}  // namespace greenreduce::energy
