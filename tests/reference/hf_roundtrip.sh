#!/usr/bin/env bash
# The Hugging Face check of `tessera import` and `tessera export --format hf`, where torch and
# transformers are installed (the GPU machine): for a GPT-2 and a Llama model built by
# transformers with random weights,
#   1. import it (tessera import) and compare our logits (tessera logits) with transformers';
#   2. export that checkpoint again (tessera export --format hf) and load it with from_pretrained:
#      its logits must match ours.
#   tests/reference/hf_roundtrip.sh TESSERA_BINARY [WORK_DIR]
set -euo pipefail
tessera=$1
work=${2:-/tmp/tessera-hf-roundtrip}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
status=0
for arch in gpt2 llama; do
  d=$work/$arch
  python3 "$here/hf_export_check.py" random --arch $arch --out "$d/hf"
  "$tessera" import --format hf --input "$d/hf" --output "$d/checkpoint"
  "$tessera" logits --checkpoint "$d/checkpoint" --tokens "$d/hf/tokens.npy" --output "$d/ours.safetensors"
  echo "== $arch: transformers' random model imported by tessera =="
  python3 "$here/hf_export_check.py" compare "$d/hf/logits.safetensors" "$d/ours.safetensors" || status=1
  "$tessera" export --checkpoint "$d/checkpoint" --format hf --output "$d/export" --dtype f32
  echo "== $arch: tessera's export loaded by transformers =="
  python3 "$here/hf_export_check.py" export --hf "$d/export" --tokens "$d/hf/tokens.npy" \
    --logits "$d/ours.safetensors" || status=1
done
exit $status
