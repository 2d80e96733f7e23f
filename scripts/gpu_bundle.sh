#!/usr/bin/env bash
# Packs what a GPU machine needs to run Tessera's GPU tests and benchmarks into .gpu/:
# the executables of build/ (CUDA build, sm_90a by default) and the non-CUDA shared
# libraries they load that a stock CUDA image lacks (OpenBLAS, fmt, yaml-cpp, MPI, ...),
# xz-compressed to stay within the device tool's carry limit. scripts/gpu_run.sh unpacks it.
#   scripts/gpu_bundle.sh [BUILD_DIR] [BUNDLE_NAME]   -> .gpu/BUNDLE_NAME.tar.xz (default "bundle")
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
name=${2:-bundle}
bash scripts/build.sh "$build_dir" >/dev/null
stage=$(mktemp -d)
mkdir -p "$stage/bin" "$stage/lib" .gpu
# What a GPU machine runs: the GPU tests, the benchmarks and the CLI (CPU-only tests stay here;
# every executable links the CUDA kernels, so carrying all of them would exceed the limit).
# TESSERA_BUNDLE_BINS overrides the list of executable names (globs).
patterns=${TESSERA_BUNDLE_BINS:-"*_gpu_test kernels collectives generation model_parity tessera"}
for pattern in $patterns; do
  find "$build_dir/tests" "$build_dir/bench" "$build_dir/launcher" -maxdepth 1 -type f -executable \
    -name "$pattern" -exec cp {} "$stage/bin/" \;
done
# Debug sections go; the symbol table stays, so that the stacks of a hung rank (eu-stack, gdb)
# name their functions.
strip --strip-debug "$stage"/bin/* 2>/dev/null || true
# Shared libraries outside glibc, the C++ runtime, CUDA and NCCL (the GPU image brings those:
# NCCL in /usr/lib/x86_64-linux-gnu; its 200 MB would not fit the carry limit). CUPTI, for
# TESSERA_CUDA_PROFILE, travels along: an image may lack it.
brought='/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so|/libcu[^p]|/libnv|/libcudnn|/libnccl'
ldd "$stage"/bin/* | awk '/=> \//{print $3}' | sort -u | grep -v -E "$brought" |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
tar -C "$stage" -cJf ".gpu/$name.tar.xz" bin lib
rm -rf "$stage"
echo "gpu bundle: $(du -h ".gpu/$name.tar.xz" | cut -f1) in .gpu/$name.tar.xz"
