/* stage_cuda.h — the CUDA entry of the stage backend table (runtime/stage.c dispatches here for
 * STAGE_CUDA). Internal to runtime/; the caller (stage.c) has already checked the batch layout,
 * token ids and slots, and computed each token's position. Without CUDA in the build every
 * function exists, scu_devices() is 0 and scu_init() fails with a message. */
#ifndef ASYMKV_STAGE_CUDA_H
#define ASYMKV_STAGE_CUDA_H

#include "stage.h"

typedef struct stage_cuda stage_cuda;

int scu_devices(void);
akv_status scu_init(stage_cuda **out, const model_config *c, const stage_weights *w,
                    const stage_opts *o, akv_err *err);
void scu_free(stage_cuda *s); /* NULL-safe */
void *scu_stream(stage_cuda *s);
int scu_has_embed(const stage_cuda *s);
int scu_has_head(const stage_cuda *s);

akv_status scu_act_alloc(stage_cuda *s, size_t n, float **out, akv_err *err);
void scu_act_free(stage_cuda *s, float *x);
/* n floats; to_device: host src -> device dst, else device src -> host dst. Synchronous. */
akv_status scu_copy(stage_cuda *s, float *dst, const float *src, size_t n, int to_device,
                    akv_err *err);

akv_status scu_embed(stage_cuda *s, const int32_t *ids, int n, float *x, akv_err *err);
akv_status scu_forward(stage_cuda *s, int n, const int32_t *seq, const int32_t *pos, float *x,
                       akv_err *err);
akv_status scu_head(stage_cuda *s, int n, const float *x, float *logits, akv_err *err);
akv_status scu_sample(stage_cuda *s, int n_rows, const int32_t *rows, const int32_t *slots,
                      const sampler_params *const *sp, const uint64_t *rng, const float *x,
                      int32_t *ids_out, akv_err *err);
akv_status scu_hist_set(stage_cuda *s, int slot, const int32_t *ids, int n, akv_err *err);
void scu_seq_reset(stage_cuda *s, int seq);
akv_status scu_sync(stage_cuda *s, akv_err *err);
akv_status scu_bandwidth(stage_cuda *s, double *bytes_per_s, akv_err *err);
size_t scu_kv_layer_bytes(const stage_cuda *s, int layer);
size_t scu_kv_bytes(const stage_cuda *s);
size_t scu_weight_bytes(const stage_cuda *s);
size_t scu_device_bytes(const stage_cuda *s);
int scu_kv_dump(stage_cuda *s, int layer, int seq, uint16_t *k, uint16_t *v, akv_err *err);

#endif
