/* shapes.h — built-in model shapes (llama-2-7b, llama-3-70b, ...): the config.json of well-known
 * checkpoints as model_config presets, so `asymkv plan --shape` and `asymkv bench --synthetic`
 * can size or build a model without its folder. */
#ifndef ASYMKV_SHAPES_H
#define ASYMKV_SHAPES_H

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills *c with the preset called name. An unknown name is AKV_EINPUT with a message that
 * lists every valid name. The llama-3-* presets carry the Llama 3.1 configuration (same
 * tensor shapes, 131072 positions with llama3 rope scaling). */
akv_status shape_lookup(const char *name, model_config *c, akv_err *err);

/* The valid names, comma-separated (for --help texts and messages). */
const char *shape_names(void);

#ifdef __cplusplus
}
#endif
#endif
