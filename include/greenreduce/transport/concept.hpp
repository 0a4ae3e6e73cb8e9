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

#include <concepts>
#include <cstddef>
#include <cstdint>
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

}  // namespace greenreduce::transport
