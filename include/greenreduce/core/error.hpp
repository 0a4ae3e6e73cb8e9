// greenreduce/core/error.hpp — the exception hierarchy.
//
// Every failure the library reports is a greenreduce::error (a
// std::runtime_error). The message starts with the kind ("decode_error: ...")
// and says what was expected and what was found. After a transport error the
// communicator is unusable; build a new one.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace greenreduce {

namespace detail {
/// Concatenates anything streamable; the one formatting helper for messages.
template <class... Args>
std::string str(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

/// Base of every exception thrown by greenreduce.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

#define GREENREDUCE_DEFINE_ERROR(name)                                        \
  class name : public error {                                                 \
   public:                                                                    \
    explicit name(const std::string& what) : error(#name ": " + what) {}     \
  }

/// A bad argument or environment variable.
GREENREDUCE_DEFINE_ERROR(config_error);
/// NaN or Inf where a finite value is required.
GREENREDUCE_DEFINE_ERROR(numeric_error);
/// Corrupt, truncated or over-long bytes handed to a parser or decoder.
GREENREDUCE_DEFINE_ERROR(decode_error);
/// Ranks disagree on what they are doing (length, codec, op, ...).
GREENREDUCE_DEFINE_ERROR(mismatch_error);
/// An operation did not finish within its bound.
GREENREDUCE_DEFINE_ERROR(timeout_error);
/// A peer closed its connection, died, or broke the protocol.
GREENREDUCE_DEFINE_ERROR(peer_error);

#undef GREENREDUCE_DEFINE_ERROR

}  // namespace greenreduce
