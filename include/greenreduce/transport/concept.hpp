// greenreduce/transport/concept.hpp — what a collective needs from a network.
//
// A transport connects `size()` ranks and moves whole messages between pairs of
// them. Messages between one ordered pair (src -> dst) arrive in the order they
// were sent; messages of different pairs are independent. A ring needs to send
// to its right neighbour while it receives from its left one, so every
// transport provides non-blocking forms:
//
//   isend(peer, bytes) -> send_request    the bytes must stay alive until wait()
//   irecv(peer, buffer) -> recv_request   the buffer must stay alive until wait()
//   wait(send_request&)                   blocks until the bytes left this rank's hands
//   wait(recv_request&) -> std::size_t    blocks until a whole message arrived; its length
//
// and the blocking `send`, `recv` and full-duplex `sendrecv` built on them.
// A message longer than the receive buffer is a peer_error (the length is
// never trusted to allocate). Every blocking step is bounded by the
// transport's timeout and throws timeout_error naming the rank, the peer, the
// operation and the bound; a peer that closes or dies is a peer_error. After
// any error the transport is unusable and says so on every later call; build a
// new one (Gloo's contract).
//
// bytes_sent()/bytes_received() count what actually crossed the wire,
// transport headers included; collectives difference them into reports.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace greenreduce::transport {

template <class T>
concept transport = requires(T& t, const T& ct, int peer, std::span<const std::byte> out,
                             std::span<std::byte> in, typename T::send_request& sr,
                             typename T::recv_request& rr) {
  { ct.rank() } -> std::same_as<int>;
  { ct.size() } -> std::same_as<int>;
  { t.isend(peer, out) } -> std::same_as<typename T::send_request>;
  { t.irecv(peer, in) } -> std::same_as<typename T::recv_request>;
  { t.wait(sr) } -> std::same_as<void>;
  { t.wait(rr) } -> std::same_as<std::size_t>;
  { t.send(peer, out) } -> std::same_as<void>;
  { t.recv(peer, in) } -> std::same_as<std::size_t>;
  { t.sendrecv(peer, out, peer, in) } -> std::same_as<std::size_t>;
  { ct.bytes_sent() } -> std::same_as<std::uint64_t>;
  { ct.bytes_received() } -> std::same_as<std::uint64_t>;
};

// ---------------------------------------------------------------------------
// pollable: an optional capability for servers that answer many peers from
// one thread (the parameter server). Both transport::inproc and
// transport::tcp provide it.
//
//   test(recv_request&) -> std::optional<std::size_t>
//       non-blocking: the message's length once it arrived (the request is
//       then consumed), nullopt while it is pending; throws like wait() when
//       the request failed (its peer died, closed or sent too much).
//   wait_any(std::span<recv_request* const>, std::chrono::milliseconds bound)
//       -> std::optional<std::size_t>
//       blocks until one of the (non-null, pending) requests completed or
//       failed and returns its index, or returns nullopt once `bound` passed.
//       Running out of time is not an error: the transport stays usable and
//       the requests stay posted (an idle peer is not a dead one).
//   cancel(recv_request&)
//       withdraws a posted receive: afterwards the transport never touches its
//       buffer; a message that arrives later waits for the next irecv.
//   peer_failed(peer) -> bool
//       whether operations with that peer fail (it died, closed, broke the
//       protocol or timed out) while the others go on; only ever true on a
//       transport built with per-peer failure isolation, see
//       isolates_peer_failures().
//   isolates_peer_failures() -> bool
//       true: an error involving one peer fails only the operations with that
//       peer (peer_error naming it) and the endpoint stays usable for every
//       other peer. false (the default, what collectives rely on): any error
//       makes the whole endpoint unusable, as described above.
template <class T>
concept pollable = transport<T> &&
    requires(T& t, const T& ct, int peer, typename T::recv_request& rr,
             std::span<typename T::recv_request* const> rs, std::chrono::milliseconds bound) {
  { t.test(rr) } -> std::same_as<std::optional<std::size_t>>;
  { t.wait_any(rs, bound) } -> std::same_as<std::optional<std::size_t>>;
  { t.cancel(rr) } -> std::same_as<void>;
  { ct.peer_failed(peer) } -> std::same_as<bool>;
  { ct.isolates_peer_failures() } -> std::same_as<bool>;
};

}  // namespace greenreduce::transport
