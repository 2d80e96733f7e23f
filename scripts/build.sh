#!/usr/bin/env bash
# Configures and builds Tessera into a build folder (default: build/).
#   scripts/build.sh [BUILD_DIR] [extra cmake args...]
# CUDA is built when nvcc is found (at /usr/local/cuda or on PATH); -DTESSERA_CUDA=OFF skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" "$@"
elif [ $# -gt 0 ]; then
  cmake "$build_dir" "$@"
fi
cmake --build "$build_dir" --parallel "$(nproc)"
