"""Do labels learned by truncated BPTT beat hard labels on the same images? (issue 13; Qin et al. 2024, Section 5.2)

    .venv/bin/python benchmarks/bptt_cifar10.py --quick   # reduced CPU settings (below), about 25 CPU-minutes (2 idle cores: ~15 min)
    .venv/bin/python benchmarks/bptt_cifar10.py           # fuller settings, for a GPU
    .venv/bin/python benchmarks/bptt_cifar10.py --quick --time-step   # only one outer step per IPC: its cost

For each IPC (1 and 10) compiles CIFAR-10 (../shared/data, the JPEG copy) with `--labeler bptt`
(random real images, selection seed 0, labels learned without an expert), then trains students
on that one artifact under `slc evaluate`'s protocol (recipes/eval/cifar10.toml, the settings'
epochs and seeds, final-epoch test accuracy) twice: regime `sl` (the learned labels) and regime
`hl` (the hard labels of the very same images). Writes benchmarks/results/bptt_cifar10.json with
both accuracies, their difference, the BPTT settings, the outer loss at the start and the end,
and the time of an outer step. Artifacts and results are kept under --out, so a rerun only
evaluates what is new.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROTOCOL = ROOT / "recipes" / "eval" / "cifar10.toml"
# quick: a CPU reduction (short unrolls, a few dozen outer steps, 100-epoch students, 2 seeds):
# one outer step measured 9.5 CPU s at IPC 1 and 23 at IPC 10 (docs/bptt.md, Cost), so both IPCs
# compile in about 20 CPU-minutes. full: the recipe defaults of `--labeler bptt` with more outer
# steps and the protocol's students (about 100 CPU s per outer step at IPC 10: a GPU's work).
SETTINGS = {
    "quick": {
        "bptt": {"bptt_steps": 10, "bptt_window": 5, "bptt_lr": 0.01, "bptt_label_lr": 0.05, "bptt_outer_steps": 40, "bptt_batch": 128},
        "student_epochs": 100,
        "seeds": [0, 1],
    },
    "full": {
        "bptt": {"bptt_steps": 50, "bptt_window": 20, "bptt_lr": 0.01, "bptt_label_lr": 0.01, "bptt_outer_steps": 2000, "bptt_batch": 256},
        "student_epochs": 1000,
        "seeds": [0, 1, 2, 3, 4],
    },
}


def run(mode: str, dataset: str, data_root: str | None, ipcs: list[int], out: Path, device: str, protocol_path: Path = PROTOCOL) -> dict:
    """Compile and evaluate each IPC; returns the result written to bptt_cifar10.json."""
    from sl_compiler.artifact import load
    from sl_compiler.compile import compile_artifact
    from sl_compiler.evaluate import evaluate, load_protocol
    from sl_compiler.recipe import Recipe

    settings = SETTINGS[mode]
    protocol = load_protocol(protocol_path).override(epochs=settings["student_epochs"], seeds=tuple(settings["seeds"]), regimes=("sl", "hl"), baselines=())
    per_ipc = {}
    for ipc in ipcs:
        recipe = Recipe(dataset=dataset, data_root=data_root, ipc=ipc, labeler="bptt", seed=0, name=f"bptt-ipc{ipc}", **settings["bptt"])
        folder = out / f"{mode}-ipc{ipc}"
        start = time.perf_counter()
        if not (folder / "manifest.json").exists():
            compile_artifact(recipe, out=folder, device=device, force=folder.exists())
        compile_s = time.perf_counter() - start
        art = load(folder)
        start = time.perf_counter()
        row = evaluate([art], protocol, data_root=data_root, device=device, out=out / f"{mode}-ipc{ipc}-eval")["artifacts"][0]
        eval_s = time.perf_counter() - start
        cells = row["cells"]
        learned = art.manifest["labels"]["bptt"]
        per_ipc[str(ipc)] = {
            "bptt_labels": _cell(cells["sl"]),
            "hard_labels": _cell(cells["hl"]),
            "gain_points": round(100 * (cells["sl"]["mean"] - cells["hl"]["mean"]), 2),
            "content_hash": art.content_hash,
            "outer_loss_first": learned["outer_loss_first"],
            "outer_loss_last_tenth": learned["outer_loss_last_tenth"],
            "compile_s": round(compile_s, 1),
            "outer_step_s": round(compile_s / recipe.bptt_outer_steps, 2),
            "eval_s": round(eval_s, 1),
        }
    return {
        "benchmark": "bptt_cifar10",
        "mode": mode,
        "dataset": dataset,
        "bptt": settings["bptt"],
        "protocol": {"file": _display(protocol_path), "epochs": settings["student_epochs"], "seeds": settings["seeds"], "regimes": ["sl", "hl"]},
        "ipc": per_ipc,
        "claim": "BPTT labels beat hard labels on the same images at IPC 1 and 10",
        "held": {ipc: r["bptt_labels"]["mean"] > r["hard_labels"]["mean"] for ipc, r in per_ipc.items()},
        "figures": [
            {"name": f"BPTT minus hard labels, IPC {ipc} (points)", "value": r["gain_points"], "unit": "points", "target": "> 0"} for ipc, r in per_ipc.items()
        ],
    }


def time_step(mode: str, dataset: str, data_root: str | None, ipcs: list[int], device: str) -> dict:
    """One outer step per IPC at the mode's settings: CPU seconds (all threads), wall seconds, peak RSS."""
    import resource

    import torch

    from sl_compiler.data import load_dataset, normalize
    from sl_compiler.device import resolve_device
    from sl_compiler.label.bptt import initial_logits, label_gradient, real_batches, student, syn_batches
    from sl_compiler.recipe import Recipe
    from sl_compiler.select import random_per_class

    device = resolve_device(device)
    data = load_dataset(dataset, data_root, "train")
    rows = {}
    for ipc in ipcs:
        recipe = Recipe(dataset=dataset, ipc=ipc, labeler="bptt", **{**SETTINGS[mode]["bptt"], "bptt_outer_steps": 1})
        idx = random_per_class(data.targets, data.classes, ipc, 0)
        x = normalize(data.images(idx).to(device), data.mean, data.std)
        real = torch.tensor(real_batches(recipe, len(data))[0])
        rx, ry = normalize(data.images(real).to(device), data.mean, data.std), data.targets[real].to(device)
        model, params, buffers = student(recipe.bptt_model, data.num_classes, data.shape, 0, 0, device)
        cpu, wall = time.process_time(), time.perf_counter()
        loss, _ = label_gradient(model, params, buffers, x, initial_logits(data.targets[idx], data.num_classes).to(device), rx, ry, steps=recipe.bptt_steps, window=recipe.bptt_window, lr=recipe.bptt_lr, batches=syn_batches(recipe, len(idx), 0, device))
        float(loss)  # wait for the device
        rows[str(ipc)] = {"cpu_s": round(time.process_time() - cpu, 1), "wall_s": round(time.perf_counter() - wall, 1), "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}
    return {"benchmark": "bptt_cifar10", "mode": mode, "dataset": dataset, "bptt": SETTINGS[mode]["bptt"], "threads": torch.get_num_threads(), "one_outer_step": rows}


def _cell(cell: dict) -> dict:
    """Accuracy in percent: mean, std and each seed's."""
    pct = lambda v: None if v is None else round(100 * v, 2)  # noqa: E731
    return {"mean": pct(cell["mean"]), "std": pct(cell["std"]), "accuracies": [pct(a) for a in cell["accuracy"]]}


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def table(result: dict) -> str:
    lines = [
        f"{result['dataset']}, {result['mode']} settings: student test accuracy (%), mean ± std over {len(result['protocol']['seeds'])} seeds, {result['protocol']['epochs']} epochs",
        "| IPC | BPTT labels | hard labels (same images) | gain | outer loss first -> last tenth | s / outer step |",
        "|---|---|---|---|---|---|",
    ]
    for ipc, r in result["ipc"].items():
        b, h = r["bptt_labels"], r["hard_labels"]
        lines.append(f"| {ipc} | {b['mean']} ± {b['std']} | {h['mean']} ± {h['std']} | {r['gain_points']:+} | {r['outer_loss_first']} -> {r['outer_loss_last_tenth']} | {r['outer_step_s']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the reduced CPU settings")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "cifar10"), help="default: ../shared/data/cifar10 beside the repository")
    parser.add_argument("--ipcs", default="1,10")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bptt-cifar10", help="artifacts and evaluation results, kept for reruns")
    parser.add_argument("--results", type=Path, default=RESULTS / "bptt_cifar10.json")
    parser.add_argument("--protocol", type=Path, default=PROTOCOL)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--time-step", action="store_true", help="only time one outer step per IPC (printed as JSON; nothing written)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    data_root = None if args.dataset.startswith("synthetic") else args.data_root
    if args.time_step:
        print(json.dumps(time_step("quick" if args.quick else "full", args.dataset, data_root, [int(i) for i in args.ipcs.split(",")], args.device), indent=2))
        return 0
    result = run("quick" if args.quick else "full", args.dataset, data_root, [int(i) for i in args.ipcs.split(",")], args.out, args.device, args.protocol)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(table(result))
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
