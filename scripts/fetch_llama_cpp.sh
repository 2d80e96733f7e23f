#!/usr/bin/env bash
# Installs llama.cpp's prebuilt CPU libraries and the node binding that drives them
# (node-llama-cpp 3.22.1 + @node-llama-cpp/linux-x64 3.22.1, MIT) into a cache directory, for
# tests/reference/gguf_llama_cpp.mjs. Nothing is compiled or downloaded besides the two npm
# packages (NODE_LLAMA_CPP_SKIP_DOWNLOAD, --ignore-scripts). Idempotent: an intact install is
# kept. Prints the directory that holds node_modules/.
#   scripts/fetch_llama_cpp.sh     (cache: $TESSERA_LLAMA_CPP_CACHE or ~/.cache/tessera/llama-cpp)
# Needs node >= 20 and npm with registry access.
set -euo pipefail
cache=${TESSERA_LLAMA_CPP_CACHE:-$HOME/.cache/tessera/llama-cpp}
version=3.22.1
marker="$cache/.installed-$version"

if [ ! -f "$marker" ]; then
  command -v npm >/dev/null || { echo "fetch_llama_cpp: npm not found; install node >= 20 with npm" >&2; exit 1; }
  mkdir -p "$cache"
  [ -f "$cache/package.json" ] || echo '{"name": "tessera-llama-cpp", "private": true, "type": "module"}' >"$cache/package.json"
  echo "fetch_llama_cpp: npm install node-llama-cpp@$version into $cache" >&2
  (cd "$cache" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --silent --no-audit --no-fund --omit=optional \
     --ignore-scripts "node-llama-cpp@$version" "@node-llama-cpp/linux-x64@$version" >&2)
  [ -d "$cache/node_modules/@node-llama-cpp/linux-x64/bins" ] || {
    echo "fetch_llama_cpp: $cache/node_modules/@node-llama-cpp/linux-x64/bins is missing after npm install" >&2; exit 1; }
  touch "$marker"
fi
echo "$cache"
