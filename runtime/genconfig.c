/* genconfig.c — reads eos_token_id from generation_config.json; see genconfig.h. */
#include "genconfig.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "io.h"

akv_status genconfig_apply(model_config *c, const char *dir, akv_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return AKV_OK;
    fclose(f);
    char *text;
    akv_status s = io_read_text(path, &text, NULL, err);
    if (s) return s;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return akv_fail(err, AKV_EINPUT, "%s is not a JSON object (fix or delete it)", path);
    }
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    if (cJSON_IsNumber(eos)) {
        c->n_eos = 1;
        c->eos_ids[0] = eos->valueint;
    } else if (cJSON_IsArray(eos)) {
        int n = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, eos) {
            if (!cJSON_IsNumber(it) || n == CONFIG_MAX_EOS) {
                cJSON_Delete(root);
                return akv_fail(err, AKV_EINPUT, "%s: eos_token_id must be at most %d integers",
                                path, CONFIG_MAX_EOS);
            }
            c->eos_ids[n++] = it->valueint;
        }
        c->n_eos = n;
    }
    cJSON_Delete(root);
    return AKV_OK;
}
