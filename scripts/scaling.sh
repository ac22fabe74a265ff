#!/usr/bin/env bash
# scaling.sh — the pipeline scaling benchmark (issue "Multi-GPU runs"): `asymkv bench` under
# mpirun for each shape, rank count and micro-batch setting; a markdown table of decode tok/s,
# TPOT, TTFT, largest bubble and per-rank memory max/min (this placement vs an even split) at
# the end, one JSON per run in $OUT (or build-gpu/scaling). Needs a built asymkv (BIN).
#   scripts/scaling.sh                         defaults below (GPU machine)
#   SHAPES="tiny" RANKS="1 2" BACKEND=cpu BATCH=4 PROMPT=64 NEW=16 scripts/scaling.sh   (smoke)
# Env: BIN (build-gpu/asymkv), SHAPES ("llama-3-8b llama-3-70b"), RANKS ("1 2 4 8": counts above
# the GPUs present are skipped on a GPU backend), MB ("1 2": micro-batches = factor x ranks),
# BATCH (16), PROMPT (2048), NEW (64), KV (default asymkv:L/0, L = the shape's layers),
# BACKEND (auto), EXTRA (more bench flags).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
BIN=${BIN:-build-gpu/asymkv}
SHAPES=${SHAPES:-llama-3-8b llama-3-70b}
RANKS=${RANKS:-1 2 4 8}
MB=${MB:-1 2}
BATCH=${BATCH:-16} PROMPT=${PROMPT:-2048} NEW=${NEW:-64} BACKEND=${BACKEND:-auto}
DIR=${OUT:-build-gpu/scaling}
mkdir -p "$DIR"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
for shape in $SHAPES; do
  # default cache: keys 2-bit and values 1-bit in every layer (asymkv:L/0)
  case $shape in
  llama-3-70b) L=80 ;; llama-2-13b) L=40 ;; qwen2-7b) L=28 ;; tiny) L=4 ;; *) L=32 ;;
  esac
  kv=${KV:-asymkv:$L/0}
  for np in $RANKS; do
    if [ "$BACKEND" != cpu ] && [ "${gpus:-0}" -gt 0 ] && [ "$np" -gt "$gpus" ]; then
      echo "skip $shape np $np: $gpus GPU(s)"; continue
    fi
    for f in $MB; do
      m=$((f * np)) json="$DIR/$shape-np$np-mb$m.json"
      echo "== $shape, $np rank(s), $m micro-batches, --kv $kv"
      # shellcheck disable=SC2086
      if ! mpirun -np "$np" "$BIN" bench -q --synthetic "$shape" --batch "$BATCH" \
        --prompt-len "$PROMPT" -n "$NEW" --kv "$kv" --micro-batches "$m" --backend "$BACKEND" \
        --json "$json" ${EXTRA:-}; then
        echo "FAILED: $shape np $np mb $m"; rm -f "$json"
      fi
    done
  done
done
python3 - "$DIR" <<'PY'
import glob, json, os, sys
rows = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(sys.argv[1], "*.json")))]
print("| shape | ranks | micro-batches | backend | decode tok/s | TPOT ms | TTFT s | max bubble | mem max/min | even split max/min |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in sorted(rows, key=lambda r: (r["model"], r["ranks"], r["micro_batches"])):
    bub = max(p["bubble"] for p in r["per_rank"])
    print(f"| {r['model']} | {r['ranks']} | {r['micro_batches']} | {r['backend']} | {r['decode_tok_s']:.1f} | "
          f"{1e3 * r['tpot_s']:.2f} | {r['ttft_s']:.3f} | {100 * bub:.1f}% | {r['mem_max_over_min']:.3f} | "
          f"{r['even_split_max_over_min']:.3f} |")
PY
