// examples/train/launch.hpp — one process per rank, as greenreduce-bench does it.
//
// Under a launcher (torchrun, mpirun, srun: transport/rendezvous.hpp) this
// process is one rank. Otherwise spawn() starts `np` copies of this program,
// torchrun style: each gets RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a
// MASTER_PORT from transport::spare_loopback_port(), and the parent returns
// the worst exit status. With a `netns_prefix` (the demo's --link) rank r is
// started as `ip netns exec <prefix>r ...` with MASTER_ADDR=10.77.0.1: the
// namespaces, addresses and shaped links of bench/netns.sh.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/local_port.hpp"

namespace greenreduce::examples {

inline bool under_launcher() {
  for (const char* v : {"RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (const char* s = std::getenv(v); s && *s) return true;
  return false;
}

/// Starts np ranks of this program with `argv` and waits for all of them.
/// Ranks [0, servers) are parameter servers: with a netns prefix they run in
/// worker 0's namespace (host), rank r >= servers in namespace r - servers.
inline int spawn(char** argv, int np, int servers = 0, const std::string& netns_prefix = {}) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const auto host_of = [&](int r) { return std::max(0, r - servers); };
  if (!netns_prefix.empty())
    for (int r = 0; r < np; ++r)
      if (!std::filesystem::exists("/run/netns/" + netns_prefix + std::to_string(host_of(r))))
        throw config_error(greenreduce::detail::str(
            "--link: network namespace ", netns_prefix, host_of(r),
            " does not exist; create the emulated hosts first with: sudo bench/netns.sh up ",
            np - servers, " RATE"));
  const int master_port = netns_prefix.empty() ? transport::spare_loopback_port() : 29500;
  const std::string port = std::to_string(master_port);
  std::vector<pid_t> kids;
  for (int r = 0; r < np; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) throw config_error("fork failed while spawning ranks");
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(np).c_str(), 1);
      ::setenv("MASTER_ADDR", netns_prefix.empty() ? "127.0.0.1" : "10.77.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      if (netns_prefix.empty()) {
        ::execv(self.c_str(), argv);
      } else {
        std::vector<std::string> args = {"ip", "netns", "exec",
                                         netns_prefix + std::to_string(host_of(r)), self};
        for (char** a = argv + 1; *a; ++a) args.emplace_back(*a);
        std::vector<char*> cargs;
        for (auto& s : args) cargs.push_back(s.data());
        cargs.push_back(nullptr);
        ::execvp("ip", cargs.data());
      }
      std::perror("train_demo: exec");
      ::_exit(127);
    }
    kids.push_back(pid);
  }
  int worst = 0;
  for (pid_t pid : kids) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
    }
    const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    worst = std::max(worst, rc);
  }
  return worst;
}

}  // namespace greenreduce::examples
