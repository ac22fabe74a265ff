#!/usr/bin/env bash
# gpu-check.sh — the GPU machine's check, run there from the repository root: unpacks the carried
# .debs (Criterion, cJSON, PCRE2) into /opt/deps, configures build-gpu for sm_90, builds, runs the
# GPU tests (ctest label "gpu"), the e2e step, compute-sanitizer memcheck over the GPU tests
# (long-context cases skipped there; a canary, a planted overflow in a forked child, first proves
# that memcheck sees Criterion's forked test processes), the decode-attention benchmark
# (tests/bench_decode_attn and tools/bench_torch.py), the whole-model benchmark and the CPU tests,
# and always ends with a PASS/FAIL table. Exit 0 only if no step failed. Logs go to
# build-gpu/check-logs and, when $OUT is set (the device tool), to $OUT as one tarball plus
# summary.txt. Needs the .debs folder (../shared/tools/gpu-machine-debs.sh .debs) carried along.
# All steps take longer than one 600 s call (measured on an H200, 2026-11-29: build 88 s, gpu
# 61 s, e2e 72 s, memcheck 35 s, bench 13 s, modelbench ~250 s), so from the lead's machine:
#   run: GPU_CHECK_STEPS="gpu e2e memcheck bench" scripts/gpu-check.sh   carry [".debs"], 600 s
#   then at once (the machine stays warm 30 s; the build is kept):
#   run: GPU_CHECK_STEPS="modelbench" scripts/gpu-check.sh
#   scripts/gpu-check.sh                    all steps
#   GPU_CHECK_STEPS="gpu memcheck" ...      only these of: cpu gpu e2e memcheck bench modelbench
#                                           profile (setup and build always run)
#   GPU_CHECK_BUDGET=540                    seconds before remaining steps are skipped (default 540,
#                                           so the table prints inside a 600 s command limit)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

SECONDS=0
BUDGET=${GPU_CHECK_BUDGET:-540}
WANT=" ${GPU_CHECK_STEPS:-cpu gpu e2e memcheck bench modelbench} "
BUILD=build-gpu
# Logs stay in the build dir (the device tool returns at most 8 files from $OUT); at the end they
# go to $OUT as one tarball plus the summary.
LOGS=$BUILD/check-logs
rm -rf "$LOGS"; mkdir -p "$LOGS"
export PATH="$PATH:/usr/local/cuda/bin"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1

names=() states=() secs=() notes=()
record() { names+=("$1"); states+=("$2"); secs+=("$3"); notes+=("${4:-}"); }
failed() { local s; for s in "${states[@]}"; do [ "$s" = FAIL ] && return 0; done; return 1; }

# step NAME LOG LIMIT CMD...: runs CMD (appending to LOG) under a timeout that also respects the
# remaining budget; records PASS/FAIL; on failure shows the log's tail.
step() {
  local name=$1 log=$LOGS/$2 limit=$3 left rc t0=$SECONDS
  shift 3
  left=$((BUDGET - SECONDS))
  if [ "$left" -lt 20 ]; then record "$name" SKIP 0 "out of time budget"; return 1; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== [${SECONDS}s] $name (limit ${limit}s, log $(basename "$log"))"
  { echo "### $name: $*"; } >>"$log"
  timeout --kill-after=10 "$limit" bash -c '"$@"' step "$@" >>"$log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    record "$name" PASS $((SECONDS - t0))
  else
    local why="exit $rc"; [ "$rc" -eq 124 ] && why="timed out after ${limit}s"
    record "$name" FAIL $((SECONDS - t0)) "$why"
    echo "-- $name failed ($why); last lines of $(basename "$log"):"
    tail -n 40 "$log" | cut -c1-240
  fi
  return "$rc"
}

# shellcheck disable=SC2317  # called through step (bash -c)
unpack_deps() {
  [ -d .debs ] || { echo "no .debs folder: relying on system packages"; return 0; }
  mkdir -p /opt/deps && for f in .debs/*.deb; do dpkg -x "$f" /opt/deps || return 1; done
}
# The debs' pkg-config files and cJSON's CMake package hard-code /usr, so neither is used from the
# prefix: no PKG_CONFIG_PATH, and find_package(cJSON) is disabled below; CMakeLists.txt then falls
# back to find_path/find_library, which search CMAKE_PREFIX_PATH.
export CMAKE_PREFIX_PATH=/opt/deps/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
export LD_LIBRARY_PATH=/opt/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
gpu_targets=$(for f in tests/gpu_*.c; do [ -e "$f" ] && basename "$f" .c; done | tr '\n' ' ')

# memcheck over the kernel tests: one process at a time, children followed, errors counted.
# A planted overflow in a forked child must be reported, or memcheck proves nothing about the
# Criterion tests (each runs in a child process).
# shellcheck disable=SC2317
memcheck_canary() {
  local dir=$BUILD/canary
  mkdir -p "$dir"
  cat >"$dir/canary.cu" <<'EOF'
#include <sys/wait.h>
#include <unistd.h>
__global__ void past_end(int *p, int n) { p[n + threadIdx.x] = 1; }
int main() {
  if (fork() == 0) {
    int *p = nullptr;
    cudaMalloc(&p, 64 * sizeof(int));
    past_end<<<1, 1>>>(p, 64);
    cudaDeviceSynchronize();
    return 0;
  }
  int st = 0;
  wait(&st);
  return 0;
}
EOF
  nvcc -arch=sm_90 -o "$dir/canary" "$dir/canary.cu" || return 1
  compute-sanitizer --tool memcheck --target-processes all "$dir/canary" >"$dir/canary.log" 2>&1
  cat "$dir/canary.log"
  grep -qE "ERROR SUMMARY: [1-9]" "$dir/canary.log"
}

# shellcheck disable=SC2317
memcheck() {
  ASYMKV_GPU_QUICK=1 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 3 \
    --print-limit 20 "$BUILD/tests/gpu_kernels" -j1 --verbose || return $?
  ! grep -E "ERROR SUMMARY: [1-9]" "$LOGS/memcheck.log"
}

# shellcheck disable=SC2317
memcheck_kvattn() {
  ASYMKV_GPU_QUICK=1 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 3 \
    --print-limit 20 "$BUILD/tests/gpu_kvattn" -j1 --verbose || return $?
  ! grep -E "ERROR SUMMARY: [1-9]" "$LOGS/memcheck-kvattn.log"
}

# The binary end to end on the GPU: the bundled model under --backend cuda vs cpu (generate
# must print the same greedy text), a 2-rank pipeline on the one GPU (MPI transport with host
# copies) identical to one process, and held-out perplexity on both backends.
# shellcheck disable=SC2317
e2e() {
  local bin=$BUILD/asymkv m=models/default t=$BUILD/e2e
  mkdir -p "$t"
  # fp16 must print the same text; a quantized cache (R = 32, so it quantizes within the run) may
  # drift once a code flips (tests/model_compare.h): reported, judged by gpu_model's NLL check
  for kv in fp16 asymkv:4/0 "k=1x8;v=1x8"; do
    "$bin" generate -q --model $m --prompt "And God said" -n 48 --kv "$kv" --kv-residual 32 \
      --backend cuda >"$t/gpu.txt" 2>"$t/gpu.err" || { cat "$t/gpu.err"; return 1; }
    "$bin" generate -q --model $m --prompt "And God said" -n 48 --kv "$kv" --kv-residual 32 \
      --backend cpu >"$t/cpu.txt" 2>"$t/cpu.err" || { cat "$t/cpu.err"; return 1; }
    if cmp -s "$t/gpu.txt" "$t/cpu.txt"; then echo "e2e: generate --kv $kv: cuda == cpu"
    else
      echo "e2e: generate --kv $kv: cuda != cpu"; diff "$t/cpu.txt" "$t/gpu.txt"
      [ "$kv" = fp16 ] && return 1
    fi
  done
  "$bin" generate --model $m --prompt "In the beginning" -n 200 --kv asymkv:2/0 --backend cuda \
    --ctx 2048 2>&1 >/dev/null | grep -E "prefill|backend|transport" | sed 's/^/e2e: /'
  printf '1 2 3 4 5 6 7 8 9 10 11 12\n40 41 42 43 44 45\n7 8 9\n' >"$t/p.txt"
  "$bin" generate -q --model $m --prompts-file "$t/p.txt" -n 20 --kv asymkv:2/0 --batch 3 \
    --backend cuda >"$t/one.txt" || return 1
  mpirun -np 2 "$bin" generate -q --model $m --prompts-file "$t/p.txt" -n 20 --kv asymkv:2/0 \
    --batch 3 --backend cuda >"$t/two.txt" 2>"$t/two.err" || { cat "$t/two.err"; return 1; }
  if cmp -s "$t/one.txt" "$t/two.txt"; then echo "e2e: 2 ranks on one GPU == 1 process"
  else echo "e2e: 2 ranks differ"; diff "$t/one.txt" "$t/two.txt"; return 1; fi
  head -c 8192 $m/heldout.txt >"$t/held.txt"
  # perplexity on both backends: every run must print one; fp16 must agree within 1%
  local ppl p_cuda
  for kv in fp16 asymkv:2/0 "k=1x8;v=1x8"; do
    for be in ${E2E_BACKENDS:-cuda cpu}; do
      ppl=$("$bin" eval --model $m --text-file "$t/held.txt" --window 1024 --kv "$kv" \
        --backend "$be" 2>"$t/eval.err" | sed -n 's/^perplexity: //p')
      [ -n "$ppl" ] || { echo "e2e: eval --kv $kv --backend $be: no perplexity"; cat "$t/eval.err"; return 1; }
      echo "e2e: eval --kv $kv --backend $be: perplexity: $ppl"
      [ "$be" = cuda ] && p_cuda=$ppl
    done
    if [ "$kv" = fp16 ] && ! awk -v a="$p_cuda" -v b="$ppl" 'BEGIN { exit !(a / b < 1.01 && b / a < 1.01) }'; then
      echo "e2e: fp16 perplexity differs by more than 1% between the backends"; return 1
    fi
  done
}

# Whole-model decode on the GPU: asymkv bench on a synthetic Llama-3-8B (fp16 vs AsymKV caches)
# and the bundled model; JSON per run in $LOGS.
# shellcheck disable=SC2317
modelbench() {
  local bin=$BUILD/asymkv
  for kv in fp16 asymkv:32/0 "k=1x32;v=1x32"; do
    "$bin" bench -q --synthetic llama-3-8b --batch 16 --prompt-len 2048 -n 64 --kv "$kv" \
      --backend cuda --json "$LOGS/bench-8b-${kv//[^a-z0-9]/_}.json" || return 1
  done
  "$bin" bench -q --synthetic llama-3-8b --batch 16 --prompt-len 2048 -n 64 --kv asymkv:32/0 \
    --prefill-chunk 2048 --backend cuda --json "$LOGS/bench-8b-asymkv_32_0-chunk2048.json" || return 1
  "$bin" bench -q --model models/default --batch 16 --prompt-len 512 -n 128 --kv asymkv:2/0 \
    --backend cuda --json "$LOGS/bench-ref.json" || return 1
  mpirun -np 2 "$bin" bench -q --model models/default --batch 16 --prompt-len 512 -n 128 \
    --kv asymkv:2/0 --backend cuda --json "$LOGS/bench-ref-np2.json" || return 1
  python3 tools/bench_model_torch.py --shape llama-3-8b --batch 16 --prompt-len 2048 --new 64 \
    --json "$LOGS/bench-8b-torch.json" || return 1
}

# Nsight Compute: the full report of one compressed decode-attention launch of the benchmark
# (asymkv:32/0, then all-1-bit, B16xT32k), the warp stall reasons of the first, and the SASS of
# the two kernels (cuobjdump) for counting the tile loop's instructions. (ncu over a whole-model
# run, even filtered to a few kernels, ran past 300 s on the H200: not done here.)
# shellcheck disable=SC2317
profile() {
  local ncu=(ncu --clock-control none) r m=""
  "${ncu[@]}" --set full -k regex:kvattn_tc -c 1 "$BUILD/tests/bench_decode_attn" --quick \
    >"$LOGS/ncu-tc-asymkv32.txt" 2>&1 || return 1
  "${ncu[@]}" --set full -k regex:kvattn_tc --launch-skip 10 -c 1 \
    "$BUILD/tests/bench_decode_attn" --quick >"$LOGS/ncu-tc-1bit.txt" 2>&1 || return 1
  for r in long_scoreboard short_scoreboard wait math_pipe_throttle mio_throttle barrier \
    branch_resolving dispatch_stall no_instruction not_selected selected lg_throttle membar \
    sleeping misc drain tex_throttle imc_miss; do
    m="$m${m:+,}smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio"
  done
  "${ncu[@]}" --metrics "$m,smsp__inst_executed.sum,smsp__cycles_active.avg" -k regex:kvattn_tc -c 1 \
    "$BUILD/tests/bench_decode_attn" --quick >"$LOGS/ncu-tc-stalls.txt" 2>&1 || return 1
  local obj
  obj=$(find "$BUILD" -name 'kvattn.cu.o' | head -n 1)
  for f in _Z16kvattn_tc_kernelILi128ELi2ELi1EEv9KvaParams _Z16kvattn_tc_kernelILi128ELi1ELi1EEv9KvaParams; do
    cuobjdump -sass -fun "$f" "$obj" >"$LOGS/sass-$f.txt" 2>&1
  done
  grep -E "Duration|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Waves Per SM|Executed Instructions  " \
    "$LOGS/ncu-tc-asymkv32.txt" "$LOGS/ncu-tc-1bit.txt"
  grep -E "stalled|inst_executed|cycles_active" "$LOGS/ncu-tc-stalls.txt" | sort -k3 -n -r | head -n 20
}

# The whole-model table: each asymkv bench run beside the PyTorch baseline of its shape.
modelbench_table() {
  python3 - "$LOGS" <<'PY'
import glob, json, os, sys
d = sys.argv[1]
torch = {}
for p in glob.glob(os.path.join(d, "bench-*-torch.json")):
    t = json.load(open(p)); torch[(t["model"], t["batch"], t["prompt_len"])] = t
print(f"  {'run (c: prefill chunk)':<40}{'TTFT s':>8}{'TPOT ms':>9}{'tok/s':>8}{'x floor':>8}{'x torch TPOT':>13}")
for p in sorted(glob.glob(os.path.join(d, "bench-*.json"))):
    if p.endswith("-torch.json"):
        continue
    r = json.load(open(p)); t = torch.get((r["model"], r["batch"], r["prompt_len"]))
    name = f"{r['model']} {r['kv'][:14]} np{r['ranks']} c{r['prefill_chunk']}"
    xt = f"{r['tpot_s'] / t['tpot_s']:.2f}" if t else "-"
    print(f"  {name:<40}{r['ttft_s']:8.3f}{1e3 * r['tpot_s']:9.2f}{r['decode_tok_s']:8.1f}"
          f"{r['tpot_over_floor']:8.2f}{xt:>13}")
for t in torch.values():
    print(f"  {'torch ' + t['model']:<40}{t['ttft_s']:8.3f}{1e3 * t['tpot_s']:9.2f}{t['decode_tok_s']:8.1f}")
PY
}

# shellcheck disable=SC2317
memcheck_sample() {
  ASYMKV_GPU_QUICK=1 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 3 \
    --print-limit 20 "$BUILD/tests/gpu_sample" -j1 --verbose || return $?
  ! grep -E "ERROR SUMMARY: [1-9]" "$LOGS/memcheck-sample.log"
}

# shellcheck disable=SC2317
memcheck_model() {
  ASYMKV_GPU_QUICK=1 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 3 \
    --print-limit 20 "$BUILD/tests/gpu_model" -j1 --verbose --filter 'gpu_model/mistral_mqa' \
    || return $?
  ! grep -E "ERROR SUMMARY: [1-9]" "$LOGS/memcheck-model.log"
}

# shellcheck disable=SC2317
bench() {
  OUT="$LOGS" "$BUILD/tests/bench_decode_attn" || return $?
  OUT="$LOGS" python3 tools/bench_torch.py
}

# The benchmark table: kernel, shape, us, GB/s, % of copy bandwidth, speed-up over SDPA.
bench_table() {
  python3 - "$LOGS/bench_decode_attn.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
sdpa = {r["shape"]: float(r["us"]) for r in rows if r["kernel"].startswith("sdpa")}
print(f"  {'kernel':<24}{'shape':<11}{'us':>9}{'GB/s':>8}{'% copy':>8}{'x SDPA':>8}")
for r in rows:
    if r["kernel"] == "copy":
        print(f"  copy bandwidth {float(r['GBps']):.0f} GB/s")
        continue
    us = float(r["us"]); x = sdpa.get(r["shape"])
    xs = f"{x / us:.2f}" if x else "-"
    print(f"  {r['kernel']:<24}{r['shape']:<11}{us:9.1f}{float(r['GBps']):8.0f}"
          f"{100 * float(r['frac_copy']):7.1f}%{xs:>8}")
PY
}

export -f profile unpack_deps memcheck memcheck_canary memcheck_kvattn memcheck_sample memcheck_model e2e modelbench bench
export BUILD LOGS

gpu_info=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  2>/dev/null | head -n 1)
echo "gpu-check on: ${gpu_info:-no nvidia-smi answer}; logs in $LOGS"

step deps setup.log 120 unpack_deps
step configure setup.log 180 cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DASYMKV_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_FLAGS=-lineinfo \
  -DCMAKE_DISABLE_FIND_PACKAGE_cJSON=ON
configured=$?
built_gpu=1
if [ "$configured" -eq 0 ]; then
  if ! step build build.log 360 cmake --build "$BUILD" -j"$(nproc)"; then
    # Something else may be broken; the GPU tests can still be built and run on their own.
    # shellcheck disable=SC2086
    step build-gpu-tests build.log 240 cmake --build "$BUILD" -j"$(nproc)" --target $gpu_targets
  fi
  [ -x "$BUILD/tests/gpu_kernels" ] && built_gpu=0
fi

if [[ $WANT == *" gpu "* ]]; then
  if [ "$built_gpu" -eq 0 ]; then
    step gpu-tests gpu-tests.log 300 ctest --test-dir "$BUILD" -L gpu -V --timeout 300
  else record gpu-tests SKIP 0 "not built"; fi
fi
if [[ $WANT == *" e2e "* ]]; then
  if [ -x "$BUILD/asymkv" ]; then step e2e e2e.log 200 e2e
  else record e2e SKIP 0 "not built"; fi
fi
if [[ $WANT == *" memcheck "* ]]; then
  if [ "$built_gpu" -eq 0 ] && command -v compute-sanitizer >/dev/null; then
    step memcheck-canary canary.log 120 memcheck_canary
    step memcheck memcheck.log 300 memcheck
    [ -x "$BUILD/tests/gpu_kvattn" ] && step memcheck-kvattn memcheck-kvattn.log 150 memcheck_kvattn
    [ -x "$BUILD/tests/gpu_sample" ] && step memcheck-sample memcheck-sample.log 120 memcheck_sample
    [ -x "$BUILD/tests/gpu_model" ] && step memcheck-model memcheck-model.log 150 memcheck_model
  else record memcheck SKIP 0 "no binary or no compute-sanitizer"; fi
fi
# The benchmark before the CPU tests (which CI also runs) so the time budget reaches it.
if [[ $WANT == *" bench "* ]]; then
  if [ -x "$BUILD/tests/bench_decode_attn" ]; then
    rm -f "$LOGS/bench_decode_attn.csv"
    step bench bench.log 240 bench
  else record bench SKIP 0 "not built"; fi
fi
if [[ $WANT == *" modelbench "* ]]; then
  if [ -x "$BUILD/asymkv" ]; then step modelbench modelbench.log 420 modelbench
  else record modelbench SKIP 0 "not built"; fi
fi
if [[ $WANT == *" profile "* ]]; then
  if [ -x "$BUILD/asymkv" ] && command -v ncu >/dev/null; then step profile profile.log 300 profile
  else record profile SKIP 0 "no binary or no ncu"; fi
fi
if [[ $WANT == *" cpu "* ]]; then
  if [ "$configured" -eq 0 ]; then
    step cpu-tests cpu-tests.log 300 ctest --test-dir "$BUILD" -LE gpu --output-on-failure \
      -j"$(nproc)" --timeout 300
  else record cpu-tests SKIP 0 "not configured"; fi
fi

# ---- the table (always) ----
{
  echo
  echo "== gpu-check summary: ${gpu_info:-unknown GPU}, ${SECONDS}s, logs in $LOGS"
  if [ -f "$LOGS/gpu-tests.log" ]; then
    grep -E "(matmul|prefill|decode) .*max \|diff\||(prefill|decode) time" "$LOGS/gpu-tests.log" \
      | sed 's/^/  /' | head -n 40
    grep -E "\[(FAIL|SKIP)\]|Synthesis" "$LOGS/gpu-tests.log" | sed 's/^/  /' | head -n 20
  fi
  [ -f "$LOGS/cpu-tests.log" ] && grep -E "tests passed|\(Failed\)|\(Timeout\)|\*\*\*" \
    "$LOGS/cpu-tests.log" | sed 's/^/  /' | head -n 20
  [ -f "$LOGS/canary.log" ] && grep -E "ERROR SUMMARY" "$LOGS/canary.log" \
    | sed 's/^/  canary (must be >0): /' | head -n 3
  [ -f "$LOGS/memcheck.log" ] && grep -E "ERROR SUMMARY|Synthesis" "$LOGS/memcheck.log" \
    | sort | uniq -c | sed 's/^/  /' | head -n 10
  [ -f "$LOGS/memcheck-sample.log" ] && grep -E "ERROR SUMMARY|Synthesis" \
    "$LOGS/memcheck-sample.log" | sort | uniq -c | sed 's/^/  sample /' | head -n 10
  [ -f "$LOGS/memcheck-model.log" ] && grep -E "ERROR SUMMARY|Synthesis" \
    "$LOGS/memcheck-model.log" | sort | uniq -c | sed 's/^/  model /' | head -n 10
  [ -f "$LOGS/e2e.log" ] && grep -E "^e2e:" "$LOGS/e2e.log" | sed 's/^/  /' | head -n 30
  [ -f "$LOGS/gpu-tests.log" ] && grep -E "gpu_model: " "$LOGS/gpu-tests.log" \
    | sed -E 's/^([0-9]+: )?/  /' | head -n 40
  [ -f "$LOGS/memcheck-kvattn.log" ] && grep -E "ERROR SUMMARY|Synthesis" \
    "$LOGS/memcheck-kvattn.log" | sort | uniq -c | sed 's/^/  kvattn /' | head -n 10
  if [ -f "$LOGS/gpu-tests.log" ]; then
    grep -E "^kvattn .*FAIL|^kvquant .*[1-9][0-9]* (bytes|units) differ|^kvquant dense.*([1-9][0-9]* dense|[1-9][0-9]* cache)" "$LOGS/gpu-tests.log" \
      | sed 's/^/  /' | head -n 20
    grep -cE "^([0-9]+: )?kvattn .*rel_l2" "$LOGS/gpu-tests.log" | sed 's/^/  kvattn comparisons run: /'
  fi
  [ -f "$LOGS/profile.log" ] && grep -vE "^###" "$LOGS/profile.log" | cut -c1-160 | head -n 120
  [ -f "$LOGS/bench_decode_attn.csv" ] && bench_table
  ls "$LOGS"/bench-*.json >/dev/null 2>&1 && modelbench_table
  printf '%-16s %-5s %7s  %s\n' step state seconds note
  for i in "${!names[@]}"; do
    printf '%-16s %-5s %7s  %s\n' "${names[$i]}" "${states[$i]}" "${secs[$i]}" "${notes[$i]}"
  done
  if failed; then echo "overall: FAIL"; else echo "overall: PASS"; fi
} | tee "$LOGS/summary.txt"
if [ -n "${OUT:-}" ]; then
  cp "$LOGS/summary.txt" "$OUT/" 2>/dev/null
  tar czf "$OUT/gpu-check-logs.tgz" -C "$LOGS" . 2>/dev/null
fi
failed && exit 1
exit 0
