// bench/launch.hpp — running greenreduce-bench ranks as processes over TCP.
#pragma once

#include "greenreduce/core/error.hpp"

namespace greenreduce::bench {

/// Runs `body(transport)` as one TCP rank (or spawns np ranks). Not built in yet.
template <class Body>
int run_tcp(int /*argc*/, char** /*argv*/, int /*np*/, Body&& /*body*/) {
  throw config_error("--transport tcp: this build has no tcp transport");
}

}  // namespace greenreduce::bench
