#!/usr/bin/env bash
# test.sh — the README's second command: installs what is missing, builds in build-test/, and
# runs the whole CPU test suite (Criterion units, golden comparisons with transformers, CLI
# error handling, multi-rank pipeline runs under mpiexec), then, as root, a real single-node
# Slurm cluster running an sbatch job. GPU tests (label "gpu") run only through gpu-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
step() { echo "== [${SECONDS}s] $*"; }
step "install dependencies"
slurm=0; [ "$(id -u)" = 0 ] && slurm=1 # the Slurm test starts daemons: root only
if [ $slurm = 1 ]; then scripts/install-deps.sh --slurm; else scripts/install-deps.sh; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
step "build"
scripts/build.sh build-test >/dev/null
step "ctest"
ctest --test-dir build-test --output-on-failure --timeout 600 -LE gpu -j"$(nproc)" </dev/null \
  | tee build-test/ctest.log
if [ $slurm = 1 ]; then
  step "slurm: single-node cluster, sbatch of a 2-rank asymkv generate (srun --mpi=pmix)"
  tests/slurm/ci-slurm.sh build-test </dev/null
else
  step "slurm: skipped (needs root to start slurmctld/slurmd/munged)"
fi
step "done"
