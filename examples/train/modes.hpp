// examples/train/modes.hpp — one entry point per mode, each in its own translation unit.
//
// Each translation unit instantiates the training loop for its codecs only,
// so the five compile in parallel and a change to one mode rebuilds one file.
#pragma once

#include <string>

#include "greenreduce/transport/tcp.hpp"
#include "harness.hpp"

namespace greenreduce::examples {

rank_outcome run_sync(rank_context& c, transport::tcp& t);
rank_outcome run_int8(rank_context& c, transport::tcp& t);
rank_outcome run_topk(rank_context& c, transport::tcp& t);
rank_outcome run_ternary(rank_context& c, transport::tcp& t);
rank_outcome run_async(rank_context& c, transport::tcp& t);
rank_outcome run_hybrid(rank_context& c, transport::tcp& t);

inline rank_outcome run_mode(rank_context& c, transport::tcp& t, const std::string& mode) {
  if (mode == "sync") return run_sync(c, t);
  if (mode == "int8") return run_int8(c, t);
  if (mode == "ternary") return run_ternary(c, t);
  if (mode == "topk") return run_topk(c, t);
  if (mode == "async") return run_async(c, t);
  if (mode == "hybrid") return run_hybrid(c, t);
  throw config_error("unknown mode \"" + mode + "\"");
}

}  // namespace greenreduce::examples
