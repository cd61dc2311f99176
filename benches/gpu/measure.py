#!/usr/bin/env python3
"""The GPU measurement (issue 15): `stoke bench` on wgpu for the MLP, CNN, ResNet and char LM,
and (issue 29) timm's ResNet-18 and ViT-S/16 on photos at 224² where datasets/fashion-photos
was carried, in f32, f16-mixed and bf16-mixed, alternated with the PyTorch reference on CUDA (eager,
torch.compile, autocast bf16 and f16), wgpu's warm-up (first step, kernel compilation and
autotuning) apart from the steady state, and the time the MNIST CNN takes to reach 99 %
validation accuracy. Writes gpu-bench.json and gpu-bench.md into --out.

Run through benches/gpu/run, which unpacks the binary and the Vulkan loader first. The whole
measurement keeps to --budget seconds: what does not fit is recorded as skipped.

    benches/gpu/measure.py --stoke /tmp/stoke --out $OUT
    benches/gpu/measure.py --stoke target/release/stoke --out /tmp/gpu --quick   # lavapipe, CPU torch
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# model: (config, stoke --set overrides, reference arguments)
MODELS = {
    "mlp": ("configs/mnist-mlp.toml", [], []),
    "cnn": ("configs/mnist-cnn.toml", [], []),
    "resnet": ("configs/mnist-resnet.toml", [], []),
    "lm": ("configs/mobydick-char-lm.toml",
           ["train.batch_size=32", "model.activation=gelu"],
           ["--batch-size", "32", "--activation", "gelu"]),
    # Photos at ImageNet's size (datasets/fetch fashion-mnist; python3
    # benches/finetune/fashion_photos.py; carry datasets/fashion-photos, 12 MB).
    "resnet18-224": ("configs/photos-resnet18.toml", [], ["--image-size", "224"]),
    "vit-s-224": ("configs/photos-resnet18.toml",
                  ['model.kind="timm-vit"', 'model.architecture="vit_small_patch16_224"'],
                  ["--image-size", "224"]),
}
# The reference model of each entry, where it is not the entry's name.
REFERENCE = {"resnet18-224": "resnet18", "vit-s-224": "vit_small"}
# What an entry reads that the working tree may lack.
NEEDS = {"resnet18-224": "datasets/fashion-photos", "vit-s-224": "datasets/fashion-photos"}
PRECISIONS = ["f32", "f16-mixed", "bf16-mixed"]
# name: reference arguments
TORCH_VARIANTS = {
    "eager": [],
    "compile": ["--compile"],
    "autocast-bf16": ["--autocast", "bf16"],
    "autocast-f16": ["--autocast", "f16"],
}


class Budget:
    """Seconds left, less `reserve` kept back for what runs last."""

    def __init__(self, seconds, reserve=0.0):
        self.deadline = time.monotonic() + seconds
        self.reserve = reserve

    def left(self):
        return self.deadline - self.reserve - time.monotonic()

    def release(self):
        self.reserve = 0.0


def run(command, timeout):
    """(exit code, stdout, stderr, seconds); exit code None when it timed out."""
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout, done.stderr, time.monotonic() - started
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        return None, out, "timed out", time.monotonic() - started


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    return json.loads(text)


def missing(model):
    """Why `model` cannot run here, or None."""
    need = NEEDS.get(model)
    if need and not os.path.isdir(os.path.join(ROOT, need)):
        return {"skipped": f"{need} is not here (carry it)"}
    return None


def stoke_bench(args, budget, model, precision):
    if missing(model):
        return missing(model)
    config, sets, _ = MODELS[model]
    command = [args.stoke, "bench", config, "--backend", "wgpu",
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    for item in sets + [f"train.precision={precision}"] + args.stoke_set:
        command += ["--set", item]
    if budget.left() < 20:
        return {"skipped": "out of the time budget"}
    code, out, err, seconds = run(command, min(args.run_timeout, budget.left()))
    if code == 0:
        report = json.loads(out)
        report["wall_s"] = seconds
        return report
    if code == 2:
        # Refused, e.g. a half type the adapter cannot compute in: one line saying why.
        return {"refused": err.strip().splitlines()[-1] if err.strip() else "exit 2"}
    return {"failed": f"exit {code}", "stderr": err[-600:]}


def torch_bench(args, budget, model, variant):
    if missing(model):
        return missing(model)
    _, _, extra = MODELS[model]
    command = [sys.executable, "benches/pytorch_reference.py", "--model", REFERENCE.get(model, model),
               "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--device", args.torch_device] + extra + TORCH_VARIANTS[variant]
    if budget.left() < 20:
        return {"skipped": "out of the time budget"}
    code, out, err, seconds = run(command, min(args.run_timeout, budget.left()))
    if code == 0:
        report = last_json(out)
        report["wall_s"] = seconds
        return report
    return {"failed": f"exit {code}", "stderr": err[-600:]}


def median(runs, key):
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def time_to_quality(args, budget):
    """`stoke train` of the MNIST CNN on wgpu: wall time to the first validation at or above
    the target accuracy (99 %)."""
    target = args.ttq_target
    if budget.left() < 30:
        return {"skipped": "out of the time budget"}
    with tempfile.TemporaryDirectory() as run_dir:
        command = [args.stoke, "train", args.ttq_config, "--backend", "wgpu",
                   "--run-dir", os.path.join(run_dir, "run"),
                   "--set", f"train.eval_every={args.eval_every}"]
        for item in args.train_set:
            command += ["--set", item]
        code, _, err, seconds = run(command, budget.left() - 5)
        result = {"config": args.ttq_config, "command": " ".join(command[1:]), "wall_s": seconds}
        metrics = os.path.join(run_dir, "run", "metrics.jsonl")
        records = []
        if os.path.exists(metrics):
            with open(metrics) as lines:
                records = [json.loads(line) for line in lines if line.strip()]
        valid = [r for r in records if r.get("split") == "valid"]
        reached = next((r for r in valid if r.get("accuracy", 0) >= target), None)
        test = [r for r in records if r.get("split") == "test"]
        result.update({
            "exit": code,
            "target_valid_accuracy": target,
            "reached_at_s": reached["time_s"] if reached else None,
            "reached_at_step": reached["step"] if reached else None,
            "best_valid_accuracy": max((r["accuracy"] for r in valid), default=None),
            "test_accuracy": test[-1]["accuracy"] if test else None,
        })
        if code != 0:
            result["stderr"] = err[-600:]
        return result


def markdown(report):
    lines = [f"# GPU benchmark ({report['date']})", "",
             f"stoke: wgpu on {report['adapter']}; PyTorch on {report['torch_device']}.", "",
             "| model | stoke f32 | stoke f16-mixed | stoke bf16-mixed | torch eager | torch compile "
             "| torch autocast bf16 | torch autocast f16 | stoke f32 / torch eager |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model, row in report["models"].items():
        def cell(runs):
            value = median(runs, "samples_per_s")
            if value is not None:
                return f"{value:,.0f}"
            # "refused", "skipped" or "failed"; the JSON holds why.
            reasons = [next(iter(r)) for r in runs if r]
            return reasons[0] if reasons else "–"
        stoke = [cell(row["stoke"][p]) for p in PRECISIONS]
        torch = [cell(row["torch"][v]) for v in TORCH_VARIANTS]
        s, t = median(row["stoke"]["f32"], "samples_per_s"), median(row["torch"]["eager"], "samples_per_s")
        ratio = f"{s / t:.2f}×" if s and t else "–"
        lines.append(f"| {model} | " + " | ".join(stoke + torch) + f" | {ratio} |")
    lines += ["", "samples/s, medians of the alternated rounds (LM: windows of 128 tokens).", "",
              "Warm-up (stoke f32: command start to the end of the first step, then the other "
              "warm-up steps; PyTorch compile: its first step, compilation included):", ""]
    for model, row in report["models"].items():
        first = median(row["stoke"]["f32"], "time_to_first_step_s")
        warm = median(row["stoke"]["f32"], "warmup_s")
        compiled = median(row["torch"]["compile"], "first_step_s")
        fmt = lambda v: "–" if v is None else f"{v:.1f} s"
        lines.append(f"- {model}: stoke first step {fmt(first)}, other warm-up steps {fmt(warm)}; "
                     f"torch.compile first step {fmt(compiled)}")
    ttq = report["time_to_quality"]
    lines += ["", f"Time to quality (`stoke train {ttq.get('config')}` on wgpu): "
              f"{ttq.get('reached_at_s')} s to ≥ {100 * ttq.get('target_valid_accuracy', 0):.0f} % validation accuracy "
              f"(step {ttq.get('reached_at_step')}); test accuracy {ttq.get('test_accuracy')}; "
              f"whole run {ttq.get('wall_s', 0):.0f} s."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stoke", default=os.path.join(ROOT, "target/release/stoke"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true",
                        help="the MLP alone, tiny step counts and data, PyTorch on the CPU "
                             "without CUDA: a test of this script on lavapipe")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for everything (330; 600 with --quick)")
    parser.add_argument("--ttq-reserve", type=float, default=100,
                        help="seconds of the budget kept for the time-to-quality run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    has_cuda = subprocess.run([sys.executable, "-c", "import torch; assert torch.cuda.is_available()"],
                              capture_output=True).returncode == 0
    args.torch_device = "cuda" if has_cuda else "cpu"
    args.ttq_config, args.ttq_target = "configs/mnist-cnn.toml", 0.99
    if args.quick:
        # On lavapipe each stoke process spends about 80 s compiling shaders: the MLP alone,
        # and a time-to-quality run of the MLP on a few hundred images to a modest target.
        args.steps, args.warmup, args.rounds, args.run_timeout = 2, 1, 1, 300
        args.models = args.models or ["mlp"]
        args.stoke_set = ["data.limit=256"]
        args.train_set = ["data.limit=512", "train.epochs=1", "train.batch_size=32"]
        args.eval_every = 8
        args.ttq_config, args.ttq_target = "configs/mnist-mlp.toml", 0.5
        args.ttq_reserve = max(args.ttq_reserve, 240)
    else:
        args.steps, args.warmup, args.run_timeout = 30, 5, 120
        args.stoke_set, args.train_set, args.eval_every = [], [], 200
    models = args.models or list(MODELS)
    budget = Budget(args.budget or (600 if args.quick else 330), reserve=args.ttq_reserve)

    code, out, err, _ = run([args.stoke, "devices", "--json"], 60)
    devices = json.loads(out) if code == 0 else {"error": err}
    wgpu = devices.get("wgpu", {})
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "devices": devices,
        "adapter": wgpu.get("adapter", wgpu.get("error")),
        "auto_picks_the_gpu": devices.get("auto") == "wgpu",
        "torch_device": args.torch_device,
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "models": {},
    }
    print(f"devices: {json.dumps(devices)}", flush=True)
    rows = {model: {"stoke": {p: [] for p in PRECISIONS}, "torch": {v: [] for v in TORCH_VARIANTS}}
            for model in models}
    # Round by round over all models, so that a budget cut short still leaves one
    # measurement of each.
    for round_ in range(args.rounds):
        for model in models:
            row = rows[model]
            for precision in PRECISIONS:
                row["stoke"][precision].append(stoke_bench(args, budget, model, precision))
                print(f"{model} stoke {precision}: {row['stoke'][precision][-1].get('samples_per_s', row['stoke'][precision][-1])}", flush=True)
            for variant in TORCH_VARIANTS:
                # torch.compile recompiles in every process: once is enough.
                if variant == "compile" and round_ > 0:
                    continue
                row["torch"][variant].append(torch_bench(args, budget, model, variant))
                print(f"{model} torch {variant}: {row['torch'][variant][-1].get('samples_per_s', row['torch'][variant][-1])}", flush=True)
    report["models"] = rows
    budget.release()
    report["time_to_quality"] = time_to_quality(args, budget)
    print(f"time to quality: {report['time_to_quality']}", flush=True)
    report["seconds_left_in_budget"] = budget.left()
    with open(os.path.join(args.out, "gpu-bench.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "gpu-bench.md"), "w") as f:
        f.write(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
