"""Student-training throughput: slc's trainer against a bare PyTorch loop, and batched vs one at a time.

    .venv/bin/python benchmarks/eval_throughput.py             # 32 px, IPC 50 (a few minutes on 2 cores)
    .venv/bin/python benchmarks/eval_throughput.py --quick     # fewer steps and students (about a minute)
    .venv/bin/python benchmarks/eval_throughput.py --device cuda --steps 200 --students 25 --epochs 50   # a GPU

1. img/s: one ConvNet-D3 student, batch 256, DSA (one family per batch), SGD (lr 0.01, momentum
   0.9, weight decay 5e-4) on 10 classes x IPC 50 of synthetic 32 px uint8 images resident on the
   device. ``bare`` is benchmarks/_bare.py's loop, written without slc (its own ConvNet, DSA and
   torch.optim.SGD; bf16 and channels_last on CUDA, like slc); ``slc`` is
   ``sl_compiler.evaluate.trainer.train_group`` (the ``StudentTrainer`` loop ``slc evaluate`` runs per group). They alternate
   ``--repeats`` times in one process; the best of each counts. ratio = slc img/s / bare img/s
   (target >= 0.9).
2. students/hour: ``--students`` students (seeds) at IPC 1 and 10 for ``--epochs`` epochs each,
   batched (one group) and sequential (one after another); students/hour at those epochs.
   Multiply by epochs / protocol epochs for a full protocol (e.g. / 100 for 1000 epochs at 10).

Writes benchmarks/results/eval_throughput.json (``--out``), with the settings it ran with.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _bare  # noqa: E402
from sl_compiler.data import load_dataset  # noqa: E402
from sl_compiler.device import describe, resolve_device  # noqa: E402
from sl_compiler.evaluate.protocol import Protocol  # noqa: E402
from sl_compiler.evaluate.regimes import training_set  # noqa: E402
from sl_compiler.evaluate.trainer import train_group  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def slc_loop(data, protocol: Protocol, seeds: list[int], device) -> float:
    _bare.sync(device)
    start = time.perf_counter()
    train_group(data, protocol, seeds, [protocol.lr] * len(seeds), device, {})
    _bare.sync(device)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and students: about a minute on 2 cores")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per img/s measurement (default 20; quick 8)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating measurements of each loop; the best counts (default 2)")
    ap.add_argument("--students", type=int, default=None, help="students per students/hour measurement (default 25; quick 6)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per student for students/hour (default 4; quick 2)")
    ap.add_argument("--out", default=str(RESULTS / "eval_throughput.json"), help="results JSON (default benchmarks/results/eval_throughput.json)")
    args = ap.parse_args(argv)
    steps = args.steps or (8 if args.quick else 20)
    students = args.students or (6 if args.quick else 25)
    epochs = args.epochs or (2 if args.quick else 4)
    device = resolve_device(args.device)
    model, batch = "convnet_d3", 256

    train = load_dataset("synthetic:classes=10,size=32,train=50,test=1", split="train")
    base = Protocol(model=model, batch_size=batch, lr=0.01, augment="dsa", seeds=(0,))
    data = training_set("hl", train.pixels, train.targets, 10, train.mean, train.std, device)
    steps_per_epoch = math.ceil(len(train) / batch)
    slc_protocol = base.override(epochs=math.ceil(steps / steps_per_epoch))
    slc_steps = slc_protocol.epochs * steps_per_epoch
    pixels, targets = train.pixels.to(device), train.targets.to(device)
    bare_times, slc_times = [], []
    for _ in range(args.repeats):
        bare_times.append(_bare.student_loop(pixels, targets, 10, slc_steps, batch, device))
        slc_times.append(slc_loop(data, slc_protocol, [0], device))
    images_seen = slc_protocol.epochs * len(train)  # both loops walk the same number of batches of the same size
    bare_ips, slc_ips = images_seen / min(bare_times), images_seen / min(slc_times)

    rows = []
    for ipc in (1, 10):
        idx = torch.cat([torch.nonzero(train.targets == c).flatten()[:ipc] for c in range(10)])
        small = training_set("hl", train.pixels[idx], train.targets[idx], 10, train.mean, train.std, device)
        p = base.override(epochs=epochs)
        seeds = list(range(students))
        batched_s = slc_loop(small, p, seeds, device)
        sequential_s = sum(slc_loop(small, p, [s], device) for s in seeds)
        rows.append(
            {
                "ipc": ipc,
                "students": students,
                "epochs": epochs,
                "batched_s": round(batched_s, 3),
                "sequential_s": round(sequential_s, 3),
                "batched_students_per_hour": round(students / batched_s * 3600, 1),
                "sequential_students_per_hour": round(students / sequential_s * 3600, 1),
                "speedup": round(sequential_s / batched_s, 3),
            }
        )

    settings = {
        "device": describe(device),
        "threads": torch.get_num_threads(),
        "model": model,
        "batch_size": batch,
        "augment": "dsa (single family per batch)",
        "optimizer": "sgd lr 0.01 momentum 0.9 wd 5e-4",
        "images": "synthetic 10 classes x 50, 32 px, uint8 on the device",
        "steps": slc_steps,
        "repeats": args.repeats,
        "students": students,
        "epochs_per_student": epochs,
        "bare_loop": "benchmarks/_bare.py student_loop (no slc code)",
    }
    result = {
        "benchmark": "eval_throughput",
        "device": describe(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "command": "python benchmarks/eval_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": settings,
        "model": model,
        "batch_size": batch,
        "augment": "dsa",
        "steps": slc_steps,
        "bare_img_per_s": round(bare_ips, 1),
        "slc_img_per_s": round(slc_ips, 1),
        "ratio": round(slc_ips / bare_ips, 3),
        "target": ">= 0.9",
        "students_per_hour": rows,
        "figures": [
            {"name": f"student img/s, slc / bare loop ({model}, batch {batch}, DSA, {slc_steps} steps)", "value": round(slc_ips / bare_ips, 3), "unit": "x", "target": ">= 0.9"},
            *(
                {"name": f"students/hour IPC {r['ipc']} ({r['students']} students, {r['epochs']} epochs), batched / sequential", "value": r["speedup"], "unit": "x", "target": "GPU: > 1; CPU: measured"}
                for r in rows
            ),
        ],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"| student training ({describe(device)}, {model}, batch {batch}, DSA, {slc_steps} steps, best of {args.repeats}) | img/s |\n|---|---|")
    print(f"| bare PyTorch loop (benchmarks/_bare.py) | {bare_ips:.1f} |\n| slc train_group | {slc_ips:.1f} |\n| ratio | {slc_ips / bare_ips:.3f} (target >= 0.9) |\n")
    print("| IPC | students | epochs | batched s | sequential s | batched students/h | sequential students/h | speedup |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ipc']} | {r['students']} | {r['epochs']} | {r['batched_s']} | {r['sequential_s']} | {r['batched_students_per_hour']} | {r['sequential_students_per_hour']} | {r['speedup']} |")
    return result


if __name__ == "__main__":
    main()
