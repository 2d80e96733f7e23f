#!/usr/bin/env bash
# Runs on the GPU machine (over a copy of the repo with .gpu/ carried): unpacks the bundle of
# scripts/gpu_bundle.sh, runs the GPU tests (or those matching $1, a gtest filter) and the
# benchmarks bin/kernels, bin/collectives and bench/attention_torch.py (unless
# TESSERA_SKIP_BENCH=1), and
# copies logs to $OUT when it is set.
# TESSERA_BUNDLE names the bundle (default "bundle"); TESSERA_TESTS is a glob of test
# executables (default "*_gpu_test").
set -uo pipefail
cd "$(dirname "$0")/.."
filter=${1:-*}
bundle=${TESSERA_BUNDLE:-bundle}
root=/tmp/tessera-gpu-$bundle
rm -rf "$root" && mkdir -p "$root" && tar -C "$root" -xJf ".gpu/$bundle.tar.xz"
cudnn_lib=$(python3 -c "import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], 'lib'))" 2>/dev/null)
export LD_LIBRARY_PATH="$root/lib:/usr/local/cuda/lib64:${cudnn_lib}:${LD_LIBRARY_PATH:-}"
logs=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
status=0
for test in "$root"/bin/${TESSERA_TESTS:-*_gpu_test}; do
  echo "== $(basename "$test") =="
  "$test" --gtest_filter="$filter" --gtest_brief=1 2>&1 | tee -a "$logs/gpu_tests.log" || status=1
done
if [ "${TESSERA_SKIP_BENCH:-0}" != 1 ] && [ -x "$root/bin/kernels" ]; then
  echo "== bench/kernels =="
  "$root/bin/kernels" 2>&1 | tee "$logs/bench_kernels.log" || status=1
fi
if [ "${TESSERA_SKIP_BENCH:-0}" != 1 ] && [ -x "$root/bin/collectives" ]; then
  echo "== bench/collectives =="
  "$root/bin/collectives" 2>&1 | tee "$logs/bench_collectives.log" || status=1
fi
# PyTorch SDPA attention at the issue's shapes, the bar for bench/kernels' attention rows.
if [ "${TESSERA_SKIP_BENCH:-0}" != 1 ] && [ -f bench/attention_torch.py ] && python3 -c "import torch" 2>/dev/null; then
  echo "== bench/attention_torch.py =="
  python3 bench/attention_torch.py 2>&1 | tee "$logs/bench_attention_torch.log" || status=1
fi
exit $status
