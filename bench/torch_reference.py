#!/usr/bin/env python3
"""The PyTorch peer of `tessera train` for issue 10's speed comparison: the same model shapes
(GPT-2 124M or a Llama-3.2-1B shape), the same batch (random tokens, B x T), one full training
step each iteration: forward in bf16 autocast with SDPA (flash/cuDNN) attention, cross-entropy,
backward, gradient clipping to 1.0 and fused AdamW, compiled with torch.compile (or --eager).

Prints one line `torch <model> <mode>: <ms>/step, <tokens>/s, <TFLOP/s>, peak <GiB>` and, with
--json, the same as a JSON object. FLOPs per token are counted as Tessera counts them
(docs/flops.md), so TFLOP/s and MFU compare one to one. Needs a GPU and torch.
"""
import argparse
import json
import math
import statistics

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = {
    # layers, width, heads, kv heads, ffn, vocabulary, max positions, family
    "gpt2-124m": dict(layers=12, d=768, heads=12, kv=12, ffn=3072, vocab=50257, family="gpt2"),
    "llama3-1b": dict(layers=16, d=2048, heads=32, kv=8, ffn=8192, vocab=128256, family="llama"),
}


def flops_per_token(m, t):
    """docs/flops.md: 3 x forward, causal attention counts half the pairs."""
    head = m["d"] // m["heads"]
    qkv = m["d"] * (m["heads"] + 2 * m["kv"]) * head
    proj = m["heads"] * head * m["d"]
    mlp = m["d"] * m["ffn"] * (3 if m["family"] == "llama" else 2)
    attention = 2 * m["heads"] * head * t / 2
    forward = 2 * (m["layers"] * (qkv + proj + mlp) + m["d"] * m["vocab"]) + 2 * m["layers"] * attention
    return 3 * forward


def rope_tables(t, head, theta, device):
    inv = 1.0 / theta ** (torch.arange(0, head, 2, device=device).float() / head)
    angles = torch.outer(torch.arange(t, device=device).float(), inv)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):  # x [B, H, T, D], rotate-half convention
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos[None, None], sin[None, None]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Block(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m
        d, head = m["d"], m["d"] // m["heads"]
        llama = m["family"] == "llama"
        self.norm1 = nn.RMSNorm(d, eps=1e-5) if llama else nn.LayerNorm(d)
        self.norm2 = nn.RMSNorm(d, eps=1e-5) if llama else nn.LayerNorm(d)
        self.qkv = nn.Linear(d, (m["heads"] + 2 * m["kv"]) * head, bias=not llama)
        self.proj = nn.Linear(m["heads"] * head, d, bias=not llama)
        if llama:
            self.gate_up = nn.Linear(d, 2 * m["ffn"], bias=False)
        else:
            self.up = nn.Linear(d, m["ffn"])
        self.down = nn.Linear(m["ffn"], d, bias=not llama)

    def forward(self, x, rope):
        m = self.m
        b, t, d = x.shape
        head = d // m["heads"]
        q, k, v = self.qkv(self.norm1(x)).split([m["heads"] * head, m["kv"] * head, m["kv"] * head], dim=-1)
        q = q.view(b, t, m["heads"], head).transpose(1, 2)
        k = k.view(b, t, m["kv"], head).transpose(1, 2)
        v = v.view(b, t, m["kv"], head).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=m["kv"] != m["heads"])
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        h = self.norm2(x)
        if m["family"] == "llama":
            gate, up = self.gate_up(h).chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(self.up(h), approximate="tanh")
        return x + self.down(h)


class Model(nn.Module):
    def __init__(self, m, t):
        super().__init__()
        self.m = m
        llama = m["family"] == "llama"
        padded = (m["vocab"] + 127) // 128 * 128  # as nanoGPT and Tessera pad the table
        self.embed = nn.Embedding(padded, m["d"])
        self.pos = None if llama else nn.Embedding(t, m["d"])
        self.blocks = nn.ModuleList(Block(m) for _ in range(m["layers"]))
        self.norm = nn.RMSNorm(m["d"], eps=1e-5) if llama else nn.LayerNorm(m["d"])
        self.t = t
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens, labels):
        x = self.embed(tokens)
        rope = None
        if self.pos is not None:
            x = x + self.pos(torch.arange(tokens.size(1), device=tokens.device))
        else:
            rope = rope_tables(tokens.size(1), self.m["d"] // self.m["heads"], 500000.0, tokens.device)
        for block in self.blocks:
            x = block(x, rope)
        logits = F.linear(self.norm(x), self.embed.weight)[..., : self.m["vocab"]]  # tied embeddings
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), labels.view(-1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(MODELS), default="gpt2-124m")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--eager", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    m = MODELS[args.model]
    model = Model(m, args.seq).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    forward = model if args.eager else torch.compile(model)
    tokens = torch.randint(0, m["vocab"], (args.batch, args.seq + 1), device="cuda")
    inputs, labels = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = forward(inputs, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()  # Tessera logs every step's loss too

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss = step()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    assert math.isfinite(loss)
    ms = statistics.median(times)
    tokens_per_step = args.batch * args.seq
    result = {
        "model": args.model,
        "mode": "eager" if args.eager else "compiled",
        "ms_per_step": ms,
        "tokens_per_s": tokens_per_step / ms * 1e3,
        "tflops": flops_per_token(m, args.seq) * tokens_per_step / ms / 1e9,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    print(f"torch {result['model']} {result['mode']}: {ms:.1f} ms/step, {result['tokens_per_s']:.0f} tokens/s, "
          f"{result['tflops']:.1f} TFLOP/s, peak {result['peak_gib']:.2f} GiB")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
