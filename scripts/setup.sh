#!/usr/bin/env bash
# Installs, idempotently, the Debian packages Tessera builds against. Safe to run twice:
# packages already present are skipped, and apt is only called when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libopenmpi-dev openmpi-bin
  libhdf5-dev libcli11-dev libfmt-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libopenblas-dev nlohmann-json3-dev libpcre2-dev zlib1g-dev
  # `tessera launch` and its tests: a one-node Slurm (slurm/start_local_slurm.sh); srun --mpi=pmix
  # needs Slurm's PMIx plugin (slurm-wlm) and the PMIx library that Open MPI's pmix ext3x uses.
  slurm-wlm munge libpmix-dev
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
