// greenreduce/energy/csv.hpp — RFC 4180 CSV fields and locale-free numbers.
//
// Source: RFC 4180 (2005). A field is quoted when it holds a comma, a quote, CR
// or LF; a quote inside is doubled. Numbers go through std::to_chars /
// std::from_chars, so output does not depend on the C or C++ locale and a
// double printed here reads back to the same bits (shortest round trip).
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <istream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "greenreduce/core/error.hpp"

namespace greenreduce::energy::csv {

/// The shortest text that reads back to `v` (v finite), "nan"/"inf" otherwise.
inline std::string number(double v) {
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, p) : std::string("nan");
}

inline std::string number(std::uint64_t v) {
  return std::to_string(v);
}

/// `s` quoted if it needs to be.
inline std::string field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

/// Reads one record into `fields`; false at end of input with nothing read.
/// `line` counts physical lines (for messages). Throws decode_error on an
/// unterminated quoted field or a quote in the middle of an unquoted one.
inline bool read_record(std::istream& in, std::vector<std::string>& fields, std::size_t& line) {
  fields.clear();
  std::string cur;
  bool quoted = false, was_quoted = false, any = false;
  const std::size_t first_line = line + 1;
  for (int ch = in.get(); ch != std::char_traits<char>::eof(); ch = in.get()) {
    any = true;
    const char c = static_cast<char>(ch);
    if (quoted) {
      if (c == '"') {
        if (in.peek() == '"') {
          in.get();
          cur += '"';
        } else {
          quoted = false;
        }
      } else {
        if (c == '\n') ++line;
        cur += c;
      }
    } else if (c == '"') {
      if (!cur.empty() || was_quoted)
        throw decode_error(
            greenreduce::detail::str("CSV line ", line + 1, ": a quote inside an unquoted field"));
      quoted = was_quoted = true;
    } else if (c == ',') {
      fields.push_back(std::move(cur));
      cur.clear();
      was_quoted = false;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && in.peek() == '\n') in.get();
      ++line;
      fields.push_back(std::move(cur));
      return true;
    } else {
      if (was_quoted)
        throw decode_error(greenreduce::detail::str("CSV line ", line + 1,
                                                    ": text after the closing quote of a field"));
      cur += c;
    }
  }
  if (quoted)
    throw decode_error(greenreduce::detail::str("CSV record starting at line ", first_line,
                                                ": unterminated quoted field"));
  if (!any) return false;
  ++line;
  fields.push_back(std::move(cur));
  return true;
}

/// Parses a whole field as T (an unsigned integer or a double); false otherwise.
template <class T>
bool parse(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

}  // namespace greenreduce::energy::csv
