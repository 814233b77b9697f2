"""Result files for the report tests, made by slc itself on a tiny synthetic set (seconds on a CPU).

``build(root)`` trains one small expert, compiles two artifacts (IPC 2 with dense labels; IPC 3
with top-2 labels of 3 CutMix+RRC views each), evaluates both with two seeds and both random
baselines into ``results.json``, sweeps two IPCs over two expert epochs into ``sweep/sweep.json``,
and writes a scaling-law analysis in the ``slc-analysis/1`` shape (``analysis.json``).

``python tests/report_data.py DIR [--classes N --size PX]`` writes them to DIR (the README's
screenshot is of such a page).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ANALYSIS = {
    "kind": "slc-analysis/1",
    "analysis": "scaling",
    "title": "Knowledge-data scaling law (top-k labels)",
    "slc_version": "0.1.0",
    "settings": {"dataset": "synthetic", "ks": [1, 2], "ipcs": [1, 2, 5, 10]},
    "figures": [{
        "title": "Student accuracy against IPC, per k",
        "x": {"label": "images per class", "scale": "log"},
        "y": {"label": "test accuracy (%)", "scale": "linear"},
        "series": [
            {"label": "hard labels", "style": "line", "points": [[1, 20.1, 1.0], [2, 24.0, 0.8], [5, 31.5, 0.5], [10, 38.2, 0.4]]},
            {"label": "top-2", "style": "line", "points": [[1, 26.0, 1.2], [2, 31.0, 1.0], [5, 38.0, 0.6], [10, 43.1, 0.5]]},
            {"label": "top-2, fit", "style": "dashed", "points": [[1, 26.3], [2, 30.8], [5, 37.9], [10, 43.3]]},
        ],
    }],
    "tables": [{"title": "Fit acc = (a IPC / b)^c - d", "columns": ["curve", "a", "b", "c", "d", "R^2"],
                "rows": [["hard labels", 1.0, 0.41, 0.21, 0.5, 0.998], ["top-2", 1.0, 0.12, 0.18, 0.3, 0.997]]}],
    "heatmaps": [{"title": "Accuracy by k and IPC", "rows": ["k=1", "k=2"], "columns": ["1", "2", "5", "10"],
                  "values": [[20.1, 24.0, 31.5, 38.2], [26.0, 31.0, 38.0, 43.1]], "xlabel": "IPC", "ylabel": "k", "colorbar": "accuracy (%)"}],
    "notes": ["Made up for the tests: the shape an analysis result has, not a measurement."],
}


def build(root: Path, classes: int = 4, size: int = 16) -> dict[str, Path]:
    from sl_compiler.compile import compile_artifact
    from sl_compiler.evaluate import Protocol, evaluate
    from sl_compiler.experts.train import train_trajectories
    from sl_compiler.recipe import Recipe
    from sl_compiler.sweep import SweepSpec, run_sweep

    root = Path(root)
    data = f"synthetic:classes={classes},size={size},train=12,test=6"
    experts = root / "experts"
    train_trajectories(data, "convnet_d3", [0], epochs=1, every=1, batch_size=16, store=experts, device="cpu")
    dense = compile_artifact(Recipe(dataset=data, ipc=2, teacher="convnet_d3@1#0"), experts=experts, device="cpu", out=root / "ipc2")
    views = compile_artifact(Recipe(dataset=data, ipc=3, teacher="convnet_d3@1#0", views=3, augment="cutmix+rrc", topk=2), experts=experts, device="cpu", out=root / "ipc3")
    protocol = Protocol(epochs=3, batch_size=8, seeds=(0, 1), regimes=("sl",), baselines=("random-hl", "random-sl"), augment="dsa")
    evaluate([dense, views], protocol, device="cpu", experts=str(experts), out=root / "results")
    run_sweep(SweepSpec(dataset=data, teacher_arch="convnet_d3", ipcs=(1, 2), epochs=(0.0, 1.0), eval_seeds=(0,), student_epochs=2, experts=str(experts), device="cpu"), root / "sweep")
    (root / "analysis.json").write_text(json.dumps(ANALYSIS, indent=2) + "\n")
    return {"results": root / "results.json", "sweep": root / "sweep" / "sweep.json", "analysis": root / "analysis.json", "dense": dense, "views": views}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--size", type=int, default=16)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for name, path in build(args.out, args.classes, args.size).items():
        print(f"{name}: {path}")
