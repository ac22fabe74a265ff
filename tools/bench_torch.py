#!/usr/bin/env python3
"""bench_torch.py — PyTorch SDPA decode baseline for tests/bench_decode_attn.c, same shapes
(Llama-3-8B: 32 query / 8 kv heads, head_dim 128; B 16 x T 32768, B 1 x T 131072 and
B 16 x T 2048), bf16, one query per sequence, GQA through enable_gqa=True (or the kv heads expanded where that flag
is missing). CUDA events, 5 warm-ups, median of 30. Bytes that must be read: K and V (bf16)
and q. Prints the same columns as the C benchmark and appends rows in its CSV format to
$OUT/bench_decode_attn.csv (the copy bandwidth is taken from that file's "copy" row when the C
benchmark ran first, else measured here with a 2 GiB device copy).
Run: python3 tools/bench_torch.py [--quick]"""
import csv
import os
import statistics
import sys

H_Q, H_KV, HD = 32, 8, 128
SHAPES = [("B16xT32k", 16, 32768), ("B1xT128k", 1, 131072), ("B16xT2k", 16, 2048)]


def median_us(fn, runs):
    import torch
    for _ in range(5):
        fn()
    times = []
    for _ in range(runs):
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) * 1000.0)
    return statistics.median(times)


def copy_gbps(csv_path):
    import torch
    if csv_path and os.path.exists(csv_path):
        with open(csv_path) as f:
            for row in csv.DictReader(f):
                if row["kernel"] == "copy":
                    return float(row["GBps"])
    n = 2 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda").fill_(0x5A)
    dst = torch.empty_like(src)
    us = median_us(lambda: dst.copy_(src), 15)
    return 2.0 * n / (us * 1e3)


def main():
    quick = "--quick" in sys.argv
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"bench_torch: no PyTorch ({e}); skipped")
        return 0
    if not torch.cuda.is_available():
        print("bench_torch: no CUDA device; skipped")
        return 0
    out = os.environ.get("OUT")
    csv_path = os.path.join(out, "bench_decode_attn.csv") if out else None
    copy = copy_gbps(csv_path)
    runs = 5 if quick else 30
    print(f"bench_torch on {torch.cuda.get_device_name()} (torch {torch.__version__}), "
          f"copy {copy:.0f} GB/s, median of {runs}")
    rows = []
    gen = torch.Generator(device="cuda").manual_seed(1234)
    for name, B, T in SHAPES[:1] if quick else SHAPES:
        q = torch.rand(B, H_Q, 1, HD, device="cuda", dtype=torch.bfloat16, generator=gen) * 4 - 2
        k = torch.rand(B, H_KV, T, HD, device="cuda", dtype=torch.bfloat16, generator=gen) * 2 - 1
        v = torch.rand(B, H_KV, T, HD, device="cuda", dtype=torch.bfloat16, generator=gen) * 2 - 1
        try:
            F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)  # noqa: E731
            label = "sdpa bf16 (enable_gqa)"
        except TypeError:
            ke = k.repeat_interleave(H_Q // H_KV, dim=1)
            ve = v.repeat_interleave(H_Q // H_KV, dim=1)
            fn = lambda: F.scaled_dot_product_attention(q, ke, ve)  # noqa: E731
            label = "sdpa bf16 (expanded)"
        with torch.no_grad():
            us = median_us(fn, runs)
        nbytes = B * (2 * T * H_KV * HD * 2 + H_Q * HD * 2)
        gbps = nbytes / (us * 1e3)
        rows.append((label, name, B, T, nbytes, us, gbps, gbps / copy))
        print(f"{label:<22} {name:<12} {nbytes:12.0f} {us:10.1f} {gbps:9.0f} {100 * gbps / copy:7.1f}%")
        del q, k, v
        torch.cuda.empty_cache()
    if csv_path:
        new = not os.path.exists(csv_path)
        with open(csv_path, "a") as f:
            if new:
                f.write("kernel,shape,B,T,bytes,us,GBps,frac_copy\n")
                f.write(f"copy,d2d,0,0,{2.0 * (2 << 30):.0f},0,{copy:.1f},1.0\n")
            for r in rows:
                f.write(f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]:.0f},{r[5]:.2f},{r[6]:.1f},{r[7]:.4f}\n")
        print(f"appended to {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
