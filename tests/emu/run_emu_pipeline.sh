#!/usr/bin/env bash
# run_emu_pipeline.sh — the CUDA backend's multi-rank paths on the emulated GPU (asymkv_emu,
# tests/emu/): 1, 2 and 3 ranks sharing the one emulated GPU (MPI transport through host copies
# of the device activations, device-side sampling histories), then 2 and 3 ranks with a GPU each
# (ASYMKV_EMU_GPU_PER_RANK=1: the NCCL transport of comm/comm_nccl.c over tests/emu/nccl.h),
# against the CPU backend of the real binary. The emulation computes exactly what the CPU backend computes, so the generated
# ids and the logits must be identical: greedy and sampled (temperature, top-p, repetition
# penalty), fp16 and two AsymKV configs, chunked prefill, several prompts sharing slots.
# Env: ASYMKV_BIN, ASYMKV_EMU_BIN, ASYMKV_TESTDATA, ASYMKV_SRC, MPIEXEC, MPIEXEC_NUMPROC_FLAG.
set -euo pipefail
BIN=${ASYMKV_BIN:?} EMU=${ASYMKV_EMU_BIN:?} DATA=${ASYMKV_TESTDATA:?} SRC=${ASYMKV_SRC:?}
MPIEXEC=${MPIEXEC:-mpiexec} NPFLAG=${MPIEXEC_NUMPROC_FLAG:--n}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/akv-emu.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0 checks=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

printf '%s\n' "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35" \
  "40 41 42 43 44 45" "7 8 9" "100 90 80 70 60 50 40 30 20 10 5 4 3 2 1 77 66 55 44 33 22 11" >"$TMP/p.txt"
common=(-q --prompts-file "$TMP/p.txt" -n 40 --batch 3 --prefill-chunk 7 --kv-residual 32)
for model in "$SRC/models/default" "$DATA/mistral-mqa"; do
  for kv in fp16 asymkv:1/0 "k=2x1,1x1;v=1x2"; do
    [ "$model" = "$SRC/models/default" ] && [ "$kv" = "k=2x1,1x1;v=1x2" ] && kv="k=4x2,1x6;v=2x1,1x7"
    for samp in "" "--temp 0.8 --top-p 0.9 --repetition-penalty 1.3 --seed 7"; do
      # shellcheck disable=SC2086
      "$BIN" generate --model "$model" "${common[@]}" --kv "$kv" --backend cpu $samp \
        >"$TMP/cpu.txt" </dev/null
      for np in 1 2 3; do
        checks=$((checks + 1))
        # shellcheck disable=SC2086
        if ! timeout 120 "$MPIEXEC" "$NPFLAG" "$np" "$EMU" generate --model "$model" \
          "${common[@]}" --kv "$kv" --backend cuda $samp >"$TMP/emu.txt" 2>"$TMP/emu.err" </dev/null; then
          fail "np $np $model --kv $kv $samp: exit $? $(head -2 "$TMP/emu.err")"
          continue
        fi
        cmp -s "$TMP/cpu.txt" "$TMP/emu.txt" ||
          fail "np $np $(basename "$model") --kv $kv $samp: ids differ from the CPU backend: $(diff "$TMP/cpu.txt" "$TMP/emu.txt" | head -3)"
      done
    done
  done
done
# NCCL: every rank its own (emulated) GPU
for samp in "" "--temp 0.8 --top-p 0.9 --repetition-penalty 1.3 --seed 7"; do
  # shellcheck disable=SC2086
  "$BIN" generate --model "$SRC/models/default" "${common[@]}" --kv asymkv:1/0 --backend cpu \
    $samp >"$TMP/cpu.txt" </dev/null
  for np in 2 3; do
    checks=$((checks + 1))
    # shellcheck disable=SC2086
    if ! ASYMKV_EMU_GPU_PER_RANK=1 timeout 120 "$MPIEXEC" -x ASYMKV_EMU_GPU_PER_RANK "$NPFLAG" \
      "$np" "$EMU" generate --model "$SRC/models/default" "${common[@]:1}" --kv asymkv:1/0 \
      --backend cuda $samp >"$TMP/emu.txt" 2>"$TMP/emu.err" </dev/null; then
      fail "nccl np $np $samp: $(head -2 "$TMP/emu.err")"
      continue
    fi
    grep -q "transport nccl" "$TMP/emu.err" || fail "nccl np $np: not on NCCL: $(grep transport "$TMP/emu.err")"
    grep -E '^[0-9]+( [0-9]+)*$' "$TMP/emu.txt" | cmp -s "$TMP/cpu.txt" - ||
      fail "nccl np $np $samp: ids differ from the CPU backend"
  done
done
# a rank that dies or fails on the NCCL path ends the job promptly (exit != 0, < 10 s)
for hook in ASYMKV_TEST_KILL_RANK=1 ASYMKV_TEST_FAIL_RANK=1; do
  checks=$((checks + 1))
  t0=$(date +%s)
  rc=0
  env "$hook" ASYMKV_EMU_GPU_PER_RANK=1 timeout 60 "$MPIEXEC" -x ASYMKV_EMU_GPU_PER_RANK \
    -x "${hook%%=*}" "$NPFLAG" 3 "$EMU" generate "${common[@]}" --model "$SRC/models/default" \
    --backend cuda >/dev/null 2>"$TMP/f.err" </dev/null || rc=$?
  secs=$(($(date +%s) - t0))
  { [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$secs" -lt 10 ]; } ||
    fail "nccl $hook: exit $rc after $secs s"
done
# logits over MPI: the last rank writes the same .npy as the CPU backend
tr -s ' \n' '\n\n' <"$DATA/mistral-mqa/ids.txt" | awk 'NF' | head -150 | paste -sd' ' >"$TMP/ids.txt"
"$BIN" logits -q --model "$DATA/mistral-mqa" --ids-file "$TMP/ids.txt" --kv kivi2 --kv-residual 32 \
  --prefill-chunk 11 --backend cpu --out "$TMP/cpu.npy" </dev/null
for np in 1 2; do
  checks=$((checks + 1))
  timeout 120 "$MPIEXEC" "$NPFLAG" "$np" "$EMU" logits -q --model "$DATA/mistral-mqa" \
    --ids-file "$TMP/ids.txt" --kv kivi2 --kv-residual 32 --prefill-chunk 11 --backend cuda \
    --out "$TMP/emu.npy" </dev/null || fail "logits np $np: exit $?"
  cmp -s "$TMP/cpu.npy" "$TMP/emu.npy" || fail "logits np $np: .npy differs from the CPU backend"
done
# the settings say where the model runs
"$EMU" generate --model "$SRC/models/default" --prompt "In the beginning" -n 4 2>"$TMP/set.err" \
  >/dev/null </dev/null
checks=$((checks + 1))
grep -qE "backend +cuda" "$TMP/set.err" && grep -q "cuda:0" "$TMP/set.err" ||
  fail "--backend auto did not pick the (emulated) GPU: $(grep -E 'backend|device' "$TMP/set.err")"
# CPU-only modes on --backend cuda: one line, exit 2; with auto they run on the CPU
for bad in "generate --prompt Hi -n 2 --kv fp32 --backend cuda" \
  "eval --text-file $SRC/models/default/heldout.txt --window 64 --diag --backend cuda"; do
  checks=$((checks + 1))
  rc=0
  # shellcheck disable=SC2086
  "$EMU" $bad -q --model "$SRC/models/default" >/dev/null 2>"$TMP/bad.err" </dev/null || rc=$?
  [ "$rc" = 2 ] && [ "$(wc -l <"$TMP/bad.err")" = 1 ] && grep -q "backend cpu" "$TMP/bad.err" ||
    fail "$bad: exit $rc, stderr: $(head -3 "$TMP/bad.err")"
done
checks=$((checks + 1))
"$EMU" generate -q --model "$SRC/models/default" --prompt Hi -n 2 --kv fp32 >/dev/null \
  2>"$TMP/auto.err" </dev/null || fail "--kv fp32 with --backend auto: $(head -2 "$TMP/auto.err")"
echo "run_emu_pipeline: $checks checks, $fails failed"
[ "$fails" = 0 ]
