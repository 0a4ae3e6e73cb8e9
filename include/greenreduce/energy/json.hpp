// greenreduce/energy/json.hpp — a minimal streaming JSON writer (RFC 8259).
//
// Enough for the ledger's export and nothing more: objects, arrays, strings,
// numbers, no dependency. Strings are escaped per RFC 8259 section 7 (quote,
// backslash and every control character below 0x20); other bytes pass through,
// so UTF-8 input stays UTF-8. Non-finite numbers, which JSON cannot express,
// are written as null.
//
// Invariant: used as begin/end pairs with key() before each member value, the
// output is one well-formed JSON text; the writer inserts the commas.
#pragma once

#include <cmath>
#include <cstdint>
#include <ostream>
#include <string_view>
#include <vector>

#include "greenreduce/energy/csv.hpp"

namespace greenreduce::energy {

class json_writer {
 public:
  explicit json_writer(std::ostream& os) : os_(os) {}

  json_writer& begin_object() { return open('{'); }
  json_writer& end_object() { return close('}'); }
  json_writer& begin_array() { return open('['); }
  json_writer& end_array() { return close(']'); }

  /// The name of the next object member.
  json_writer& key(std::string_view k) {
    separate();
    write_string(k);
    os_ << ':';
    after_key_ = true;
    return *this;
  }
  json_writer& value(std::string_view s) {
    separate();
    write_string(s);
    return *this;
  }
  json_writer& value(const char* s) { return value(std::string_view(s)); }
  json_writer& value(double v) {
    separate();
    if (std::isfinite(v))
      os_ << csv::number(v);
    else
      os_ << "null";
    return *this;
  }
  json_writer& value(std::uint64_t v) {
    separate();
    os_ << v;
    return *this;
  }
  template <class T>
  json_writer& member(std::string_view k, const T& v) {
    return key(k).value(v);
  }

  /// `s` as a JSON string literal, quotes included.
  static std::string quote(std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20) {
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 0xF];
          } else {
            out += ch;
          }
      }
    }
    return out + "\"";
  }

 private:
  json_writer& open(char c) {
    separate();
    os_ << c;
    first_.push_back(true);
    return *this;
  }
  json_writer& close(char c) {
    os_ << c;
    if (!first_.empty()) first_.pop_back();
    return *this;
  }
  void separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_.empty()) {
      if (!first_.back()) os_ << ',';
      first_.back() = false;
    }
  }
  void write_string(std::string_view s) { os_ << quote(s); }

  std::ostream& os_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
  bool after_key_ = false;
};

}  // namespace greenreduce::energy
