#!/usr/bin/env python3
"""PyTorch SDPA causal attention, forward and backward TFLOP/s, per backend (flash, cuDNN,
memory-efficient), at the (B, H, T, D) shapes of the attention target in issue 4: the bar that
bench/kernels' "sdpa" attention rows are read against (>= 90% of the fastest backend here).

bf16, causal, tensors in Tessera's [B, T, H, D] layout (viewed as [B, H, T, D] for SDPA).
FLOPs as bench/kernels counts them: 4 B H T^2 D forward, 2.5x that backward, halved for the
causal mask. Times are medians of CUDA-event intervals after warm-up. Needs a GPU and torch.
"""
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [(8, 16, 2048, 128), (16, 12, 1024, 64), (4, 16, 4096, 128)]
BACKENDS = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION)]


def median_ms(fn, warmup=5, iters=20):
    for _ in range(warmup):
        fn()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for start, stop in events:
        start.record()
        fn()
        stop.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(stop) for start, stop in events)


def bench_shape(B, H, T, D):
    def make():
        return torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2).requires_grad_()

    q, k, v = make(), make(), make()
    flops_fwd = 4.0 * B * H * T * T * D / 2
    rows = []
    for name, backend in BACKENDS:
        try:
            with sdpa_kernel(backend):
                def forward():
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True)

                fwd_ms = median_ms(forward)
                out = forward()
                dout = torch.randn_like(out)

                def backward():
                    torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)

                bwd_ms = median_ms(backward)
            rows.append((name, fwd_ms, flops_fwd / fwd_ms / 1e9, bwd_ms, 2.5 * flops_fwd / bwd_ms / 1e9))
        except RuntimeError as error:
            rows.append((name, str(error).splitlines()[0][:90]))
    return rows


def main():
    print(f"PyTorch {torch.__version__} SDPA on {torch.cuda.get_device_name(0)}; bf16, causal, [B, T, H, D] layout")
    print(f"{'B':>3} {'H':>3} {'T':>5} {'D':>4} {'backend':<10} {'fwd ms':>8} {'TFLOP/s':>8} {'bwd ms':>8} {'TFLOP/s':>8}")
    for B, H, T, D in SHAPES:
        best_fwd = best_bwd = 0.0
        for row in bench_shape(B, H, T, D):
            if len(row) == 2:
                print(f"{B:>3} {H:>3} {T:>5} {D:>4} {row[0]:<10} n/a: {row[1]}")
                continue
            name, fwd_ms, fwd_tflops, bwd_ms, bwd_tflops = row
            best_fwd, best_bwd = max(best_fwd, fwd_tflops), max(best_bwd, bwd_tflops)
            print(f"{B:>3} {H:>3} {T:>5} {D:>4} {name:<10} {fwd_ms:8.3f} {fwd_tflops:8.1f} {bwd_ms:8.3f} {bwd_tflops:8.1f}")
        print(f"{B:>3} {H:>3} {T:>5} {D:>4} {'best':<10} {'':8} {best_fwd:8.1f} {'':8} {best_bwd:8.1f}"
              f"   (90%: {0.9 * best_fwd:.1f} / {0.9 * best_bwd:.1f})")
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
