#!/usr/bin/env python3
"""Issue 10's harness, run on the GPU machine: `tessera train` and the PyTorch peer
(bench/torch_reference.py: same model shapes, same batch, bf16 autocast, SDPA, fused AdamW,
torch.compile) back to back, RUNS times each, with the bf16 GEMM ceiling measured in the same
call. Prints per run and the median: ms/step, tokens/s, TFLOP/s, MFU against 989 TFLOP/s
nominal and against the measured GEMM ceiling, peak memory, and the ratio ours / PyTorch.

  bench/speed_vs_torch.py --tessera PATH/tessera --model gpt2-124m|llama3-1b [--runs 3]
      [--data PREFIX] [--set key=value ...]   (extra overrides for tessera train)

Tessera's numbers are the median over the steps after the first two (warm-up, graph capture);
its peak memory is the largest per-step peak among them, PyTorch's the peak over its timed steps.
"""
import argparse
import json
import re
import statistics
import subprocess
import sys

import torch

NOMINAL_TFLOPS = 989.4  # H100 SXM dense bf16
SHAPES = {"gpt2-124m": dict(batch=16, seq=1024, steps=30), "llama3-1b": dict(batch=4, seq=2048, steps=15)}
STEP = re.compile(r"step +(\d+)/\d+ \| .*\| ([\d.]+) tokens/s \| ([\d.]+) TFLOP/s \| .*peak mem ([\d.]+) GiB")


def gemm_ceiling_tflops(n=8192, iters=50):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        a @ b
    stop.record()
    torch.cuda.synchronize()
    return 2 * n**3 * iters / (start.elapsed_time(stop) * 1e-3) / 1e12


def run_tessera(args, shape):
    overrides = [
        f"model.preset={args.model}", f"data.data_path=[{args.data}]", f"data.seq_length={shape['seq']}",
        f"train.micro_batch_size={shape['batch']}", f"train.global_batch_size={shape['batch']}",
        f"train.train_iters={shape['steps']}", "scheduler.lr_warmup_iters=5", "train.eval_interval=100000",
        "train.eval_iters=0", "checkpoint.save=", "train.resume=none", "logging.run_dir=/tmp/speed_vs_torch",
    ] + args.set
    out = subprocess.run([args.tessera, "train", "recipes/gpt2_124m.yaml", *overrides], capture_output=True,
                         text=True)
    if out.returncode != 0:
        sys.exit(f"tessera train failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    steps = [m.groups() for m in map(STEP.search, out.stdout.splitlines()) if m]
    steady = [s for s in steps if int(s[0]) > 2]
    tokens = statistics.median(float(s[1]) for s in steady)
    tflops = statistics.median(float(s[2]) for s in steady)
    return dict(ms_per_step=shape["batch"] * shape["seq"] / tokens * 1e3, tokens_per_s=tokens, tflops=tflops,
                peak_gib=max(float(s[3]) for s in steady))


def run_torch(args, shape):
    out = subprocess.run([sys.executable, "bench/torch_reference.py", "--model", args.model, "--batch",
                          str(shape["batch"]), "--seq", str(shape["seq"]), "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench/torch_reference.py failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(name, r, ceiling):
    return (f"{name:<14} {r['ms_per_step']:8.1f} {r['tokens_per_s']:10.0f} {r['tflops']:8.1f} "
            f"{100 * r['tflops'] / NOMINAL_TFLOPS:6.1f}% {100 * r['tflops'] / ceiling:6.1f}% {r['peak_gib']:8.2f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tessera", required=True)
    parser.add_argument("--model", choices=sorted(SHAPES), default="gpt2-124m")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", default=".cache/example-data/brown_gpt2_text_document")
    parser.add_argument("--set", action="append", default=[], help="extra tessera train override")
    args = parser.parse_args()
    shape = SHAPES[args.model]
    ceiling = gemm_ceiling_tflops()
    print(f"{args.model}, B={shape['batch']} T={shape['seq']}, bf16; GEMM ceiling measured now: {ceiling:.0f} TFLOP/s; "
          f"tessera overrides: {' '.join(args.set) or '(none)'}")
    print(f"{'run':<14} {'ms/step':>8} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU':>7} {'of GEMM':>7} {'peak GiB':>8}")
    ours, theirs = [], []
    for run in range(1, args.runs + 1):
        ours.append(run_tessera(args, shape))
        theirs.append(run_torch(args, shape))
        print(row(f"tessera #{run}", ours[-1], ceiling))
        print(row(f"torch #{run}", theirs[-1], ceiling))
    median = lambda runs: {k: statistics.median(r[k] for r in runs) for k in runs[0] if k not in ("model", "mode")}
    mo, mt = median(ours), median(theirs)
    print(row("tessera median", mo, ceiling))
    print(row("torch median", mt, ceiling))
    print(f"ratio tessera / torch.compile: {mo['tokens_per_s'] / mt['tokens_per_s']:.3f}x tokens/s, "
          f"{mo['peak_gib'] / mt['peak_gib']:.3f}x peak memory")


if __name__ == "__main__":
    main()
