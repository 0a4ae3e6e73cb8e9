// greenreduce/core/report.hpp — what every operation tells its caller (contract).
//
// Every collective and every parameter-server push/pull returns a `report`:
// the bytes it actually put on and took off the wire (headers included), the
// bytes fp32 would have moved, the wall time, the work its kernels did, and an
// energy estimate split into parts with the method that produced it. Reports
// add up with `+=`, which is how a ledger sums a run.
//
// The field names below are read by tools outside the library: keep them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace greenreduce {

/// How an energy figure was obtained. Only `rapl` and `nvml` are measurements.
enum class energy_method : std::uint8_t {
  none = 0,   ///< no estimate was made
  model = 1,  ///< estimated from counted bytes/operations and the coefficient table
  rapl = 2,   ///< measured by the CPU's RAPL counters (powercap)
  nvml = 3,   ///< measured by the GPU's NVML energy counter
  mixed = 4,  ///< a sum of reports whose methods differ
};

constexpr std::string_view to_string(energy_method m) noexcept {
  switch (m) {
    case energy_method::none:
      return "none";
    case energy_method::model:
      return "model";
    case energy_method::rapl:
      return "rapl";
    case energy_method::nvml:
      return "nvml";
    case energy_method::mixed:
      return "mixed";
  }
  return "unknown";
}

/// Joules of one operation, by where they were spent.
///
/// A model estimate fills the four parts. A meter (RAPL, NVML) measures one
/// number for the whole device and cannot split it, so it leaves the parts at
/// zero and puts its joules in `measured_j`; a sum of both kinds keeps both.
struct energy_estimate {
  double network_j = 0;  ///< bits on the wire x energy per bit of the link
  double memory_j = 0;   ///< bytes through DRAM/HBM x energy per byte
  double compute_j = 0;  ///< arithmetic operations x energy per operation
  double static_j = 0;   ///< idle/static power x wall time
  energy_method method = energy_method::none;
  double measured_j = 0;  ///< joules a meter measured, not split into parts

  double total_j() const noexcept {
    return network_j + memory_j + compute_j + static_j + measured_j;
  }

  energy_estimate& operator+=(const energy_estimate& o) noexcept {
    network_j += o.network_j;
    memory_j += o.memory_j;
    compute_j += o.compute_j;
    static_j += o.static_j;
    measured_j += o.measured_j;
    if (method == energy_method::none)
      method = o.method;
    else if (o.method != energy_method::none && o.method != method)
      method = energy_method::mixed;
    return *this;
  }
};

/// The account of one operation (or, after +=, of many).
struct report {
  std::string op;     ///< "allreduce", "push", "pull", ... ("mixed" after summing different ops)
  std::string codec;  ///< codec name ("mixed" after summing different codecs)
  std::string algo;   ///< algorithm the operation chose ("ring", "allgather_sparse", "ps", ...)
  std::uint64_t bytes_sent = 0;      ///< bytes this rank put on the wire, headers included
  std::uint64_t bytes_received = 0;  ///< bytes this rank took off the wire, headers included
  std::uint64_t raw_bytes = 0;       ///< bytes fp32 would have moved for the same operation
  double seconds = 0;                ///< wall time of the operation on this rank
  std::uint64_t memory_bytes = 0;    ///< bytes the kernels read and wrote in memory
  std::uint64_t compute_ops = 0;     ///< arithmetic operations the kernels performed
  std::uint64_t operations = 1;      ///< how many operations this report sums
  energy_estimate energy;            ///< estimated (or measured) joules, with the method

  /// Wire bytes in both directions.
  std::uint64_t wire_bytes() const noexcept { return bytes_sent + bytes_received; }
  /// raw_bytes / bytes_sent: how many times fewer bytes went out than fp32 needed.
  double compression_ratio() const noexcept {
    return bytes_sent == 0 ? 1.0 : static_cast<double>(raw_bytes) / static_cast<double>(bytes_sent);
  }

  report& operator+=(const report& o) {
    auto merge = [](std::string& a, const std::string& b) {
      if (a.empty())
        a = b;
      else if (!b.empty() && a != b)
        a = "mixed";
    };
    merge(op, o.op);
    merge(codec, o.codec);
    merge(algo, o.algo);
    bytes_sent += o.bytes_sent;
    bytes_received += o.bytes_received;
    raw_bytes += o.raw_bytes;
    seconds += o.seconds;
    memory_bytes += o.memory_bytes;
    compute_ops += o.compute_ops;
    operations += o.operations;
    energy += o.energy;
    return *this;
  }
};

inline report operator+(report a, const report& b) {
  a += b;
  return a;
}

}  // namespace greenreduce
