#!/usr/bin/env bash
# run_failure.sh NP — a failing or dying rank ends the whole job promptly (< 10 s), with the
# right exit code, one stderr line from asymkv naming the failing rank, and no output file left
# behind. Uses the test hooks ASYMKV_TEST_FAIL_RANK / ASYMKV_TEST_KILL_RANK /
# ASYMKV_TEST_FAIL_TICK (dist/engine_internal.h). NP >= 2.
# Env: ASYMKV_BIN, ASYMKV_TESTDATA, MPIEXEC (mpiexec), MPIEXEC_NUMPROC_FLAG (-n).
set -euo pipefail
NP=${1:?usage: run_failure.sh NP}
BIN=${ASYMKV_BIN:?set ASYMKV_BIN}
DATA=${ASYMKV_TESTDATA:?set ASYMKV_TESTDATA}
MPIEXEC=${MPIEXEC:-mpiexec}
NPFLAG=${MPIEXEC_NUMPROC_FLAG:--n}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/akv-fail.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
M=$DATA/llama-gqa
LIMIT=10
failures=0

# A long enough job: 4 prompts of the fixture's 200 ids, prefilled 7 at a time.
for _ in 1 2 3 4; do paste -sd' ' "$M/ids.txt"; done >"$TMP/prompts.txt"
GEN=(generate -q --model "$M" --prompts-file "$TMP/prompts.txt" -n 16 --batch 2 --prefill-chunk 7)
LOG=(logits -q --model "$M" --ids-file "$M/ids.txt" --prefill-chunk 7 --out "$TMP/out.npy")

# expect NAME WANT_RC ERR_PATTERN [VAR=VALUE...] -- ASYMKV ARGS...: runs under mpiexec with a
# hard 60 s guard, then checks time, exit code and the asymkv error lines.
expect() {
  local name=$1 want=$2 pat=$3 envs=() rc=0
  shift 3
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  local t0 t1
  t0=$(date +%s.%N)
  env "${envs[@]}" timeout 60 "${LAUNCH[@]}" "$BIN" "$@" </dev/null \
    >"$TMP/stdout" 2>"$TMP/stderr" || rc=$?
  t1=$(date +%s.%N)
  local secs lines
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  lines=$(grep -c '^asymkv [a-z]*: .*error:' "$TMP/stderr" || true)
  echo "$name: rc $rc in $secs s; $(grep -m1 '^asymkv' "$TMP/stderr" || echo 'no asymkv line')"
  ok=1
  awk -v s="$secs" -v l="$LIMIT" 'BEGIN { exit !(s < l) }' || { echo "  took $secs s (limit $LIMIT)"; ok=0; }
  if [ "$want" = any ]; then [ "$rc" != 0 ] || { echo "  exit 0, want a failure"; ok=0; }
  elif [ "$rc" != "$want" ]; then echo "  exit $rc, want $want"; ok=0; fi
  if [ -n "$pat" ]; then
    [ "$lines" = 1 ] || { echo "  $lines asymkv error lines, want 1"; ok=0; }
    grep -q -- "$pat" "$TMP/stderr" || { echo "  stderr lacks \"$pat\""; ok=0; }
  fi
  [ ! -e "$TMP/out.npy" ] || { echo "  output file left behind"; ok=0; }
  ls "$TMP" | grep -q '\.tmp\.' && { echo "  temp file left behind"; ok=0; }
  [ $ok = 1 ] || { failures=$((failures + 1)); sed 's/^/  | /' "$TMP/stderr" | head -20; }
}

LAUNCH=("$MPIEXEC" "$NPFLAG" "$NP")
last=$((NP - 1))
mid=$((NP / 2))
expect "run-time failure on the last rank" 1 "rank $last: error: simulated failure" \
  ASYMKV_TEST_FAIL_RANK=$last -- "${GEN[@]}"
expect "run-time failure on rank $mid (logits)" 1 "rank $mid: error: simulated failure" \
  ASYMKV_TEST_FAIL_RANK=$mid ASYMKV_TEST_FAIL_TICK=5 -- "${LOG[@]}"
expect "allocation failure on rank $last (agreed)" 1 "rank $last: error: simulated allocation" \
  ASYMKV_TEST_FAIL_RANK=$last ASYMKV_TEST_FAIL_TICK=-1 -- "${GEN[@]}"
expect "rank 1 killed (SIGKILL)" any "" ASYMKV_TEST_KILL_RANK=1 -- "${GEN[@]}"
expect "rank $last killed during logits" any "" ASYMKV_TEST_KILL_RANK=$last -- "${LOG[@]}"
expect "bad token id (input, agreed)" 2 "rank 0: error: token id 99999" -- \
  generate --model "$M" --ids "1 99999" -n 4
expect "bad flag before MPI starts" 2 "unknown option --bogus" -- \
  generate --model "$M" --ids "1 2" --bogus
expect "wrong --layers-per-rank" 2 "give one layer count per rank" -- \
  generate -q --model "$M" --ids "1 2" --layers-per-rank 1,2,3,4,5
expect "unwritable --out" 2 "cannot write /nonexistent" -- \
  logits -q --model "$M" --ids "1 2" --out /nonexistent/x.npy
printf '1 2\n\n3 x\n' >"$TMP/bad-prompts.txt"
expect "bad line in --prompts-file" 2 "rank 0: error: .*bad-prompts.txt, prompt 2: \"x\"" -- \
  generate -q --model "$M" --prompts-file "$TMP/bad-prompts.txt"
LAUNCH=() # the same input errors in one plain process: one line, no rank prefix
expect "bad line in --prompts-file, one process" 2 "error: .*bad-prompts.txt, prompt 2" -- \
  generate -q --model "$M" --prompts-file "$TMP/bad-prompts.txt"
expect "bad token id, one process" 2 "generate: error: token id 99999" -- \
  generate --model "$M" --ids "1 99999" -n 4
echo "failure handling, np $NP: $failures failed"
[ "$failures" = 0 ]
