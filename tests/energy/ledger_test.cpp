#include "greenreduce/energy/ledger.hpp"

#include <catch2/catch.hpp>
#include <cctype>
#include <random>
#include <sstream>
#include <string>

#include "greenreduce/energy/model.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace greenreduce;
using namespace greenreduce::energy;
using greenreduce::test::what_has;

namespace {
/// A strict RFC 8259 recogniser: true when `s` is exactly one JSON value.
class json_checker {
 public:
  explicit json_checker(std::string_view s) : s_(s) {}
  bool ok() {
    ws();
    if (!value()) return false;
    ws();
    return i_ == s_.size();
  }

 private:
  bool value() {
    if (i_ >= s_.size()) return false;
    switch (s_[i_]) {
      case '{':
        return object();
      case '[':
        return array();
      case '"':
        return string();
      case 't':
        return word("true");
      case 'f':
        return word("false");
      case 'n':
        return word("null");
      default:
        return number();
    }
  }
  bool object() {
    ++i_;
    ws();
    if (eat('}')) return true;
    do {
      ws();
      if (i_ >= s_.size() || s_[i_] != '"' || !string()) return false;
      ws();
      if (!eat(':')) return false;
      ws();
      if (!value()) return false;
      ws();
    } while (eat(','));
    return eat('}');
  }
  bool array() {
    ++i_;
    ws();
    if (eat(']')) return true;
    do {
      ws();
      if (!value()) return false;
      ws();
    } while (eat(','));
    return eat(']');
  }
  bool string() {
    ++i_;
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;
      if (c == '\\') {
        if (i_ >= s_.size()) return false;
        const char e = s_[i_++];
        if (e == 'u') {
          for (int k = 0; k < 4; ++k)
            if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_++])))
              return false;
        } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
          return false;
        }
      }
    }
    return false;
  }
  bool number() {
    const std::size_t start = i_;
    eat('-');
    if (eat('0')) {
    } else if (!digits()) {
      return false;
    }
    if (eat('.') && !digits()) return false;
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (!eat('+')) eat('-');
      if (!digits()) return false;
    }
    return i_ > start;
  }
  bool digits() {
    const std::size_t start = i_;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    return i_ > start;
  }
  bool word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }
  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void ws() {
    while (i_ < s_.size() && std::string_view(" \t\r\n").find(s_[i_]) != std::string_view::npos)
      ++i_;
  }
  std::string_view s_;
  std::size_t i_ = 0;
};

bool well_formed(std::string_view s) {
  return json_checker(s).ok();
}

report random_report(std::mt19937_64& gen) {
  std::uniform_int_distribution<std::uint64_t> n(0, std::uint64_t{1} << 50);
  std::uniform_real_distribution<double> x(0.0, 1e3);
  static const char* ops[] = {"allreduce", "push", "pull"};
  static const char* codecs[] = {"int8", "ternary", "topk,0.01", "say \"hi\"", "multi\nline"};
  report r;
  r.op = ops[gen() % 3];
  r.codec = codecs[gen() % 5];
  r.algo = gen() % 2 ? "ring" : "";
  r.bytes_sent = n(gen);
  r.bytes_received = n(gen);
  r.raw_bytes = n(gen);
  r.seconds = x(gen) / 7.0;
  r.memory_bytes = n(gen);
  r.compute_ops = n(gen);
  r.operations = 1 + gen() % 4;
  model(coefficients{x(gen), x(gen), x(gen), x(gen)}).annotate(r);
  if (gen() % 3 == 0) {
    r.energy = {};
    r.energy.method = energy_method::rapl;
    r.energy.measured_j = x(gen) / 3.0;
  }
  return r;
}

void check_same(const report& a, const report& b) {
  CHECK(a.op == b.op);
  CHECK(a.codec == b.codec);
  CHECK(a.algo == b.algo);
  CHECK(a.bytes_sent == b.bytes_sent);
  CHECK(a.bytes_received == b.bytes_received);
  CHECK(a.raw_bytes == b.raw_bytes);
  CHECK(a.seconds == b.seconds);
  CHECK(a.memory_bytes == b.memory_bytes);
  CHECK(a.compute_ops == b.compute_ops);
  CHECK(a.operations == b.operations);
  CHECK(a.energy.network_j == b.energy.network_j);
  CHECK(a.energy.memory_j == b.energy.memory_j);
  CHECK(a.energy.compute_j == b.energy.compute_j);
  CHECK(a.energy.static_j == b.energy.static_j);
  CHECK(a.energy.measured_j == b.energy.measured_j);
  CHECK(a.energy.method == b.energy.method);
}

ledger::clock_fn counting_clock() {
  auto t = std::make_shared<double>(1.7e9);
  return [t] { return *t += 0.125; };
}
}  // namespace

TEST_CASE("a ledger sums its rows, converts to kWh and CO2", "[energy][ledger]") {
  ledger l(counting_clock(), 400.0);
  report r;
  r.op = "allreduce";
  r.bytes_sent = 10;
  r.energy.static_j = 3.6e6;  // 1 kWh
  r.energy.method = energy_method::model;
  l.add(r, std::uint64_t{0});
  r.energy.static_j = 1.8e6;
  l.add(r, "warmup");
  CHECK(l.rows().size() == 2);
  CHECK(l.rows()[0].step == "0");
  CHECK(l.rows()[0].timestamp == 1.7e9 + 0.125);
  CHECK(l.rows()[1].timestamp == 1.7e9 + 0.25);
  const report t = l.total();
  CHECK(t.operations == 2);
  CHECK(t.bytes_sent == 20);
  CHECK(l.joules() == Approx(5.4e6));
  CHECK(l.kwh() == Approx(1.5));
  CHECK(l.co2_grams() == Approx(600.0));
  CHECK(ledger().grid_gco2_per_kwh() == default_grid_gco2_per_kwh);
  CHECK(ledger().total().operations == 0);

  l.add(r, "warmup");
  const auto steps = l.by_step();
  REQUIRE(steps.size() == 2);
  CHECK(steps[0].first == "0");
  CHECK(steps[0].second.operations == 1);
  CHECK(steps[1].first == "warmup");
  CHECK(steps[1].second.operations == 2);
  CHECK(steps[1].second.energy.static_j == Approx(3.6e6));
}

TEST_CASE("grid intensity is validated and read from the environment", "[energy][ledger]") {
  CHECK_THROWS_MATCHES(ledger(unix_seconds, -5), config_error, what_has("grid intensity", "-5"));
  CHECK_THROWS_AS(ledger(nullptr), config_error);
  CHECK(grid_intensity_from_env(env_source::from_map({})) == 480.0);
  CHECK(grid_intensity_from_env(env_source::from_map({{"GREENREDUCE_GRID_GCO2_PER_KWH", "56"}})) ==
        56.0);
  CHECK_THROWS_MATCHES(
      grid_intensity_from_env(env_source::from_map({{"GREENREDUCE_GRID_GCO2_PER_KWH", "green"}})),
      config_error, what_has("GREENREDUCE_GRID_GCO2_PER_KWH", "green"));
  CHECK(unix_seconds() > 1.6e9);
}

TEST_CASE("property: CSV round trip gives the same rows and sums", "[energy][ledger][property]") {
  const auto s = greenreduce::test::seed(0x1ED);
  INFO("seed " << s);
  std::mt19937_64 gen(s);
  for (int trial = 0; trial < 20; ++trial) {
    ledger l(counting_clock());
    const int n = static_cast<int>(gen() % 30);
    for (int i = 0; i < n; ++i) {
      if (gen() % 2)
        l.add(random_report(gen), static_cast<std::uint64_t>(i));
      else
        l.add(random_report(gen), "phase, \"quoted\"\r\nnext");
    }
    std::stringstream csv;
    l.write_csv(csv);
    const ledger back = ledger::read_csv(csv);
    REQUIRE(back.rows().size() == l.rows().size());
    for (std::size_t i = 0; i < l.rows().size(); ++i) {
      CHECK(back.rows()[i].timestamp == l.rows()[i].timestamp);
      CHECK(back.rows()[i].step == l.rows()[i].step);
      check_same(back.rows()[i].r, l.rows()[i].r);
    }
    check_same(back.total(), l.total());
    CHECK(back.joules() == l.joules());
  }
}

TEST_CASE("the CSV has the documented header and one row per operation", "[energy][ledger]") {
  ledger l(counting_clock());
  report r;
  r.op = "allreduce";
  r.codec = "int8";
  r.algo = "ring";
  r.bytes_sent = 5;
  r.energy = {1, 2, 3, 4, energy_method::model};
  l.add(r, std::uint64_t{7});
  std::ostringstream os;
  l.write_csv(os);
  CHECK(os.str() ==
        "timestamp,step,op,codec,algo,bytes_sent,bytes_received,raw_bytes,seconds,memory_bytes,"
        "compute_ops,operations,network_j,memory_j,compute_j,static_j,measured_j,total_j,method\n"
        "1700000000.125,7,allreduce,int8,ring,5,0,0,0,0,0,1,1,2,3,4,0,10,model\n");
}

TEST_CASE("reading a malformed CSV names the line and column", "[energy][ledger]") {
  std::ostringstream good;
  ledger(counting_clock()).write_csv(good);
  const std::string header = good.str();
  const std::string row = "1,s,op,c,a,1,2,3,0.5,4,5,1,0,0,0,0,0,0,model\n";
  auto read = [](const std::string& text) {
    std::istringstream is(text);
    return ledger::read_csv(is);
  };
  CHECK(read(header + row).rows().size() == 1);
  CHECK(read(header + row + "\n").rows().size() == 1);
  CHECK_THROWS_MATCHES(read(""), decode_error, what_has("empty"));
  CHECK_THROWS_MATCHES(read("op," + header), decode_error, what_has("repeats column \"op\""));
  CHECK_THROWS_MATCHES(read("timestamp,op\n"), decode_error, what_has("lacks column \"step\""));
  CHECK_THROWS_MATCHES(read(header + "1,2,3\n"), decode_error, what_has("line 2", "3 fields"));
  CHECK_THROWS_MATCHES(read(header + "1,s,op,c,a,-1,2,3,0.5,4,5,1,0,0,0,0,0,0,model\n"),
                       decode_error, what_has("line 2", "bytes_sent", "\"-1\""));
  CHECK_THROWS_MATCHES(read(header + "1,s,op,c,a,1,2,3,0.5,4,5,1,0,0,0,0,0,0,guess\n"),
                       decode_error, what_has("method", "\"guess\""));
  CHECK_THROWS_MATCHES(read(header + "1,\"s,op,c\n"), decode_error, what_has("unterminated"));
  CHECK_THROWS_MATCHES(read(header + "1,s\"x\",op\n"), decode_error, what_has("quote"));
}

TEST_CASE("the JSON export is well formed and escapes strings", "[energy][ledger]") {
  CHECK(well_formed("{\"a\":[1,2.5e-3,\"x\\n\"],\"b\":null}"));  // the checker itself
  CHECK_FALSE(well_formed("{\"a\":1,}"));
  CHECK_FALSE(well_formed("{\"a\":\"\n\"}"));
  CHECK_FALSE(well_formed("[1 2]"));

  ledger empty(counting_clock());
  std::ostringstream e;
  empty.write_json(e);
  CHECK(well_formed(e.str()));
  CHECK(e.str().find("\"rows\":[]") != std::string::npos);

  ledger l(counting_clock(), 100.0);
  report r;
  r.op = "allreduce";
  r.codec = std::string("we\"ird\\co\ndec\x01\t") + "\xc3\xa9";
  r.energy.static_j = 3.6e6;
  r.energy.network_j = std::nan("");
  r.energy.method = energy_method::model;
  l.add(r, "step \"1\"");
  l.add(r, std::uint64_t{2});
  std::ostringstream os;
  l.write_json(os);
  const std::string j = os.str();
  INFO(j);
  CHECK(well_formed(j));
  CHECK(j.find("\"codec\":\"we\\\"ird\\\\co\\ndec\\u0001\\t\xc3\xa9\"") != std::string::npos);
  CHECK(j.find("\"step\":\"step \\\"1\\\"\"") != std::string::npos);
  CHECK(j.find("\"network_j\":null") != std::string::npos);
  CHECK(j.find("\"grid_gco2_per_kwh\":100") != std::string::npos);
  CHECK(j.find("\"operations\":2") != std::string::npos);
  CHECK(j.rfind("{\"grid_gco2_per_kwh\"", 0) == 0);

  std::mt19937_64 gen(greenreduce::test::seed(0x150));
  ledger big(counting_clock());
  for (int i = 0; i < 50; ++i) big.add(random_report(gen), static_cast<std::uint64_t>(i));
  std::ostringstream b;
  big.write_json(b);
  CHECK(well_formed(b.str()));
}
