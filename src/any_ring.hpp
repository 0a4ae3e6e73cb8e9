// src/any_ring.hpp — a ring_allreduce whose codec is chosen at run time.
//
// The drop-in libraries take the codec as a string (GREENREDUCE_CODEC, the C
// API's codec_name), parsed by codec::parse_codec into a variant; this wraps
// the ring of each alternative behind one virtual call, so the caller keeps
// one object per (communicator, codec) and the hot loop stays a template.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <variant>

#include "greenreduce/codec/registry.hpp"
#include "greenreduce/collective/ring_allreduce.hpp"
#include "greenreduce/core/report.hpp"

namespace greenreduce::dropin {

/// A ring allreduce over `Transport` for vectors of up to capacity() floats.
template <class Transport>
class any_ring {
 public:
  virtual ~any_ring() = default;
  virtual report run(std::span<float> x, collective::reduce_op op) = 0;
  virtual std::size_t capacity() const noexcept = 0;
};

namespace detail {
template <class Codec, class Transport>
class ring_of final : public any_ring<Transport> {
 public:
  ring_of(Transport& t, std::size_t n, const Codec& c, collective::ring_options o)
      : ring_(t, n, c, std::move(o)), cap_(n) {}
  report run(std::span<float> x, collective::reduce_op op) override { return ring_.run(x, op); }
  std::size_t capacity() const noexcept override { return cap_; }

 private:
  collective::ring_allreduce<Codec, Transport> ring_;
  std::size_t cap_;
};
}  // namespace detail

/// A ring for `codec` over `t` taking up to `n` floats.
template <class Transport>
std::shared_ptr<any_ring<Transport>> make_ring(const codec::any_codec& codec, Transport& t,
                                               std::size_t n, collective::ring_options o = {}) {
  return std::visit(
      [&](const auto& c) -> std::shared_ptr<any_ring<Transport>> {
        using C = std::decay_t<decltype(c)>;
        return std::make_shared<detail::ring_of<C, Transport>>(t, n, c, o);
      },
      codec);
}

}  // namespace greenreduce::dropin
