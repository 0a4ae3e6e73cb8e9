// greenreduce/transport/mpi.hpp — ranks of an MPI communicator as a transport.
//
//   MPI_Comm mine;
//   PMPI_Comm_dup(MPI_COMM_WORLD, &mine);          // a private communicator
//   greenreduce::transport::mpi t(mine);          // satisfies transport::transport
//   collective::ring_allreduce<codec::int8, transport::mpi> ring(t, n, codec::int8{});
//
// Only usable where <mpi.h> is (this header includes it); it is therefore NOT
// part of the umbrella header greenreduce.hpp: include it yourself and link
// MPI (CMake: find_package(MPI COMPONENTS C), target MPI::MPI_C).
//
// Messages are MPI_BYTE point-to-point messages on the given communicator
// with one tag; MPI's non-overtaking rule for one (source, tag, communicator)
// gives the transport concept's FIFO order per ordered pair. Every call goes
// to the profiling entry points (PMPI_Isend, PMPI_Irecv, PMPI_Wait,
// PMPI_Test, PMPI_Sendrecv), so the transport can run inside an MPI
// interposer without re-entering it. The transport does not own the
// communicator; give it one nobody else sends on (a PMPI_Comm_dup), because
// any message with its tag would be taken for one of its own. The
// constructor switches that communicator's error handler to
// MPI_ERRORS_RETURN so that failures become typed errors instead of aborts.
//
// Timeout: with `timeout` = 0 (the default) a wait blocks like MPI_Wait, for
// as long as the peer takes: under MPI a rank may legitimately reach a
// collective minutes after its peers, and a peer that dies takes the job
// down with it. With a positive timeout a wait polls PMPI_Test (yielding the
// CPU between polls) and throws timeout_error naming the rank, the peer, the
// operation and the bound; pending receives are then cancelled.
//
// Errors: a message longer than the receive buffer (MPI_ERR_TRUNCATE) is a
// peer_error, as is any other MPI error code, with MPI's error string. After
// any error the transport is unusable and says so on every later call.
//
// Byte counters: the payload bytes handed to and taken from MPI. The MPI
// library's own envelope (a few tens of bytes per message) is not visible
// from here and is not counted, unlike the 16-byte header the tcp and inproc
// transports count. Messages are limited to INT_MAX bytes (MPI counts are
// int); a longer one is a config_error.
#pragma once

// Only MPI's C interface is used: keep Open MPI's and MPICH's deprecated C++
// bindings out, so that linking MPI's C library (MPI::MPI_C) is enough.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
#include <sched.h>

#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/concept.hpp"

namespace greenreduce::transport {

struct mpi_options {
  /// Bound of every wait; 0 blocks like MPI_Wait (see the header).
  std::chrono::milliseconds timeout{0};
  /// Tag of every message on the communicator.
  int tag = 0x4752;
};

/// A transport (concept.hpp) over an MPI communicator it does not own.
class mpi {
 public:
  class send_request {
   public:
    send_request() = default;
    bool pending() const noexcept { return req_ != MPI_REQUEST_NULL; }

   private:
    friend class mpi;
    MPI_Request req_ = MPI_REQUEST_NULL;
    int peer_ = -1;
    std::size_t size_ = 0;
  };
  class recv_request {
   public:
    recv_request() = default;
    bool pending() const noexcept { return req_ != MPI_REQUEST_NULL; }

   private:
    friend class mpi;
    MPI_Request req_ = MPI_REQUEST_NULL;
    int peer_ = -1;
    std::size_t size_ = 0;
  };

  explicit mpi(MPI_Comm comm, mpi_options opts = {}) : comm_(comm), opts_(opts) {
    if (comm == MPI_COMM_NULL)
      throw config_error("transport::mpi needs a communicator, got MPI_COMM_NULL");
    if (opts_.timeout.count() < 0)
      throw config_error(
          detail::str("transport::mpi timeout must be >= 0 ms, got ", opts_.timeout.count()));
    int inter = 0;
    check(PMPI_Comm_test_inter(comm_, &inter), "MPI_Comm_test_inter", -1);
    if (inter)
      throw config_error("transport::mpi needs an intra-communicator, got an inter-communicator");
    check(PMPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", -1);
    check(PMPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank", -1);
    check(PMPI_Comm_size(comm_, &size_), "MPI_Comm_size", -1);
  }

  mpi(const mpi&) = delete;
  mpi& operator=(const mpi&) = delete;

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  MPI_Comm comm() const noexcept { return comm_; }
  std::chrono::milliseconds timeout() const noexcept { return opts_.timeout; }

  /// Starts sending `bytes` to `peer`; they must stay alive until wait().
  send_request isend(int peer, std::span<const std::byte> bytes) {
    usable("isend");
    check_peer(peer, "isend");
    send_request r;
    r.peer_ = peer;
    r.size_ = bytes.size();
    check(PMPI_Isend(bytes.data(), count(bytes.size(), "isend"), MPI_BYTE, peer, opts_.tag, comm_,
                     &r.req_),
          "MPI_Isend", peer);
    sent_ += bytes.size();
    return r;
  }
  /// Posts `buffer` for the next message from `peer`; it must stay alive until wait().
  recv_request irecv(int peer, std::span<std::byte> buffer) {
    usable("irecv");
    check_peer(peer, "irecv");
    recv_request r;
    r.peer_ = peer;
    r.size_ = buffer.size();
    check(PMPI_Irecv(buffer.data(), count(buffer.size(), "irecv"), MPI_BYTE, peer, opts_.tag, comm_,
                     &r.req_),
          "MPI_Irecv", peer);
    return r;
  }
  void wait(send_request& r) {
    MPI_Status st;
    complete(r.req_, st, "send to", r.peer_, r.size_);
  }
  std::size_t wait(recv_request& r) {
    MPI_Status st;
    complete(r.req_, st, "recv from", r.peer_, r.size_);
    int n = 0;
    check(PMPI_Get_count(&st, MPI_BYTE, &n), "MPI_Get_count", r.peer_);
    received_ += static_cast<std::uint64_t>(n);
    return static_cast<std::size_t>(n);
  }

  void send(int peer, std::span<const std::byte> bytes) {
    auto r = isend(peer, bytes);
    wait(r);
  }
  std::size_t recv(int peer, std::span<std::byte> buffer) {
    auto r = irecv(peer, buffer);
    return wait(r);
  }
  /// PMPI_Sendrecv when unbounded; an isend/irecv pair within one timeout otherwise.
  std::size_t sendrecv(int dst, std::span<const std::byte> out, int src, std::span<std::byte> in) {
    if (opts_.timeout.count() > 0) {
      auto s = isend(dst, out);
      auto r = irecv(src, in);
      const std::size_t n = wait(r);
      wait(s);
      return n;
    }
    usable("sendrecv");
    check_peer(dst, "sendrecv");
    check_peer(src, "sendrecv");
    MPI_Status st;
    check(PMPI_Sendrecv(out.data(), count(out.size(), "sendrecv"), MPI_BYTE, dst, opts_.tag,
                        in.data(), count(in.size(), "sendrecv"), MPI_BYTE, src, opts_.tag, comm_,
                        &st),
          "MPI_Sendrecv", src);
    int n = 0;
    check(PMPI_Get_count(&st, MPI_BYTE, &n), "MPI_Get_count", src);
    sent_ += out.size();
    received_ += static_cast<std::uint64_t>(n);
    return static_cast<std::size_t>(n);
  }

  std::uint64_t bytes_sent() const noexcept { return sent_; }
  std::uint64_t bytes_received() const noexcept { return received_; }

 private:
  void usable(const char* op) const {
    if (!broken_.empty())
      throw peer_error(detail::str("transport::mpi::", op, " on rank ", rank_,
                                   ": unusable after an earlier error (", broken_, ")"));
  }

  void check_peer(int peer, const char* op) const {
    if (peer < 0 || peer >= size_ || peer == rank_)
      throw config_error(detail::str("transport::mpi::", op, ": rank ", rank_, " of ", size_,
                                     " cannot address peer ", peer,
                                     " (expected another rank in [0, ", size_, "))"));
  }

  static int count(std::size_t n, const char* op) {
    if (n > static_cast<std::size_t>(INT_MAX))
      throw config_error(detail::str("transport::mpi::", op, ": message of ", n,
                                     " bytes exceeds MPI's int count limit ", INT_MAX));
    return static_cast<int>(n);
  }

  void check(int rc, const char* what, int peer) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {};
    int len = 0;
    PMPI_Error_string(rc, text, &len);
    int cls = 0;
    PMPI_Error_class(rc, &cls);
    const std::string msg =
        cls == MPI_ERR_TRUNCATE
            ? detail::str("transport::mpi on rank ", rank_, ": ", what, " with rank ", peer,
                          ": message longer than the receive buffer (", text, ")")
            : detail::str("transport::mpi on rank ", rank_, ": ", what,
                          peer >= 0 ? detail::str(" with rank ", peer) : std::string(),
                          " failed: ", text);
    broken_ = msg;
    throw peer_error(msg);
  }

  void complete(MPI_Request& req, MPI_Status& st, const char* dir, int peer, std::size_t size) {
    usable("wait");
    if (req == MPI_REQUEST_NULL)
      throw config_error("transport::mpi::wait on a request that is empty or already waited");
    if (opts_.timeout.count() == 0) {
      check(PMPI_Wait(&req, &st), "MPI_Wait", peer);
      return;
    }
    const auto deadline = std::chrono::steady_clock::now() + opts_.timeout;
    for (unsigned spin = 0;; ++spin) {
      int done = 0;
      check(PMPI_Test(&req, &done, &st), "MPI_Test", peer);
      if (done) return;
      if (std::chrono::steady_clock::now() >= deadline) break;
      if (spin > 64) sched_yield();
    }
    const std::string msg =
        detail::str("transport::mpi on rank ", rank_, ": ", dir, " rank ", peer, " (", size,
                    " bytes) did not complete within ", opts_.timeout.count(), " ms");
    // A receive must not write into the caller's buffer later; a send cannot
    // be withdrawn reliably and is left to MPI.
    if (std::string_view(dir) == "recv from") {
      PMPI_Cancel(&req);
      PMPI_Wait(&req, MPI_STATUS_IGNORE);
    }
    broken_ = msg;
    throw timeout_error(msg);
  }

  MPI_Comm comm_;
  mpi_options opts_;
  int rank_ = 0;
  int size_ = 1;
  std::uint64_t sent_ = 0;
  std::uint64_t received_ = 0;
  std::string broken_;
};

static_assert(transport<mpi>);

}  // namespace greenreduce::transport
