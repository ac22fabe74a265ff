#!/usr/bin/env bash
# build.sh [BUILD_DIR] — configures and builds asymkv (Release). CUDA sources are compiled when
# nvcc is found (a GPU is not needed to build); set ASYMKV_CUDA=OFF to skip them.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cuda=${ASYMKV_CUDA:-}
if [ -z "$cuda" ]; then
  if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then cuda=ON; else cuda=OFF; fi
fi
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DASYMKV_CUDA="$cuda" >/dev/null
cmake --build "$build" -j"$(nproc)"
