"""PyTorch reference for Tessera's post-training losses (posttrain/losses.h, advantages.h).

The losses are written here the way TRL writes them (DPOTrainer.dpo_loss, PPOTrainer's
policy/value losses and GAE loop, GRPOTrainer's group normalisation), on fixed inputs that
tests/posttrain/torch_reference_test.cpp rebuilds from the same formulas (sin/cos of the
element index, so no random stream has to match). It prints every loss, statistic and
gradient as JSON (shortest round-trip repr of each double); the C++ test checks that
Tessera's functions give them, on the CPU in f64 and, where a GPU is visible, on CUDA in f32.

Run on the GPU machine (it computes on CUDA in f64 where a GPU is visible, else on the CPU):
    python3 tests/reference/posttrain_losses_torch.py --out tests/reference/fixtures/posttrain_losses_torch.json
and commit the fixture; without --out it prints the JSON. The C++ test reads that fixture (or
the file named by TESSERA_POSTTRAIN_TORCH_FIXTURE) and skips, saying so, where it is absent.
If the inputs or conventions change, rerun it.
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.float64


def series(n, scale, freq, phase, offset=0.0):
    """offset + scale * sin(freq * k + phase), k = 0..n-1 (the C++ test's `series`)."""
    return torch.tensor([offset + scale * math.sin(freq * k + phase) for k in range(n)], dtype=DTYPE, device=DEVICE)


def masked_mean(values, mask):
    return (values * mask).sum() / mask.sum()


# ---- DPO / IPO (TRL DPOTrainer.dpo_loss, loss_type "sigmoid" and "ipo") ----
def dpo_loss(pc, pr, rc, rr, beta, label_smoothing, ipo):
    logits = (pc - pr) - (rc - rr)
    if ipo:
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        losses = -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    chosen_rewards = beta * (pc - rc).detach()
    rejected_rewards = beta * (pr - rr).detach()
    return losses.mean(), chosen_rewards, rejected_rewards


def dpo_case(beta, label_smoothing, ipo):
    n = 6
    pc = series(n, 3.0, 1.3, 0.0, -10.0).requires_grad_(True)
    pr = series(n, 3.0, 0.9, 1.57, -12.0).requires_grad_(True)
    rc = series(n, 2.0, 0.4, 1.0, -10.5)
    rr = series(n, 2.0, 0.7, 2.0, -11.5)
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta, label_smoothing, ipo)
    loss.backward()
    return {
        "loss": loss.item(),
        "grad_policy_chosen": pc.grad.tolist(),
        "grad_policy_rejected": pr.grad.tolist(),
        "chosen_rewards": chosen.tolist(),
        "rejected_rewards": rejected.tolist(),
        "margins": (chosen - rejected).tolist(),
    }


# ---- PPO (TRL PPOTrainer: clipped policy loss, clipped value loss with the 0.5 factor) ----
B, T = 3, 6
MASK = [0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0]  # prompt tokens and padding are 0


def ppo_case(clip, clip_value):
    mask = torch.tensor(MASK, dtype=DTYPE, device=DEVICE).view(B, T)
    logp = series(B * T, 1.0, 0.37, 0.0, -1.5).view(B, T).requires_grad_(True)
    old = (logp.detach() + series(B * T, 0.3, 1.1, 0.5).view(B, T))
    adv = series(B * T, 1.5, 0.53, 1.57).view(B, T)
    values = series(B * T, 0.5, 0.61, 0.0).view(B, T).requires_grad_(True)
    old_values = values.detach() + series(B * T, 0.4, 0.83, 0.2).view(B, T)
    returns = series(B * T, 1.0, 0.29, 1.57).view(B, T)

    logprobs_diff = logp - old
    ratio = torch.exp(logprobs_diff)
    pg_losses = -adv * ratio
    pg_losses2 = -adv * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses2), mask)
    pg_clipfrac = masked_mean((pg_losses2 > pg_losses).to(DTYPE), mask)
    # TRL averages over every position (padding included, where its diff is 0); over the mask here.
    approxkl = 0.5 * masked_mean(logprobs_diff.detach() ** 2, mask)

    vpredclipped = torch.clamp(values, old_values - clip_value, old_values + clip_value)
    vf_losses1 = torch.square(values - returns)
    vf_losses2 = torch.square(vpredclipped - returns)
    vf_loss = 0.5 * masked_mean(torch.max(vf_losses1, vf_losses2), mask)
    vf_clipfrac = masked_mean((vf_losses2 > vf_losses1).to(DTYPE), mask)

    (pg_loss + vf_loss).backward()
    return {
        "policy_loss": pg_loss.item(),
        "clip_fraction": pg_clipfrac.item(),
        "approx_kl": approxkl.item(),
        "grad_logprobs": logp.grad.flatten().tolist(),
        "value_loss": vf_loss.item(),
        "value_clip_fraction": vf_clipfrac.item(),
        "grad_values": values.grad.flatten().tolist(),
    }


# ---- GAE (TRL's loop; right padding has rewards and values zeroed, so it ends each row) ----
def gae_case(gamma, lam):
    mask = torch.tensor([1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=DTYPE, device=DEVICE).view(B, T)
    rewards = series(B * T, 1.0, 0.77, 0.3).view(B, T) * mask
    values = series(B * T, 0.8, 0.45, 1.1).view(B, T) * mask
    lastgaelam = 0
    advantages_reversed = []
    for t in reversed(range(T)):
        nextvalues = values[:, t + 1] if t < T - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], axis=1)
    returns = advantages + values
    return {"advantages": (advantages * mask).flatten().tolist(), "returns": (returns * mask).flatten().tolist()}


# ---- GRPO (TRL GRPOTrainer: torch.std, i.e. the sample std, + 1e-4) ----
def grpo_case(group):
    rewards = series(12, 1.0, 2.3, 0.1)
    grouped = rewards.view(-1, group)
    mean = grouped.mean(dim=1).repeat_interleave(group)
    std = grouped.std(dim=1).repeat_interleave(group)
    return {"advantages": ((rewards - mean) / (std + 1e-4)).tolist()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write the JSON here instead of printing it")
    args = parser.parse_args()
    out = {
        "device": DEVICE,
        "torch": torch.__version__,
        "dpo_sigmoid": dpo_case(0.1, 0.0, False),
        "dpo_smoothed": dpo_case(0.2, 0.1, False),
        "ipo": dpo_case(0.5, 0.0, True),
        "ppo": ppo_case(0.2, 0.2),
        "gae": gae_case(0.95, 0.9),
        "grpo": grpo_case(4),
    }
    text = json.dumps(out, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
