/* passkey.h — seeded passkey-retrieval prompts (asymkv eval --passkey), in the format the
 * bundled reference model was trained and evaluated with (models/asymkv-ref/README.md):
 *   <bos> F1 "\nThe pass key is K. Remember it. K is the pass key." F2
 *         "\nWhat is the pass key? The pass key is"
 * K is five random digits; F1 F2 are consecutive pieces of a filler text (cut before line
 * breaks and after . ! ? ; : , that precede a space), split at the piece boundary nearest to
 * depth x filler length. Built at the token level so the prompt has at most length - 8 tokens
 * (8 tokens are generated). The model must answer with the digits of K. */
#ifndef ASYMKV_PASSKEY_H
#define ASYMKV_PASSKEY_H

#include <stdint.h>

#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PASSKEY_GEN_TOKENS 8

typedef struct passkey_gen passkey_gen;

/* Tokenizes the filler piece by piece. Newline, space and the ten digits must be single
 * tokens of the tokenizer (AKV_EINPUT otherwise, naming the problem). */
akv_status passkey_init(passkey_gen **out, const tokenizer_t *tok, const char *filler,
                        akv_err *err);
void passkey_free(passkey_gen *g); /* NULL-safe */

/* One prompt of at most length - PASSKEY_GEN_TOKENS tokens with the key at `depth` (0 = start
 * of the filler, 1 = end). rng: splitmix64 state, advanced. *ids is malloc'd; key gets the
 * five digits and a NUL. */
akv_status passkey_build(const passkey_gen *g, uint64_t *rng, int length, double depth,
                         int32_t **ids, int *n, char key[6], akv_err *err);

/* 1 when the first run of digits in text equals key. */
int passkey_check(const char *text, const char *key);

#ifdef __cplusplus
}
#endif
#endif
