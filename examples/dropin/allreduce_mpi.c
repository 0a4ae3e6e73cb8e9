/* allreduce_mpi.c — an ordinary MPI program that knows nothing of greenreduce.
 *
 * Each rank fills COUNT floats, calls MPI_Allreduce(MPI_SUM) REPEATS times and
 * rank 0 prints the median, min and max time per call and the largest error
 * against the exact sum. Run it as it is, then with the interposer preloaded:
 *
 *   mpirun -np 4 ./allreduce_mpi 16777216 5
 *   mpirun -np 4 -x LD_PRELOAD=$PWD/libgreenreduce_mpi.so -x GREENREDUCE_CODEC=int8 \
 *          -x GREENREDUCE_REPORT=1 ./allreduce_mpi 16777216 5
 *
 * With a third argument TOL it exits with status 1 when the largest error
 * exceeds TOL (the example's test uses that). Built only when MPI is found.
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

/* Rank r's element i: in [-0.5, 0.5), a pure function of (r, i), so every
 * rank can compute the exact sum without talking to the others. */
static float input(int r, long i) {
  return (float)((i * 7919 + r * 104729) % 1000) / 1000.0f - 0.5f;
}

static int by_value(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const long count = argc > 1 ? atol(argv[1]) : 1L << 20;
  const int repeats = argc > 2 ? atoi(argv[2]) : 5;
  const double tol = argc > 3 ? atof(argv[3]) : -1;
  if (count < 0 || count > 0x7fffffffL || repeats < 1) {
    if (rank == 0) fprintf(stderr, "usage: allreduce_mpi [COUNT [REPEATS [TOL]]]\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }

  float* x = malloc((size_t)count * sizeof(float) + 1);
  float* y = malloc((size_t)count * sizeof(float) + 1);
  double* t = malloc((size_t)repeats * sizeof(double));
  for (long i = 0; i < count; ++i) x[i] = input(rank, i);

  for (int k = 0; k < repeats; ++k) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    MPI_Allreduce(x, y, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double dt = MPI_Wtime() - t0, slowest = 0;
    MPI_Allreduce(&dt, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    t[k] = slowest; /* a collective takes as long as its slowest rank */
  }

  double err = 0;
  for (long i = 0; i < count; ++i) {
    double exact = 0;
    for (int r = 0; r < size; ++r) exact += input(r, i);
    const double e = fabs((double)y[i] - exact);
    if (!(e <= err)) err = e; /* a NaN sticks */
  }
  double worst = 0;
  MPI_Allreduce(&err, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);

  qsort(t, (size_t)repeats, sizeof(double), by_value);
  if (rank == 0)
    printf("allreduce_mpi: %d ranks, %ld floats (%.1f MB), %d calls: median %.4f s, min %.4f s, "
           "max %.4f s; max |error| %.3g\n",
           size, count, (double)count * 4 / 1e6, repeats, t[repeats / 2], t[0], t[repeats - 1],
           worst);
  free(t);
  free(y);
  free(x);
  MPI_Finalize();
  return tol >= 0 && !(worst <= tol) ? 1 : 0;
}
