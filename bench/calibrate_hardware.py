#!/usr/bin/env python3
"""Regenerates an auto-configurator hardware table (autoconfig/hardware/NAME.yaml) on the GPU
machine: the numbers `tessera autoconfig` predicts step times from (autoconfig/hardware.h).

Measures, on GPU 0 (bf16, medians of CUDA-event intervals after warm-up):
  - memory_gib: the device's total memory as the driver reports it;
  - hbm_gbs: a 2 GiB device-to-device copy, read + write counted (as bench/kernels);
  - gemm: torch.matmul TFLOP/s (2 M N K) at the linear-layer shapes of the presets
    (GPT-2 124M, Llama-3 1B/8B/70B at tp 1, 2, 4, 8, for 2k-16k tokens per micro-batch) and 8192^3;
  - attention: causal SDPA (flash) forward/backward TFLOP/s counted as bench/attention_torch.py
    does (4 B H T^2 D / 2 forward, 2.5x backward) at the presets' (heads, head dim, seq) shapes;
  - nvlink (with --nvlink, under torchrun with >= 2 local GPUs): NCCL all-reduce bus bandwidth
    (nccl-tests' busbw = 2 (n - 1) / n x bytes / time) at 1 GiB, and its latency at 8 bytes.
Everything it does not measure (reserved_gib, fragmentation, peak_bf16_tflops, kernel_overhead_us,
elementwise_passes, network) is copied from --base, with its source comment.

  python3 bench/calibrate_hardware.py --name h100-80gb --base autoconfig/hardware/h100-80gb.yaml \
      --out autoconfig/hardware/h100-80gb.yaml
  torchrun --nproc-per-node 8 bench/calibrate_hardware.py --nvlink --name ... (rank 0 writes)

Needs torch with CUDA; PyYAML for --base.
"""
import argparse
import datetime
import os
import statistics

import torch
import torch.nn.functional as F
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel

# (hidden, qkv width, ffn width, fc1 width, heads, head dim) of the presets (models/transformer_config.cpp).
PRESETS = {
    "gpt2-124m": (768, 3 * 768, 3072, 3072, 12, 64),
    "llama3-1b": (2048, 2048 + 2 * 512, 8192, 2 * 8192, 32, 64),
    "llama3-8b": (4096, 4096 + 2 * 1024, 14336, 2 * 14336, 32, 128),
    "llama3-70b": (8192, 8192 + 2 * 1024, 28672, 2 * 28672, 64, 128),
}
TOKENS = [2048, 4096, 8192, 16384]
SEQS = [1024, 2048, 4096, 8192]


def median_ms(fn, warmup=3, iters=10):
    for _ in range(warmup):
        fn()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for start, stop in events:
        start.record()
        fn()
        stop.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(stop) for start, stop in events)


def gemm_shapes():
    """Forward, data-gradient and weight-gradient GEMMs of every linear layer, deduplicated."""
    shapes = {(8192, 8192, 8192)}
    for hidden, qkv, ffn, fc1, heads, head_dim in PRESETS.values():
        for tp in (1, 2, 4, 8):
            if heads % tp:
                continue
            for tokens in TOKENS:
                for n, k in ((qkv // tp, hidden), (hidden, heads * head_dim // tp), (fc1 // tp, hidden),
                             (hidden, ffn // tp)):
                    shapes |= {(tokens, n, k), (tokens, k, n), (k, n, tokens)}
    return sorted(shapes)


def measure_gemm(m, n, k):
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
    ms = median_ms(lambda: torch.matmul(a, b))
    return 2.0 * m * n * k / (ms * 1e-3) / 1e12


def measure_attention(batch, heads, seq, head_dim):
    def make():
        return torch.randn(batch, seq, heads, head_dim, device="cuda", dtype=torch.bfloat16).transpose(1, 2).requires_grad_()

    q, k, v = make(), make(), make()
    flops = 4.0 * batch * heads * seq * seq * head_dim / 2
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION]):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        grad = torch.randn_like(out)
        fwd = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        bwd_total = median_ms(lambda: torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                                          (q, k, v), grad))
    return flops / (fwd * 1e-3) / 1e12, 2.5 * flops / (max(bwd_total - fwd, 1e-3) * 1e-3) / 1e12


def measure_copy():
    src = torch.empty(1 << 30, device="cuda", dtype=torch.int16)  # 2 GiB
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    return 2.0 * src.numel() * 2 / (ms * 1e-3) / 1e9


def measure_nvlink():
    import torch.distributed as dist

    dist.init_process_group("nccl")
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    n = dist.get_world_size()
    big = torch.empty(1 << 29, device="cuda", dtype=torch.float16)  # 1 GiB
    small = torch.empty(4, device="cuda", dtype=torch.float16)
    big_ms = median_ms(lambda: dist.all_reduce(big))
    small_ms = median_ms(lambda: dist.all_reduce(small), iters=50)
    busbw = 2.0 * (n - 1) / n * big.numel() * 2 / (big_ms * 1e-3) / 1e9
    latency_us = small_ms * 1e3 / (2 * (n - 1))  # alpha per ring step
    return dist.get_rank(), n, busbw, latency_us


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True, help="table name, e.g. h100-80gb")
    parser.add_argument("--base", required=True, help="existing table to take the unmeasured values from")
    parser.add_argument("--out", required=True, help="where to write the table")
    parser.add_argument("--nvlink", action="store_true", help="also measure NCCL all-reduce (run under torchrun)")
    args = parser.parse_args()
    with open(args.base) as f:
        base = yaml.safe_load(f)

    rank, nvlink = 0, base["nvlink"]
    nvlink_source = "copied from " + args.base
    if args.nvlink:
        rank, n, busbw, latency_us = measure_nvlink()
        nvlink = {"bandwidth_gbs": round(busbw), "latency_us": round(latency_us, 1)}
        nvlink_source = f"measured: NCCL all-reduce busbw over {n} GPUs at 1 GiB, latency at 8 bytes"
    if rank != 0:
        return
    device = torch.cuda.get_device_properties(0)
    today = datetime.date.today().isoformat()
    where = f"measured by bench/calibrate_hardware.py on {device.name}, {today}"
    lines = [f"# {args.name}: {device.name}. Regenerated by bench/calibrate_hardware.py ({today}).",
             f"# measured: on this machine; other values copied from {args.base} with their sources.",
             f"name: {args.name}",
             f"memory_gib: {device.total_memory / 2**30:.1f}          # {where}",
             f"reserved_gib: {base['reserved_gib']}          # copied",
             f"fragmentation: {base['fragmentation']}        # copied",
             f"peak_bf16_tflops: {base['peak_bf16_tflops']}   # copied (datasheet)",
             f"hbm_gbs: {measure_copy():.0f}             # {where}: 2 GiB device copy, read + write",
             f"kernel_overhead_us: {base['kernel_overhead_us']}     # copied",
             f"elementwise_passes: {base['elementwise_passes']}     # copied (fitted to `tessera train` step rates)",
             f"gemm:   # {where}: torch.matmul bf16"]
    for m, n, k in gemm_shapes():
        lines.append(f"  - {{m: {m}, n: {n}, k: {k}, tflops: {measure_gemm(m, n, k):.0f}}}")
    lines.append(f"attention:   # {where}: causal SDPA, 4BHT^2D/2 forward, 2.5x backward")
    for hidden, qkv, ffn, fc1, heads, head_dim in PRESETS.values():
        for seq in SEQS:
            batch = max(1, 16384 // seq)
            fwd, bwd = measure_attention(batch, heads, seq, head_dim)
            lines.append(f"  - {{batch: {batch}, heads: {heads}, seq: {seq}, head_dim: {head_dim}, "
                         f"forward_tflops: {fwd:.0f}, backward_tflops: {bwd:.0f}}}")
    lines += [f"nvlink:   # {nvlink_source}",
              f"  bandwidth_gbs: {nvlink['bandwidth_gbs']}",
              f"  latency_us: {nvlink['latency_us']}",
              "network:   # copied: one node cannot measure it (nccl-tests across two nodes can)",
              f"  bandwidth_gbs: {base['network']['bandwidth_gbs']}",
              f"  latency_us: {base['network']['latency_us']}"]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
