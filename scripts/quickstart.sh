#!/usr/bin/env bash
# quickstart.sh — the README's first command: installs what is missing, builds, and generates
# from the bundled default model on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
./build/asymkv generate --model models/default --ids "1 17 42 7 99 3" -n 24 --backend cpu
