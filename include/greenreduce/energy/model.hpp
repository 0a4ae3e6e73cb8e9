// greenreduce/energy/model.hpp — the energy model: joules from counted bytes, operations and time.
//
// Per rank and per operation (docs/energy.md has the derivation and the sources):
//
//   E = 8 * (bytes_sent + bytes_received) * link_pj_per_bit * 1e-12     network_j
//     +      memory_bytes                 * memory_pj_per_byte * 1e-12  memory_j
//     +      compute_ops                  * op_pj * 1e-12               compute_j
//     +      seconds                      * static_watts                static_j
//
// Per-rank convention: a rank pays for its own end of every bit it sends AND of
// every bit it receives, so one bit crossing one link costs 2 * link_pj_per_bit
// summed over the two ranks; `link_pj_per_bit` is therefore half the end-to-end
// energy per bit of the link. Coefficients are per profile (Horowitz, ISSCC 2014
// for arithmetic and DRAM; transceiver and radio figures as cited below).
//
// Invariants: every coefficient is finite and >= 0 (checked when a model is
// built); the estimate is linear in each counter, so estimate(a + b) ==
// estimate(a) + estimate(b) up to rounding, and fewer wire bytes never give a
// larger network part.
#pragma once

#include <array>
#include <cmath>
#include <string>
#include <string_view>
#include <utility>

#include "greenreduce/core/env.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/core/report.hpp"

namespace greenreduce::energy {

/// The coefficient table of the model. Units are in the names.
struct coefficients {
  /// pJ per bit per end (half the end-to-end energy of one bit on the link).
  double link_pj_per_bit = 0;
  /// pJ per byte read or written by a kernel (DRAM/HBM access energy).
  double memory_pj_per_byte = 0;
  /// pJ per arithmetic operation counted in report::compute_ops (fp32 add/mult mean).
  double op_pj = 0;
  /// W of static/idle power attributed to one rank for the operation's wall time.
  double static_watts = 0;

  friend bool operator==(const coefficients&, const coefficients&) = default;
};

/// A named coefficient set.
struct profile {
  std::string_view name;
  std::string_view description;
  coefficients coeffs;
};

namespace detail {
// Horowitz, ISSCC 2014 (45 nm): 64-bit DRAM access 1.3-2.6 nJ; the low end per byte.
inline constexpr double ddr_pj_per_byte = 1300.0 / 8.0;  // 162.5
// O'Connor et al., "Fine-Grained DRAM", MICRO 2017: HBM2 about 3.9 pJ/bit.
inline constexpr double hbm_pj_per_byte = 3.9 * 8.0;  // 31.2
// Horowitz, ISSCC 2014 (45 nm): fp32 add 0.9 pJ, fp32 mult 3.7 pJ; their mean.
inline constexpr double fp32_op_pj = (0.9 + 3.7) / 2.0;  // 2.3
}  // namespace detail

/// Every profile the library knows; the first is the default.
inline constexpr std::array<profile, 5> profiles{{
    {"datacenter_ethernet",
     "CPU ranks on servers linked by 400G optical Ethernet, DDR memory",
     // two 9 W 400G modules carry 2 x 400 Gb/s duplex: 18 W / 800 Gb/s = 22.5 pJ/bit end to end
     {22.5 / 2.0, detail::ddr_pj_per_byte, detail::fp32_op_pj, 50.0}},
    {"nvlink",
     "GPU ranks in one node linked by NVLink, HBM memory",
     {1.3 / 2.0, detail::hbm_pj_per_byte, detail::fp32_op_pj, 60.0}},
    {"pcie",
     "GPU ranks in one node linked by PCIe (no NVLink), HBM memory",
     {5.0 / 2.0, detail::hbm_pj_per_byte, detail::fp32_op_pj, 60.0}},
    {"wifi_edge",
     "phones or edge boards on 802.11 Wi-Fi, LPDDR memory",
     // Aalborg University phone measurements: 6.45e-7 J/bit, paid by each phone
     {645000.0, detail::ddr_pj_per_byte, detail::fp32_op_pj, 1.0}},
    {"loopback",
     "ranks are threads of one process: the wire is a memory copy",
     // each byte is read once by the sender's copy and written once: one DDR access per end
     {detail::ddr_pj_per_byte / 8.0, detail::ddr_pj_per_byte, detail::fp32_op_pj, 0.0}},
}};

/// The names of all profiles, comma separated (for messages and docs).
inline std::string profile_names() {
  std::string s;
  for (const auto& p : profiles) s += (s.empty() ? "" : ", ") + std::string(p.name);
  return s;
}

/// The coefficients of a named profile; config_error listing the valid names otherwise.
inline coefficients profile_by_name(std::string_view name) {
  for (const auto& p : profiles)
    if (p.name == name) return p.coeffs;
  throw config_error(greenreduce::detail::str("unknown energy profile \"", name,
                                              "\": expected one of ", profile_names()));
}

/// Throws config_error unless every coefficient is finite and >= 0.
inline void validate(const coefficients& c) {
  const std::pair<const char*, double> fields[] = {{"link_pj_per_bit", c.link_pj_per_bit},
                                                   {"memory_pj_per_byte", c.memory_pj_per_byte},
                                                   {"op_pj", c.op_pj},
                                                   {"static_watts", c.static_watts}};
  for (const auto& [name, v] : fields)
    if (!std::isfinite(v) || v < 0)
      throw config_error(greenreduce::detail::str("energy coefficient ", name,
                                                  " must be a finite number >= 0, got ", v));
}

/// The environment variables the model reads (all optional).
struct env_names {
  static constexpr const char* profile = "GREENREDUCE_ENERGY_PROFILE";
  static constexpr const char* link_pj_per_bit = "GREENREDUCE_ENERGY_LINK_PJ_PER_BIT";
  static constexpr const char* memory_pj_per_byte = "GREENREDUCE_ENERGY_MEMORY_PJ_PER_BYTE";
  static constexpr const char* op_pj = "GREENREDUCE_ENERGY_OP_PJ";
  static constexpr const char* static_watts = "GREENREDUCE_ENERGY_STATIC_WATTS";
};

/// `base`, or the profile GREENREDUCE_ENERGY_PROFILE names, with each coefficient
/// replaced by its GREENREDUCE_ENERGY_* variable when set. Malformed -> config_error.
inline coefficients coefficients_from_env(const env_source& env,
                                          coefficients base = profiles[0].coeffs) {
  if (auto name = env.get(env_names::profile)) {
    try {
      base = profile_by_name(*name);
    } catch (const config_error&) {
      throw config_error(greenreduce::detail::str(
          env_names::profile, "=\"", *name, "\" is invalid: expected one of ", profile_names()));
    }
  }
  constexpr double hi = 1e15;  // far above any physical value, below overflow
  base.link_pj_per_bit = env_double(env, env_names::link_pj_per_bit, base.link_pj_per_bit, 0, hi);
  base.memory_pj_per_byte =
      env_double(env, env_names::memory_pj_per_byte, base.memory_pj_per_byte, 0, hi);
  base.op_pj = env_double(env, env_names::op_pj, base.op_pj, 0, hi);
  base.static_watts = env_double(env, env_names::static_watts, base.static_watts, 0, hi);
  return base;
}

/// The energy model: a validated coefficient table and the arithmetic over a report.
class model {
 public:
  /// The default profile (datacenter_ethernet).
  model() : model(profiles[0].coeffs) {}
  explicit model(const coefficients& c) : c_(c) { validate(c_); }
  /// A named profile.
  explicit model(std::string_view profile_name) : model(profile_by_name(profile_name)) {}

  /// The default profile overridden by GREENREDUCE_ENERGY_* variables.
  static model from_env(const env_source& env) { return model(coefficients_from_env(env)); }

  const coefficients& coeffs() const noexcept { return c_; }

  /// Joules of the operation `r` describes on this rank, method = model.
  energy_estimate estimate(const report& r) const noexcept {
    constexpr double pico = 1e-12;
    energy_estimate e;
    e.network_j = static_cast<double>(r.wire_bytes()) * 8.0 * c_.link_pj_per_bit * pico;
    e.memory_j = static_cast<double>(r.memory_bytes) * c_.memory_pj_per_byte * pico;
    e.compute_j = static_cast<double>(r.compute_ops) * c_.op_pj * pico;
    e.static_j = r.seconds * c_.static_watts;
    e.method = energy_method::model;
    return e;
  }

  /// Replaces r.energy with estimate(r) (a measured figure there is overwritten).
  void annotate(report& r) const noexcept { r.energy = estimate(r); }

 private:
  coefficients c_;
};

/// The model every collective and parameter-server report is annotated with
/// unless the caller names another: the default profile overridden by the
/// GREENREDUCE_ENERGY_* variables of the process, read once. A malformed
/// variable throws config_error naming it (at the first use, and again at
/// every later use until it is fixed).
inline const model& default_model() {
  static const model m = model::from_env(env_source::process());
  return m;
}

}  // namespace greenreduce::energy
