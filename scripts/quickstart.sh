#!/usr/bin/env bash
# From a fresh Debian 12 machine to a first training run: installs what is missing, builds,
# and runs the default job (an MLP learning the two-spirals task on CPU; the pretraining
# trainer replaces it with `tessera train recipes/gpt2_124m.yaml`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build
./build/launcher/tessera info
./build/launcher/tessera toy-train "$@"
