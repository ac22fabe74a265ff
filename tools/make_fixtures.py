#!/usr/bin/env python3
"""make_fixtures.py — golden fixtures from Hugging Face transformers (run where torch is).

Builds tiny random checkpoints of the three supported architectures, saves them in bf16 the
way save_pretrained does, reloads them in fp32 and records transformers' logits for every
position of a prompt and a greedy continuation. Output: tests/data/<name>/ with
  config.json, model.safetensors (or shards + index), generation_config.json,
  ids.txt (prompt for logits), logits.npy (float32 [T, vocab]),
  greedy_prompt.txt, greedy_out.txt (generated ids only), inv_freq.npy (HF rotary inv_freq),
  meta.json (versions, seeds, margins).
Usage: python3 tools/make_fixtures.py [OUT_DIR]   (default tests/data)
"""
import json
import math
import os
import sys

import numpy as np
import torch
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

T_LOGITS = 200
GREEDY_PROMPT = 24
GREEDY_NEW = 32


def make_config(cls, rope, **kw):
    """transformers 5 takes rope_parameters; 4.x took rope_theta + rope_scaling."""
    try:
        return cls(rope_parameters=rope, **kw)
    except TypeError:
        scaling = None if rope.get("rope_type", "default") == "default" else dict(rope)
        return cls(rope_theta=rope["rope_theta"], rope_scaling=scaling, **kw)


SPECS = {
    # GQA (6 q heads / 2 kv heads), llama3 rope scaling with a small original context so the
    # piecewise schedule matters, untied embeddings.
    "llama-gqa": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=320, hidden_size=96, intermediate_size=160, num_hidden_layers=3,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=4096,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
        {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
         "high_freq_factor": 4.0, "original_max_position_embeddings": 64}, None),
    # MQA (1 kv head), head_dim 32 != hidden/heads = 16, plain rope_theta, sharded checkpoint.
    "mistral-mqa": (MistralConfig, MistralForCausalLM, dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
        rms_norm_eps=1e-6, sliding_window=None, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2),
        {"rope_type": "default", "rope_theta": 10000.0}, "40KB"),
    # Qwen2: q/k/v biases, tied embeddings, rope_theta 1e6.
    "qwen2-tied": (Qwen2Config, Qwen2ForCausalLM, dict(
        vocab_size=288, hidden_size=64, intermediate_size=144, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
        bos_token_id=1, eos_token_id=2),
        {"rope_type": "default", "rope_theta": 1000000.0}, None),
}


def perturb(model, gen):
    """Weights far from HF's N(0, 0.02) init so logits are far from uniform."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif "lm_head" in name:
                p.copy_(3.0 * torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            else:  # projections: unit-variance outputs, a bit hotter for q/k so attention is sharp
                gain = 2.0 if ("q_proj" in name or "k_proj" in name) else 1.0
                p.copy_(gain * torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))


def write_ids(path, ids):
    with open(path, "w") as f:
        f.write(" ".join(str(int(i)) for i in ids) + "\n")


def make_one(name, out_root, seed):
    cfg_cls, model_cls, kw, rope, shard = SPECS[name]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = make_config(cfg_cls, rope, **kw)
    model = model_cls(cfg).eval()
    perturb(model, gen)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith(".safetensors") or f.endswith(".json") or f.endswith(".npy") or f.endswith(".txt"):
            os.remove(os.path.join(out, f))
    model.to(torch.bfloat16)
    save_kw = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(out, **save_kw)
    del model

    ref = model_cls.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    V = ref.config.vocab_size
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, V, size=T_LOGITS)
    with torch.no_grad():
        logits = ref(torch.tensor(ids[None], dtype=torch.long)).logits[0].float().numpy()
    np.save(os.path.join(out, "logits.npy"), logits.astype(np.float32))
    write_ids(os.path.join(out, "ids.txt"), ids)
    inv = ref.model.rotary_emb.inv_freq.float().numpy()
    np.save(os.path.join(out, "inv_freq.npy"), inv.astype(np.float32))

    prompt = rng.integers(3, V, size=GREEDY_PROMPT)
    x = torch.tensor(prompt[None], dtype=torch.long)
    with torch.no_grad():
        res = ref.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=GREEDY_NEW,
                           do_sample=False, pad_token_id=0, output_scores=True,
                           return_dict_in_generate=True)
    new = res.sequences[0, GREEDY_PROMPT:].numpy()
    margins = []
    for s in res.scores:
        top = torch.topk(s[0].float(), 2).values
        margins.append(float(top[0] - top[1]))
    write_ids(os.path.join(out, "greedy_prompt.txt"), prompt)
    write_ids(os.path.join(out, "greedy_out.txt"), new)

    meta = {
        "generator": "tools/make_fixtures.py", "seed": seed,
        "transformers": transformers.__version__, "torch": torch.__version__,
        "architecture": ref.config.architectures[0], "T_logits": T_LOGITS,
        "max_abs_logit": float(np.abs(logits).max()), "logit_std": float(logits.std()),
        "greedy_new_tokens": int(len(new)), "greedy_min_margin": float(min(margins)),
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{name}: {meta}")
    return meta


def main():
    out_root = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    torch.set_num_threads(4)
    for i, name in enumerate(SPECS):
        make_one(name, out_root, seed=1234 + i)


if __name__ == "__main__":
    main()
