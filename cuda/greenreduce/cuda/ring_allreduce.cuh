// greenreduce/cuda/ring_allreduce.cuh — compressed ring allreduce on GPU memory over NCCL.
//
//   cuda::nccl_world world;                                      // all local GPUs
//   cuda::nccl_ring_allreduce<cuda::int8_codec> ring(world.ranks(), max_n, cuda::int8_codec{});
//   std::vector<report> reps = ring.run(device_ptrs, n, collective::reduce_op::average);
//
// The same algorithm as collective/ring_allreduce.hpp (whose transport moves
// host bytes, so it cannot carry device buffers): the vector is cut into p
// chunks by collective::ring_detail::chunk; reduce-scatter step s sends chunk
// (r - s) mod p to the right, encoded, and decode-adds chunk (r - s - 1) mod p
// from the left; the owner of chunk (r + 1) mod p divides it by p for an
// average, encodes it once and overwrites its own copy with the decoded frame,
// and the allgather forwards the received frames unchanged, so every rank ends
// with bit-identical results. Everything — encode, ncclSend/ncclRecv, decode —
// is enqueued on each rank's stream; the host waits once, at the end.
//
// One object drives the ranks it is given: all local GPUs from one thread
// (nccl_world, the calls of all ranks inside one NCCL group per step) or one
// rank per process (a vector of one transport). Differences from the CPU
// ring, by design or not yet done:
//   - dense codecs only (int8, ternary, fp16, bf16, none): their frame size
//     is a function of the chunk length, which NCCL's matched send/receive
//     sizes need; top-k's data-dependent frames are not carried;
//   - no segment pipelining: each step moves whole chunks;
//   - no agreement header exchange: ranks must be built with the same codec
//     and length (in the one-process mode they are, by construction);
//   - hops decode frames unvalidated (decode_add_trusted): NCCL inside one job
//     is trusted; a numeric_error (non-finite input) is raised after the
//     operation, with the data partially reduced.
//
// Report per rank: bytes_sent/received are the transport's counter deltas
// (frame headers included), raw_bytes what the fp32 ring moves from this rank,
// memory_bytes/compute_ops the host codec's encode_work/decode_work, and the
// energy an estimate of energy::model (pass the nvlink or pcie profile).
#pragma once

#include <chrono>
#include <concepts>
#include <span>
#include <vector>

#include "greenreduce/collective/ring_allreduce.hpp"
#include "greenreduce/core/report.hpp"
#include "greenreduce/cuda/buffer.cuh"
#include "greenreduce/cuda/frame.cuh"
#include "greenreduce/cuda/nccl_transport.cuh"
#include "greenreduce/energy/model.hpp"

namespace greenreduce::cuda {

/// A device codec whose frame size depends only on the element count.
template <class C>
concept device_dense_codec = requires(const C c, const float* in, float* out, std::byte* frame,
                                      std::size_t n, rng& g, const device_status& st,
                                      cudaStream_t s) {
  { c.encode_async(in, n, frame, n, g, st, s) } -> std::same_as<std::size_t>;
  c.decode_add_trusted(frame, out, n, s);
  c.decode_trusted(frame, out, n, s);
  { c.max_encoded_bytes(n) } -> std::same_as<std::size_t>;
  c.host().encode_work(n);
};

namespace kernels {
template <unsigned Threads>
__global__ void divide(float* x, std::uint64_t n, float d) {
  for (std::uint64_t i = blockIdx.x * Threads + threadIdx.x; i < n;
       i += static_cast<std::uint64_t>(gridDim.x) * Threads)
    x[i] = math::div_rn(x[i], d);
}
}  // namespace kernels

struct nccl_ring_options {
  std::uint64_t seed = 0;  ///< stochastic codecs: rank r draws from rng(seed, r)
  energy::model energy = energy::model("nvlink");
};

template <device_dense_codec Codec>
class nccl_ring_allreduce {
 public:
  /// Buffers for up to `max_n` elements on every rank in `ranks` (kept by
  /// reference: the transports must outlive the ring).
  nccl_ring_allreduce(std::vector<nccl_transport>& ranks, std::size_t max_n, Codec codec,
                      nccl_ring_options opt = {})
      : codec_(std::move(codec)), opt_(std::move(opt)), max_n_(max_n) {
    if (ranks.empty()) throw config_error("nccl ring needs at least one local rank");
    const int p = ranks.front().size();
    const std::size_t frame =
        codec_.max_encoded_bytes(collective::ring_detail::chunk(max_n, p, 0).count);
    const std::size_t slot = (frame + 255) / 256 * 256;  // keeps every slot 16-byte aligned
    for (auto& t : ranks) {
      if (t.size() != p)
        throw config_error(
            detail::str("nccl ring ranks disagree on the world size: ", p, " and ", t.size()));
      GREENREDUCE_CUDA_CHECK(cudaSetDevice(t.device()));
      state s{&t,
              device_buffer<std::byte>(slot),
              device_buffer<std::byte>(slot),
              device_buffer<std::byte>(slot * static_cast<std::size_t>(p)),
              device_status(),
              rng(opt_.seed, static_cast<std::uint64_t>(t.rank()))};
      ranks_.push_back(std::move(s));
    }
    slot_ = slot;
  }

  /// Reduces `data[j]` (n device floats of local rank j) in place across all
  /// ranks; returns one report per local rank.
  std::vector<report> run(std::span<float* const> data, std::size_t n,
                          collective::reduce_op op = collective::reduce_op::sum) {
    using collective::ring_detail::chunk;
    using collective::ring_detail::mod;
    if (data.size() != ranks_.size())
      throw config_error(detail::str("nccl ring run got ", data.size(), " buffers for ",
                                     ranks_.size(), " local ranks"));
    if (n > max_n_)
      throw config_error(detail::str("nccl ring built for ", max_n_, " elements, run with ", n));
    const auto t0 = std::chrono::steady_clock::now();
    const int p = ranks_.front().t->size();
    std::vector<std::uint64_t> sent0, recv0;
    std::vector<codec::work> w(ranks_.size());
    for (auto& s : ranks_) {
      sent0.push_back(s.t->bytes_sent());
      recv0.push_back(s.t->bytes_received());
      GREENREDUCE_CUDA_CHECK(cudaSetDevice(s.t->device()));
      s.status.reset(s.t->stream());
    }
    auto each = [&](auto f) {
      for (std::size_t j = 0; j < ranks_.size(); ++j) {
        GREENREDUCE_CUDA_CHECK(cudaSetDevice(ranks_[j].t->device()));
        f(ranks_[j], data[j], w[j]);
      }
    };
    const auto& host = codec_.host();
    if (p > 1) {
      // Reduce-scatter.
      for (int step = 0; step + 1 < p; ++step) {
        std::vector<std::size_t> len(ranks_.size());
        std::size_t j = 0;
        each([&](state& s, float* x, codec::work& wk) {
          const int r = s.t->rank();
          const auto c = chunk(n, p, mod(r - step, p));
          len[j++] = codec_.encode_async(x + c.offset, c.count, s.send.data(), slot_, s.g, s.status,
                                         s.t->stream());
          wk += host.encode_work(c.count);
        });
        {
          const nccl_group group;
          for (std::size_t i = 0; i < ranks_.size(); ++i) {
            auto& s = ranks_[i];
            const int r = s.t->rank();
            const auto c = chunk(n, p, mod(r - step - 1, p));
            s.t->sendrecv(s.send.data(), len[i], mod(r + 1, p), s.recv.data(),
                          codec_.max_encoded_bytes(c.count), mod(r - 1, p));
          }
        }
        each([&](state& s, float* x, codec::work& wk) {
          const auto c = chunk(n, p, mod(s.t->rank() - step - 1, p));
          codec_.decode_add_trusted(s.recv.data(), x + c.offset, c.count, s.t->stream());
          wk += host.decode_work(c.count);
        });
      }
      // The owner's chunk: average, encode once, keep the decoded values.
      each([&](state& s, float* x, codec::work& wk) {
        const int o = mod(s.t->rank() + 1, p);
        const auto c = chunk(n, p, o);
        if (op == collective::reduce_op::average && c.count > 0) {
          kernels::divide<256><<<grid_for(c.count, 256), 256, 0, s.t->stream()>>>(
              x + c.offset, c.count, static_cast<float>(p));
          check_launch("divide");
        }
        std::byte* f = s.frames.data() + slot_ * static_cast<std::size_t>(o);
        codec_.encode_async(x + c.offset, c.count, f, slot_, s.g, s.status, s.t->stream());
        codec_.decode_trusted(f, x + c.offset, c.count, s.t->stream());
        wk += host.encode_work(c.count);
        wk += host.decode_work(c.count);
      });
      // Allgather: forward frames unchanged.
      for (int step = 0; step + 1 < p; ++step) {
        {
          const nccl_group group;
          for (auto& s : ranks_) {
            const int r = s.t->rank();
            const int cs = mod(r + 1 - step, p), cr = mod(r - step, p);
            s.t->sendrecv(s.frames.data() + slot_ * static_cast<std::size_t>(cs),
                          codec_.max_encoded_bytes(chunk(n, p, cs).count), mod(r + 1, p),
                          s.frames.data() + slot_ * static_cast<std::size_t>(cr),
                          codec_.max_encoded_bytes(chunk(n, p, cr).count), mod(r - 1, p));
          }
        }
        each([&](state& s, float* x, codec::work& wk) {
          const int cr = mod(s.t->rank() - step, p);
          const auto c = chunk(n, p, cr);
          codec_.decode_trusted(s.frames.data() + slot_ * static_cast<std::size_t>(cr),
                                x + c.offset, c.count, s.t->stream());
          wk += host.decode_work(c.count);
        });
      }
    }
    std::vector<std::uint64_t> bad(ranks_.size());
    for (std::size_t j = 0; j < ranks_.size(); ++j) {
      GREENREDUCE_CUDA_CHECK(cudaSetDevice(ranks_[j].t->device()));
      bad[j] = ranks_[j].status.read(ranks_[j].t->stream());
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (std::size_t j = 0; j < ranks_.size(); ++j)
      if (bad[j] != device_status::ok)
        throw numeric_error(detail::str(codec_.name(), " encode on rank ", ranks_[j].t->rank(),
                                        ": a non-finite value in the data (element ", bad[j],
                                        " of a chunk); input partially reduced (contents "
                                        "unspecified)"));
    std::vector<report> out;
    for (std::size_t j = 0; j < ranks_.size(); ++j) {
      const int r = ranks_[j].t->rank();
      report rep;
      rep.op = "allreduce";
      rep.codec = std::string(codec_.name());
      rep.algo = "nccl_ring";
      rep.bytes_sent = ranks_[j].t->bytes_sent() - sent0[j];
      rep.bytes_received = ranks_[j].t->bytes_received() - recv0[j];
      rep.raw_bytes =
          p > 1 ? 4 * (2 * n - chunk(n, p, mod(r + 1, p)).count - chunk(n, p, mod(r + 2, p)).count)
                : 0;
      rep.seconds = seconds;
      rep.memory_bytes = w[j].memory_bytes;
      rep.compute_ops = w[j].ops;
      opt_.energy.annotate(rep);
      out.push_back(std::move(rep));
    }
    return out;
  }

 private:
  struct state {
    nccl_transport* t;
    device_buffer<std::byte> send, recv, frames;
    device_status status;
    rng g;
  };

  Codec codec_;
  nccl_ring_options opt_;
  std::size_t max_n_;
  std::size_t slot_ = 0;
  std::vector<state> ranks_;
};

/// The uncompressed baseline: ncclAllReduce (sum or NCCL's average) on every
/// local rank, in one group. bytes_sent/received are what a ring moves
/// (2(p-1)/p of the data each way), NCCL's own choice of algorithm aside.
inline std::vector<report> nccl_allreduce(std::vector<nccl_transport>& ranks,
                                          std::span<float* const> data, std::size_t n,
                                          collective::reduce_op op = collective::reduce_op::sum,
                                          const energy::model& model = energy::model("nvlink")) {
  using collective::ring_detail::chunk;
  using collective::ring_detail::mod;
  if (data.size() != ranks.size())
    throw config_error(detail::str("nccl_allreduce got ", data.size(), " buffers for ",
                                   ranks.size(), " local ranks"));
  const auto t0 = std::chrono::steady_clock::now();
  {
    const nccl_group group;
    for (std::size_t j = 0; j < ranks.size(); ++j) {
      GREENREDUCE_CUDA_CHECK(cudaSetDevice(ranks[j].device()));
      GREENREDUCE_NCCL_CHECK(ncclAllReduce(data[j], data[j], n, ncclFloat32,
                                           op == collective::reduce_op::average ? ncclAvg : ncclSum,
                                           ranks[j].comm(), ranks[j].stream()));
    }
  }
  for (auto& t : ranks) {
    GREENREDUCE_CUDA_CHECK(cudaSetDevice(t.device()));
    GREENREDUCE_CUDA_CHECK(cudaStreamSynchronize(t.stream()));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<report> out;
  for (auto& t : ranks) {
    const int p = t.size(), r = t.rank();
    report rep;
    rep.op = "allreduce";
    rep.codec = "none";
    rep.algo = "nccl_allreduce";
    rep.raw_bytes =
        p > 1 ? 4 * (2 * n - chunk(n, p, mod(r + 1, p)).count - chunk(n, p, mod(r + 2, p)).count)
              : 0;
    rep.bytes_sent = rep.bytes_received = rep.raw_bytes;
    t.count(rep.bytes_sent, rep.bytes_received);
    rep.seconds = seconds;
    rep.memory_bytes = 12 * n;  // read both operands, write the sum, once per element
    rep.compute_ops = n;
    model.annotate(rep);
    out.push_back(std::move(rep));
  }
  return out;
}

}  // namespace greenreduce::cuda
