/* cmd_batch.c — `asymkv batch`: JSONL prompts in, JSONL completions out (the Slurm batch-job
 * shape). Every rank parses the input the same way; the valid lines run together through
 * engine_generate_batch (--batch sequences resident, the rest queued); a malformed line gets
 * an error record and the others still complete. Rank 0 writes the output atomically. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "io.h"
#include "sampling.h"
#include "textio.h"

typedef struct req {
    cJSON *id;              /* copied into the output */
    char *error;            /* malformed line: the message */
    int32_t *ids;
    int T, max_tokens;
    sampler_params sp;
    char *stop[TEXT_MAX_STOPS];
    text_stream ts;         /* rank 0 */
    int n_out, eos, stopped;
    double t_first, t_end;
} req;

typedef struct batch_run {
    req *q;
    int n, done, total_new;
    int *valid;             /* [P] index into q of each prompt */
    double t0;
    const model_config *cfg;
} batch_run;

static int set_error(req *q, const char *msg) {
    if (!q->error) q->error = strdup(msg);
    return 1;
}

/* Optional number field: absent keeps *v; wrong type is an error. */
static int num_field(const cJSON *o, const char *k, double *v, req *q) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!f || cJSON_IsNull(f)) return 0;
    if (!cJSON_IsNumber(f)) {
        char m[128];
        snprintf(m, sizeof m, "\"%s\" must be a number", k);
        return set_error(q, m);
    }
    *v = f->valuedouble;
    return 0;
}

static int stop_field(const cJSON *o, req *q) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "stop"), *it;
    int n = 0;
    if (!f || cJSON_IsNull(f)) return 0;
    if (cJSON_IsString(f)) {
        q->stop[0] = strdup(f->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) > TEXT_MAX_STOPS)
        return set_error(q, "\"stop\" must be a string or an array of at most 4 strings");
    cJSON_ArrayForEach(it, f) {
        if (!cJSON_IsString(it)) return set_error(q, "\"stop\" entries must be strings");
        q->stop[n++] = strdup(it->valuestring);
    }
    return 0;
}

/* One input line into a request (errors are recorded in the request, not returned). */
static void parse_line(const cli_settings *s, const tokenizer_t *tok, const char *line, int index,
                       req *q) {
    cJSON *o = cJSON_Parse(line);
    double mt = s->n_new, temp = s->temp, top_p = s->top_p, seed = s->seed + index;
    q->sp = sampler_params_default();
    if (!cJSON_IsObject(o)) {
        set_error(q, "not a JSON object");
        q->id = cJSON_CreateNumber(index + 1);
        cJSON_Delete(o);
        return;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    q->id = id ? cJSON_Duplicate(id, 1) : cJSON_CreateNumber(index + 1);
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    if (!cJSON_IsString(pr)) set_error(q, "\"prompt\" (a string) is required");
    num_field(o, "max_tokens", &mt, q); /* each records its own error in q */
    num_field(o, "temperature", &temp, q);
    num_field(o, "top_p", &top_p, q);
    num_field(o, "seed", &seed, q);
    stop_field(o, q);
    q->max_tokens = (int)mt;
    q->sp.temperature = (float)temp;
    q->sp.top_p = (float)top_p;
    q->sp.top_k = s->top_k;
    q->sp.min_p = (float)s->min_p;
    q->sp.repetition_penalty = (float)s->repetition_penalty;
    q->sp.seed = (uint64_t)(int64_t)seed;
    akv_err err = {0};
    if (!q->error && (mt < 1 || mt != q->max_tokens)) set_error(q, "\"max_tokens\" must be a positive integer");
    if (!q->error && sampler_params_check(&q->sp, &err)) set_error(q, err.msg);
    if (!q->error && tokenizer_encode(tok, pr->valuestring, strlen(pr->valuestring), 1, &q->ids, &q->T, &err))
        set_error(q, err.msg);
    if (!q->error && q->T == 0) set_error(q, "the prompt encodes to no token");
    cJSON_Delete(o);
}

/* Every non-blank line of --input. */
static akv_status read_requests(const cli_settings *s, const tokenizer_t *tok, batch_run *b,
                                akv_err *err) {
    char *text = NULL;
    akv_status st = io_read_text(s->input, &text, NULL, err);
    int cap = 0;
    for (char *line = text, *nl = NULL; !st && line; line = nl ? nl + 1 : NULL) {
        if ((nl = strchr(line, '\n'))) *nl = '\0';
        if (strspn(line, " \t\r") == strlen(line)) continue;
        if (b->n == cap) {
            req *nq = realloc(b->q, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *nq);
            if (!nq) st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
            else b->q = nq;
        }
        if (st) break;
        memset(&b->q[b->n], 0, sizeof *b->q);
        parse_line(s, tok, line, b->n, &b->q[b->n]);
        b->n++;
    }
    if (!st && b->n == 0) st = akv_fail(err, AKV_EINPUT, "%s holds no request", s->input);
    free(text);
    return st;
}

/* The valid requests as the engine's prompts (every rank builds the same). */
static akv_status make_prompts(batch_run *b, prompts *p, akv_err *err) {
    int total = 0, P = 0;
    for (int i = 0; i < b->n; i++)
        if (!b->q[i].error) total += b->q[i].T, P++;
    p->P = P;
    p->ids = malloc((size_t)(total ? total : 1) * sizeof *p->ids);
    p->len = calloc((size_t)(P ? P : 1), sizeof *p->len);
    p->seqs = calloc((size_t)(P ? P : 1), sizeof *p->seqs);
    b->valid = calloc((size_t)(P ? P : 1), sizeof *b->valid);
    int n_new = 1;
    for (int i = 0; i < b->n; i++) n_new = !b->q[i].error && b->q[i].max_tokens > n_new ? b->q[i].max_tokens : n_new;
    p->out = calloc((size_t)(P ? P : 1) * n_new, sizeof *p->out);
    if (!p->ids || !p->len || !p->seqs || !b->valid || !p->out)
        return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    for (int i = 0, k = 0, at = 0; i < b->n; i++) {
        req *q = &b->q[i];
        if (q->error) continue;
        memcpy(p->ids + at, q->ids, (size_t)q->T * sizeof *q->ids);
        p->len[k] = q->T;
        p->seqs[k] = (engine_seq){p->ids + at, q->T, p->out + (size_t)k * n_new, 0, &q->sp};
        p->max_T = q->T + q->max_tokens > p->max_T ? q->T + q->max_tokens : p->max_T;
        b->valid[k++] = i;
        at += q->T;
    }
    return AKV_OK;
}

static void progress(batch_run *b) {
    if (!isatty(2)) return;
    double dt = akv_now_s() - b->t0;
    fprintf(stderr, "\rbatch: %d/%d done, %.1f tok/s ", b->done, b->n, b->total_new / (dt + 1e-9));
    if (b->done == b->n) fputc('\n', stderr);
}

/* Rank 0, per generated token: text, stop strings, the request's own max_tokens. */
static int on_token(void *user, int seq, int32_t tok) {
    batch_run *b = user;
    req *q = &b->q[b->valid[seq]];
    if (q->n_out++ == 0) q->t_first = akv_now_s() - b->t0;
    b->total_new++;
    for (int i = 0; i < b->cfg->n_eos; i++) q->eos |= tok == b->cfg->eos_ids[i];
    q->stopped = text_stream_push(&q->ts, tok);
    int end = q->stopped || q->eos || q->n_out >= q->max_tokens;
    if (end) {
        q->t_end = akv_now_s() - b->t0;
        b->done++;
        progress(b);
    }
    return end;
}

static cJSON *result_json(const req *q) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "id", cJSON_Duplicate(q->id, 1));
    if (q->error) {
        cJSON_AddStringToObject(o, "error", q->error);
        return o;
    }
    cJSON_AddStringToObject(o, "text", q->ts.text ? q->ts.text : "");
    cJSON_AddNumberToObject(o, "tokens", q->n_out);
    cJSON_AddNumberToObject(o, "prompt_tokens", q->T);
    cJSON_AddStringToObject(o, "finish_reason", q->stopped ? "stop" : q->eos ? "eos" : "length");
    cJSON_AddNumberToObject(o, "time_to_first_token_s", q->t_first);
    cJSON_AddNumberToObject(o, "time_s", q->t_end);
    return o;
}

/* Rank 0: one line per input line, in order, written to a temp file then renamed. */
static akv_status write_results(const cli_settings *s, batch_run *b, akv_err *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", s->output, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return akv_fail(err, AKV_EINPUT, "cannot write %s", s->output);
    int ok = 1;
    for (int i = 0; i < b->n; i++) {
        if (!b->q[i].error) text_stream_finish(&b->q[i].ts);
        cJSON *o = result_json(&b->q[i]);
        char *line = cJSON_PrintUnformatted(o);
        ok = ok && line && fprintf(f, "%s\n", line) > 0;
        free(line);
        cJSON_Delete(o);
    }
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, s->output)) {
        unlink(tmp);
        return akv_fail(err, AKV_ERUNTIME, "failed writing %s", s->output);
    }
    return AKV_OK;
}

/* Rank 0: a text stream per valid request (kept, not printed). */
static akv_status init_streams(batch_run *b, const tokenizer_t *tok, akv_err *err) {
    akv_status st = AKV_OK;
    for (int i = 0; !st && i < b->n; i++) {
        req *q = &b->q[i];
        if (q->error) continue;
        st = text_stream_init(&q->ts, tok, NULL, NULL, err);
        for (int k = 0; !st && k < TEXT_MAX_STOPS; k++) st = text_stream_add_stop(&q->ts, q->stop[k], err);
    }
    return st;
}

static void free_run(batch_run *b) {
    for (int i = 0; i < b->n; i++) {
        req *q = &b->q[i];
        cJSON_Delete(q->id);
        free(q->error);
        free(q->ids);
        for (int k = 0; k < TEXT_MAX_STOPS; k++) free(q->stop[k]);
        text_stream_free(&q->ts);
    }
    free(b->q);
    free(b->valid);
}

int cmd_batch(const cli_settings *s) {
    akv_err err = {0};
    ranks_ctx r = {0};
    cli_settings res;
    prompts p = {0};
    engine_t *e = NULL;
    tokenizer_t *tok = NULL;
    batch_run b = {0};
    engine_stats stats;
    ranks_how how = RANKS_SAME;
    akv_status st = check_common(s, &err);
    if (!st && (!s->input || !s->output))
        st = akv_fail(&err, AKV_EINPUT, "--input IN.jsonl and --output OUT.jsonl are required");
    if (!st) {
        how = RANKS_LOCAL;
        st = ranks_open(&r, s, &err);
    }
    if (!st) how = RANKS_AGREED;
    if (!st) st = text_tokenizer(s, &tok, &err);
    if (!st) st = read_requests(s, tok, &b, &err);
    if (!st) st = make_prompts(&b, &p, &err);
    if (!st && s->rank == 0) st = init_streams(&b, tok, &err);
    if ((st = ranks_agree(&r, st, &err))) goto done;
    if (p.P > 0) {
        int n_new = 1;
        for (int i = 0; i < p.P; i++) n_new = b.q[b.valid[i]].max_tokens > n_new ? b.q[b.valid[i]].max_tokens : n_new;
        st = open_engine(&r, s, &p, n_new, &e, &res, &err);
        if (!st) st = ranks_print_settings(&r, &res, e, &err);
        if (!st) {
            how = RANKS_LOCAL;
            b.cfg = engine_config(e);
            b.t0 = akv_now_s();
            b.done = b.n - p.P; /* error records are done already */
            st = engine_generate_batch(e, p.seqs, p.P, n_new, on_token, &b, &stats, &err);
        }
    }
    if (!st && s->rank == 0) st = write_results(s, &b, &err);
    if (!st && s->rank == 0 && !s->quiet)
        fprintf(stderr, "batch: %d requests (%d malformed), %d new tokens in %.3f s (%.1f tok/s) -> %s\n",
                b.n, b.n - p.P, b.total_new, akv_now_s() - b.t0, b.total_new / (akv_now_s() - b.t0 + 1e-9), s->output);
done:
    engine_close(e);
    prompts_free(&p);
    free_run(&b);
    tokenizer_free(tok);
    return ranks_finish(&r, s, st, &err, how);
}
