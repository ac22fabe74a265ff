#!/usr/bin/env bash
# run_pipeline_identity.sh NP — `mpiexec -n NP asymkv logits|generate` must be bitwise identical
# to one plain process on every fixture: the .npy logits (cmp) and the generated ids (diff),
# with chunked prefill (--prefill-chunk 7), several micro-batches, 7 prompts of different
# lengths sharing 3 slots, sequences stopping early at EOS, and uneven or empty layer spans.
# When `generate --help` offers --kv, every KV config below is checked too.
# Env: ASYMKV_BIN, ASYMKV_TESTDATA, MPIEXEC (mpiexec), MPIEXEC_NUMPROC_FLAG (-n). Exit 0 = same.
set -euo pipefail
NP=${1:?usage: run_pipeline_identity.sh NP}
BIN=${ASYMKV_BIN:?set ASYMKV_BIN}
DATA=${ASYMKV_TESTDATA:?set ASYMKV_TESTDATA}
MPIEXEC=${MPIEXEC:-mpiexec}
NPFLAG=${MPIEXEC_NUMPROC_FLAG:--n}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/akv-pipe.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
failures=0 checks=0

one() { "$BIN" "$@" </dev/null; }
many() { timeout 120 "$MPIEXEC" "$NPFLAG" "$NP" "$BIN" "$@" </dev/null; }
fail() { echo "FAIL [np $NP]: $*" >&2; failures=$((failures + 1)); }
# The single-process reference; a KV config this fixture cannot take (exit 2, e.g. a group
# that does not divide head_dim) is skipped, not failed: there is nothing to compare with.
ref() {
  local rc=0
  one "$@" 2>"$TMP/ref.err" || rc=$?
  [ $rc = 0 ] && return 0
  if [ $rc = 2 ] && grep -q -- '--kv' <<<"$*"; then
    echo "skip [np $NP]: $(head -1 "$TMP/ref.err")"
    echo "skip $*" >>"$TMP/skips"
    return 1
  fi
  fail "single process failed ($rc): $* : $(head -1 "$TMP/ref.err")"
  return 1
}

# 7 prompts of 5..40 ids cut from the fixture's ids.txt at fixed offsets.
make_prompts() {
  tr -s ' \n' '\n\n' <"$1/ids.txt" | awk 'NF' >"$TMP/all_ids"
  local spec="0:5 17:23 60:1 70:40 120:12 140:9 150:31"
  for s in $spec; do
    sed -n "$((${s%%:*} + 1)),$((${s%%:*} + ${s##*:}))p" "$TMP/all_ids" | paste -sd' '
  done >"$TMP/prompts.txt"
}

# An uneven placement: with more ranks than layers the empty spans come first ("0,0,1,1"),
# otherwise rank 0 takes all but one layer per other rank ("3,1" for 4 layers on 2 ranks).
uneven_layers() {
  local L=$1 out="" r
  for ((r = 0; r < NP; r++)); do
    if ((NP > L)); then out="$out,$((r >= NP - L ? 1 : 0))"
    else out="$out,$((r == 0 ? L - NP + 1 : 1))"; fi
  done
  echo "${out#,}"
}

# logits: same bytes as one process with the same flags (and, for fp16, as one-shot prefill).
check_logits() {
  local fx=$1 kv=("${@:2}") m="$DATA/$1" layers
  ref logits -q --model "$m" --ids-file "$m/ids.txt" --out "$TMP/ref.npy" --prefill-chunk 7 \
    "${kv[@]}" || return 0
  many logits -q --model "$m" --ids-file "$m/ids.txt" --out "$TMP/got.npy" --prefill-chunk 7 \
    --micro-batches 2 "${kv[@]}"
  checks=$((checks + 1))
  cmp -s "$TMP/ref.npy" "$TMP/got.npy" || fail "$fx ${kv[*]}: logits differ"
  if [ ${#kv[@]} -eq 0 ]; then
    one logits -q --model "$m" --ids-file "$m/ids.txt" --out "$TMP/ref1.npy"
    checks=$((checks + 1))
    cmp -s "$TMP/ref1.npy" "$TMP/got.npy" || fail "$fx: logits differ from one-shot prefill"
  fi
  layers=$(uneven_layers "$(sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' "$m/config.json")")
  many logits -q --model "$m" --ids-file "$m/ids.txt" --out "$TMP/got2.npy" --prefill-chunk 7 \
    --layers-per-rank "$layers" "${kv[@]}"
  checks=$((checks + 1))
  cmp -s "$TMP/ref.npy" "$TMP/got2.npy" || fail "$fx ${kv[*]}: logits differ with --layers-per-rank $layers"
}

# generate: 7 prompts, 3 slots, chunk 7; default micro-batches (= NP) and 3.
check_generate() {
  local fx=$1 kv=("${@:2}") m="$DATA/$1" mb
  make_prompts "$m"
  ref generate -q --model "$m" --prompts-file "$TMP/prompts.txt" -n 12 --batch 3 \
    --prefill-chunk 7 "${kv[@]}" >"$TMP/ref.txt" || return 0
  [ "$(wc -l <"$TMP/ref.txt")" = 7 ] || fail "$fx: single process printed $(wc -l <"$TMP/ref.txt") lines, want 7"
  for mb in 0 3; do
    many generate -q --model "$m" --prompts-file "$TMP/prompts.txt" -n 12 --batch 3 \
      --prefill-chunk 7 --micro-batches $mb "${kv[@]}" >"$TMP/got.txt"
    checks=$((checks + 1))
    diff -q "$TMP/ref.txt" "$TMP/got.txt" >/dev/null ||
      fail "$fx ${kv[*]} --micro-batches $mb: generated ids differ: $(diff "$TMP/ref.txt" "$TMP/got.txt" | head -4)"
  done
}

# EOS: a copy of the fixture whose EOS is a token some sequences produce early, so they leave
# their micro-batch while the others go on (and free a slot for a waiting prompt).
check_early_stop() {
  local m="$TMP/eos-model" eos
  cp -r "$DATA/llama-gqa" "$m"
  make_prompts "$m"
  one generate -q --model "$m" --prompts-file "$TMP/prompts.txt" -n 12 --batch 3 >"$TMP/ref.txt"
  eos=$(sed -n '2p' "$TMP/ref.txt" | awk '{print $3}') # 3rd token of prompt 2's continuation
  sed -i "s/\"eos_token_id\": [0-9]*/\"eos_token_id\": $eos/" "$m/generation_config.json"
  one generate -q --model "$m" --prompts-file "$TMP/prompts.txt" -n 12 --batch 3 >"$TMP/ref.txt"
  [ "$(sed -n '2p' "$TMP/ref.txt" | wc -w)" = 3 ] || fail "EOS $eos did not stop prompt 2 early"
  many generate -q --model "$m" --prompts-file "$TMP/prompts.txt" -n 12 --batch 3 \
    --prefill-chunk 7 >"$TMP/got.txt"
  checks=$((checks + 1))
  diff -q "$TMP/ref.txt" "$TMP/got.txt" >/dev/null || fail "early EOS: ids differ"
  rm -rf "$m"
}

KVS=("")
# Quantized configs with a small group and window, so these short prompts do get quantized.
if one generate --help | grep -q -- '--kv '; then
  KVS=("" "--kv asymkv:1/0 --kv-residual 32" "--kv kivi2 --kv-residual 32")
fi
for fx in llama-gqa mistral-mqa qwen2-tied; do
  for kv in "${KVS[@]}"; do
    # shellcheck disable=SC2086 # kv is "" or "--kv CONFIG"
    check_logits "$fx" $kv
    # shellcheck disable=SC2086
    check_generate "$fx" $kv
  done
done
check_early_stop
# mistral-mqa (head_dim 32) takes the quantized configs: they must have run, not been skipped.
if [ ${#KVS[@]} -gt 1 ] && [ "$(grep -c '^skip.*mistral' "$TMP/skips" 2>/dev/null || true)" != 0 ]; then
  fail "mistral-mqa skipped a quantized KV config"
fi
echo "pipeline identity, np $NP: $checks checks, $failures failed"
[ "$failures" = 0 ]
