#!/usr/bin/env python3
"""train_reference.py — trains asymkv's bundled reference model (run where PyTorch and a GPU are).

    python3 tools/train_reference.py --corpus .corpus --out OUT_DIR --minutes 8

Input: the folder written by tools/prepare_corpus.sh (train.txt.gz, heldout.txt, SOURCES.md,
licenses/). Everything below runs inside the --minutes wall-clock budget, counted from the start
of this script: training stops --reserve-min before it, leaving time for evaluation and saving.

 1. Tokenizer: byte-level BPE (HF tokenizers), vocab --vocab, trained on the training text.
    Pre-tokenizer Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)],
    so every digit is its own token; special tokens <|bos|> (id 0) and <|eos|> (id 1); a
    TemplateProcessing post-processor puts <|bos|> in front of every encoded text.
 2. Model: LlamaForCausalLM (GQA, RoPE theta 10000, tied embeddings), trained with bf16 autocast,
    AdamW (fused), linear warm-up then cosine decay over the wall-clock budget, dropout 0.1 on
    the attention and MLP outputs (without it the ~10M-token corpus is overfitted after ~10
    epochs; with it held-out loss still falls at 40 epochs).
    Curriculum (fractions of the training time): 256-token sequences, then 1024, then 2048.
    Batches hold --batch-tokens tokens. A text row is a random window of the token stream of the
    training documents (joined by blank lines, as heldout.txt is), half of them with <|bos|> put
    in front. A passkey row starts with one passkey document (format below; filler = real text
    of the training set), followed by more text; the loss on the answer tokens (the space and
    the five digits) is multiplied by --answer-weight.
 3. Every --eval-every-s seconds: held-out loss (protocol below) and a fixed 24-prompt passkey
    probe (teacher-forced, which equals greedy correctness); the checkpoint with the best
    score = held-out loss + 2 * (1 - probe accuracy) is kept (a copy in GPU memory).
 4. End: the best checkpoint is saved in bf16 (save_pretrained) with tokenizer.json,
    tokenizer_config.json, generation_config.json, then reloaded from disk in fp32 and
    evaluated (fp32 math, no TF32): held-out perplexity and greedy passkey accuracy at 512, 1024
    and 2048 positions (20 trials each over 5 depths). metrics.json, README.md, heldout.txt and
    the corpus licences are written beside the weights.

Held-out perplexity protocol (what `asymkv eval` reproduces): ids = tokenizer.encode(whole text
of heldout.txt) (one <|bos|> in front, from the post-processor); windows ids[i:i+2048] for
i = 0, 2048, 4096, ...; each window is run on its own from position 0 (fresh cache); in every
window the token at index j+1 is scored from positions 0..j (j = 0 .. len-2), so the first token
of each window is not scored. ppl = exp(sum of NLL / number of scored tokens).

Passkey prompt format (token-exact; K = 5 random digits, first digit 1-9):
    <|bos|> + encode(F1 + "\\nThe pass key is K. Remember it. K is the pass key." + F2
                     + "\\nWhat is the pass key? The pass key is")
F1 and F2 are filler text (F2 starting with a space or a newline, or empty); the expected
greedy continuation is " K" (a space token, then one token per digit); a trial is correct when
the first run of digits in the first 8 generated tokens equals K. A prompt for length L has at
most L - 8 tokens, so prompt and answer fit in L positions.
"""
import time

T0 = time.time()  # the --minutes budget counts from here (before the heavy imports)

import argparse
import gzip
import json
import math
import os
import random
import re
import shutil
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import numpy as np
import torch
import torch.nn.functional as F

NEEDLE_A = "The pass key is "
NEEDLE_B = ". Remember it. "
NEEDLE_C = " is the pass key."
QUESTION = "What is the pass key? The pass key is"
GEN_TOKENS = 8
BOS, EOS = "<|bos|>", "<|eos|>"


def log(msg):
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default=".corpus", help="folder of tools/prepare_corpus.sh")
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of the whole run")
    p.add_argument("--reserve-min", type=float, default=1.5,
                   help="minutes of the budget kept for evaluation and saving")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--intermediate", type=int, default=768)
    p.add_argument("--ctx", type=int, default=2048)
    p.add_argument("--batch-tokens", type=int, default=65536)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=150)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=0.1,
                   help="dropout on the attention and MLP outputs (residual branches)")
    p.add_argument("--passkey-frac", type=float, default=0.3,
                   help="share of passkey rows in the 1024/2048 phases (half of it at 256)")
    p.add_argument("--answer-weight", type=float, default=10.0)
    p.add_argument("--phases", default="0:256,0.15:1024,0.4:2048",
                   help="start fraction of the training time : sequence length, ...")
    p.add_argument("--max-epochs", type=float, default=0.0,
                   help="also end the schedule after this many passes over the training "
                        "tokens (0: time only); progress = max(time used, epochs used)")
    p.add_argument("--eval-every-s", type=float, default=20.0)
    p.add_argument("--patience", type=int, default=12,
                   help="stop after this many evaluations without a better score "
                        "(only in the last phase)")
    p.add_argument("--tok-sample-mb", type=float, default=40.0,
                   help="MB of training text used to train the tokenizer")
    p.add_argument("--filler-mb", type=float, default=6.0,
                   help="MB of training text used as passkey filler")
    p.add_argument("--trials", type=int, default=20, help="final passkey trials per length")
    p.add_argument("--name", default="asymkv-ref", help="model name used in the README")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (off)")
    return p.parse_args()


# ----------------------------------------------------------------------------- data
def read_corpus(folder):
    with gzip.open(os.path.join(folder, "train.txt.gz"), "rt", encoding="utf-8") as f:
        train_text = f.read()
    with open(os.path.join(folder, "heldout.txt"), encoding="utf-8") as f:
        held_text = f.read()
    docs = [d for d in train_text.split("\n\n") if d.strip()]
    return docs, held_text


def train_tokenizer(docs, vocab, sample_bytes):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, show_progress=False,
                                  special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    sample, n = [], 0
    for d in docs:
        if n >= sample_bytes:
            break
        sample.append(d); n += len(d)

    def batches():
        for i in range(0, len(sample), 1000):
            yield sample[i:i + 1000]

    tok.train_from_iterator(batches(), trainer=trainer, length=len(sample))
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    return tok, bos_id, eos_id


def encode_many(tok, texts):
    out = []
    for i in range(0, len(texts), 20000):
        out += [e.ids for e in tok.encode_batch(texts[i:i + 20000], add_special_tokens=False)]
    return out


PIECE_SPLIT = re.compile(r"(?=\n)|(?<=[.!?;:,])(?= )")


class Filler:
    """Text cut into pieces (at line starts and after . ! ? ; : , before a space) that encode
    exactly to the tokens of their concatenation; consecutive pieces make passkey filler."""

    def __init__(self, tok, text):
        pieces = [p for p in PIECE_SPLIT.split(text) if p]
        ids = encode_many(tok, pieces)
        lens = np.array([len(x) for x in ids], dtype=np.int64)
        self.flat = np.array([t for x in ids for t in x], dtype=np.int64)
        self.off = np.concatenate([[0], np.cumsum(lens)])
        self.n = len(pieces)
        self.pieces = pieces

    def take(self, rng, budget, depth):
        """(pre, post, first piece, end piece): consecutive pieces of <= budget tokens split at
        the piece boundary nearest to depth * length."""
        off = self.off
        for _ in range(20):
            s = int(rng.integers(0, self.n))
            last_start = int(np.searchsorted(off, off[-1] - budget, side="right")) - 1
            s = max(0, min(s, last_start))
            e = int(np.searchsorted(off, off[s] + budget, side="right")) - 1
            if e > s:
                break
        b = off[s:e + 1] - off[s]
        k = int(np.argmin(np.abs(b - depth * b[-1])))
        cut = off[s] + b[k]
        return self.flat[off[s]:cut], self.flat[cut:off[e]], s, e


class Passkey:
    def __init__(self, tok, bos_id, eos_id):
        enc = lambda s: tok.encode(s, add_special_tokens=False).ids
        self.tok = tok
        self.bos, self.eos = bos_id, eos_id
        self.nl = enc("\n")
        self.a, self.b, self.c = enc(NEEDLE_A), enc(NEEDLE_B), enc(NEEDLE_C)
        self.q = enc(QUESTION)
        self.sp, self.dot = enc(" "), enc(".")
        self.digit = [enc(str(d)) for d in range(10)]
        assert len(self.nl) == 1 and len(self.sp) == 1 and all(len(d) == 1 for d in self.digit), \
            "newline, space and digits must be single tokens"
        self.digit = [d[0] for d in self.digit]
        # prompt length without filler, answer = space + 5 digits
        self.fixed = 1 + 1 + len(self.a) + 5 + len(self.b) + 5 + len(self.c) + 1 + len(self.q)

    def build(self, filler, rng, length, depth, with_answer=True):
        """Token list of a passkey document of at most `length` tokens (prompt + answer + '.' +
        <|eos|> when with_answer, else prompt of <= length - GEN_TOKENS), the index of the first
        answer token, and the key."""
        key = str(int(rng.integers(10000, 100000)))
        kd = [self.digit[int(ch)] for ch in key]
        tail = (len(self.sp) + 5 + len(self.dot) + 1) if with_answer else GEN_TOKENS
        budget = max(8, length - self.fixed - tail)
        pre, post, _, _ = filler.take(rng, budget, depth)
        toks = ([self.bos] + pre.tolist() + self.nl + self.a + kd + self.b + kd + self.c
                + post.tolist() + self.nl + self.q)
        ans = len(toks)
        if with_answer:
            toks += self.sp + kd + self.dot + [self.eos]
        return toks, ans, key

    def text_of(self, toks, ans):
        return self.tok.decode(toks[1:ans])


# ----------------------------------------------------------------------------- model
def make_model(args, vocab, bos_id, eos_id):
    from transformers import LlamaConfig, LlamaForCausalLM
    kw = dict(vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
              num_hidden_layers=args.layers, num_attention_heads=args.heads,
              num_key_value_heads=args.kv_heads, head_dim=args.head_dim,
              max_position_embeddings=args.ctx, rms_norm_eps=1e-5, hidden_act="silu",
              tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
              initializer_range=0.02, bos_token_id=bos_id, eos_token_id=eos_id)
    try:  # transformers 5
        cfg = LlamaConfig(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **kw)
    except TypeError:  # transformers 4.x
        cfg = LlamaConfig(rope_theta=10000.0, **kw)
    try:
        cfg._attn_implementation = "sdpa"
    except Exception:
        pass
    model = LlamaForCausalLM(cfg)
    return model, cfg


def add_dropout(model, p):
    def hook(mod, inp, out):
        if not mod.training:
            return out
        if isinstance(out, tuple):
            return (F.dropout(out[0], p, True),) + tuple(out[1:])
        return F.dropout(out, p, True)
    for layer in model.model.layers:
        layer.self_attn.register_forward_hook(hook)
        layer.mlp.register_forward_hook(hook)


def logits_of(model, x):
    return model(input_ids=x, use_cache=False).logits


@torch.no_grad()
def heldout_nll(model, ids, ctx, dev, autocast, max_batch=16):
    """Sum of NLL and number of scored tokens, protocol in the module docstring."""
    wins = [ids[i:i + ctx] for i in range(0, len(ids), ctx)]
    wins = [w for w in wins if len(w) >= 2]
    total, count = 0.0, 0
    full = [w for w in wins if len(w) == ctx]
    rest = [w for w in wins if len(w) != ctx]
    groups = [full[i:i + max_batch] for i in range(0, len(full), max_batch)] + [[w] for w in rest]
    for g in groups:
        x = torch.tensor(g, dtype=torch.long, device=dev)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            lg = logits_of(model, x[:, :-1])
        nll = F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1),
                              reduction="sum")
        total += float(nll); count += x.shape[0] * (x.shape[1] - 1)
    return total, count


@torch.no_grad()
def probe_acc(model, probes, dev):
    """Teacher-forced passkey check: the argmax at every answer position (space + 5 digits)
    equals the answer — the same as greedy decoding producing it."""
    ok = 0
    for toks, ans in probes:
        x = torch.tensor([toks[:ans + 6]], dtype=torch.long, device=dev)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            lg = logits_of(model, x[:, :-1])
        pred = lg[0, ans - 1:ans + 5].argmax(-1)
        ok += int(torch.equal(pred, x[0, ans:ans + 6]))
    return ok / max(1, len(probes))


@torch.no_grad()
def greedy(model, toks, n, dev):
    x = torch.tensor([toks], dtype=torch.long, device=dev)
    out = []
    for _ in range(n):
        nxt = int(logits_of(model, x)[0, -1].argmax())
        out.append(nxt)
        x = torch.cat([x, torch.tensor([[nxt]], device=dev)], 1)
    return out


# ----------------------------------------------------------------------------- main
def main():
    args = parse_args()
    deadline = T0 + args.minutes * 60.0
    train_end = deadline - args.reserve_min * 60.0
    random.seed(args.seed); np.random.seed(args.seed); torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    import tokenizers
    import transformers
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"tokenizers {tokenizers.__version__}, {torch.cuda.get_device_name(0)}")
    os.makedirs(args.out, exist_ok=True)

    # --- data + tokenizer
    docs, held_text = read_corpus(args.corpus)
    log(f"corpus: {len(docs)} training documents, {sum(map(len, docs)) / 1e6:.1f} MB; "
        f"held-out {len(held_text.encode()) / 1e3:.0f} KB")
    tok, bos_id, eos_id = train_tokenizer(docs, args.vocab, args.tok_sample_mb * 1e6)
    vocab = tok.get_vocab_size()
    log(f"tokenizer: vocab {vocab}, bos {bos_id}, eos {eos_id}")
    # training stream: documents joined by blank lines (as in heldout.txt), no special tokens
    ids = encode_many(tok, [d if i == 0 else "\n\n" + d for i, d in enumerate(docs)])
    stream_np = np.array([t for x in ids for t in x], dtype=np.int64)
    del ids
    n_train_bytes = sum(len(d.encode()) for d in docs)
    log(f"train stream: {len(stream_np) / 1e6:.2f}M tokens "
        f"({n_train_bytes / len(stream_np):.2f} bytes/token)")
    held_ids = tok.encode(held_text).ids
    assert held_ids[0] == bos_id and held_ids.count(bos_id) == 1
    log(f"held-out: {len(held_ids)} tokens")
    filler_text, n = [], 0
    for d in docs:
        if n >= args.filler_mb * 1e6:
            break
        filler_text.append(d); n += len(d)
    train_fill = Filler(tok, "\n\n".join(filler_text))
    held_fill = Filler(tok, held_text.strip("\n"))
    pk = Passkey(tok, bos_id, eos_id)
    # self-check: token-level passkey documents equal the encoding of their text
    bad = 0
    for i in range(20):
        t, a, key = pk.build(train_fill, rng, int(rng.integers(64, args.ctx)), rng.random())
        text = tok.decode(t[1:], skip_special_tokens=True)
        if tok.encode(text).ids != [bos_id] + [x for x in t[1:] if x != eos_id]:
            bad += 1
    log(f"passkey self-check: {20 - bad}/20 documents re-encode to the same tokens")
    probe_rng = np.random.default_rng(args.seed + 1)
    probes = []
    for L in (512, 1024, args.ctx):
        for d in np.linspace(0.05, 0.95, 8):
            t, a, _ = pk.build(held_fill, probe_rng, L, float(d))
            probes.append((t, a))
    stream = torch.from_numpy(stream_np).to(dev)

    # --- model
    model, cfg = make_model(args, vocab, bos_id, eos_id)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.3f}M parameters (tied), {2 * n_params / 1e6:.2f} MB in bf16; "
        f"attention {getattr(cfg, '_attn_implementation', '?')}")
    if args.dropout > 0:
        add_dropout(model, args.dropout)
    model.to(dev)
    decay = [p for n_, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n_, p in model.named_parameters() if p.dim() < 2]
    try:
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    except Exception:
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    fwd = model
    if args.compile:
        fwd = torch.compile(model, dynamic=False)

    phases = []
    for item in args.phases.split(","):
        f0, T = item.split(":")
        phases.append((float(f0), int(T)))
    train_start = time.time()
    span = max(1.0, train_end - train_start)
    log(f"training for {span:.0f}s (until {train_end - T0:.0f}s), phases {phases}")

    def lr_at(step, frac):
        warm = min(1.0, (step + 1) / args.warmup_steps)
        cos = 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        return args.lr * warm * (args.min_lr_frac + (1 - args.min_lr_frac) * cos)

    def batch(T, pk_frac):
        B = max(1, args.batch_tokens // T)
        N = len(stream_np)
        starts = rng.integers(0, N - T - 2, size=B)
        idx = torch.from_numpy(starts).to(dev)[:, None] + torch.arange(T + 1, device=dev)
        rows = stream[idx]
        with_bos = torch.from_numpy(rng.random(B) < 0.5).to(dev)
        rows[:, 0] = torch.where(with_bos, torch.full_like(rows[:, 0], bos_id), rows[:, 0])
        w = torch.ones(B, T, device=dev)
        n_pk = int(round(B * pk_frac))
        if n_pk:
            pk_rows = np.empty((n_pk, T + 1), dtype=np.int64)
            pk_w = np.ones((n_pk, T), dtype=np.float32)
            for i in range(n_pk):
                L = int(rng.integers(max(64, T // 8), T + 2))
                toks, ans, _ = pk.build(train_fill, rng, min(L, T + 1), float(rng.random()))
                m = len(toks)
                s = int(rng.integers(0, N - T - 2))
                pk_rows[i, :m] = toks
                pk_rows[i, m:] = stream_np[s:s + T + 1 - m]
                pk_w[i, ans - 1:ans + 5] = args.answer_weight
                if m - 1 < T:
                    pk_w[i, m - 1] = 0.0  # first text token after <|eos|>
            rows[:n_pk] = torch.from_numpy(pk_rows).to(dev)
            w[:n_pk] = torch.from_numpy(pk_w).to(dev)
        return rows[:, :-1], rows[:, 1:], w

    def evaluate():
        model.eval()
        tot, cnt = heldout_nll(model, held_ids, args.ctx, dev, autocast=True)
        acc = probe_acc(model, probes, dev)
        model.train()
        return tot / cnt, acc

    best = {"score": float("inf")}
    history = []
    step, tokens_seen, last_log, last_eval = 0, 0, time.time(), time.time()
    since_best, stopped_early = 0, False
    acc_loss = acc_ans = 0.0
    acc_n = 0
    model.train()
    while True:
        now = time.time()
        if now >= train_end:
            break
        frac = (now - train_start) / span
        if args.max_epochs > 0:
            frac = max(frac, tokens_seen / (args.max_epochs * len(stream_np)))
            if frac >= 1.0:
                break
        T = [t for f0, t in phases if frac >= f0][-1]
        last_phase = T == phases[-1][1] and frac >= phases[-1][0]
        pk_frac = args.passkey_frac if T > phases[0][1] else args.passkey_frac / 2
        lr = lr_at(step, frac)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y, w = batch(T, pk_frac)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            lg = logits_of(fwd, x)
        ce = F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), y.reshape(-1),
                             reduction="none").view_as(w)
        loss = (ce * w).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += x.numel()
        if step % 10 == 0:
            with torch.no_grad():
                txt = (w == 1)
                acc_loss += float((ce * txt).sum() / txt.sum().clamp(min=1))
                ans = w > 1
                acc_ans += float((ce * ans).sum() / ans.sum().clamp(min=1)) if bool(ans.any()) else 0
                acc_n += 1
        now = time.time()
        if now - last_log >= 10 and acc_n:
            el = now - train_start
            log(f"step {step} T {T} lr {lr:.2e} text loss {acc_loss / acc_n:.3f} "
                f"answer loss {acc_ans / acc_n:.3f} {tokens_seen / el / 1e6:.2f}M tok/s "
                f"epochs {tokens_seen / len(stream_np):.1f}")
            acc_loss = acc_ans = 0.0; acc_n = 0; last_log = now
        ep_end = args.max_epochs > 0 and tokens_seen >= args.max_epochs * len(stream_np)
        if now - last_eval >= args.eval_every_s or time.time() >= train_end or ep_end:
            hl, pa = evaluate()
            score = hl + 2.0 * (1.0 - pa)
            rec = {"step": step, "t": round(time.time() - T0, 1), "seq": T, "heldout_loss": hl,
                   "heldout_ppl": math.exp(hl), "probe_acc": pa, "score": score}
            history.append(rec)
            mark = ""
            if score < best["score"]:
                best = dict(rec)
                best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
                since_best, mark = 0, " *best"
            else:
                since_best += 1
            log(f"eval step {step}: held-out loss {hl:.4f} ppl {math.exp(hl):.1f} "
                f"probe {pa:.2f} score {score:.4f}{mark}")
            last_eval = time.time()
            if last_phase and since_best >= args.patience:
                log(f"early stop: {since_best} evaluations without a better score")
                stopped_early = True
                break
    train_secs = time.time() - train_start
    if "state" not in best:  # no evaluation happened (tiny budget)
        best = {"step": step, "state": model.state_dict()}
    log(f"training done: {step} steps, {tokens_seen / 1e6:.1f}M tokens in {train_secs:.0f}s; "
        f"best checkpoint at step {best['step']}")

    # --- save (bf16) -------------------------------------------------------------------
    model.load_state_dict(best["state"])
    del best["state"]
    model.eval()
    model.to(torch.bfloat16)
    try:
        from transformers import GenerationConfig
        model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_id,
                                                   do_sample=False)
    except Exception as e:  # noqa: BLE001
        log(f"generation config: {e}")
    model.save_pretrained(args.out)
    if not os.path.exists(os.path.join(args.out, "generation_config.json")):
        with open(os.path.join(args.out, "generation_config.json"), "w") as f:
            json.dump({"bos_token_id": bos_id, "eos_token_id": eos_id, "do_sample": False}, f,
                      indent=2)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS,
                   "eos_token": EOS, "add_bos_token": True, "add_eos_token": False,
                   "model_max_length": args.ctx, "clean_up_tokenization_spaces": False}, f,
                  indent=2)
    shutil.copyfile(os.path.join(args.corpus, "heldout.txt"), os.path.join(args.out, "heldout.txt"))
    lic = os.path.join(args.corpus, "licenses")
    if os.path.isdir(lic):
        shutil.copytree(lic, os.path.join(args.out, "licenses"), dirs_exist_ok=True)
    log(f"saved {args.out}")

    # --- final evaluation on the saved weights, fp32 -------------------------------------
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from transformers import LlamaForCausalLM
    try:
        ref = LlamaForCausalLM.from_pretrained(args.out, dtype=torch.float32)
    except TypeError:
        ref = LlamaForCausalLM.from_pretrained(args.out, torch_dtype=torch.float32)
    ref = ref.float().to(dev).eval()
    tot, cnt = heldout_nll(ref, held_ids, args.ctx, dev, autocast=False, max_batch=8)
    held_bytes = len(held_text.encode())
    ppl = math.exp(tot / cnt)
    bpb = tot / math.log(2) / held_bytes
    log(f"held-out (fp32, saved weights): ppl {ppl:.2f}, loss {tot / cnt:.4f}, "
        f"{bpb:.3f} bits/byte over {cnt} scored tokens")
    ev_rng = np.random.default_rng(args.seed + 2)
    depths = [0.0, 0.25, 0.5, 0.75, 1.0]
    passkey = {}
    example = None
    for L in (512, 1024, 2048):
        if L > args.ctx:
            continue
        res = {str(d): [0, 0] for d in depths}
        for i in range(args.trials):
            if time.time() > deadline - 20:
                break
            d = depths[i % len(depths)]
            toks, ans, key = pk.build(held_fill, ev_rng, L, d, with_answer=False)
            gen = greedy(ref, toks, GEN_TOKENS, dev)
            text = tok.decode(gen)
            m = re.search(r"\d+", text)
            ok = bool(m) and m.group(0) == key
            res[str(d)][0] += int(ok); res[str(d)][1] += 1
            if example is None and L == 1024:
                example = {"prompt_tokens": len(toks), "key": key, "generated": text,
                           "prompt_tail": pk.text_of(toks, ans)[-160:]}
        right = sum(v[0] for v in res.values()); n_ = sum(v[1] for v in res.values())
        passkey[str(L)] = {"correct": right, "trials": n_,
                           "accuracy": right / max(1, n_), "by_depth": res}
        log(f"passkey {L}: {right}/{n_} " +
            " ".join(f"d{k}:{v[0]}/{v[1]}" for k, v in res.items()))
    sample_prompt = "In the beginning"
    s_ids = tok.encode(sample_prompt).ids
    sample = sample_prompt + tok.decode(greedy(ref, s_ids, 40, dev))

    files = sorted(os.listdir(args.out))
    sizes = {f: os.path.getsize(os.path.join(args.out, f)) for f in files
             if os.path.isfile(os.path.join(args.out, f))}
    total_bytes = sum(sizes.values()) + sum(
        os.path.getsize(os.path.join(args.out, "licenses", f))
        for f in (os.listdir(os.path.join(args.out, "licenses"))
                  if os.path.isdir(os.path.join(args.out, "licenses")) else []))
    # does transformers' AutoTokenizer give the same ids as the raw tokenizer?
    hf_tok_ok = None
    try:
        from transformers import AutoTokenizer
        at = AutoTokenizer.from_pretrained(args.out)
        probe_text = "The pass key is 48213.\nWhat is it? 7 days"
        hf_tok_ok = at(probe_text)["input_ids"] == tok.encode(probe_text).ids
    except Exception as e:  # noqa: BLE001
        log(f"AutoTokenizer check failed: {e}")
    log(f"AutoTokenizer matches tokenizers: {hf_tok_ok}")

    metrics = {
        "name": args.name,
        "heldout": {"ppl": ppl, "loss": tot / cnt, "bits_per_byte": bpb, "scored_tokens": cnt,
                    "tokens": len(held_ids), "bytes": held_bytes, "window": args.ctx,
                    "precision": "fp32 math on the saved bf16 weights"},
        "passkey": passkey,
        "passkey_example": example,
        "training": {"steps": step, "tokens": tokens_seen, "seconds": round(train_secs, 1),
                     "epochs": tokens_seen / len(stream_np), "stopped_early": stopped_early,
                     "best": {k: v for k, v in best.items()},
                     "history": history},
        "model": {"parameters": n_params, "vocab": vocab, "bf16_bytes": 2 * n_params,
                  "folder_bytes": total_bytes},
        "data": {"train_tokens": int(len(stream_np)), "train_bytes": n_train_bytes,
                 "train_documents": len(docs)},
        "sample": sample,
        "autotokenizer_matches": hf_tok_ok,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__},
        "args": vars(args),
        "command": "python3 " + " ".join(a if a != args.out else "OUT_DIR" for a in sys.argv),
    }
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    write_readme(args, metrics, cfg)
    log(f"folder {args.out}: {total_bytes / 1e6:.2f} MB "
        + ", ".join(f"{k} {v / 1e6:.2f}MB" for k, v in sizes.items() if v > 100000))
    # ---- summary (the tail of the output)
    print("=" * 72, flush=True)
    print(f"SUMMARY {args.name}: {n_params / 1e6:.2f}M params, vocab {vocab}, "
          f"{total_bytes / 1e6:.2f} MB folder", flush=True)
    print(f"  trained {train_secs:.0f}s, {step} steps, {tokens_seen / 1e6:.0f}M tokens "
          f"({tokens_seen / len(stream_np):.1f} epochs of {len(stream_np) / 1e6:.2f}M), "
          f"best step {best['step']}", flush=True)
    print(f"  held-out ppl {ppl:.2f} ({bpb:.3f} bits/byte, {cnt} tokens, fp32)", flush=True)
    for L, r in passkey.items():
        print(f"  passkey {L}: {r['correct']}/{r['trials']}", flush=True)
    print(f"  sample: {sample[:150]!r}", flush=True)
    print(f"  total wall {time.time() - T0:.0f}s", flush=True)


def write_readme(args, m, cfg):
    src = ""
    p = os.path.join(args.corpus, "SOURCES.md")
    if os.path.exists(p):
        with open(p) as f:
            src = f.read().split("\n", 1)[1].strip()  # drop its title line
        src = src.replace(" Counts in stats.json.", "")
    h, tr, pkr = m["heldout"], m["training"], m["passkey"]
    pk_lines = "\n".join(
        f"| {L} | {r['correct']}/{r['trials']} | " +
        " ".join(f"{float(k):.2f}: {v[0]}/{v[1]}" for k, v in r["by_depth"].items()) + " |"
        for L, r in pkr.items())
    ex = m.get("passkey_example") or {}
    text = f"""# {args.name} — asymkv's reference model

A small Llama model trained from scratch in {tr['seconds']:.0f} seconds on one GPU by
`tools/train_reference.py`, so that asymkv has a real (not random) model to test perplexity and
long-context retrieval with: {m['model']['parameters'] / 1e6:.2f}M parameters, bf16, context
{args.ctx}. It writes plausible English in the style of its corpus; it knows nothing useful.

## Architecture

LlamaForCausalLM: {args.layers} layers, hidden {args.hidden}, {args.heads} attention heads of
{args.head_dim}, {args.kv_heads} KV heads (GQA), SwiGLU intermediate {args.intermediate}, RMSNorm
eps 1e-5, RoPE theta 10000 (default rope), max_position_embeddings {args.ctx}, tied input/output
embeddings, vocab {m['model']['vocab']}.

Tokenizer (`tokenizer.json`): byte-level BPE trained on the training text (HF tokenizers
{m['versions']['tokenizers']}); pre-tokenizer Sequence[Digits(individual_digits=True),
ByteLevel(add_prefix_space=false, GPT-2 regex)] so each digit is one token; decoder ByteLevel;
special tokens `<|bos|>` (id 0) and `<|eos|>` (id 1); post-processor TemplateProcessing
`<|bos|> $A` (every encoded text starts with one `<|bos|>`).

## Data

{src}

Training text: {m['data']['train_documents']} documents, {m['data']['train_bytes'] / 1e6:.1f} MB,
{m['data']['train_tokens'] / 1e6:.2f}M tokens. `heldout.txt` (in this folder) is the held-out
split: {h['bytes']} bytes, never trained on (also not used as passkey filler in training).
The corpus licences are in `licenses/` (the Debian copyright files of the packages). The
weights are trained on GPL-2+ text (GCIDE) among others; treat them as covered by the GPL-2+.

## Training

    {m['command']}

(with torch {m['versions']['torch']}, transformers {m['versions']['transformers']}; corpus made by
`tools/prepare_corpus.sh`). AdamW (betas 0.9/0.95, weight decay {args.weight_decay}), peak LR
{args.lr}, {args.warmup_steps} warm-up steps then cosine decay to {args.min_lr_frac} of the peak over
the wall-clock budget ({args.minutes} min in all, {args.reserve_min} min reserved for evaluation{
 f"; or {args.max_epochs:g} epochs, whichever ends first" if args.max_epochs > 0 else ""}),
bf16 autocast, {args.batch_tokens} tokens per batch, gradient clipping 1.0, dropout
{args.dropout}. Curriculum (start fraction of the training time : sequence length):
{args.phases}. Passkey documents are {args.passkey_frac:.0%} of the rows (half that in the first
phase), with random length and depth and filler from the training text; the loss on their answer
tokens is weighted x{args.answer_weight:g}. Held-out loss and a passkey probe were measured every
{args.eval_every_s:g} s; the checkpoint kept is the one with the lowest held-out loss + 2 x (1 -
probe accuracy): step {tr['best'].get('step')} of {tr['steps']} ({tr['tokens'] / 1e6:.0f}M
tokens seen, {tr['epochs']:.1f} epochs).

## Measured (saved bf16 weights, fp32 math, transformers)

Held-out perplexity: **{h['ppl']:.2f}** (mean NLL {h['loss']:.4f} nats/token, {h['bits_per_byte']:.3f}
bits/byte, {h['scored_tokens']} scored tokens of {h['tokens']}).

Protocol: `ids = tokenizer.encode(open("heldout.txt").read())` — the whole file as one text, one
`<|bos|>` in front (from the post-processor). Split `ids` into consecutive non-overlapping windows
of {h['window']} tokens: `ids[0:{h['window']}]`, `ids[{h['window']}:{2 * h['window']}]`, ... (the
last one shorter). Run each window on its own from position 0 (fresh KV cache, positions 0..n-1).
In a window of n tokens score the n-1 predictions of token j+1 from tokens 0..j; the first token
of every window is not scored. Perplexity = exp(sum of NLL / number of scored tokens).

Passkey retrieval, greedy decoding, {args.trials} trials per length (depth: where the key sits
in the filler, 0 = start, 1 = end):

| length | correct | by depth |
|---|---|---|
{pk_lines}

Passkey prompt format (the length L counts prompt + {GEN_TOKENS} generated tokens, so the prompt
has at most L - {GEN_TOKENS} tokens):

    <|bos|> F1 + "\\nThe pass key is K. Remember it. K is the pass key." + F2
               + "\\nWhat is the pass key? The pass key is"

K is five random digits (10000-99999). F1 and F2 are filler text; here they are consecutive
pieces of `heldout.txt` (cut at line starts and after `. ! ? ; : ,`), so F2 starts with a space or
a newline; the key sits at the piece boundary nearest to depth x filler length. The whole
string is encoded with the tokenizer (one `<|bos|>`). Generate {GEN_TOKENS} tokens greedily; the
trial is correct when the first run of digits in the decoded output equals K (the model
answers " K." — a space token, then one token per digit). Example (1024): key {ex.get('key')},
generated {ex.get('generated')!r}; prompt ends with {ex.get('prompt_tail')!r}.

Greedy sample from "In the beginning": {m['sample']!r}

`metrics.json` holds these numbers, the evaluation history and the arguments.
"""
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
