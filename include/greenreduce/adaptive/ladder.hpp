// greenreduce/adaptive/ladder.hpp — the compression levels an adaptive policy moves between.
//
//   auto l = adaptive::ladder::parse("none,fp16,int8,topk:0.1,ternary,topk:0.03,topk:0.01");
//   l[2].spec == "int8";  l[2].nominal_ratio ~ 3.9
//
// A ladder is an ordered list of codec specs (codec/registry.hpp grammar),
// loosest first: level 0 is what the policy runs during warm-up (normally
// `none`), higher levels compress harder. Each level carries its nominal
// compression ratio, 4n / max_encoded_bytes(n) at n = 2^20 — what the policy
// assumes for a level it has not measured yet.
//
// Invariants (checked, config_error otherwise): at least one level, no spec
// twice, and nominal ratios that do not decrease along the ladder, so "one
// level up" always means "no more bytes on the wire".
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "greenreduce/codec/registry.hpp"
#include "greenreduce/core/error.hpp"

namespace greenreduce::adaptive {

/// The ladder the policy uses unless told otherwise.
inline constexpr std::string_view default_ladder_specs =
    "none,fp16,int8,topk:ratio=0.1,ternary,topk:ratio=0.03,topk:ratio=0.01";

/// One rung: a codec and what it is expected to save.
struct level {
  std::string spec;          ///< the spec it was parsed from
  codec::any_codec codec;    ///< the parsed codec
  double nominal_ratio = 1;  ///< 4n / max_encoded_bytes(n) at n = 2^20
};

class ladder {
 public:
  static constexpr std::size_t reference_elements = std::size_t{1} << 20;

  /// The default ladder (default_ladder_specs).
  ladder() : ladder(parse_specs(default_ladder_specs)) {}

  /// One level per spec, loosest first.
  explicit ladder(const std::vector<std::string>& specs) {
    if (specs.empty()) throw config_error("adaptive ladder: no level given");
    for (const auto& s : specs) {
      for (const auto& l : levels_)
        if (l.spec == s)
          throw config_error(detail::str("adaptive ladder: level \"", s, "\" appears twice"));
      level l;
      l.spec = s;
      l.codec = codec::parse_codec(s);
      l.nominal_ratio = std::visit(
          [](const auto& c) {
            return 4.0 * static_cast<double>(reference_elements) /
                   static_cast<double>(c.max_encoded_bytes(reference_elements));
          },
          l.codec);
      if (!levels_.empty() && l.nominal_ratio < levels_.back().nominal_ratio)
        throw config_error(detail::str(
            "adaptive ladder: level \"", s, "\" (nominal ratio ", l.nominal_ratio,
            ") compresses less than the level before it, \"", levels_.back().spec,
            "\" (nominal ratio ", levels_.back().nominal_ratio, "); order levels loosest first"));
      levels_.push_back(std::move(l));
    }
  }

  /// Parses a comma-separated list of specs, e.g. "none,int8,topk:0.01".
  static ladder parse(std::string_view list) { return ladder(parse_specs(list)); }

  std::size_t size() const noexcept { return levels_.size(); }
  const level& operator[](std::size_t i) const { return levels_.at(i); }
  auto begin() const noexcept { return levels_.begin(); }
  auto end() const noexcept { return levels_.end(); }

  /// The specs joined with commas (parse(to_string()) gives the same ladder).
  std::string to_string() const {
    std::string s;
    for (const auto& l : levels_) s += (s.empty() ? "" : ",") + l.spec;
    return s;
  }

 private:
  std::vector<level> levels_;

  static std::vector<std::string> parse_specs(std::string_view list) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= list.size()) {
      const std::size_t at = list.find(',', start);
      const std::string_view s =
          list.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start);
      if (s.empty()) throw config_error(detail::str("adaptive ladder \"", list, "\": empty level"));
      out.emplace_back(s);
      if (at == std::string_view::npos) break;
      start = at + 1;
    }
    return out;
  }
};

}  // namespace greenreduce::adaptive
