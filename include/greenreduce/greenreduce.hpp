// greenreduce/greenreduce.hpp — the umbrella header: everything that needs no CUDA.
//
// Include this, or include only the family headers you use; each header
// includes what it needs and nothing above its layer (see docs/design.md).
#pragma once


// core
#include "greenreduce/core/ars.hpp"
#include "greenreduce/core/buffer.hpp"
#include "greenreduce/core/bytes.hpp"
#include "greenreduce/core/config.hpp"
#include "greenreduce/core/crc32c.hpp"
#include "greenreduce/core/env.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/core/frame.hpp"
#include "greenreduce/core/report.hpp"
#include "greenreduce/core/rng.hpp"
#include "greenreduce/core/version.hpp"

// kernels
#include "greenreduce/kernels/copy.hpp"
#include "greenreduce/kernels/half.hpp"
#include "greenreduce/kernels/int8.hpp"
#include "greenreduce/kernels/lanes.hpp"
#include "greenreduce/kernels/philox.hpp"
#include "greenreduce/kernels/random_bits.hpp"
#include "greenreduce/kernels/ternary.hpp"
#include "greenreduce/kernels/topk.hpp"

// codecs
#include "greenreduce/codec/bf16.hpp"
#include "greenreduce/codec/checks.hpp"
#include "greenreduce/codec/concept.hpp"
#include "greenreduce/codec/error_bound.hpp"
#include "greenreduce/codec/error_feedback.hpp"
#include "greenreduce/codec/fp16.hpp"
#include "greenreduce/codec/fp8.hpp"
#include "greenreduce/codec/half_codec.hpp"
#include "greenreduce/codec/int8.hpp"
#include "greenreduce/codec/none.hpp"
#include "greenreduce/codec/qsgd.hpp"
#include "greenreduce/codec/randomk.hpp"
#include "greenreduce/codec/registry.hpp"
#include "greenreduce/codec/sign.hpp"
#include "greenreduce/codec/ternary.hpp"
#include "greenreduce/codec/topk.hpp"

// transports
#include "greenreduce/transport/concept.hpp"
#include "greenreduce/transport/inproc.hpp"
#include "greenreduce/transport/local_port.hpp"
// nvcc's front end cannot parse Boost.Asio 1.74: a .cu file gets everything
// else from this header and includes the TCP transport from a .cpp instead.
#if !defined(__CUDACC__)
#include "greenreduce/transport/auth.hpp"
#include "greenreduce/transport/rendezvous.hpp"
#include "greenreduce/transport/store.hpp"
#include "greenreduce/transport/tcp.hpp"
#endif

// collectives
#include "greenreduce/collective/allgather.hpp"
#include "greenreduce/collective/barrier.hpp"
#include "greenreduce/collective/broadcast.hpp"
#include "greenreduce/collective/error_bound.hpp"
#include "greenreduce/collective/ring_allreduce.hpp"

// parameter server
#include "greenreduce/ps/options.hpp"
#include "greenreduce/ps/placement.hpp"
#include "greenreduce/ps/protocol.hpp"
#include "greenreduce/ps/server.hpp"
#include "greenreduce/ps/update_rule.hpp"
#include "greenreduce/ps/worker.hpp"

// energy
#include "greenreduce/energy/csv.hpp"
#include "greenreduce/energy/json.hpp"
#include "greenreduce/energy/ledger.hpp"
#include "greenreduce/energy/meter.hpp"
#include "greenreduce/energy/model.hpp"
#include "greenreduce/energy/nvml.hpp"
#include "greenreduce/energy/rapl.hpp"

// adaptive policy (codec and consistency chosen from the network and the budget)
#include "greenreduce/adaptive/adaptive_allreduce.hpp"
#include "greenreduce/adaptive/controller.hpp"
#include "greenreduce/adaptive/decision.hpp"
#include "greenreduce/adaptive/ladder.hpp"
#include "greenreduce/adaptive/model_averaging.hpp"
#include "greenreduce/adaptive/observation.hpp"
#include "greenreduce/adaptive/options.hpp"
