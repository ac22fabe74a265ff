#!/usr/bin/env bash
# install-deps.sh — installs, as root on Debian 12, whatever asymkv needs to build and test:
# compiler, CMake, Ninja, Open MPI, Criterion, cJSON, PCRE2 (and with --slurm the single-node
# Slurm pieces the test suite uses). Skips apt entirely when everything is already there.
set -euo pipefail
pkgs="build-essential cmake ninja-build pkg-config libopenmpi-dev openmpi-bin libcriterion-dev
      libcjson-dev libpcre2-dev"
if [ "${1:-}" = "--slurm" ]; then pkgs="$pkgs slurmctld slurmd slurm-client munge"; fi
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  [ "$(id -u)" = 0 ] || { echo "install-deps: need root to apt-get install:$missing" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
