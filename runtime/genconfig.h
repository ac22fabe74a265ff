/* genconfig.h — the parts of generation_config.json that decide when generation stops. */
#ifndef ASYMKV_GENCONFIG_H
#define ASYMKV_GENCONFIG_H

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Overrides c->eos_ids with DIR/generation_config.json's eos_token_id when that file exists
 * and names one (int or list). A missing file is fine; a malformed one is AKV_EINPUT. */
akv_status genconfig_apply(model_config *c, const char *dir, akv_err *err);

#ifdef __cplusplus
}
#endif
#endif
