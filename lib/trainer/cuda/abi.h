/* The C interface between libmlops and the separately loaded CUDA module (libmlops_cuda.so).
 *
 * libmlops never links CUDA: it dlopen()s the module at run time and looks up the functions below, so
 * the library and the Python extension load on machines without a GPU, a driver or CUDA libraries.
 * Plain C types only; the module is built by nvcc and may use another C++ runtime.
 *
 * One call of mlops_cuda_train trains a group of adapters that share the feature width d, the hidden
 * width h and the class count k; they may differ in everything else (rows, epochs, batch size, learning
 * rate, optimiser). Data layout as everywhere in mlops: X row-major rows×d float32, y int32 indices.
 * Parameter layout per adapter (P floats): h == 0: W[d,k], b[k]; h > 0: W1[d,h], b1[h], W2[h,k], b2[k].
 */
#ifndef MLOPS_TRAINER_CUDA_ABI_H
#define MLOPS_TRAINER_CUDA_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MLOPS_CUDA_ABI_VERSION 3

/* Return codes of mlops_cuda_train. */
#define MLOPS_CUDA_OK 0
#define MLOPS_CUDA_ERR_DEVICE 1    /* a CUDA failure; the message says which call */
#define MLOPS_CUDA_ERR_OOM 2       /* device memory exhausted; the message gives the sizes */
#define MLOPS_CUDA_ERR_CANCELLED 3 /* a callback asked to stop */
#define MLOPS_CUDA_ERR_INVALID 4   /* a malformed job (a bug in the caller) */
#define MLOPS_CUDA_ERR_HOST_MEMORY 5 /* host memory (pinned or not) exhausted; the message says for what */

/* Flags returned by the on_epoch callback. */
#define MLOPS_CUDA_KEEP 1   /* these weights are the best so far: keep a copy and return it at the end */
#define MLOPS_CUDA_STOP 2   /* this adapter trains no further */
#define MLOPS_CUDA_CANCEL 4 /* stop the whole job */

#define MLOPS_CUDA_OPT_ADAM 0
#define MLOPS_CUDA_OPT_SGD 1

typedef struct MlopsCudaAdapter {
  const float* X;            /* host, rows×d */
  const int32_t* y;          /* host, rows */
  int64_t rows;
  const uint32_t* val_rows;  /* host, n_val dataset row indices held out for validation */
  int64_t n_val;
  int64_t n_train;           /* rows visited per epoch (orders come from the epoch_order callback) */
  int32_t batch_size;
  int32_t epochs;
  int32_t optimizer;         /* MLOPS_CUDA_OPT_* */
  float learning_rate;
  float l2;
  float momentum;
  const float* class_weights; /* host, k */
  const float* init_params;   /* host, P */
  float* out_params;          /* host, P: the final weights (the last KEEP copy when any) */
} MlopsCudaAdapter;

typedef struct MlopsCudaCallbacks {
  void* ctx;
  /* Writes the n_train dataset rows that epoch `epoch` (1-based) of adapter `adapter` visits, in order.
   * May be called from several host threads at once (for different adapters). */
  void (*epoch_order)(void* ctx, int32_t adapter, int32_t epoch, uint32_t* out);
  /* After each epoch of an adapter: the mean weighted training cross-entropy of the epoch's rows
   * (train_ce_sum / n_train is computed by the caller), the squared norm of its weights (biases
   * excluded), the validation cross-entropy sum and correct count. Returns MLOPS_CUDA_* flags. */
  int32_t (*on_epoch)(void* ctx, int32_t adapter, int32_t epoch, double train_ce_sum, double weight_norm2,
                      double val_ce_sum, int64_t val_correct);
  /* Mini-batch steps finished since the last call (summed over adapters). Nonzero return cancels. */
  int32_t (*on_steps)(void* ctx, int64_t steps);
  /* Optional: something the caller should know that is not an error (a step that could not be captured
   * as a CUDA graph, a group split into sub-groups). Called on the thread that called mlops_cuda_train. */
  void (*on_notice)(void* ctx, const char* message);
} MlopsCudaCallbacks;

typedef struct MlopsCudaJob {
  int32_t device;            /* CUDA device ordinal */
  int32_t deterministic;     /* must be nonzero: every sum of the module has a fixed order (no atomics) */
  int64_t d, h, k;
  int32_t n_adapters;
  const MlopsCudaAdapter* adapters;
  MlopsCudaCallbacks callbacks;
  uint64_t memory_limit;     /* bytes of device memory the job may use; 0 = what is free now */
} MlopsCudaJob;

/* sizeof and offsetof of every field of the job structs, in a fixed order: the module reports the
 * layout it was compiled with, and the loader refuses a module whose layout differs from its own (a
 * different compiler, packing or a stale build with the same version number). Returns the count; writes
 * at most n values. */
static inline size_t mlops_cuda_abi_layout_of(uint64_t* out, size_t n) {
  const uint64_t v[] = {
      sizeof(MlopsCudaAdapter), offsetof(MlopsCudaAdapter, X), offsetof(MlopsCudaAdapter, y),
      offsetof(MlopsCudaAdapter, rows), offsetof(MlopsCudaAdapter, val_rows), offsetof(MlopsCudaAdapter, n_val),
      offsetof(MlopsCudaAdapter, n_train), offsetof(MlopsCudaAdapter, batch_size), offsetof(MlopsCudaAdapter, epochs),
      offsetof(MlopsCudaAdapter, optimizer), offsetof(MlopsCudaAdapter, learning_rate), offsetof(MlopsCudaAdapter, l2),
      offsetof(MlopsCudaAdapter, momentum), offsetof(MlopsCudaAdapter, class_weights),
      offsetof(MlopsCudaAdapter, init_params), offsetof(MlopsCudaAdapter, out_params),
      sizeof(MlopsCudaCallbacks), offsetof(MlopsCudaCallbacks, ctx), offsetof(MlopsCudaCallbacks, epoch_order),
      offsetof(MlopsCudaCallbacks, on_epoch), offsetof(MlopsCudaCallbacks, on_steps),
      offsetof(MlopsCudaCallbacks, on_notice),
      sizeof(MlopsCudaJob), offsetof(MlopsCudaJob, device), offsetof(MlopsCudaJob, deterministic),
      offsetof(MlopsCudaJob, d), offsetof(MlopsCudaJob, h), offsetof(MlopsCudaJob, k), offsetof(MlopsCudaJob, n_adapters),
      offsetof(MlopsCudaJob, adapters), offsetof(MlopsCudaJob, callbacks), offsetof(MlopsCudaJob, memory_limit)};
  const size_t count = sizeof v / sizeof v[0];
  for (size_t i = 0; i < count && i < n; ++i) out[i] = v[i];
  return count;
}

typedef int32_t (*mlops_cuda_abi_version_fn)(void);
typedef size_t (*mlops_cuda_abi_layout_fn)(uint64_t* out, size_t n);
typedef int32_t (*mlops_cuda_device_count_fn)(char* err, size_t err_size);
typedef int32_t (*mlops_cuda_device_name_fn)(int32_t device, char* out, size_t out_size);
typedef int32_t (*mlops_cuda_train_fn)(const MlopsCudaJob* job, char* err, size_t err_size);

/* MLOPS_CUDA_ABI_VERSION of the module. */
int32_t mlops_cuda_abi_version(void);
/* mlops_cuda_abi_layout_of as the module was compiled. */
size_t mlops_cuda_abi_layout(uint64_t* out, size_t n);
/* Number of usable CUDA devices, or -1 with the reason in err (no driver, driver too old, ...). */
int32_t mlops_cuda_device_count(char* err, size_t err_size);
/* Device name, e.g. "NVIDIA H100 80GB HBM3"; 0 on success, 2 when its compute capability is below 8.0,
 * 1 with the reason in out when the device cannot be queried. */
int32_t mlops_cuda_device_name(int32_t device, char* out, size_t out_size);
/* Trains one group; MLOPS_CUDA_OK or an error code with the message in err. */
int32_t mlops_cuda_train(const MlopsCudaJob* job, char* err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif
