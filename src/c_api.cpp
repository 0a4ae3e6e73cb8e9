// libgreenreduce_c.so — the C API of include/greenreduce/c_api.h.
//
// A call is two collective steps over transport::tcp:
//   1. a vote: every rank allgathers a 40-byte block (its verdict on its own
//      arguments, the first non-finite element a lossy codec would choke on,
//      count, datatype, op, codec id and config hash), so an argument error
//      or a NaN on one rank is reported on every rank instead of leaving the
//      others to time out, and a disagreement is a GR_ERROR_MISMATCH before
//      any data moves;
//   2. the ring allreduce (collective/ring_allreduce.hpp), which keeps the
//      input unchanged when it fails after data moved (keep_input).
// Exceptions stop at the functions below; they become codes and messages.
#include "greenreduce/c_api.h"

#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "any_ring.hpp"
#include "greenreduce/codec/registry.hpp"
#include "greenreduce/collective/allgather.hpp"
#include "greenreduce/core/bytes.hpp"
#include "greenreduce/core/error.hpp"
#include "greenreduce/energy/model.hpp"
#include "greenreduce/transport/tcp.hpp"

namespace gr = greenreduce;
using tcp_ring = gr::dropin::any_ring<gr::transport::tcp>;

struct gr_comm {
  std::unique_ptr<gr::transport::tcp> t;
  gr::energy::model model;
  std::unique_ptr<gr::collective::allgather<gr::transport::tcp>> vote;
  std::map<std::string, std::shared_ptr<tcp_ring>> rings;  // by codec spec
  std::vector<float> scratch;                              // GR_FLOAT64 in float
  gr_report_t last{};
  std::string error;
  gr_result_t broken = GR_SUCCESS;  // the code every call returns once set
};

namespace {

thread_local std::string loose_error;  // failures without a communicator

constexpr std::size_t max_rings = 4;              // cached (codec -> ring) per communicator
constexpr std::uint32_t vote_magic = 0x564e5247;  // "GRNV"
constexpr std::size_t vote_bytes = 40;

const char* type_name(gr_datatype_t d) {
  switch (d) {
    case GR_INT8:
      return "GR_INT8";
    case GR_UINT8:
      return "GR_UINT8";
    case GR_INT32:
      return "GR_INT32";
    case GR_UINT32:
      return "GR_UINT32";
    case GR_INT64:
      return "GR_INT64";
    case GR_UINT64:
      return "GR_UINT64";
    case GR_FLOAT16:
      return "GR_FLOAT16";
    case GR_FLOAT32:
      return "GR_FLOAT32";
    case GR_FLOAT64:
      return "GR_FLOAT64";
    case GR_BFLOAT16:
      return "GR_BFLOAT16";
  }
  return "an unknown datatype";
}

const char* op_name(gr_op_t o) {
  switch (o) {
    case GR_SUM:
      return "GR_SUM";
    case GR_PROD:
      return "GR_PROD";
    case GR_MAX:
      return "GR_MAX";
    case GR_MIN:
      return "GR_MIN";
    case GR_AVG:
      return "GR_AVG";
  }
  return "an unknown op";
}

/// The code of an exception from the library, and whether it breaks the communicator.
gr_result_t code_of(std::exception_ptr e, bool& breaks) {
  breaks = true;
  try {
    std::rethrow_exception(e);
  } catch (const gr::mismatch_error&) {
    breaks = false;
    return GR_ERROR_MISMATCH;
  } catch (const gr::config_error&) {
    breaks = false;
    return GR_ERROR_CONFIG;
  } catch (const gr::timeout_error&) {
    return GR_ERROR_TIMEOUT;
  } catch (const gr::peer_error&) {
    return GR_ERROR_PEER;
  } catch (const gr::decode_error&) {
    return GR_ERROR_DECODE;
  } catch (const gr::numeric_error&) {
    return GR_ERROR_NUMERIC;
  } catch (...) {
    return GR_ERROR_INTERNAL;
  }
}

std::string what_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::bad_alloc&) {
    return "out of memory";
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an unknown exception";
  }
}

gr_result_t fail(gr_comm_t* comm, gr_result_t code, std::string msg) {
  (comm ? comm->error : loose_error) = std::move(msg);
  return code;
}

// What one rank says about its call, allgathered before any data moves.
struct verdict {
  gr_result_t code = GR_SUCCESS;
  std::uint8_t dtype = 0, op = 0, codec = 0;
  std::uint64_t count = 0, config = 0, bad_index = 0;
};

void write(std::span<std::byte> o, const verdict& v) {
  std::fill(o.begin(), o.end(), std::byte{0});
  gr::store_le<std::uint32_t>(o.data(), vote_magic);
  gr::store_le<std::uint8_t>(o.data() + 4, static_cast<std::uint8_t>(v.code));
  gr::store_le<std::uint8_t>(o.data() + 5, v.dtype);
  gr::store_le<std::uint8_t>(o.data() + 6, v.op);
  gr::store_le<std::uint8_t>(o.data() + 7, v.codec);
  gr::store_le<std::uint64_t>(o.data() + 8, v.count);
  gr::store_le<std::uint64_t>(o.data() + 16, v.config);
  gr::store_le<std::uint64_t>(o.data() + 24, v.bad_index);
}

verdict read(std::span<const std::byte> in, int from) {
  if (in.size() != vote_bytes || gr::load_le<std::uint32_t>(in.data()) != vote_magic)
    throw gr::peer_error(gr::detail::str("gr_allreduce: the vote block from rank ", from, " has ",
                                         in.size(), " bytes or a bad magic"));
  verdict v;
  v.code = static_cast<gr_result_t>(gr::load_le<std::uint8_t>(in.data() + 4));
  v.dtype = gr::load_le<std::uint8_t>(in.data() + 5);
  v.op = gr::load_le<std::uint8_t>(in.data() + 6);
  v.codec = gr::load_le<std::uint8_t>(in.data() + 7);
  v.count = gr::load_le<std::uint64_t>(in.data() + 8);
  v.config = gr::load_le<std::uint64_t>(in.data() + 16);
  v.bad_index = gr::load_le<std::uint64_t>(in.data() + 24);
  return v;
}

/// Index of the first value a lossy ring cannot carry (NaN, Inf, or so large
/// that a sum of p of them overflows float); n when there is none.
template <class T>
std::size_t first_bad(const T* x, std::size_t n, int p) {
  const double lim = static_cast<double>(FLT_MAX) / (2.0 * p);
  for (std::size_t i = 0; i < n; ++i)
    if (!(std::fabs(static_cast<double>(x[i])) <= lim)) return i;
  return n;
}

std::shared_ptr<tcp_ring> ring_for(gr_comm_t& c, const std::string& spec,
                                   const gr::codec::any_codec& codec, std::size_t n) {
  auto it = c.rings.find(spec);
  if (it != c.rings.end() && it->second->capacity() >= n) return it->second;
  if (it != c.rings.end()) c.rings.erase(it);  // free before allocating the larger one
  if (c.rings.size() >= max_rings) c.rings.clear();
  auto r = gr::dropin::make_ring(codec, *c.t, n);
  c.rings[spec] = r;
  return r;
}

gr_result_t allreduce(const void* sendbuf, void* recvbuf, size_t count, gr_datatype_t datatype,
                      gr_op_t op, gr_comm_t& c, const char* codec_name) {
  const int rank = c.t->rank();
  const int p = c.t->size();
  const std::string spec = codec_name ? codec_name : "none";

  // 1. This rank's verdict on its own arguments.
  verdict mine;
  mine.count = count;
  mine.dtype = static_cast<std::uint8_t>(datatype);
  mine.op = static_cast<std::uint8_t>(op);
  std::string why;
  std::optional<gr::codec::any_codec> codec;
  const std::size_t elem = datatype == GR_FLOAT64 ? 8 : 4;
  if (count > 0 && (sendbuf == nullptr || recvbuf == nullptr)) {
    mine.code = GR_ERROR_INVALID_ARGUMENT;
    why = gr::detail::str("gr_allreduce: ", sendbuf ? "recvbuf" : "sendbuf", " is NULL with count ",
                          count);
  } else if (count > std::numeric_limits<std::size_t>::max() / 16) {
    mine.code = GR_ERROR_INVALID_ARGUMENT;
    why = gr::detail::str("gr_allreduce: count ", count, " is beyond any buffer");
  } else if (datatype != GR_FLOAT32 && datatype != GR_FLOAT64) {
    mine.code = GR_ERROR_UNSUPPORTED_DATATYPE;
    why = gr::detail::str("gr_allreduce: datatype ", type_name(datatype), " (", int(datatype),
                          ") is not supported: expected GR_FLOAT32 or GR_FLOAT64");
  } else if (op != GR_SUM && op != GR_AVG) {
    mine.code = GR_ERROR_UNSUPPORTED_OP;
    why = gr::detail::str("gr_allreduce: op ", op_name(op), " (", int(op),
                          ") is not supported: expected GR_SUM or GR_AVG");
  } else {
    try {
      codec = gr::codec::parse_codec(spec);
      std::visit(
          [&](const auto& x) {
            mine.codec = static_cast<std::uint8_t>(x.id());
            mine.config = x.config_hash();
          },
          *codec);
    } catch (const gr::config_error& e) {
      mine.code = GR_ERROR_CONFIG;
      why = gr::detail::str("gr_allreduce: codec_name: ", e.what());
    }
    const bool lossless = codec && std::holds_alternative<gr::codec::none>(*codec);
    if (codec && datatype == GR_FLOAT64 && lossless) {
      mine.code = GR_ERROR_UNSUPPORTED_DATATYPE;
      why =
          "gr_allreduce: GR_FLOAT64 with codec none is not supported (it would round the "
          "doubles to float32); use a lossy codec or reduce doubles elsewhere";
    } else if (codec && !lossless && count > 0) {
      const std::size_t bad = datatype == GR_FLOAT64
                                  ? first_bad(static_cast<const double*>(sendbuf), count, p)
                                  : first_bad(static_cast<const float*>(sendbuf), count, p);
      if (bad < count) {
        mine.code = GR_ERROR_NUMERIC;
        mine.bad_index = bad;
        const double v = datatype == GR_FLOAT64 ? static_cast<const double*>(sendbuf)[bad]
                                                : static_cast<const float*>(sendbuf)[bad];
        why = gr::detail::str("gr_allreduce on rank ", rank, ": element ", bad, " is ", v,
                              ", which codec ", spec, " cannot carry (NaN, Inf or beyond ",
                              FLT_MAX / (2.0 * p), " in magnitude); nothing moved");
      }
    }
  }

  // 2. The vote.
  std::vector<verdict> all(static_cast<std::size_t>(p));
  if (p > 1) {
    if (!c.vote)
      c.vote = std::make_unique<gr::collective::allgather<gr::transport::tcp>>(*c.t, vote_bytes);
    std::array<std::byte, vote_bytes> block{};
    write(block, mine);
    const auto blocks = c.vote->run(block);
    for (int q = 0; q < p; ++q)
      all[static_cast<std::size_t>(q)] = read(blocks[static_cast<std::size_t>(q)], q);
  } else {
    all[0] = mine;
  }
  if (mine.code != GR_SUCCESS) return fail(&c, mine.code, why);
  for (int q = 0; q < p; ++q) {
    const verdict& v = all[static_cast<std::size_t>(q)];
    if (v.code == GR_ERROR_NUMERIC)
      return fail(
          &c, GR_ERROR_NUMERIC,
          gr::detail::str("gr_allreduce on rank ", rank, ": rank ", q, "'s element ", v.bad_index,
                          " is not finite or too large for codec ", spec, "; nothing moved"));
    if (v.code != GR_SUCCESS)
      return fail(
          &c, GR_ERROR_MISMATCH,
          gr::detail::str("gr_allreduce on rank ", rank, ": rank ", q, " rejected its arguments (",
                          gr_error_string(static_cast<gr_result_t>(v.code)), "); nothing moved"));
  }
  for (int q = 0; q < p; ++q) {
    const verdict& v = all[static_cast<std::size_t>(q)];
    auto differ = [&](const char* what, auto a, auto b) {
      return fail(
          &c, GR_ERROR_MISMATCH,
          gr::detail::str("gr_allreduce on rank ", rank, ": ranks disagree on ", what, ": rank ",
                          rank, " has ", a, " but rank ", q, " has ", b, "; nothing moved"));
    };
    if (v.count != mine.count) return differ("the count", mine.count, v.count);
    if (v.dtype != mine.dtype)
      return differ("the datatype", type_name(datatype),
                    type_name(static_cast<gr_datatype_t>(v.dtype)));
    if (v.op != mine.op) return differ("the op", op_name(op), op_name(static_cast<gr_op_t>(v.op)));
    if (v.codec != mine.codec || v.config != mine.config)
      return differ("the codec", spec,
                    gr::detail::str(gr::codec_name(static_cast<gr::codec_id>(v.codec)),
                                    " (config 0x", std::hex, v.config, ")"));
  }

  // 3. The ring.
  auto ring = ring_for(c, spec, *codec, count);
  std::span<float> work;
  if (datatype == GR_FLOAT64) {
    c.scratch.resize(count);
    const auto* d = static_cast<const double*>(sendbuf);
    for (std::size_t i = 0; i < count; ++i) c.scratch[i] = static_cast<float>(d[i]);
    work = std::span<float>(c.scratch.data(), count);
  } else if (count > 0) {
    if (sendbuf != recvbuf) std::memcpy(recvbuf, sendbuf, count * elem);
    work = std::span<float>(static_cast<float*>(recvbuf), count);
  }
  gr::report rep = ring->run(
      work, op == GR_AVG ? gr::collective::reduce_op::average : gr::collective::reduce_op::sum);
  if (datatype == GR_FLOAT64) {
    auto* d = static_cast<double*>(recvbuf);
    for (std::size_t i = 0; i < count; ++i) d[i] = static_cast<double>(c.scratch[i]);
  }
  c.model.annotate(rep);
  c.last.bytes_sent = rep.bytes_sent;
  c.last.bytes_received = rep.bytes_received;
  c.last.raw_bytes = rep.raw_bytes;
  c.last.seconds = rep.seconds;
  c.last.network_j = rep.energy.network_j;
  c.last.memory_j = rep.energy.memory_j;
  c.last.compute_j = rep.energy.compute_j;
  c.last.static_j = rep.energy.static_j;
  c.last.total_j = rep.energy.total_j();
  c.error.clear();
  return GR_SUCCESS;
}

}  // namespace

extern "C" {

gr_result_t gr_comm_init_from_env(gr_comm_t** comm) {
  if (comm == nullptr)
    return fail(nullptr, GR_ERROR_INVALID_ARGUMENT, "gr_comm_init_from_env: comm is NULL");
  *comm = nullptr;
  try {
    auto c = std::make_unique<gr_comm>();
    c->model = gr::energy::model::from_env(gr::env_source::process());
    c->t = std::make_unique<gr::transport::tcp>(gr::transport::tcp::from_env());
    *comm = c.release();
    loose_error.clear();
    return GR_SUCCESS;
  } catch (...) {
    bool breaks = false;
    const auto e = std::current_exception();
    return fail(nullptr, code_of(e, breaks), "gr_comm_init_from_env: " + what_of(e));
  }
}

gr_result_t gr_comm_destroy(gr_comm_t* comm) {
  delete comm;  // the transport's destructor closes its sockets; it does not throw
  return GR_SUCCESS;
}

gr_result_t gr_comm_rank(const gr_comm_t* comm, int* rank) {
  if (comm == nullptr || rank == nullptr)
    return fail(nullptr, GR_ERROR_INVALID_ARGUMENT,
                gr::detail::str("gr_comm_rank: ", comm ? "rank" : "comm", " is NULL"));
  *rank = comm->t->rank();
  return GR_SUCCESS;
}

gr_result_t gr_comm_size(const gr_comm_t* comm, int* size) {
  if (comm == nullptr || size == nullptr)
    return fail(nullptr, GR_ERROR_INVALID_ARGUMENT,
                gr::detail::str("gr_comm_size: ", comm ? "size" : "comm", " is NULL"));
  *size = comm->t->size();
  return GR_SUCCESS;
}

gr_result_t gr_allreduce(const void* sendbuf, void* recvbuf, size_t count, gr_datatype_t datatype,
                         gr_op_t op, gr_comm_t* comm, const char* codec_name) {
  if (comm == nullptr)
    return fail(nullptr, GR_ERROR_INVALID_ARGUMENT, "gr_allreduce: comm is NULL");
  if (comm->broken != GR_SUCCESS) {
    if (comm->error.find("unusable") == std::string::npos)
      comm->error = "gr_allreduce: the communicator is unusable after an earlier error (" +
                    comm->error + "); destroy it and build a new one";
    return comm->broken;
  }
  try {
    return allreduce(sendbuf, recvbuf, count, datatype, op, *comm, codec_name);
  } catch (...) {
    bool breaks = false;
    const auto e = std::current_exception();
    const gr_result_t code = code_of(e, breaks);
    if (breaks) comm->broken = code;
    return fail(comm, code, what_of(e));
  }
}

gr_result_t gr_last_report(const gr_comm_t* comm, gr_report_t* report) {
  if (comm == nullptr || report == nullptr)
    return fail(nullptr, GR_ERROR_INVALID_ARGUMENT,
                gr::detail::str("gr_last_report: ", comm ? "report" : "comm", " is NULL"));
  *report = comm->last;
  return GR_SUCCESS;
}

const char* gr_error_string(gr_result_t code) {
  switch (code) {
    case GR_SUCCESS:
      return "GR_SUCCESS: no error";
    case GR_ERROR_INVALID_ARGUMENT:
      return "GR_ERROR_INVALID_ARGUMENT: a NULL pointer or an impossible size";
    case GR_ERROR_UNSUPPORTED_DATATYPE:
      return "GR_ERROR_UNSUPPORTED_DATATYPE: the datatype cannot be reduced with this codec";
    case GR_ERROR_UNSUPPORTED_OP:
      return "GR_ERROR_UNSUPPORTED_OP: only GR_SUM and GR_AVG are supported";
    case GR_ERROR_CONFIG:
      return "GR_ERROR_CONFIG: a bad codec spec or environment variable";
    case GR_ERROR_MISMATCH:
      return "GR_ERROR_MISMATCH: the ranks disagree on the call";
    case GR_ERROR_TIMEOUT:
      return "GR_ERROR_TIMEOUT: a peer did not answer in time";
    case GR_ERROR_PEER:
      return "GR_ERROR_PEER: a peer closed, died or broke the protocol";
    case GR_ERROR_NUMERIC:
      return "GR_ERROR_NUMERIC: a value is NaN, Inf or too large for the codec";
    case GR_ERROR_DECODE:
      return "GR_ERROR_DECODE: corrupt bytes arrived";
    case GR_ERROR_INTERNAL:
      return "GR_ERROR_INTERNAL: out of memory or an internal error";
  }
  return "unknown gr_result_t code";
}

const char* gr_last_error_message(const gr_comm_t* comm) {
  return comm ? comm->error.c_str() : loose_error.c_str();
}

}  // extern "C"
