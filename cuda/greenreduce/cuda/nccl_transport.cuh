// greenreduce/cuda/nccl_transport.cuh — point-to-point byte moves between GPUs over NCCL.
//
// One `nccl_transport` is one rank's endpoint: a communicator, its CUDA device
// and the caller's stream. `sendrecv` enqueues ncclSend to one peer and
// ncclRecv from another inside ncclGroupStart/ncclGroupEnd on that stream, so
// the ring runs full duplex and every transfer is ordered after the kernels
// that produced its bytes. Counts the bytes it puts on and takes off the wire.
//
// Ranks driven by one thread (one process for all local GPUs, ncclCommInitAll)
// must issue their calls inside one outer group: `nccl_group` is that scope
// (NCCL groups nest). `nccl_world` creates and owns the communicators and
// streams of all visible GPUs for that mode; with one process per GPU, build
// the communicator with ncclCommInitRank as usual and wrap it.
//
// Errors: every NCCL call goes through GREENREDUCE_NCCL_CHECK, which throws
// device_error naming the call and NCCL's description (and its last error text).
#pragma once

#include <nccl.h>

#include <cstdint>
#include <exception>
#include <vector>

#include "greenreduce/cuda/runtime.cuh"

namespace greenreduce::cuda {

inline void nccl_check(ncclResult_t e, const char* call, const char* file, int line) {
  if (e != ncclSuccess && e != ncclInProgress)
    throw device_error(detail::str(call, " failed at ", file, ":", line, ": ",
                                   ncclGetErrorString(e), " (", ncclGetLastError(nullptr), ")"));
}

}  // namespace greenreduce::cuda

#define GREENREDUCE_NCCL_CHECK(call) \
  ::greenreduce::cuda::nccl_check((call), #call, __FILE__, __LINE__)

namespace greenreduce::cuda {

/// ncclGroupStart / ncclGroupEnd as a scope.
class nccl_group {
 public:
  nccl_group() : unwinding_(std::uncaught_exceptions()) {
    GREENREDUCE_NCCL_CHECK(ncclGroupStart());
  }
  nccl_group(const nccl_group&) = delete;
  nccl_group& operator=(const nccl_group&) = delete;
  /// Throws the group's failure unless an exception is already in flight.
  ~nccl_group() noexcept(false) {
    const ncclResult_t e = ncclGroupEnd();
    if (std::uncaught_exceptions() == unwinding_) GREENREDUCE_NCCL_CHECK(e);
  }

 private:
  int unwinding_;
};

class nccl_transport {
 public:
  /// Does not own `comm` or `stream`. `device` is the CUDA device of comm.
  nccl_transport(ncclComm_t comm, int device, cudaStream_t stream)
      : comm_(comm), device_(device), stream_(stream) {
    GREENREDUCE_NCCL_CHECK(ncclCommUserRank(comm, &rank_));
    GREENREDUCE_NCCL_CHECK(ncclCommCount(comm, &size_));
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  int device() const noexcept { return device_; }
  cudaStream_t stream() const noexcept { return stream_; }
  ncclComm_t comm() const noexcept { return comm_; }
  std::uint64_t bytes_sent() const noexcept { return sent_; }
  std::uint64_t bytes_received() const noexcept { return received_; }

  /// Enqueues: send `send_bytes` at `send` to rank `to`, receive `recv_bytes`
  /// into `recv` from rank `from` (both device pointers; the peer must post
  /// the matching sizes). Either side may be empty (0 bytes: not posted).
  void sendrecv(const std::byte* send, std::size_t send_bytes, int to, std::byte* recv,
                std::size_t recv_bytes, int from) {
    GREENREDUCE_CUDA_CHECK(cudaSetDevice(device_));
    const nccl_group group;
    if (send_bytes > 0)
      GREENREDUCE_NCCL_CHECK(ncclSend(send, send_bytes, ncclUint8, to, comm_, stream_));
    if (recv_bytes > 0)
      GREENREDUCE_NCCL_CHECK(ncclRecv(recv, recv_bytes, ncclUint8, from, comm_, stream_));
    sent_ += send_bytes;
    received_ += recv_bytes;
  }

  /// Counts bytes a collective moved outside sendrecv (the ncclAllReduce baseline).
  void count(std::uint64_t sent, std::uint64_t received) noexcept {
    sent_ += sent;
    received_ += received;
  }

 private:
  ncclComm_t comm_;
  int device_;
  cudaStream_t stream_;
  int rank_ = 0, size_ = 1;
  std::uint64_t sent_ = 0, received_ = 0;
};

/// Communicators and streams for `devices` local GPUs (ncclCommInitAll), owned.
class nccl_world {
 public:
  /// Uses the first `devices` visible GPUs (all when 0). Throws device_error
  /// when there is no GPU or fewer than asked.
  explicit nccl_world(int devices = 0) {
    const int have = device_count();
    if (have == 0) throw device_error("no CUDA device is visible; the nccl transport needs a GPU");
    if (devices == 0) devices = have;
    if (devices > have)
      throw device_error(detail::str(devices, " GPUs asked for, ", have, " visible"));
    std::vector<int> ids(static_cast<std::size_t>(devices));
    for (int d = 0; d < devices; ++d) ids[static_cast<std::size_t>(d)] = d;
    comms_.resize(ids.size());
    GREENREDUCE_NCCL_CHECK(ncclCommInitAll(comms_.data(), devices, ids.data()));
    for (int d : ids) {
      GREENREDUCE_CUDA_CHECK(cudaSetDevice(d));
      cudaStream_t s = nullptr;
      GREENREDUCE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      streams_.push_back(s);
      ranks_.emplace_back(comms_[static_cast<std::size_t>(d)], d, s);
    }
  }
  nccl_world(const nccl_world&) = delete;
  nccl_world& operator=(const nccl_world&) = delete;
  ~nccl_world() {
    for (std::size_t d = 0; d < comms_.size(); ++d) {
      (void)cudaSetDevice(static_cast<int>(d));
      if (d < streams_.size()) (void)cudaStreamSynchronize(streams_[d]);
      (void)ncclCommDestroy(comms_[d]);
      if (d < streams_.size()) (void)cudaStreamDestroy(streams_[d]);
    }
  }

  int size() const noexcept { return static_cast<int>(ranks_.size()); }
  std::vector<nccl_transport>& ranks() noexcept { return ranks_; }

 private:
  std::vector<ncclComm_t> comms_;
  std::vector<cudaStream_t> streams_;
  std::vector<nccl_transport> ranks_;
};

}  // namespace greenreduce::cuda
