"""Plain PyTorch twin of Tessera's GptModel (models/gpt_model.h), the reference side of the
parity check (tests/reference/model_parity.py).

Written from the documented layouts, not from our kernels: the same module tree gives the same
parameter names (Megatron-core's), so our dumped weights load with a strict load_state_dict.
  embedding.word_embeddings.weight [Vp, C], embedding.position_embeddings.weight [P, C]
  decoder.layers.N.input_layernorm / pre_mlp_layernorm: LayerNorm (weight, bias) or RMSNorm
  decoder.layers.N.self_attention.linear_qkv.weight [(H + 2 KV) D, C]: per key/value group, its
      H/KV query heads, then its key head, then its value head (models/self_attention.h)
  decoder.layers.N.self_attention.linear_proj [C, H D]
  decoder.layers.N.mlp.linear_fc1 [F, C] (GELU, tanh form) or [2F, C] = [gate; up] (SwiGLU)
  decoder.layers.N.mlp.linear_fc2 [C, F]
  decoder.final_layernorm, output_layer.weight [Vp, C] (untied only)
Pre-norm residual blocks; causal attention with scale 1/sqrt(D), query head h reading key/value
group h // (H/KV); rotary embeddings rotate the pairs (i, i + D/2) (Llama's rotate-half) with
Llama-3 frequency scaling; logits use only the first V rows of the (padded) output table.

train() is the PyTorch version of our training step: token-mean cross-entropy, global-norm
clipping (torch.nn.utils.clip_grad_norm_), torch.optim.AdamW with weight decay on 2-D
parameters only, and Megatron's warmup + cosine learning-rate schedule (optim/lr_schedule.h).
"""
import contextlib
import json
import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GptConfig:
    """The fields model_parity writes into the weights file's metadata ("config")."""

    name: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    ffn_hidden_size: int
    vocab_size: int
    padded_vocab_size: int
    max_position_embeddings: int
    normalization: str  # "LayerNorm" or "RMSNorm"
    norm_epsilon: float
    activation: str  # "gelu" or "swiglu"
    position_embedding: str  # "learned" or "rope"
    rotary_base: float
    rope_scaling_factor: float
    rope_low_freq_factor: float
    rope_high_freq_factor: float
    rope_original_max_position: int
    add_bias_linear: bool
    tie_word_embeddings: bool

    @staticmethod
    def from_json(text):
        return GptConfig(**json.loads(text))

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads


def rope_inverse_frequencies(cfg):
    """Rotary frequencies in f64, with Llama-3's scaling (Hugging Face's "llama3" rope type)."""
    d = cfg.head_dim
    freqs = cfg.rotary_base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    if cfg.rope_scaling_factor <= 0:
        return freqs
    old_len = float(cfg.rope_original_max_position)
    low_wavelen = old_len / cfg.rope_low_freq_factor
    high_wavelen = old_len / cfg.rope_high_freq_factor
    wavelen = 2 * math.pi / freqs
    smooth = (old_len / wavelen - cfg.rope_low_freq_factor) / (cfg.rope_high_freq_factor - cfg.rope_low_freq_factor)
    blended = (1 - smooth) * freqs / cfg.rope_scaling_factor + smooth * freqs
    scaled = torch.where(wavelen > low_wavelen, freqs / cfg.rope_scaling_factor, freqs)
    return torch.where((wavelen >= high_wavelen) & (wavelen <= low_wavelen), blended, scaled)


def apply_rope(x, cos, sin):
    """x [B, T, H, D]; cos, sin [T, D/2]: rotates (x_i, x_{i+D/2}) by the angle of (t, i)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)


def make_norm(cfg):
    if cfg.normalization == "LayerNorm":
        return nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_epsilon)
    return RMSNorm(cfg.hidden_size, cfg.norm_epsilon)


class SelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        h, g, d = cfg.num_attention_heads, cfg.num_query_groups, cfg.head_dim
        self.linear_qkv = nn.Linear(cfg.hidden_size, (h + 2 * g) * d, bias=cfg.add_bias_linear)
        self.linear_proj = nn.Linear(h * d, cfg.hidden_size, bias=cfg.add_bias_linear)

    def forward(self, x, rope):
        cfg = self.cfg
        b, t, _ = x.shape
        h, g, d = cfg.num_attention_heads, cfg.num_query_groups, cfg.head_dim
        per_group = h // g
        qkv = self.linear_qkv(x).view(b, t, g, per_group + 2, d)
        q = qkv[:, :, :, :per_group].reshape(b, t, h, d)
        k = qkv[:, :, :, per_group]
        v = qkv[:, :, :, per_group + 1]
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        q = q.transpose(1, 2)  # [B, H, T, D]
        k = k.repeat_interleave(per_group, dim=2).transpose(1, 2)
        v = v.repeat_interleave(per_group, dim=2).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        probs = torch.softmax(scores.float().masked_fill(future, float("-inf")), dim=-1)
        out = (probs.to(v.dtype) @ v).transpose(1, 2).reshape(b, t, h * d)
        return self.linear_proj(out)


class FeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        fc1_out = 2 * cfg.ffn_hidden_size if cfg.activation == "swiglu" else cfg.ffn_hidden_size
        self.linear_fc1 = nn.Linear(cfg.hidden_size, fc1_out, bias=cfg.add_bias_linear)
        self.linear_fc2 = nn.Linear(cfg.ffn_hidden_size, cfg.hidden_size, bias=cfg.add_bias_linear)

    def forward(self, x):
        h = self.linear_fc1(x)
        if self.cfg.activation == "swiglu":
            gate, up = h.split(self.cfg.ffn_hidden_size, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        return self.linear_fc2(h)


class TransformerLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = make_norm(cfg)
        self.self_attention = SelfAttention(cfg)
        self.pre_mlp_layernorm = make_norm(cfg)
        self.mlp = FeedForward(cfg)

    def forward(self, x, rope):
        x = x + self.self_attention(self.input_layernorm(x), rope)
        return x + self.mlp(self.pre_mlp_layernorm(x))


class Embedding(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.padded_vocab_size, cfg.hidden_size)
        if cfg.position_embedding == "learned":
            self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.num_layers))
        self.final_layernorm = make_norm(cfg)


class TorchGpt(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embedding = Embedding(cfg)
        self.decoder = Decoder(cfg)
        if not cfg.tie_word_embeddings:
            self.output_layer = nn.Linear(cfg.hidden_size, cfg.padded_vocab_size, bias=False)

    def forward(self, tokens):
        """tokens [B, T] -> logits [B, T, V] (the real vocabulary only)."""
        cfg = self.cfg
        t = tokens.shape[1]
        h = self.embedding.word_embeddings(tokens)
        rope = None
        if cfg.position_embedding == "learned":
            h = h + self.embedding.position_embeddings(torch.arange(t, device=tokens.device))
        else:
            angles = torch.arange(t, dtype=torch.float64)[:, None] * rope_inverse_frequencies(cfg)[None, :]
            rope = (angles.cos().float().to(tokens.device), angles.sin().float().to(tokens.device))
        for layer in self.decoder.layers:
            h = layer(h, rope)
        h = self.decoder.final_layernorm(h)
        table = self.embedding.word_embeddings.weight if cfg.tie_word_embeddings else self.output_layer.weight
        return F.linear(h, table[: cfg.vocab_size])


def lm_loss(logits, labels):
    """Mean cross-entropy over every token, computed in f32."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))


def lr_at(step, peak, minimum, warmup, decay):
    """Megatron's schedule as optim/lr_schedule.h states it: 1-based steps, linear warmup from 0,
    cosine decay to `minimum` at step `decay`, flat after."""
    if warmup > 0 and step <= warmup:
        return peak * step / warmup
    if step >= decay:
        return minimum
    ratio = (step - warmup) / (decay - warmup)
    return minimum + 0.5 * (1 + math.cos(math.pi * ratio)) * (peak - minimum)


PRECISIONS = ("f32", "bf16-autocast", "bf16-params")


def autocast(device, precision):
    """bf16 autocast on `device` for "bf16-autocast" (PyTorch AMP), nothing otherwise."""
    if precision == "bf16-autocast":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class TrainHyper:
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 50
    decay_steps: int = 200
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    clip_grad: float = 1.0  # 0: no clipping


def train(model, rows, hyper, precision):
    """rows [S, B, T + 1] (int64, on the model's device): one batch per step. Returns per-step
    dicts of loss, lr, grad_norm, seconds. precision (PRECISIONS):
      f32            f32 parameters and compute;
      bf16-autocast  f32 parameters and grads, bf16 autocast (PyTorch AMP): norms, softmax, loss
                     and the residual stream stay f32;
      bf16-params    the model cast to bf16 (activations and residual stream bf16) with f32
                     master weights and grads for AdamW: Megatron's bf16 recipe, and ours.
    The model is trained in place (and cast, for bf16-params)."""
    assert precision in PRECISIONS, precision
    masters = list(model.parameters())
    if precision == "bf16-params":
        model.to(torch.bfloat16)
        masters = [nn.Parameter(p.detach().float().clone()) for p in model.parameters()]
    params = list(model.parameters())
    groups = [
        {"params": [m for m in masters if m.dim() >= 2], "weight_decay": hyper.weight_decay},
        {"params": [m for m in masters if m.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=hyper.lr, betas=(hyper.beta1, hyper.beta2), eps=hyper.eps)
    device = rows.device
    history = []
    model.train()
    for step in range(1, rows.shape[0] + 1):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        batch = rows[step - 1]
        with autocast(device, precision):
            loss = lm_loss(model(batch[:, :-1]), batch[:, 1:])
        loss.backward()
        if precision == "bf16-params":
            for m, p in zip(masters, params):
                m.grad = p.grad.float()
        # Reported in f64: clip_grad_norm_'s own f32 norm was seen 1e-4 off (torch 1.13, CPU).
        grad_norm = torch.sqrt(sum(m.grad.double().pow(2).sum() for m in masters))
        if hyper.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(masters, hyper.clip_grad)
        lr = lr_at(step, hyper.lr, hyper.min_lr, hyper.warmup_steps, hyper.decay_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        if precision == "bf16-params":
            with torch.no_grad():
                for m, p in zip(masters, params):
                    p.copy_(m)
        history.append({"loss": loss.item(), "lr": lr, "grad_norm": grad_norm.item(),
                        "seconds": time.perf_counter() - start})
    return history
