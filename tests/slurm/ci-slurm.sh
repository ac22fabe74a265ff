#!/usr/bin/env bash
# ci-slurm.sh BUILD_DIR — end-to-end Slurm test (design §8): starts a private single-node Slurm
# cluster on this machine (munged + slurmctld + slurmd, no systemd, no cgroups; ci-recipe §7),
# submits launch/slurm/asymkv-cpu.sbatch as a 2-rank job (srun --mpi=pmix) generating for 7
# prompts, and checks the job's ids equal a single-process run — not only the exit code. Then
# checks that a rank dying or failing under srun ends the step within 10 s. Root only; tears
# everything down on exit. Ports, job ids and the munge socket are private to this run, so it
# may run next to another copy of itself.
set -euo pipefail
BUILD=$(realpath "${1:?usage: ci-slurm.sh BUILD_DIR}")
SRC=$(realpath "$(dirname "$0")/../..")
BIN=$BUILD/asymkv
MODEL=$SRC/tests/data/llama-gqa
SECONDS=0
say() { echo "== slurm [${SECONDS}s] $*"; }
die() { echo "ci-slurm: FAIL: $*" >&2; for f in "$SD"/*.log; do echo "--- $f"; tail -n 15 "$f"; done >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "ci-slurm: needs root (starts slurmd/slurmctld/munged)" >&2; exit 1; }
for b in slurmctld slurmd sbatch srun munged; do
  command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] ||
    { echo "ci-slurm: $b missing: run scripts/install-deps.sh --slurm" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "ci-slurm: no $BIN (build first)" >&2; exit 1; }

SD=$(mktemp -d "${TMPDIR:-/tmp}/ci-slurm.XXXXXX")
chmod 755 "$SD"
export SLURM_CONF=$SD/slurm.conf
slurm_down() { # by PID files, never by name: other clusters may be running here
  scontrol shutdown >/dev/null 2>&1 || true
  for pf in "$SD/slurmd.pid" "$SD/slurmctld.pid" "$SD/munge/munged.pid"; do
    [ -s "$pf" ] || continue
    local pid; pid=$(cat "$pf")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" || true
  done
  rm -rf "$SD"
}
trap slurm_down EXIT

# Reference first: one process, the same prompts and flags as the job.
tr -s ' \n' '\n\n' <"$MODEL/ids.txt" | awk 'NF' >"$SD/all_ids"
for s in 0:5 17:23 60:1 70:40 120:12 140:9 150:31; do
  sed -n "$((${s%%:*} + 1)),$((${s%%:*} + ${s##*:}))p" "$SD/all_ids" | paste -sd' '
done >"$SD/prompts.txt"
FLAGS="--batch 3 --prefill-chunk 7"
# shellcheck disable=SC2086
"$BIN" generate -q --model "$MODEL" --prompts-file "$SD/prompts.txt" -n 12 $FLAGS >"$SD/ref.txt"

say "cluster up"
base=$((20000 + ($$ % 2000) * 2))
mkdir -p "$SD/state" "$SD/spool"
install -d -o munge -g munge -m 0755 "$SD/munge"
cat >"$SLURM_CONF" <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SD/munge/munge.socket
MailProg=/bin/true
StateSaveLocation=$SD/state
SlurmdSpoolDir=$SD/spool
SlurmctldPidFile=$SD/slurmctld.pid
SlurmdPidFile=$SD/slurmd.pid
SlurmctldLogFile=$SD/slurmctld.log
SlurmdLogFile=$SD/slurmd.log
FirstJobId=$((1000 + ($$ % 100000) * 10))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MpiDefault=pmix
ReturnToService=2
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=localhost CPUs=$(nproc) RealMemory=4000 State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=30 State=UP
CONF
[ -s /etc/munge/munge.key ] || {
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
}
runuser -u munge -- /usr/sbin/munged --socket="$SD/munge/munge.socket" \
  --pid-file="$SD/munge/munged.pid" --log-file="$SD/munge/munged.log" \
  --seed-file="$SD/munge/munged.seed"
/usr/sbin/slurmctld -f "$SLURM_CONF"
/usr/sbin/slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 150); do sinfo -h -o %T 2>/dev/null | grep -qx idle && break; sleep 0.2; done
sinfo -h -o %T | grep -qx idle || die "node not idle: $(sinfo -h -o '%T %E' 2>&1)"

say "sbatch asymkv-cpu.sbatch: 2 ranks, srun --mpi=pmix"
id=$(ASYMKV=$BIN MODEL=$MODEL PROMPTS_FILE=$SD/prompts.txt NEW=12 ASYMKV_ARGS=$FLAGS \
  sbatch --parsable -n 2 -O -t 5 -o "$SD/job-%j.out" "$SRC/launch/slurm/asymkv-cpu.sbatch")
deadline=$(($(date +%s) + 120))
while :; do # faster than sbatch --wait (which polls at 2 s, then 10 s)
  line=$(scontrol -o show job "$id")
  state=$(sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' <<<"$line")
  case $state in PENDING | CONFIGURING | RUNNING | COMPLETING) ;; *) break ;; esac
  [ "$(date +%s)" -lt $deadline ] || { scancel "$id"; die "job $id stuck: $line"; }
  sleep 0.2
done
out=$SD/job-$id.out
sed 's/^/  | /' "$out"
[ "$state" = COMPLETED ] || die "job $id ended $state"
grep -q '^pipeline: 2 ranks (srun' "$out" || die "job $id did not run as 2 srun ranks"
grep -E '^[0-9]+( [0-9]+)*$' "$out" >"$SD/got.txt" || true
diff "$SD/ref.txt" "$SD/got.txt" >/dev/null ||
  die "job $id ids differ from one process: $(diff "$SD/ref.txt" "$SD/got.txt" | head -4)"
say "job $id $state, $(wc -l <"$SD/got.txt") prompts identical to one process"

# A rank that dies (SIGKILL) or fails (MPI_Abort) under srun ends the step promptly.
for hook in ASYMKV_TEST_KILL_RANK=1 ASYMKV_TEST_FAIL_RANK=1; do
  t0=$(date +%s.%N)
  rc=0
  # shellcheck disable=SC2086
  env "$hook" timeout 60 srun --mpi=pmix -n 2 -O --kill-on-bad-exit=1 -t 2 "$BIN" generate -q \
    --model "$MODEL" --prompts-file "$SD/prompts.txt" -n 12 $FLAGS >"$SD/fail.out" 2>"$SD/fail.err" || rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  say "srun with $hook: exit $rc after $secs s"
  [ "$rc" != 0 ] && [ "$rc" != 124 ] || die "srun with $hook: exit $rc"
  awk -v s="$secs" 'BEGIN { exit !(s < 10) }' || die "srun with $hook took $secs s"
  if [ "$hook" = ASYMKV_TEST_FAIL_RANK=1 ]; then
    grep -q 'rank 1: error: simulated failure' "$SD/fail.err" ||
      die "no error line naming rank 1: $(head -3 "$SD/fail.err")"
  fi
done
# The node is "completing" for a moment after a cancelled step; it must then
# come back to idle on its own (a node left drained or down is a failure).
for _ in $(seq 150); do sinfo -h -o %T | grep -qx idle && break; sleep 0.2; done
sinfo -h -o %T | grep -qx idle || die "node left $(sinfo -h -o '%T %E') 30 s after the failed steps"
say "passed"
