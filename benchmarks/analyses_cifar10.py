"""The paper's analyses on CIFAR-10: do its claims about soft labels hold in our numbers?

    .venv/bin/python benchmarks/analyses_cifar10.py --quick   # reduced CPU settings (QUICK below)
    .venv/bin/python benchmarks/analyses_cifar10.py           # the CPU settings (CPU below)

Trains (or reuses, ``--experts``) two ConvNet-D3 expert trajectories on CIFAR-10 from
../shared/data (the JPEG copy, as benchmarks/fidelity_cifar10.py), then runs ``slc analyze``'s
library in one work folder (artifacts and student cells shared between the analyses, so a rerun
does only new work): swap, zeroshot, scaling, temperature, entropy, classes, and jsd when a
learned-label artifact is given (``--bptt``). Checks the issue's claims (Qin, Deng,
Alvarez-Melis, NeurIPS 2024):

- swapping the top label values hurts most, and more at lower IPC (Figure 4);
- remove-label hurts the removed class far more than remove-image at IPC 1 and 10 (Figure 7);
- the scaling-law fit: its data-size factor and R^2 (the paper: about 6x on TinyImageNet);
- learned (BPTT) labels beat hard labels on the same images, and their JSD to the best ensemble
  epoch is within the expert-vs-expert range (with ``--bptt``).

Writes benchmarks/results/analyses_cifar10.json, and each analysis's PNG as
benchmarks/results/analyses_cifar10-<name>.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NAME = "analyses_cifar10"
# CPU settings: two experts of 2 epochs (the fidelity benchmark's recipe), checkpoints every half
# epoch; students under recipes/eval/cifar10.toml with 300 epochs and 2 seeds. Measured on this
# machine's 2 cores: a cell costs about 18 CPU-seconds of fixed work (the test split) plus 0.6
# CPU-seconds per student epoch at IPC 1 and 1.4 at IPC 10, so a 300-epoch student is about 200
# CPU-seconds at IPC 1 and 450 at IPC 10. The CPU settings train about 106 students: some 11
# CPU-hours (6-7 hours on 2 idle cores) plus the experts (about 30 minutes); --quick about 36
# students of 150 epochs, 1.7 CPU-hours (about an hour) plus the experts.
CPU = {
    "mode": "cpu",
    "dataset": "cifar10",
    "data_root": "../shared/data/cifar10",
    "teacher_arch": "convnet_d3",
    "expert_recipe": "recipes/experts/cifar10-convnet_d3-momentum.toml",
    "expert_seeds": [0, 1],
    "expert_epochs": 2,
    "expert_every": 0.5,
    "protocol": "recipes/eval/cifar10.toml",
    "student_epochs": 300,
    "eval_seeds": [0, 1],
    "epoch": 1.0,  # the expert epoch the ablations label with
    "swap": {"ipcs": [1, 10], "indices": [1, 2, 3, 5, 9]},
    "zeroshot": {"ipcs": [1, 10], "classes": [0, 3, 8]},
    "scaling": {"ipcs": [1, 2, 5, 10, 20], "ks": [1, 2, 4, 10]},
    "temperature": {"ipcs": [10], "epochs": [0.5, 2.0], "temperatures": [1.0, 2.0, 4.0]},
    "entropy": {"ipcs": [10]},
    "classes": {"ipcs": [10]},
    "budget": 400,
    "analyses": ["swap", "zeroshot", "scaling", "temperature", "entropy", "classes"],  # which to run (jsd: with --bptt)
}
QUICK = {
    **CPU,
    "mode": "quick",
    "student_epochs": 150,
    "eval_seeds": [0],
    "swap": {"ipcs": [1, 10], "indices": [1, 2, 5, 9]},
    "zeroshot": {"ipcs": [1, 10], "classes": [0, 3]},
    "scaling": {"ipcs": [1, 2, 5, 10], "ks": [1, 2, 10]},
    "temperature": {"ipcs": [10], "epochs": [0.5, 2.0], "temperatures": [1.0, 4.0]},
}
FAR_MORE = 10.0  # points by which remove-label must hurt the removed class more than remove-image


def run(settings: dict, out: Path, experts: str | None, device: str, bptt: str | None = None) -> dict:
    """Every analysis of ``settings`` in the work folder ``out``; returns the benchmark's result."""
    from sl_compiler.analyze import AnalysisSpec, run_analysis

    store = experts or str(out / "experts")
    if experts is None:
        train_experts(settings, store, device)
    results, timings = {}, {}

    def analysis(name: str, ipcs, epochs=None, **options):
        if name != "jsd" and name not in settings["analyses"]:
            return
        spec = AnalysisSpec(
            dataset=settings["dataset"], data_root=_resolve(settings.get("data_root")), teacher_arch=settings["teacher_arch"],
            seeds=tuple(settings["expert_seeds"]) if name == "jsd" else (settings["expert_seeds"][0],),
            epochs=tuple(epochs or [settings["epoch"]]), ipcs=tuple(ipcs), protocol=_resolve(settings.get("protocol")),
            eval_seeds=tuple(settings["eval_seeds"]), student_epochs=settings["student_epochs"], experts=store, device=device, budget=settings["budget"],
        )
        start = time.perf_counter()
        results[name] = run_analysis(name, spec, out / "work", **options)
        timings[name] = round(time.perf_counter() - start, 1)
        print(results[name].markdown, flush=True)

    analysis("swap", settings["swap"]["ipcs"], indices=settings["swap"]["indices"])
    analysis("zeroshot", settings["zeroshot"]["ipcs"], classes=settings["zeroshot"]["classes"])
    analysis("scaling", settings["scaling"]["ipcs"], ks=settings["scaling"]["ks"])
    analysis("temperature", settings["temperature"]["ipcs"], settings["temperature"]["epochs"], temperatures=settings["temperature"]["temperatures"])
    analysis("entropy", settings["entropy"]["ipcs"], _store_epochs(settings, store))
    analysis("classes", settings["classes"]["ipcs"])
    if bptt:
        from sl_compiler.hub import open_artifact

        art = open_artifact(bptt)
        analysis("jsd", [art.ipc or 1], _store_epochs(settings, store), artifact=art)
    return {
        "kind": "slc-benchmark/analyses-cifar10/1",
        "settings": {k: v for k, v in settings.items() if k != "data_root"},
        "analyses": {name: r.data for name, r in results.items()},
        "claims": claims(results, bptt),
        "wall_s": timings,
    }


def train_experts(settings: dict, store: str, device: str) -> None:
    from sl_compiler.experts.recipe import ExpertRecipe, default_recipe_path
    from sl_compiler.experts.train import train_trajectories

    path = _resolve(settings.get("expert_recipe")) or default_recipe_path(settings["dataset"], settings["teacher_arch"])
    train_trajectories(settings["dataset"], settings["teacher_arch"], list(settings["expert_seeds"]), data_root=_resolve(settings.get("data_root")),
                       recipe=ExpertRecipe.from_toml(path), epochs=float(settings["expert_epochs"]), every=float(settings["expert_every"]), store=store, device=device)


def _store_epochs(settings: dict, store: str) -> list[float]:
    """Every checkpoint epoch the seeds share (entropy and jsd run along the whole trajectory)."""
    from sl_compiler.sweep import SweepSpec, expert_epochs

    return expert_epochs(SweepSpec(dataset=settings["dataset"], teacher_arch=settings["teacher_arch"], ipcs=(1,), seeds=tuple(settings["expert_seeds"]), experts=store))


def claims(results: dict, bptt: str | None) -> list[dict]:
    """Each claim of the issue with ``held`` (True, False, or None: not measured) and its evidence."""
    out = []
    if "swap" in results:
        out += _swap_claims(results["swap"].data["cells"])
    for cell in results["zeroshot"].data["cells"] if "zeroshot" in results else []:
        per = cell["classes"].values()
        image = sum(c["remove image"]["removed"] for c in per) / len(per)
        label = sum(c["remove label"]["removed"] for c in per) / len(per)
        out.append({"claim": f"remove-label hurts the removed class far more than remove-image (IPC {cell['ipc']})", "held": image - label >= FAR_MORE,
                    "evidence": f"removed-class accuracy: remove image {image:.1f} %, remove label {label:.1f} % (far more: >= {FAR_MORE:g} points)"})
    for epoch, fit in results["scaling"].data["fits"].items() if "scaling" in results else []:
        text = f"factor {fit['factor']:.2f}x ({fit['factor_curve']}), R^2 {fit['r2']:.3f}" if fit["fitted"] else f"no fit: {fit['reason']}"
        out.append({"claim": f"scaling law fit (expert epoch {epoch}; paper: about 6x on TinyImageNet)", "held": None, "evidence": text})
    if bptt and "jsd" in results:
        best = results["jsd"].data["best"]
        out.append({"claim": "BPTT labels' JSD to the best ensemble epoch is within the expert-vs-expert range", "held": best["within_expert_range"], "evidence": f"epoch {best['epoch']}: {best['raw']:.4f}"})
    else:
        out.append({"claim": "BPTT labels beat hard labels; their JSD is within the expert-vs-expert range", "held": None, "evidence": "not measured: pass --bptt ARTIFACT (slc compile --labeler bptt)"})
    return out


def _swap_claims(swap: list[dict]) -> list[dict]:
    """Figure 4's two claims from the swap cells: the top label's swap hurts most, and more at lower IPC."""
    worst = {c["ipc"]: min(c["swaps"], key=lambda i: c["swaps"][i]["relative"] or 0.0) for c in swap}
    top = {c["ipc"]: c["swaps"]["1"]["relative"] for c in swap if "1" in c["swaps"]}
    ipcs = sorted(top)
    return [
        {"claim": "swapping the top label hurts most", "held": all(w == "1" for w in worst.values()),
         "evidence": {f"IPC {i}": f"most harmful swap i = {worst[i]}" for i in worst}},
        {"claim": "and more at lower IPC", "held": len(ipcs) > 1 and all(top[a] <= top[b] for a, b in zip(ipcs, ipcs[1:])),
         "evidence": {f"IPC {i}": f"{top[i]:.1f} % of unswapped at i = 1" for i in ipcs}},
    ]


def write_result(result: dict, results_dir: Path, pngs: dict[str, Path]) -> Path:
    """``analyses_cifar10.json`` (sorted keys) and a copy of each analysis's PNG beside it."""
    results_dir.mkdir(parents=True, exist_ok=True)
    for name, png in pngs.items():
        shutil.copyfile(png, results_dir / f"{NAME}-{name}.png")
    path = results_dir / f"{NAME}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def _resolve(path: str | None) -> str | None:
    """Settings paths are relative to the repository root, whatever the working folder; dataset specs pass through."""
    if path is None:
        return None
    p = Path(path)
    return str(p if p.is_absolute() else (ROOT / p).resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reduced CPU settings (QUICK)")
    parser.add_argument("--settings", default=None, help="a JSON file of settings overriding the CPU (or --quick) ones")
    parser.add_argument("--out", default=str(ROOT / "runs" / "analyses-cifar10"), help="work folder: experts, artifacts, cell cache")
    parser.add_argument("--experts", default=None, help="an existing expert store (default: train into OUT/experts)")
    parser.add_argument("--bptt", default=None, help="a learned-label artifact (slc compile --labeler bptt) for the jsd claim")
    parser.add_argument("--results", default=str(RESULTS), help=f"where {NAME}.json and the PNGs go")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    settings = dict(QUICK if args.quick else CPU)
    if args.settings:
        settings.update(json.loads(Path(args.settings).read_text()))
    out = Path(args.out)
    result = run(settings, out, args.experts, args.device, args.bptt)
    pngs = {name: out / "work" / f"{name}.png" for name in result["analyses"]}
    path = write_result(result, Path(args.results), pngs)
    for c in result["claims"]:
        print(f"- {c['claim']}: {dict([(True, 'held'), (False, 'did not hold'), (None, 'reported')])[c['held']]} ({c['evidence']})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
