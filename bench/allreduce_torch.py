#!/usr/bin/env python3
"""PyTorch's NCCL all_reduce bus bandwidth, the bar for bench/collectives on the same machine
(issue 14: ours >= 80% of it at 1 GB). Run as `torchrun --nproc_per_node N bench/allreduce_torch.py`.
Bus bandwidth as nccl-tests counts it: bytes / time x 2 (N - 1) / N; bf16 and f32 sums; the
median of 20 timed calls after 5 warm-up calls; rank 0 prints one line per size.
"""
import os
import statistics

import torch
import torch.distributed as dist


def main():
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    for dtype in (torch.float32, torch.bfloat16):
        for size in (1 << 20, 1 << 24, 1 << 28, 1 << 30):
            x = torch.ones(size // torch.tensor([], dtype=dtype).element_size(), dtype=dtype, device="cuda")
            for _ in range(5):
                dist.all_reduce(x)
            times = []
            for _ in range(20):
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                dist.all_reduce(x)
                stop.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(stop) * 1e-3)
            seconds = statistics.median(times)
            busbw = size / seconds * 2 * (world - 1) / world / 1e9
            if rank == 0:
                print(f"torch all_reduce {str(dtype).split('.')[-1]:>8} {size:>11} bytes: {seconds * 1e6:9.1f} us, "
                      f"algbw {size / seconds / 1e9:7.1f} GB/s, busbw {busbw:7.1f} GB/s", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
