#!/usr/bin/env python3
"""Compares training runs' losses step by step: `compare_runs.py REFERENCE_RUN_DIR RUN_DIR...`
reads each run directory's metrics.jsonl and prints, per run, the largest relative loss
difference from the reference over the common steps, its tokens/s and MFU (medians after step
2) and its peak memory (per GPU). Used by the multi-GPU checks (issue 14) to hold every layout against one GPU.
"""
import json
import statistics
import sys


def read(run_dir):
    with open(f"{run_dir}/metrics.jsonl") as f:
        return {m["step"]: m for m in map(json.loads, f)}


def main():
    reference = read(sys.argv[1])
    print(f"{'run':<28} {'steps':>5} {'max rel loss diff':>18} {'tokens/s':>10} {'MFU':>6} {'peak GiB':>9}")
    for run_dir in sys.argv[1:]:
        steps = read(run_dir)
        common = sorted(set(steps) & set(reference))
        diff = max(abs(steps[s]["loss"] - reference[s]["loss"]) / abs(reference[s]["loss"]) for s in common)
        tokens = statistics.median(steps[s]["tokens_per_second"] for s in common if s > 2)
        mfu = statistics.median(steps[s].get("mfu", 0.0) for s in common if s > 2)
        peak = max(steps[s]["peak_memory_bytes"] for s in common) / 2**30
        print(f"{run_dir.rstrip('/').split('/')[-1]:<28} {len(common):>5} {diff:>18.2e} {tokens:>10.0f} {100 * mfu:>5.1f}% {peak:>9.2f}")


if __name__ == "__main__":
    main()
