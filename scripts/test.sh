#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test through ctest, then
# rebuilds the core tests with AddressSanitizer + UndefinedBehaviorSanitizer and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

bash scripts/setup.sh
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}  # tests compare numbers; keep BLAS deterministic

echo "== build (release) =="
bash scripts/build.sh build
echo "== tests =="
ctest --test-dir build --output-on-failure --parallel "$(nproc)" --timeout 900

echo "== core tests under ASan + UBSan =="
# Only the core test executables (and what they link) are built in this configuration.
core_tests=$(for f in tests/core/*_test.cpp; do basename "$f" .cpp; done)
bash scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTESSERA_SANITIZE=ON -DTESSERA_CUDA=OFF \
  --target $core_tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure --parallel "$(nproc)" --timeout 900 -L core

echo "== all tests passed in $(( $(date +%s) - start ))s =="
