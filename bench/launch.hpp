// bench/launch.hpp — greenreduce-bench ranks as processes over TCP.
//
// Under a launcher (torchrun, mpirun, srun: transport/rendezvous.hpp) this
// process is one rank. Otherwise it spawns `np` copies of itself, torchrun
// style: each gets RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a MASTER_PORT
// from transport::spare_loopback_port(), and the parent returns the worst exit status.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "greenreduce/core/error.hpp"
#include "greenreduce/transport/local_port.hpp"
#include "greenreduce/transport/tcp.hpp"

namespace greenreduce::bench {

inline bool under_launcher() {
  for (const char* v : {"RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (const char* s = std::getenv(v); s && *s) return true;
  return false;
}

/// Runs `body(tcp&)` as one rank, or spawns np ranks of this program.
/// `isolate`: the transport isolates peer failures (the parameter server).
template <class Body>
int run_tcp(int /*argc*/, char** argv, int np, Body&& body, bool isolate = false) {
  if (under_launcher()) {
    auto opts = transport::tcp_options::from_env();
    opts.isolate_peer_failures = isolate;
    if (np > 0 && np != opts.size)
      throw config_error(
          detail::str("--np ", np, " disagrees with the launcher's world size ", opts.size));
    transport::tcp t(opts);
    body(t);
    return 0;
  }
  const int n = np > 0 ? np : 1;
  const std::string port = std::to_string(transport::spare_loopback_port());
  std::vector<pid_t> kids;
  for (int r = 0; r < n; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) throw config_error("fork failed while spawning ranks");
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(n).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      ::execv("/proc/self/exe", argv);
      std::perror("greenreduce-bench: execv /proc/self/exe");
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

}  // namespace greenreduce::bench
