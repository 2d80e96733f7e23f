#!/usr/bin/env python3
"""Transformers' half of the Hugging Face export/import check (run where torch + transformers are).

  export: loads a folder written by `tessera export --format hf` with from_pretrained, runs the
          token rows of TOKENS.npy ([B, T] int) and prints the max abs difference between its
          logits and ours (LOGITS.safetensors, tensor "logits" [B, T, V], written by our side).
      hf_export_check.py export --hf DIR --tokens TOKENS.npy --logits LOGITS.safetensors
  random: builds a GPT-2 or Llama model with random weights in transformers, save_pretrained
          (safetensors) into OUT, plus OUT/tokens.npy and OUT/logits.safetensors (its logits for
          random tokens), for `tessera import --format hf --input OUT --output CKPT` and a
          comparison of our logits with these (`compare`).
      hf_export_check.py random --arch llama|gpt2 --out OUT
  compare: max abs difference of two logits files.
      hf_export_check.py compare A.safetensors B.safetensors
The random models use shapes a Tessera recipe can express (presets' vocabularies and epsilons).
"""
import argparse
import sys

import numpy as np
import torch
from safetensors.numpy import load_file, save_file


def export_check(args):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(args.hf, torch_dtype=torch.float32).eval()
    tokens = torch.from_numpy(np.load(args.tokens).astype(np.int64))
    with torch.no_grad():
        theirs = model(tokens).logits.float().numpy()
    ours = load_file(args.logits)["logits"].astype(np.float32)
    diff = np.abs(theirs - ours).max()
    print(f"{type(model).__name__}: max |logit difference| {diff:.3g} over {ours.shape}")
    return 0 if diff <= args.tolerance else 1


def random_model(args):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    if args.arch == "gpt2":  # gpt2-124m preset's vocabulary, resized
        config = GPT2Config(vocab_size=50257, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                            activation_function="gelu_new", layer_norm_epsilon=1e-5)
        model = GPT2LMHeadModel(config)
    else:  # llama-tiny preset's vocabulary and epsilon, no rope scaling, untied
        config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                             rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than the init so logits are not near-uniform
        for p in model.parameters():
            p.mul_(5.0) if p.dim() == 2 else None
    model.eval().save_pretrained(args.out, safe_serialization=True)
    tokens = torch.randint(0, config.vocab_size, (2, 16))
    np.save(f"{args.out}/tokens.npy", tokens.numpy().astype(np.int32))
    with torch.no_grad():
        save_file({"logits": model(tokens).logits.float().numpy()}, f"{args.out}/logits.safetensors")
    print(f"wrote {args.out} ({type(model).__name__}), tokens.npy, logits.safetensors")
    return 0


def compare(args):
    a, b = load_file(args.a)["logits"], load_file(args.b)["logits"]
    diff = np.abs(a.astype(np.float32) - b.astype(np.float32)).max()
    print(f"max |logit difference| {diff:.3g} over {a.shape}")
    return 0 if diff <= args.tolerance else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export")
    e.add_argument("--hf", required=True)
    e.add_argument("--tokens", required=True)
    e.add_argument("--logits", required=True)
    e.add_argument("--tolerance", type=float, default=1e-4)
    r = sub.add_parser("random")
    r.add_argument("--arch", choices=["gpt2", "llama"], required=True)
    r.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--tolerance", type=float, default=1e-4)
    args = p.parse_args()
    return {"export": export_check, "random": random_model, "compare": compare}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
