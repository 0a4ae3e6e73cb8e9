// libgreenreduce_mpi.so preloaded into an unmodified MPI program (mpi_probe)
// under mpirun on loopback: results within the codec's bound where the call
// is compressed, bit-identical to plain MPI everywhere else, the report's
// counts equal to what the probe expects, and configuration errors that stop
// the job at MPI_Init naming the variable and its value.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "support/random.hpp"

namespace {

struct outcome {
  int status = -1;
  std::string text;
};

// mpirun NP [env...] PROBE ARGS, stdout and stderr together.
outcome mpirun(int np, const std::vector<std::string>& env, const std::string& args,
               bool preload = true) {
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  ::setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
  std::string cmd = std::string(GR_MPIEXEC) + " -np " + std::to_string(np) +
                    " --oversubscribe --bind-to none --mca btl self,tcp"
                    " --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo";
  if (preload) cmd += std::string(" -x LD_PRELOAD=") + GR_INTERPOSER;
  for (const auto& e : env) cmd += " -x " + e;
  cmd += " " + args + " 2>&1";
  outcome o;
  FILE* f = ::popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) o.text.append(buf, n);
  const int st = ::pclose(f);
  o.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return o;
}

std::string probe(std::uint64_t seed, const char* mode) {
  return std::string(GR_PROBE) + " " + std::to_string(seed) + " " + mode;
}

// The value of `key=` in the first line that contains `marker`.
long field(const std::string& text, const std::string& marker, const std::string& key) {
  const auto at = text.find(marker);
  if (at == std::string::npos) return -1;
  const auto line = text.substr(at, text.find('\n', at) - at);
  std::smatch m;
  if (!std::regex_search(line, m, std::regex(key + "=([0-9]+)"))) return -1;
  return std::stol(m[1]);
}

void run_codec(int np, const std::string& codec, std::vector<std::string> extra = {}) {
  extra.push_back("GREENREDUCE_CODEC=" + codec);
  extra.push_back("GREENREDUCE_REPORT=1");
  const auto seed = greenreduce::test::seed(static_cast<std::uint64_t>(np) * 131 + codec.size());
  const outcome o = mpirun(np, extra, probe(seed, "preload"));
  INFO("np=" << np << " codec=" << codec << " seed=" << seed << "\n" << o.text);
  REQUIRE(o.status == 0);
  REQUIRE(o.text.find("FAIL") == std::string::npos);
  const long want = field(o.text, "probe:", "intercepted");
  const long fallbacks = field(o.text, "probe:", "nonfinite_fallbacks");
  REQUIRE(want > 5);
  CHECK(field(o.text, "report of rank 0 ", "intercepted") == want);
  CHECK(field(o.text, "report of rank 0 ", "nonfinite_fallbacks") == fallbacks);
  // Compressed calls send fewer bytes than the fp32 ring would (int8: about 4x).
  const long raw = field(o.text, "raw_bytes", "raw_bytes");
  const long sent = field(o.text, "raw_bytes", "bytes_sent");
  REQUIRE(raw > 0);
  if (codec == "none")
    CHECK(sent >= raw);
  else
    CHECK(sent * 3 < raw);
  CHECK(o.text.find("estimated energy (model estimate, not a measurement") != std::string::npos);
}

void all_codecs(int np) {
  SECTION("plain MPI (no interposer): the probe agrees with itself") {
    const outcome o = mpirun(np, {}, probe(greenreduce::test::seed(1), "plain"), false);
    INFO(o.text);
    REQUIRE(o.status == 0);
    CHECK(o.text.find("FAIL") == std::string::npos);
  }
  SECTION("GREENREDUCE_CODEC=none: float sums to float tolerance") {
    run_codec(np, "none");
  }
  SECTION("GREENREDUCE_CODEC=int8: within the int8 bound") {
    run_codec(np, "int8");
  }
  SECTION("GREENREDUCE_CODEC=ternary: within the ternary bound") {
    run_codec(np, "ternary");
  }
  SECTION("int8 in 64 KiB segments: many pipelined segments per chunk") {
    run_codec(np, "int8", {"GREENREDUCE_SEGMENT_BYTES=64KiB"});
  }
  SECTION("transport::mpi: FIFO, counters, over-long message, timeout") {
    const outcome o = mpirun(np, {}, probe(greenreduce::test::seed(2), "transport"), false);
    INFO(o.text);
    REQUIRE(o.status == 0);
    CHECK(o.text.find("FAIL") == std::string::npos);
  }
}

}  // namespace

TEST_CASE("MPI_Allreduce interposer, 2 ranks", "[dropin][np2]") {
  all_codecs(2);
}
TEST_CASE("MPI_Allreduce interposer, 3 ranks", "[dropin][np3]") {
  all_codecs(3);
}
TEST_CASE("MPI_Allreduce interposer, 4 ranks", "[dropin][np4]") {
  all_codecs(4);
}

TEST_CASE("error feedback state is bounded by GREENREDUCE_EF_ENTRIES", "[dropin][np3]") {
  const outcome o = mpirun(3,
                           {"GREENREDUCE_CODEC=int8", "GREENREDUCE_REPORT=1",
                            "GREENREDUCE_ERROR_FEEDBACK=1", "GREENREDUCE_EF_ENTRIES=2"},
                           probe(greenreduce::test::seed(3), "preload"));
  INFO(o.text);
  REQUIRE(o.status == 0);
  CHECK(o.text.find("FAIL") == std::string::npos);
  // The probe ends on a freed sub-communicator, whose entries went with it.
  CHECK(field(o.text, "error_feedback=on", "entries") <= 2);
  CHECK(field(o.text, "error_feedback=on", "cap") == 2);
  CHECK(field(o.text, "error_feedback=on", "evicted") > 0);
}

TEST_CASE("bad settings stop the job at MPI_Init, naming the variable", "[dropin][np2]") {
  SECTION("unknown codec") {
    const outcome o = mpirun(2, {"GREENREDUCE_CODEC=int9"}, probe(1, "preload"));
    INFO(o.text);
    CHECK(o.status != 0);
    CHECK(o.text.find("GREENREDUCE_CODEC=\"int9\" is invalid") != std::string::npos);
    CHECK(o.text.find("unknown codec \"int9\"") != std::string::npos);
    CHECK(o.text.find("probe:") == std::string::npos);  // no call ran
  }
  SECTION("malformed threshold") {
    const outcome o =
        mpirun(2, {"GREENREDUCE_CODEC=int8", "GREENREDUCE_MIN_BYTES=lots"}, probe(1, "preload"));
    INFO(o.text);
    CHECK(o.status != 0);
    CHECK(o.text.find("GREENREDUCE_MIN_BYTES=\"lots\" is invalid") != std::string::npos);
  }
  SECTION("ranks that disagree on the codec") {
    const std::string p = probe(1, "preload");
    const outcome o = mpirun(
        1, {}, "env GREENREDUCE_CODEC=int8 " + p + " : -np 1 env GREENREDUCE_CODEC=none " + p);
    INFO(o.text);
    CHECK(o.status != 0);
    CHECK(o.text.find("ranks disagree on the greenreduce settings") != std::string::npos);
  }
}
