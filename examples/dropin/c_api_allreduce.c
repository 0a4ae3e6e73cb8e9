/* c_api_allreduce.c — the C API (greenreduce/c_api.h) from a C program.
 *
 * Under a launcher (torchrun, mpirun, srun: see docs/transport.md) every
 * process is one rank:
 *
 *   mpirun -np 4 -x GREENREDUCE_MASTER_ADDR=127.0.0.1 -x GREENREDUCE_MASTER_PORT=29500 \
 *          ./c_api_allreduce int8
 *
 * With "--spawn N" it starts N local ranks itself, the way torchrun would:
 * RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in each child's environment.
 * Each rank reduces 1,000,003 floats with the codec named on the command line
 * (default int8), checks the result against the exact sum, and prints the
 * report: wire bytes against fp32 and the energy estimate by part.
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "greenreduce/c_api.h"

static float input(int r, size_t i) {
  return (float)((i * 7919 + (size_t)r * 104729) % 1000) / 1000.0f - 0.5f;
}

static int run(const char* codec) {
  gr_comm_t* comm = NULL;
  gr_result_t rc = gr_comm_init_from_env(&comm);
  if (rc != GR_SUCCESS) {
    fprintf(stderr, "%s\n  %s\n", gr_error_string(rc), gr_last_error_message(NULL));
    return 1;
  }
  int rank = 0, size = 1;
  gr_comm_rank(comm, &rank);
  gr_comm_size(comm, &size);

  const size_t n = 1000003;
  float* x = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; ++i) x[i] = input(rank, i);
  /* In place, like ncclAllReduce(x, x, n, ncclFloat, ncclSum, comm, stream). */
  rc = gr_allreduce(x, x, n, GR_FLOAT32, GR_SUM, comm, codec);
  if (rc != GR_SUCCESS) {
    fprintf(stderr, "rank %d: %s\n  %s\n", rank, gr_error_string(rc), gr_last_error_message(comm));
    gr_comm_destroy(comm);
    free(x);
    return 1;
  }
  double err = 0;
  for (size_t i = 0; i < n; ++i) {
    double exact = 0;
    for (int r = 0; r < size; ++r) exact += input(r, i);
    if (!(fabs(x[i] - exact) <= err)) err = fabs(x[i] - exact);
  }
  gr_report_t rep;
  gr_last_report(comm, &rep);
  printf("rank %d of %d, codec %s: max |error| %.3g; sent %llu bytes (fp32 ring: %llu), "
         "%.4f s; estimated energy %.3g J (network %.3g, memory %.3g, compute %.3g, static %.3g)\n",
         rank, size, codec, err, (unsigned long long)rep.bytes_sent,
         (unsigned long long)rep.raw_bytes, rep.seconds, rep.total_j, rep.network_j, rep.memory_j,
         rep.compute_j, rep.static_j);
  gr_comm_destroy(comm);
  free(x);
  /* int8: each of the `size` encodes on an element's way errs by at most one
   * step of the bucket scale, |sum| / 127 <= size / 2 / 127. */
  return err <= size * (size / 2.0 * 1.1) / 127 + 1e-4 ? 0 : 1;
}

/* A loopback TCP port nothing holds, drawn below the kernel's ephemeral range
 * (which the ranks' own sockets use) so that no other socket takes it before
 * rank 0 listens on it. */
static int free_port(void) {
  int lo = 32768, hi = 0, tries;
  FILE* f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  if (f) {
    if (fscanf(f, "%d %d", &lo, &hi) != 2 || lo <= 12000) lo = 32768;
    fclose(f);
  }
  srand((unsigned)getpid() ^ (unsigned)time(NULL));
  for (tries = 0; tries < 256; ++tries) {
    const int port = 10000 + rand() % (lo - 10000);
    const int one = 1;
    struct sockaddr_in a;
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok;
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)port);
    ok = bind(fd, (struct sockaddr*)&a, sizeof a) == 0;
    close(fd);
    if (ok) return port;
  }
  return -1;
}

int main(int argc, char** argv) {
  const char* codec = "int8";
  int spawn = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--spawn") == 0 && i + 1 < argc)
      spawn = atoi(argv[++i]);
    else
      codec = argv[i];
  }
  if (spawn <= 0) return run(codec);

  char port[16], world[16], rank[16];
  snprintf(port, sizeof port, "%d", free_port());
  snprintf(world, sizeof world, "%d", spawn);
  for (int r = 0; r < spawn; ++r) {
    if (fork() == 0) {
      snprintf(rank, sizeof rank, "%d", r);
      setenv("RANK", rank, 1);
      setenv("WORLD_SIZE", world, 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", port, 1);
      _exit(run(codec));
    }
  }
  int failed = 0, status = 0;
  for (int r = 0; r < spawn; ++r)
    if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  return failed;
}
