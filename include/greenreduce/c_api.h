/* greenreduce/c_api.h — a C interface shaped like ncclAllReduce.
 *
 *   gr_comm_t* comm = NULL;
 *   if (gr_comm_init_from_env(&comm) != GR_SUCCESS)          // torchrun/mpirun/srun env
 *     fprintf(stderr, "%s\n", gr_last_error_message(NULL));
 *   gr_result_t rc = gr_allreduce(grad, grad, n, GR_FLOAT32, GR_SUM, comm, "int8");
 *   if (rc != GR_SUCCESS)
 *     fprintf(stderr, "%s: %s\n", gr_error_string(rc), gr_last_error_message(comm));
 *   gr_report_t rep;
 *   gr_last_report(comm, &rep);                              // bytes, seconds, joules
 *   gr_comm_destroy(comm);
 *
 * Pure C (C99), implemented in libgreenreduce_c.so (src/c_api.cpp) on top of
 * the header-only library: a gr_comm_t is a transport::tcp endpoint met
 * through the launcher's environment (docs/transport.md, "Rendezvous") plus
 * the compressed ring allreduce (docs/collectives.md). No C++ exception ever
 * crosses this interface: every failure is a gr_result_t, and the text of
 * the last failure is kept per communicator (gr_last_error_message).
 *
 * gr_allreduce takes ncclAllReduce's arguments in ncclAllReduce's order, with
 * the codec spec (codec/registry.hpp: "none", "int8", "ternary:bucket=512",
 * "topk:0.01", ...) where NCCL takes its stream; NULL means "none".
 * GR_FLOAT32 works with every codec. GR_FLOAT64 is reduced in float32 through
 * a lossy codec and converted back; with "none" it is
 * GR_ERROR_UNSUPPORTED_DATATYPE (rounding doubles to float32 would be a loss
 * the caller did not ask for). Ops: GR_SUM and GR_AVG; GR_PROD, GR_MAX and
 * GR_MIN are GR_ERROR_UNSUPPORTED_OP. sendbuf == recvbuf is in place. On
 * every error the output holds either the full result or, as the message
 * says, the input left unchanged (recvbuf is then untouched when the call is
 * not in place).
 *
 * Errors that break a communicator (GR_ERROR_TIMEOUT, GR_ERROR_PEER,
 * GR_ERROR_DECODE, GR_ERROR_INTERNAL) make every later call on it fail with
 * the same code; destroy it and build a new one. GR_ERROR_INVALID_ARGUMENT,
 * GR_ERROR_UNSUPPORTED_*, GR_ERROR_CONFIG, GR_ERROR_MISMATCH and
 * GR_ERROR_NUMERIC leave it usable: with a lossy codec the ranks first agree
 * that every input is finite, and all of them return GR_ERROR_NUMERIC when
 * one is not.
 *
 * A communicator is used by one thread at a time.
 */
#ifndef GREENREDUCE_C_API_H
#define GREENREDUCE_C_API_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define GR_API __attribute__((visibility("default")))
#else
#define GR_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gr_result_t {
  GR_SUCCESS = 0,
  GR_ERROR_INVALID_ARGUMENT = 1,     /* a null pointer, a negative or absurd size */
  GR_ERROR_UNSUPPORTED_DATATYPE = 2, /* not GR_FLOAT32, or GR_FLOAT64 with codec none */
  GR_ERROR_UNSUPPORTED_OP = 3,       /* not GR_SUM or GR_AVG */
  GR_ERROR_CONFIG = 4,               /* bad codec spec or environment variable */
  GR_ERROR_MISMATCH = 5,             /* ranks disagree on count, codec or op */
  GR_ERROR_TIMEOUT = 6,              /* a peer did not answer within GREENREDUCE_TIMEOUT_MS */
  GR_ERROR_PEER = 7,                 /* a peer closed, died or broke the protocol */
  GR_ERROR_NUMERIC = 8,              /* NaN or Inf where a lossy codec needs finite values */
  GR_ERROR_DECODE = 9,               /* corrupt bytes on the wire */
  GR_ERROR_INTERNAL = 10             /* out of memory or a bug: please report */
} gr_result_t;

typedef enum gr_datatype_t {
  GR_INT8 = 0,
  GR_UINT8 = 1,
  GR_INT32 = 2,
  GR_UINT32 = 3,
  GR_INT64 = 4,
  GR_UINT64 = 5,
  GR_FLOAT16 = 6,
  GR_FLOAT32 = 7,
  GR_FLOAT64 = 8,
  GR_BFLOAT16 = 9
} gr_datatype_t;

typedef enum gr_op_t { GR_SUM = 0, GR_PROD = 1, GR_MAX = 2, GR_MIN = 3, GR_AVG = 4 } gr_op_t;

/* What the last successful gr_allreduce on a communicator did on this rank. */
typedef struct gr_report_t {
  uint64_t bytes_sent;     /* wire bytes this rank sent, transport headers included */
  uint64_t bytes_received; /* wire bytes this rank received */
  uint64_t raw_bytes;      /* what an fp32 ring would have sent from this rank */
  double seconds;          /* wall time of the call */
  /* Energy ESTIMATE of the call on this rank (the model of energy/model.hpp
   * with GREENREDUCE_ENERGY_PROFILE or the default profile), in joules. */
  double network_j;
  double memory_j;
  double compute_j;
  double static_j;
  double total_j;
} gr_report_t;

typedef struct gr_comm gr_comm_t;

/* Joins the job the launcher's environment describes (RANK/WORLD_SIZE/
 * MASTER_ADDR/MASTER_PORT, OMPI_COMM_WORLD_*, PMI_*, SLURM_* with
 * GREENREDUCE_MASTER_ADDR/PORT). Blocks until every rank joined. On failure
 * *comm is NULL and gr_last_error_message(NULL) says why. */
GR_API gr_result_t gr_comm_init_from_env(gr_comm_t** comm);

/* Frees the communicator; NULL is a no-op. */
GR_API gr_result_t gr_comm_destroy(gr_comm_t* comm);

GR_API gr_result_t gr_comm_rank(const gr_comm_t* comm, int* rank);
GR_API gr_result_t gr_comm_size(const gr_comm_t* comm, int* size);

/* Reduces `count` elements of every rank's sendbuf into every rank's recvbuf. */
GR_API gr_result_t gr_allreduce(const void* sendbuf, void* recvbuf, size_t count,
                                gr_datatype_t datatype, gr_op_t op, gr_comm_t* comm,
                                const char* codec_name);

/* The report of the last successful gr_allreduce (all zero before the first). */
GR_API gr_result_t gr_last_report(const gr_comm_t* comm, gr_report_t* report);

/* A fixed description of a result code ("GR_ERROR_PEER: a peer closed, ..."). */
GR_API const char* gr_error_string(gr_result_t code);

/* The detail of the last failure on `comm` ("" if none); with NULL, the last
 * failure of this thread that had no communicator to keep it (init, or a call
 * given a NULL communicator). Valid until the next call on the same. */
GR_API const char* gr_last_error_message(const gr_comm_t* comm);

#ifdef __cplusplus
}
#endif

#endif /* GREENREDUCE_C_API_H */
