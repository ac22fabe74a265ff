#!/usr/bin/env bash
# quickstart.sh — the README's first command: installs what is missing, builds, and generates
# text from the bundled reference model on the CPU with an AsymKV cache (2-bit keys in the first
# 4 of its 8 layers, 1-bit values everywhere; residual window 32 so quantization starts early).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
./build/asymkv generate --model models/default --prompt "In the beginning God created" -n 96 \
    --kv asymkv:4/0 --kv-residual 32 --backend cpu
