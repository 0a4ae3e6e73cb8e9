// tests/transport/tcp_harness.hpp — ranks as real processes for transport tests.
//
//   rank_group g(3, [&](int rank, rank_group::reporter& report) { ... });
//   auto lines = g.collect(std::chrono::seconds(20));  // one line per rank
//
// Each rank is a fork() of the test process (taken before any thread of the
// test exists, so fork is safe) that runs the body, writes one line per
// report() to a pipe and leaves with _exit(). A body that returns without
// reporting reports "ok"; an exception reports its what(). Fault tests report
// from the body and then linger (transport alive) until the group kills them,
// so a failing rank's closing sockets cannot change what its peers see.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "greenreduce/transport/local_port.hpp"

namespace greenreduce::test {

using mono = std::chrono::steady_clock;

/// A TCP port on 127.0.0.1 that nothing holds and the kernel will not hand
/// out to another socket (transport/local_port.hpp).
inline std::uint16_t free_port() {
  return transport::spare_loopback_port();
}

/// The environment each launcher would give rank `rank` of `size`.
inline std::map<std::string, std::string> launcher_env(const std::string& launcher, int rank,
                                                       int size, std::uint16_t port) {
  const auto r = std::to_string(rank), n = std::to_string(size), p = std::to_string(port);
  if (launcher == "torchrun")
    return {{"RANK", r}, {"WORLD_SIZE", n}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", p}};
  if (launcher == "openmpi")
    return {{"OMPI_COMM_WORLD_RANK", r},
            {"OMPI_COMM_WORLD_SIZE", n},
            {"GREENREDUCE_MASTER_ADDR", "127.0.0.1"},
            {"GREENREDUCE_MASTER_PORT", p}};
  if (launcher == "pmi")
    return {{"PMI_RANK", r}, {"PMI_SIZE", n}, {"MASTER_ADDR", "localhost"}, {"MASTER_PORT", p}};
  // srun: also pin the interface by name
  return {{"SLURM_PROCID", r},
          {"SLURM_NTASKS", n},
          {"GREENREDUCE_MASTER_ADDR", "127.0.0.1"},
          {"GREENREDUCE_MASTER_PORT", p},
          {"GREENREDUCE_SOCKET_IFNAME", "lo"}};
}

/// Throws std::runtime_error(msg) unless `ok` (children do not use Catch).
inline void expect(bool ok, const std::string& msg) {
  if (!ok) throw std::runtime_error(msg);
}

class rank_group {
 public:
  class reporter {
   public:
    explicit reporter(int fd) : fd_(fd) {}
    /// One line to the parent, stamped with the monotonic clock.
    void operator()(std::string text) {
      for (char& c : text)
        if (c == '\n') c = ' ';
      const auto ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(mono::now().time_since_epoch())
              .count();
      const std::string line = std::to_string(ns) + " " + text + "\n";
      std::size_t off = 0;
      while (off < line.size()) {
        const auto n = ::write(fd_, line.data() + off, line.size() - off);
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
      }
      reported = true;
    }
    bool reported = false;

   private:
    int fd_;
  };

  struct line {
    std::string text;
    mono::time_point at;
  };

  rank_group(int n, const std::function<void(int, reporter&)>& body) {
    for (int r = 0; r < n; ++r) {
      int fds[2];
      if (::pipe(fds) != 0) throw std::runtime_error("pipe");
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::close(fds[0]);
        for (auto fd : fds_) ::close(fd);
        reporter report(fds[1]);
        int code = 0;
        try {
          body(r, report);
          if (!report.reported) report("ok");
        } catch (const std::exception& e) {
          report(e.what());
          code = 1;
        }
        ::_exit(code);
      }
      ::close(fds[1]);
      pids_.push_back(pid);
      fds_.push_back(fds[0]);
      buf_.emplace_back();
    }
  }
  rank_group(const rank_group&) = delete;
  rank_group& operator=(const rank_group&) = delete;
  ~rank_group() {
    for (auto pid : pids_) {
      ::kill(pid, SIGCONT);
      ::kill(pid, SIGKILL);
    }
    for (auto pid : pids_) ::waitpid(pid, nullptr, 0);
    for (auto fd : fds_) ::close(fd);
  }

  pid_t pid(int rank) const { return pids_[static_cast<std::size_t>(rank)]; }

  /// The next line of each rank in `ranks` (all when empty); nullopt for a
  /// rank that wrote none within `limit`.
  std::vector<std::optional<line>> collect(std::chrono::milliseconds limit,
                                           std::vector<int> ranks = {}) {
    if (ranks.empty())
      for (int r = 0; r < static_cast<int>(pids_.size()); ++r) ranks.push_back(r);
    std::vector<std::optional<line>> out(pids_.size());
    const auto deadline = mono::now() + limit;
    auto missing = [&] {
      for (int r : ranks)
        if (!out[static_cast<std::size_t>(r)]) return true;
      return false;
    };
    while (true) {
      for (int r : ranks) take(r, out);
      if (!missing()) break;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - mono::now()).count();
      if (left <= 0) break;
      std::vector<pollfd> p;
      for (int r : ranks)
        if (!out[static_cast<std::size_t>(r)])
          p.push_back({fds_[static_cast<std::size_t>(r)], POLLIN, 0});
      ::poll(p.data(), p.size(), static_cast<int>(left));
      for (auto& x : p) {
        if (!(x.revents & (POLLIN | POLLHUP))) continue;
        char tmp[4096];
        const auto n = ::read(x.fd, tmp, sizeof tmp);
        for (std::size_t i = 0; i < fds_.size(); ++i)
          if (fds_[i] == x.fd && n > 0) buf_[i].append(tmp, static_cast<std::size_t>(n));
        if (n == 0)  // the child is gone: stop polling its pipe
          for (std::size_t i = 0; i < fds_.size(); ++i)
            if (fds_[i] == x.fd && !out[i]) out[i] = line{"<exited without a report>", mono::now()};
      }
    }
    return out;
  }

 private:
  void take(int r, std::vector<std::optional<line>>& out) {
    auto& b = buf_[static_cast<std::size_t>(r)];
    const auto nl = b.find('\n');
    if (nl == std::string::npos || out[static_cast<std::size_t>(r)]) return;
    const auto sp = b.find(' ');
    const auto ns = std::stoll(b.substr(0, sp));
    out[static_cast<std::size_t>(r)] =
        line{b.substr(sp + 1, nl - sp - 1), mono::time_point(std::chrono::nanoseconds(ns))};
    b.erase(0, nl + 1);
  }

  std::vector<pid_t> pids_;
  std::vector<int> fds_;
  std::vector<std::string> buf_;
};

}  // namespace greenreduce::test
