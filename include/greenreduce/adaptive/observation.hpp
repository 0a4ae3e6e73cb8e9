// greenreduce/adaptive/observation.hpp — what an adaptive policy sees of one training step.
//
//   auto o = adaptive::observation::from_report(rep, step).with_step_seconds(wall)
//                .with_compression_error(err).with_val_loss(loss);
//   controller.observe(o);
//
// One observation per step, job-wide: the caller (or adaptive_allreduce, which
// merges the observations of all ranks) decides what "the step" means. Fields:
//
//   comm_seconds        communication time (report::seconds)
//   step_seconds        the whole step, compute included; 0 = unknown (then
//                       comm_seconds stands in for it)
//   wire_bytes          bytes sent + received by one rank (report::wire_bytes())
//   bytes_sent          bytes one rank sent (report::bytes_sent)
//   raw_bytes           what fp32 would have sent (report::raw_bytes)
//   memory_bytes,
//   compute_ops         the codec kernels' work (report), for energy predictions
//   joules              energy of the step, in the unit of the budget
//                       (report::energy.total_j(): a model estimate or a meter)
//   compression_error   ||x - decode(encode(x))|| / ||x|| of the active codec;
//                       negative = not measured this step
//   val_loss            validation loss; NaN = none this step
//   step_spread         (max - min) / mean of the workers' step times; 0 = unknown
//
// The controller checks every field (finite, >= 0 where it must be) and
// throws config_error naming the field and the step.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "greenreduce/core/report.hpp"

namespace greenreduce::adaptive {

struct observation {
  std::uint64_t step = 0;
  double comm_seconds = 0;
  double step_seconds = 0;
  std::uint64_t wire_bytes = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t raw_bytes = 0;
  std::uint64_t memory_bytes = 0;
  std::uint64_t compute_ops = 0;
  double joules = 0;
  double compression_error = -1;
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double step_spread = 0;

  /// The communication part of a step, from the report of its collective(s).
  static observation from_report(const report& r, std::uint64_t step) {
    observation o;
    o.step = step;
    o.comm_seconds = r.seconds;
    o.wire_bytes = r.wire_bytes();
    o.bytes_sent = r.bytes_sent;
    o.raw_bytes = r.raw_bytes;
    o.memory_bytes = r.memory_bytes;
    o.compute_ops = r.compute_ops;
    o.joules = r.energy.total_j();
    return o;
  }

  observation& with_step(std::uint64_t v) { return step = v, *this; }
  observation& with_comm_seconds(double v) { return comm_seconds = v, *this; }
  observation& with_step_seconds(double v) { return step_seconds = v, *this; }
  observation& with_wire_bytes(std::uint64_t v) { return wire_bytes = v, *this; }
  observation& with_bytes_sent(std::uint64_t v) { return bytes_sent = v, *this; }
  observation& with_raw_bytes(std::uint64_t v) { return raw_bytes = v, *this; }
  observation& with_work(std::uint64_t mem, std::uint64_t ops) {
    memory_bytes = mem;
    compute_ops = ops;
    return *this;
  }
  observation& with_joules(double v) { return joules = v, *this; }
  observation& with_compression_error(double v) { return compression_error = v, *this; }
  observation& with_val_loss(double v) { return val_loss = v, *this; }
  observation& with_step_spread(double v) { return step_spread = v, *this; }

  bool has_compression_error() const noexcept { return compression_error >= 0; }
  bool has_val_loss() const noexcept { return !std::isnan(val_loss); }
  /// step_seconds, or comm_seconds when the step time is unknown.
  double effective_step_seconds() const noexcept {
    return step_seconds > 0 ? step_seconds : comm_seconds;
  }
};

}  // namespace greenreduce::adaptive
