#!/usr/bin/env bash
# test.sh — the README's second command: installs what is missing, builds in build-test/, and
# runs the whole CPU test suite (Criterion units, golden comparisons with transformers, CLI
# error handling). GPU tests (label "gpu") run only through scripts/gpu-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
step() { echo "== [${SECONDS}s] $*"; }
step "install dependencies"
scripts/install-deps.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
step "build"
scripts/build.sh build-test >/dev/null
step "ctest"
ctest --test-dir build-test --output-on-failure --timeout 600 -LE gpu -j"$(nproc)" </dev/null \
  | tee build-test/ctest.log
step "done"
