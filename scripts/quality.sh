#!/usr/bin/env bash
# quality.sh [OUT_DIR] — the AsymKV quality experiment on the bundled reference model (CPU):
# perplexity (teacher-forced, decode path after a 256-token exact prefix, 2048-token windows)
# on the first 48 KB of its held-out text and passkey retrieval at 1k/2k tokens, for every
# --kv configuration of docs/quality.md, then the per-layer K-vs-V diagnostic and --search-kv
# at 1.5 and 2 bits on the first 16 KB. Results go to OUT_DIR (default build/quality), one file
# per configuration; configurations already done are skipped. About 1.5 h on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/quality}
mkdir -p "$out"
bin=build/asymkv
model=models/asymkv-ref
head -c 49152 "$model/heldout.txt" > "$out/heldout48k.txt"
head -c 16384 "$model/heldout.txt" > "$out/heldout16k.txt"
configs="fp16 kivi4 kivi2 asymkv:8/0 asymkv:6/0 asymkv:4/0 asymkv:2/0 asymkv:0/0 asymkv:8/6 asymkv:8/4 asymkv:8/2 asymkv:0/8 asymkv:0/4"
# QUALITY_REVERSE=1 walks the list backwards (a second process can share the work: finished
# configurations are skipped).
[ -n "${QUALITY_REVERSE:-}" ] && configs=$(echo $configs | tr ' ' '\n' | tac | tr '\n' ' ')
for kv in $configs; do
  name=$(echo "$kv" | tr ':/' '__')
  [ -s "$out/ppl_$name.txt" ] || $bin eval -q --model $model --text-file "$out/heldout48k.txt" \
      --kv "$kv" --window 2048 --prefix 256 > "$out/ppl_$name.txt"
  [ -s "$out/pk_$name.txt" ] || $bin eval -q --model $model --passkey --kv "$kv" --batch 4 \
      --passkey-lengths 1024,2048 --passkey-depths 0,0.5,1 --passkey-trials 2 --seed 7 > "$out/pk_$name.txt"
  echo "$kv: $(grep perplexity "$out/ppl_$name.txt") $(tail -2 "$out/pk_$name.txt" | awk '{print $1":"$NF}' | tr '\n' ' ')"
done
[ -s "$out/search.txt" ] || $bin eval -q --model $model --text-file "$out/heldout16k.txt" \
    --kv asymkv:4/0 --window 2048 --prefix 256 --diag --csv "$out/diag.csv" --search-kv \
    --budget 1.5,2 > "$out/search.txt"
