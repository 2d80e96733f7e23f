"""Parity of Tessera's GPT/Llama models with PyTorch (issue 6): same weights, same batch, same
hyperparameters; prints a table and writes it with the loss curves.

For each case (a preset plus integer overrides):
  1. bench/model_parity builds our model (--dtype, --device), dumps its initial parameters,
     runs one forward pass on a held-out batch and trains --steps steps, one batch per step.
  2. tests/reference/torch_gpt.py loads those parameters (f32 master weights: in bf16 runs they
     are the bf16 values, as our f32 master copies start from them) and computes
       - the f32 logits (TF32 off): the reference every bf16 result is measured against;
       - in bf16 runs, the logits of PyTorch's two bf16 layouts (TORCH_RUNS; torch_gpt.train
         describes them): PyTorch's own bf16 error, the tolerance;
       - --steps training steps in each of those layouts (or f32), same data and schedule.
  With --dtype f32 both sides run in f32 and the logits must agree within 1e-3. Our CUDA
  attention is bf16/f16 only, so the f32 check runs on our CPU backend (--device cpu).
Pass criteria (exit status 1 otherwise): our bf16 logits are no further from the f32 reference
than 2x PyTorch's bf16 logits are; f32 logits agree within 1e-3; every step's loss is within
--curve-tolerance (1%) of PyTorch's and the learning rates agree.
Writes OUT/parity_DTYPE_DEVICE.md and OUT/LABEL_loss.csv; docs/parity/README.md has the
commands that made the committed numbers.
"""
import argparse
import copy
import csv
import os
import subprocess
import sys
import time

import numpy as np
import torch
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import GptConfig, TorchGpt, TrainHyper, autocast, lm_loss, train  # noqa: E402

DEFAULT_CASES = ["gpt2-124m:gpt2-124m:", "llama3-1b-4layers:llama3-1b:num_layers=4"]
# PyTorch runs per --dtype: the first is the reference of the pass criteria; in bf16 the second,
# PyTorch in our precision layout, is a control showing how far two valid bf16 runs drift apart.
TORCH_RUNS = {"bf16": ("bf16-autocast", "bf16-params"), "f32": ("f32",)}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tool", default="build/bench/model_parity", help="our model_parity executable")
    p.add_argument("--data", default=".cache/example-data/brown_gpt2_text_document", help=".bin/.idx prefix")
    p.add_argument("--work", default="/tmp/model_parity", help="scratch folder (weights, logits)")
    p.add_argument("--out", default="docs/parity", help="where the table and loss curves go")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    p.add_argument("--case", action="append", help="LABEL:PRESET:key=value,... (default: GPT-2 124M, "
                   "Llama-3 1B shape with 4 layers)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--steps", type=int, default=200, help="training steps (0: forward check only)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--forward-batch", type=int, default=2)
    p.add_argument("--smooth", type=int, default=10, help="trailing moving-average window for the curve")
    p.add_argument("--curve-tolerance", type=float, default=0.01)
    for field, value in vars(TrainHyper()).items():
        p.add_argument("--" + field.replace("_", "-"), type=type(value), default=value)
    return p.parse_args()


def run(cmd):
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def load_safetensors(path):
    with safe_open(path, framework="pt") as f:
        return {name: f.get_tensor(name) for name in f.keys()}, f.metadata() or {}


def tool_model_command(args, preset, overrides):
    cmd = [args.tool, "model", "--model", preset, "--seed", str(args.seed), "--device", args.device,
           "--dtype", args.dtype]
    for assignment in overrides:
        cmd += ["--set", assignment]
    return cmd


def hyper_from(args):
    return TrainHyper(**{field: getattr(args, field) for field in vars(TrainHyper())})


def hyper_flags(args):
    flags = []
    for field in vars(TrainHyper()):
        flags += ["--" + field.replace("_", "-"), str(getattr(args, field))]
    return flags


def torch_model(weights_path, device):
    weights, metadata = load_safetensors(weights_path)
    model = TorchGpt(GptConfig.from_json(metadata["config"])).to(device)
    model.load_state_dict({name: t.float() for name, t in weights.items()}, strict=True)
    return model


def logit_stats(ours, reference):
    diff = (ours.float() - reference.float()).abs()
    return {"max_abs": diff.max().item(), "mean_abs": diff.mean().item()}


def percent(x):
    return f"{x:.3%}" if x >= 1e-4 else f"{x:.1e}"


def smooth(values, window):
    return np.array([np.mean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))])


def read_our_curve(path):
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def torch_logits(model, tokens, device, precision):
    """Logits of the f32 model run in `precision` (bf16-params: a bf16 copy of it)."""
    if precision == "bf16-params":
        model = copy.deepcopy(model).to(torch.bfloat16)
    with torch.no_grad(), autocast(device, precision):
        return model(tokens).float()


def forward_check(args, label, weights_path, device, rows_path, ours_path):
    """Logit and loss differences on the held-out batch, each against PyTorch f32; returns rows
    (label, check, comparison, max abs, mean abs, loss diff, pass)."""
    model = torch_model(weights_path, device)
    rows = torch.from_numpy(np.load(rows_path).astype(np.int64)).to(device)
    tokens, labels = rows[:, :-1], rows[:, 1:]
    ours, _ = load_safetensors(ours_path)
    check = f"{args.dtype} logits [{'x'.join(str(s) for s in tokens.shape)}] ({args.device})"
    reference = torch_logits(model, tokens, device, "f32")
    reference_loss = lm_loss(reference, labels).item()
    ours_logits, ours_loss = ours["logits"].to(device), ours["loss"].item()
    ours_err = logit_stats(ours_logits, reference)
    if args.dtype == "f32":
        return [(label, check, "ours f32 vs torch f32", ours_err["max_abs"], ours_err["mean_abs"],
                 ours_loss - reference_loss, ours_err["max_abs"] <= 1e-3)]
    results, torch_rows = [], []
    for precision in TORCH_RUNS["bf16"]:
        logits = torch_logits(model, tokens, device, precision)
        loss = lm_loss(logits, labels).item()
        err, vs_ours = logit_stats(logits, reference), logit_stats(ours_logits, logits)
        results.append((label, check, f"torch {precision} vs torch f32", err["max_abs"], err["mean_abs"],
                        loss - reference_loss, True))
        torch_rows.append((label, check, f"ours bf16 vs torch {precision}", vs_ours["max_abs"], vs_ours["mean_abs"],
                           ours_loss - loss, True))
        del logits
    tolerance = 2 * max(r[3] for r in results)
    print(f"{label}: loss ours bf16 {ours_loss:.6f}, torch f32 {reference_loss:.6f}; max |logit| "
          f"{reference.abs().max().item():.3f}", flush=True)
    return [(label, check, "ours bf16 vs torch f32", ours_err["max_abs"], ours_err["mean_abs"],
             ours_loss - reference_loss, ours_err["max_abs"] <= tolerance)] + results + torch_rows


def compare_curves(args, label, comparison, a, b, primary):
    """a, b: per-step loss arrays; b is the reference. primary: the pair the pass criterion uses."""
    relative = np.abs(a - b) / np.abs(b)
    smoothed = np.abs(smooth(a, args.smooth) - smooth(b, args.smooth)) / smooth(b, args.smooth)
    tail = min(50, len(a))
    summary = {"label": label, "comparison": comparison, "steps": len(a), "first": (a[0], b[0]),
               "last": (a[-1], b[-1]), "max_rel": float(relative.max()), "max_rel_step": int(relative.argmax()) + 1,
               "max_rel_smoothed": float(smoothed.max()), "mean_rel_tail": float(np.mean((a - b)[-tail:] / b[-tail:])),
               "pass": bool(relative.max() <= args.curve_tolerance) if primary else None}
    print(f"{label}: {comparison}: max rel diff {percent(summary['max_rel'])} (step {summary['max_rel_step']}), "
          f"smoothed {percent(summary['max_rel_smoothed'])}, mean over the last {tail} steps "
          f"{summary['mean_rel_tail']:+.3%}", flush=True)
    return summary


def curve_check(args, label, ours, histories):
    """ours: our CSV rows; histories: {precision: torch history}. Writes OUT/LABEL_loss.csv and
    returns the curve summaries (ours against each torch run, controls against the first) and
    the step times."""
    runs = list(histories)
    with open(os.path.join(args.out, f"{label}_loss.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "lr", "ours_loss"] + [f"torch_{p}_loss" for p in runs] + ["ours_grad_norm"] +
                   [f"torch_{p}_grad_norm" for p in runs] + ["ours_seconds"] + [f"torch_{p}_seconds" for p in runs])
        for i, r in enumerate(ours):
            hs = [histories[p][i] for p in runs]
            w.writerow([i + 1, f"{r['lr']:.6e}", f"{r['loss']:.6f}"] + [f"{h['loss']:.6f}" for h in hs] +
                       [f"{r['grad_norm']:.5f}"] + [f"{h['grad_norm']:.5f}" for h in hs] +
                       [f"{r['seconds']:.4f}"] + [f"{h['seconds']:.4f}" for h in hs])
    lr_ok = all(abs(r["lr"] - h["lr"]) <= 1e-9 * h["lr"] for r, h in zip(ours, histories[runs[0]]))
    ours_loss = np.array([r["loss"] for r in ours])
    torch_loss = {p: np.array([h["loss"] for h in histories[p]]) for p in runs}
    summaries = []
    for i, p in enumerate(runs):
        s = compare_curves(args, label, f"ours {args.dtype} vs torch {p}", ours_loss, torch_loss[p], i == 0)
        s["norm_step1"] = abs(ours[0]["grad_norm"] - histories[p][0]["grad_norm"]) / histories[p][0]["grad_norm"]
        if i == 0:
            s["pass"] = s["pass"] and lr_ok
        summaries.append(s)
    for p in runs[1:]:
        s = compare_curves(args, label, f"torch {p} vs torch {runs[0]}", torch_loss[p], torch_loss[runs[0]], False)
        s["norm_step1"] = abs(histories[p][0]["grad_norm"] - histories[runs[0]][0]["grad_norm"]) / \
            histories[runs[0]][0]["grad_norm"]
        summaries.append(s)
    # Steady-state step time: the median over the steps after the first.
    times = {"ours": float(np.median([r["seconds"] for r in ours[1:]]))}
    times.update({f"torch {p}": float(np.median([h["seconds"] for h in histories[p][1:]])) for p in runs})
    return summaries, (label, times)


def prepare_tokens(args):
    row = args.seq + 1
    train_count = args.steps * args.batch * row
    need = train_count + args.forward_batch * row
    stream_path = os.path.join(args.work, "stream.npy")
    run([args.tool, "tokens", "--data", args.data, "--count", str(need), "--out", stream_path])
    stream = np.load(stream_path)
    paths = {"train": os.path.join(args.work, "train.npy"), "forward": os.path.join(args.work, "forward.npy")}
    np.save(paths["train"], stream[:train_count].reshape(args.steps, args.batch, row))
    np.save(paths["forward"], stream[train_count:].reshape(-1, row))
    return paths


def forward_table(forward_rows):
    lines = ["| model | check | comparison | max abs logit diff | mean abs logit diff | loss diff | pass |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, check, comparison, max_abs, mean_abs, loss_diff, ok in forward_rows:
        lines.append(f"| {label} | {check} | {comparison} | {max_abs:.3e} | {mean_abs:.3e} | {loss_diff:+.2e} | "
                     f"{'yes' if ok else 'NO'} |")
    return lines


def curve_table(args, curves, times):
    h = hyper_from(args)
    lines = [f"Training: {args.steps} steps, batch {args.batch} x {args.seq} tokens, AdamW (betas {h.beta1}, "
             f"{h.beta2}, eps {h.eps}, weight decay {h.weight_decay} on 2-D parameters), lr {h.lr} warmup "
             f"{h.warmup_steps} then cosine to {h.min_lr} at step {h.decay_steps}, clip {h.clip_grad}. Ours: "
             f"{args.dtype} parameters, f32 "
             "master weights and grads. Torch runs: " + ", ".join(TORCH_RUNS[args.dtype]) +
             " (torch_gpt.train says what each keeps in which precision); the first is the reference.", "",
             "| model | comparison | loss step 1 | final loss | max rel diff per step | "
             f"max rel diff, {args.smooth}-step mean | mean rel diff, last 50 steps | grad norm rel diff, step 1 "
             "| pass |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in curves:
        verdict = "-" if c["pass"] is None else ("yes" if c["pass"] else "NO")
        lines.append(f"| {c['label']} | {c['comparison']} | {c['first'][0]:.4f} / {c['first'][1]:.4f} | "
                     f"{c['last'][0]:.4f} / {c['last'][1]:.4f} | {percent(c['max_rel'])} (step {c['max_rel_step']}) | "
                     f"{percent(c['max_rel_smoothed'])} | {c['mean_rel_tail']:+.3%} | {percent(c['norm_step1'])} | "
                     f"{verdict} |")
    lines += ["", "Step time (median, s): " + "; ".join(
        f"{label}: " + ", ".join(f"{k} {v:.3f}" for k, v in t.items()) for label, t in times) + "."]
    return lines


def write_report(args, forward_rows, curves, times, device_name):
    """Prints the tables, writes them to OUT/parity_DTYPE_DEVICE.md; returns whether all passed."""
    lines = [f"Tessera vs PyTorch {torch.__version__} on {device_name}; {args.dtype} runs on {args.device}, "
             f"seed {args.seed}; data {os.path.basename(args.data)}.", ""] + forward_table(forward_rows)
    if curves:
        lines += [""] + curve_table(args, curves, times)
    text = "\n".join(lines) + "\n"
    print("\n" + text, flush=True)
    with open(os.path.join(args.out, f"parity_{args.dtype}_{args.device.split(':')[0]}.md"), "w") as f:
        f.write(text)
    return all(r[-1] for r in forward_rows) and all(c["pass"] is not False for c in curves)


def main():
    args = parse_args()
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    hyper = hyper_from(args)
    paths = prepare_tokens(args)
    forward_rows, curves, times = [], [], []
    for case in args.case or DEFAULT_CASES:
        label, preset, overrides = (case.split(":") + [""])[:3]
        overrides = [o for o in overrides.split(",") if o]
        weights = os.path.join(args.work, f"{label}-weights.safetensors")
        ours_forward = os.path.join(args.work, f"{label}-forward.safetensors")
        ours_curve = os.path.join(args.work, f"{label}-train.csv")
        training = ["--train-tokens", paths["train"], "--train-out", ours_curve] + hyper_flags(args)
        start = time.perf_counter()
        run(tool_model_command(args, preset, overrides) +
            ["--save-weights", weights, "--forward-tokens", paths["forward"], "--forward-out", ours_forward] +
            (training if args.steps > 0 else []))
        print(f"{label}: ours took {time.perf_counter() - start:.1f}s", flush=True)
        forward_rows += forward_check(args, label, weights, device, paths["forward"], ours_forward)
        if args.steps > 0:
            rows = torch.from_numpy(np.load(paths["train"]).astype(np.int64)).to(device)
            histories = {}
            for precision in TORCH_RUNS[args.dtype]:
                start = time.perf_counter()
                histories[precision] = train(torch_model(weights, device), rows, hyper, precision)
                print(f"{label}: torch {precision} training took {time.perf_counter() - start:.1f}s", flush=True)
            case_curves, case_times = curve_check(args, label, read_our_curve(ours_curve), histories)
            curves += case_curves
            times.append(case_times)
            del rows
        if device.type == "cuda":
            torch.cuda.empty_cache()
        write_report(args, forward_rows, curves, times, device_name)
    sys.exit(0 if write_report(args, forward_rows, curves, times, device_name) else 1)


if __name__ == "__main__":
    main()
