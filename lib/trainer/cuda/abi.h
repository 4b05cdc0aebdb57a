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

#define MLOPS_CUDA_ABI_VERSION 2

/* Return codes of mlops_cuda_train. */
#define MLOPS_CUDA_OK 0
#define MLOPS_CUDA_ERR_DEVICE 1    /* a CUDA or cuBLAS failure; the message says which call */
#define MLOPS_CUDA_ERR_OOM 2       /* device memory exhausted; the message gives the sizes */
#define MLOPS_CUDA_ERR_CANCELLED 3 /* a callback asked to stop */
#define MLOPS_CUDA_ERR_INVALID 4   /* a malformed job (a bug in the caller) */

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
  int32_t deterministic;     /* must be nonzero: the module never uses atomics in a reduction, nor lets cuBLAS */
  int64_t d, h, k;
  int32_t n_adapters;
  const MlopsCudaAdapter* adapters;
  MlopsCudaCallbacks callbacks;
  uint64_t memory_limit;     /* bytes of device memory the job may use; 0 = what is free now */
} MlopsCudaJob;

typedef int32_t (*mlops_cuda_abi_version_fn)(void);
typedef int32_t (*mlops_cuda_device_count_fn)(char* err, size_t err_size);
typedef int32_t (*mlops_cuda_device_name_fn)(int32_t device, char* out, size_t out_size);
typedef int32_t (*mlops_cuda_train_fn)(const MlopsCudaJob* job, char* err, size_t err_size);

/* MLOPS_CUDA_ABI_VERSION of the module. */
int32_t mlops_cuda_abi_version(void);
/* Number of usable CUDA devices, or -1 with the reason in err (no driver, driver too old, ...). */
int32_t mlops_cuda_device_count(char* err, size_t err_size);
/* Device name and memory, e.g. "NVIDIA H100 80GB HBM3"; 0 on success. */
int32_t mlops_cuda_device_name(int32_t device, char* out, size_t out_size);
/* Trains one group; MLOPS_CUDA_OK or an error code with the message in err. */
int32_t mlops_cuda_train(const MlopsCudaJob* job, char* err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif
