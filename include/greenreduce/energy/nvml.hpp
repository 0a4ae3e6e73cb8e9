// greenreduce/energy/nvml.hpp — GPU energy measured by NVML's board energy counter.
//
// Source: NVML API reference, nvmlDeviceGetTotalEnergyConsumption (millijoules
// since the driver was loaded; Volta and newer). The library is opened at run
// time with dlopen("libnvidia-ml.so.1"), so greenreduce has no link-time NVML
// dependency and runs unchanged on machines without a GPU. Consumers need
// -ldl (CMake: ${CMAKE_DL_LIBS}) on glibc older than 2.34; newer glibc has
// dlopen in libc.
//
// The counter is fed by the board's power sensor, which is averaged and updated
// far less often than RAPL (tens to hundreds of ms; Yang, Adamek and Armour,
// "Part-time Power Measurements: nvidia-smi's Lack of Attention", arXiv
// 2312.02741, 2023): windows under nvml_update_period_s are flagged too_short.
//
// Invariants: the constructor and start()/stop() never throw; without the
// library, a symbol, a GPU or counter support the meter is unavailable and its
// reason() says which (with dlerror()'s text). nvmlShutdown and dlclose run
// exactly once, in the destructor of the last owner.
#pragma once

#include <dlfcn.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "greenreduce/core/error.hpp"
#include "greenreduce/energy/meter.hpp"

namespace greenreduce::energy {

/// Shorter NVML windows than this are flagged too_short (see the header comment).
inline constexpr double nvml_update_period_s = 0.1;

/// The few NVML declarations the meter uses (ABI: int return codes, opaque handle).
namespace nvml_abi {
struct device_st;
using device = device_st*;
inline constexpr int success = 0;
using init_fn = int (*)();
using count_fn = int (*)(unsigned int*);
using handle_fn = int (*)(unsigned int, device*);
using energy_fn = int (*)(device, unsigned long long*);
using shutdown_fn = int (*)();
using error_string_fn = const char* (*)(int);
}  // namespace nvml_abi

struct nvml_options {
  std::string library = "libnvidia-ml.so.1";  ///< the name or path dlopen gets
  std::vector<unsigned> devices;              ///< indices to sum; empty = every device
  seconds_clock clock = steady_seconds;
  double update_period_s = nvml_update_period_s;
};

/// Counter values at start(); pass it to stop().
struct nvml_snapshot {
  bool ok = false;
  std::string reason;
  double t = 0;
  std::vector<unsigned long long> mj;
};

namespace detail {
/// An opened, initialised NVML; closes itself once.
struct nvml_library {
  void* handle = nullptr;
  bool initialised = false;
  nvml_abi::init_fn init = nullptr;
  nvml_abi::count_fn count = nullptr;
  nvml_abi::handle_fn handle_by_index = nullptr;
  nvml_abi::energy_fn energy = nullptr;
  nvml_abi::shutdown_fn shutdown = nullptr;
  nvml_abi::error_string_fn error_string = nullptr;  // optional

  nvml_library() = default;
  nvml_library(const nvml_library&) = delete;
  nvml_library& operator=(const nvml_library&) = delete;
  ~nvml_library() {
    if (initialised && shutdown) shutdown();
    if (handle) ::dlclose(handle);
  }

  std::string describe(int code) const {
    if (error_string)
      if (const char* s = error_string(code)) return greenreduce::detail::str(s, " (", code, ")");
    return greenreduce::detail::str("NVML error ", code);
  }
};

template <class Fn>
bool nvml_symbol(void* handle, const char* name, Fn& out, std::string& why) {
  ::dlerror();
  void* p = ::dlsym(handle, name);
  if (!p) {
    const char* e = ::dlerror();
    why = greenreduce::detail::str("NVML library lacks ", name, ": ", e ? e : "null symbol");
    return false;
  }
  static_assert(sizeof(Fn) == sizeof(void*));
  std::memcpy(&out, &p, sizeof p);  // POSIX: dlsym's object pointer is a function's address
  return true;
}
}  // namespace detail

/// Measures the GPUs' energy of a window from NVML.
class nvml_meter {
 public:
  explicit nvml_meter(nvml_options opt = {}) : opt_(std::move(opt)) {
    try {
      open();
    } catch (const std::exception& e) {
      lib_.reset();
      devices_.clear();
      reason_ = greenreduce::detail::str("NVML set-up failed: ", e.what());
    }
  }

  bool available() const noexcept { return lib_ != nullptr && !devices_.empty(); }
  /// Why the meter is unavailable (empty when available).
  const std::string& reason() const noexcept { return reason_; }
  /// How many devices are summed.
  std::size_t device_count() const noexcept { return devices_.size(); }

  nvml_snapshot start() const {
    nvml_snapshot s;
    try {
      if (!available()) {
        s.reason = reason_;
        return s;
      }
      s.t = opt_.clock();
      s.ok = read_all(s.mj, s.reason);
    } catch (const std::exception& e) {
      s.ok = false;
      s.reason = e.what();
    }
    return s;
  }

  measurement stop(const nvml_snapshot& s) const {
    measurement m;
    m.method = energy_method::nvml;
    try {
      if (!s.ok) {
        m.reason = s.reason.empty() ? "the start snapshot is not valid" : s.reason;
        return m;
      }
      if (s.mj.size() != devices_.size()) {
        m.reason = greenreduce::detail::str("the start snapshot holds ", s.mj.size(),
                                            " counters, this meter ", devices_.size());
        return m;
      }
      std::vector<unsigned long long> end;
      if (!read_all(end, m.reason)) return m;
      m.seconds = opt_.clock() - s.t;
      unsigned long long total_mj = 0;
      for (std::size_t i = 0; i < end.size(); ++i) {
        if (end[i] < s.mj[i]) {  // 64-bit mJ never wraps; a drop means a driver reload
          m.reason =
              greenreduce::detail::str("NVML device ", index_[i], " energy went backwards (",
                                       s.mj[i], " mJ then ", end[i], " mJ): driver reloaded?");
          return m;
        }
        total_mj += end[i] - s.mj[i];
      }
      m.joules = static_cast<double>(total_mj) * 1e-3;
      if (!(m.seconds >= opt_.update_period_s)) {
        m.too_short = true;
        m.reason = greenreduce::detail::str("window of ", m.seconds,
                                            " s is shorter than the NVML update period ",
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
  void open() {
    auto lib = std::make_unique<detail::nvml_library>();
    ::dlerror();
    lib->handle = ::dlopen(opt_.library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib->handle) {
      const char* e = ::dlerror();
      reason_ = greenreduce::detail::str("dlopen(\"", opt_.library,
                                         "\") failed: ", e ? e : "unknown error");
      return;
    }
    if (!detail::nvml_symbol(lib->handle, "nvmlInit_v2", lib->init, reason_) ||
        !detail::nvml_symbol(lib->handle, "nvmlDeviceGetCount_v2", lib->count, reason_) ||
        !detail::nvml_symbol(lib->handle, "nvmlDeviceGetHandleByIndex_v2", lib->handle_by_index,
                             reason_) ||
        !detail::nvml_symbol(lib->handle, "nvmlDeviceGetTotalEnergyConsumption", lib->energy,
                             reason_) ||
        !detail::nvml_symbol(lib->handle, "nvmlShutdown", lib->shutdown, reason_))
      return;
    std::string ignored;
    detail::nvml_symbol(lib->handle, "nvmlErrorString", lib->error_string, ignored);

    if (int rc = lib->init(); rc != nvml_abi::success) {
      reason_ = greenreduce::detail::str("nvmlInit_v2 failed: ", lib->describe(rc));
      return;
    }
    lib->initialised = true;
    unsigned int n = 0;
    if (int rc = lib->count(&n); rc != nvml_abi::success) {
      reason_ = greenreduce::detail::str("nvmlDeviceGetCount_v2 failed: ", lib->describe(rc));
      return;
    }
    std::vector<unsigned> wanted = opt_.devices;
    if (wanted.empty())
      for (unsigned i = 0; i < n; ++i) wanted.push_back(i);
    if (wanted.empty()) {
      reason_ = "NVML sees no GPU";
      return;
    }
    std::vector<nvml_abi::device> handles;
    for (unsigned i : wanted) {
      if (i >= n) {
        reason_ =
            greenreduce::detail::str("NVML device ", i, " requested, but only ", n, " present");
        return;
      }
      nvml_abi::device d = nullptr;
      if (int rc = lib->handle_by_index(i, &d); rc != nvml_abi::success) {
        reason_ = greenreduce::detail::str("nvmlDeviceGetHandleByIndex_v2(", i,
                                           ") failed: ", lib->describe(rc));
        return;
      }
      unsigned long long probe = 0;
      if (int rc = lib->energy(d, &probe); rc != nvml_abi::success) {
        reason_ = greenreduce::detail::str("nvmlDeviceGetTotalEnergyConsumption on device ", i,
                                           " failed: ", lib->describe(rc),
                                           " (needs a Volta or newer GPU)");
        return;
      }
      handles.push_back(d);
    }
    lib_ = std::move(lib);
    devices_ = std::move(handles);
    index_ = std::move(wanted);
  }

  bool read_all(std::vector<unsigned long long>& out, std::string& why) const {
    out.assign(devices_.size(), 0);
    for (std::size_t i = 0; i < devices_.size(); ++i)
      if (int rc = lib_->energy(devices_[i], &out[i]); rc != nvml_abi::success) {
        why = greenreduce::detail::str("nvmlDeviceGetTotalEnergyConsumption on device ", index_[i],
                                       " failed: ", lib_->describe(rc));
        return false;
      }
    return true;
  }

  nvml_options opt_;
  std::unique_ptr<detail::nvml_library> lib_;  // null when unavailable
  std::vector<nvml_abi::device> devices_;
  std::vector<unsigned> index_;
  std::string reason_;
};

}  // namespace greenreduce::energy
