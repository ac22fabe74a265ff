/* engine.h — runs a model end to end for the commands: prefill (in chunks), decode, logits of
 * every position, greedy generation. Today one process holds every layer as one stage; the
 * pipeline over MPI ranks plugs in behind this same interface. */
#ifndef ASYMKV_ENGINE_H
#define ASYMKV_ENGINE_H

#include <stdint.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct engine engine_t;

typedef struct engine_opts {
    const char *model_dir;
    int ctx;           /* positions per sequence; must be >= 1 */
    int batch;         /* resident sequence slots */
    int prefill_chunk; /* tokens per forward call during prefill */
} engine_opts;

/* Loads config.json, validates the checkpoint and loads the weights. */
akv_status engine_open(engine_t **out, const engine_opts *o, akv_err *err);
void engine_close(engine_t *e); /* NULL-safe */

const model_config *engine_config(const engine_t *e);
size_t engine_weight_bytes(const engine_t *e);
size_t engine_kv_bytes(const engine_t *e);

/* logits[T][vocab] for every position of ids (one fresh sequence, slot 0). */
akv_status engine_logits(engine_t *e, const int32_t *ids, int T, float *logits, akv_err *err);

/* Called for each generated token; return non-zero to stop. */
typedef int (*engine_token_fn)(void *user, int32_t token);

typedef struct engine_stats {
    int prompt_tokens, new_tokens;
    double prefill_s, decode_s;
} engine_stats;

/* Greedy generation after prompt[T]: at most n_new tokens into out, stopping after an EOS
 * token (which is included). *n_out gets the count. */
akv_status engine_generate(engine_t *e, const int32_t *prompt, int T, int n_new, int32_t *out,
                           int *n_out, engine_token_fn fn, void *user, engine_stats *stats,
                           akv_err *err);

#ifdef __cplusplus
}
#endif
#endif
