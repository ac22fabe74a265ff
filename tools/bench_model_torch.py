#!/usr/bin/env python3
"""bench_model_torch.py — the PyTorch baseline of `asymkv bench` (scripts/gpu-check.sh,
modelbench step): Hugging Face transformers' LlamaForCausalLM of a built-in shape with random
bf16 weights on one GPU, sdpa attention, its default bf16 KV cache, greedy generate() of exactly
--new tokens for --batch random prompts of --prompt-len ids. Same measurements as asymkv bench:
TTFT (a generate() of one new token: prefill plus the first token) and TPOT ((time of --new
tokens - TTFT) / (--new - 1)), after one warm-up, torch.cuda.synchronize() around each timed call.
Writes one JSON object (--json) with the fields asymkv bench writes for the same quantities.
Run: python3 tools/bench_model_torch.py --shape llama-3-8b --batch 16 --prompt-len 2048 \
         --new 64 --json OUT.json"""
import argparse
import json
import sys
import time

# The built-in shapes of dist/shapes.c that this baseline can build (Llama-architecture ones).
SHAPES = {
    "llama-3-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       rope_theta=500000.0, max_position_embeddings=131072),
    "llama-2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                       rope_theta=10000.0, max_position_embeddings=4096),
    "tiny": dict(vocab_size=4096, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                 num_attention_heads=8, num_key_value_heads=2, rope_theta=10000.0,
                 max_position_embeddings=4096, tie_word_embeddings=True),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="llama-3-8b", choices=sorted(SHAPES))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=2048)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.new < 2 or a.batch < 1 or a.prompt_len < 1:
        sys.exit("bench_model_torch: --new must be >= 2, --batch and --prompt-len >= 1")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(a.seed)
    cfg = LlamaConfig(**SHAPES[a.shape], rms_norm_eps=1e-5, attn_implementation="sdpa")
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.prompt_len), device="cuda")
    mask = torch.ones_like(ids)

    def run(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n,
                                 min_new_tokens=n, do_sample=False, use_cache=True,
                                 pad_token_id=0)
        torch.cuda.synchronize()
        assert out.shape[1] == a.prompt_len + n, out.shape
        return time.perf_counter() - t0

    run(2)  # warm-up
    ttft = run(1)
    total = run(a.new)
    tpot = (total - ttft) / (a.new - 1)
    res = {"model": a.shape, "framework": "torch " + torch.__version__, "batch": a.batch,
           "prompt_len": a.prompt_len, "new_tokens": a.new, "ttft_s": ttft,
           "prefill_tok_s": a.batch * a.prompt_len / ttft, "decode_s": total - ttft,
           "tpot_s": tpot, "decode_tok_s": a.batch / tpot,
           "gpu": torch.cuda.get_device_name(0)}
    print(f"torch baseline: {a.shape}, batch {a.batch} x (prompt {a.prompt_len} + {a.new} new): "
          f"TTFT {ttft:.3f} s, TPOT {1e3 * tpot:.3f} ms, {a.batch / tpot:.1f} decode tok/s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
