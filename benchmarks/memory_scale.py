"""Peak memory of every stage on a fake ImageNet of S and of 4S images: flat in the dataset's size?

    .venv/bin/python benchmarks/memory_scale.py --quick   # 20 classes x 20 / x 80 JPEGs of 150-300 px (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/memory_scale.py           # 100 classes x 20 / x 80 JPEGs of 200-500 px, the issue's sizes (about an hour)

For each size, ``sl_compiler.data.fake`` writes an ImageNet in its folder layout (``train/<wnid>/``
and ``val/<wnid>/``, one val image per four training images), read as ``--dataset imagenet``
(resize 256, centre crop 224, ResNet-18). Then slc's CLI runs each stage in a subprocess, with
``SLC_IN_MEMORY_GIB=0`` so the folders stream from disk as ImageNet's 150 GB would, and an empty
cache per size:

1. ``slc experts train --model resnet18``: RandomResizedCrop of the original files in the decode
   workers, the same number of steps at both sizes, the whole val split tested at each checkpoint;
2. ``slc experts add`` of a checkpoint: its val pass streamed;
3. ``slc compile --select random`` and 4. ``--select ce-quantile`` (which scores every training
   image), both with CutMix+RRC views, the same IPC at both sizes;
5. ``slc evaluate`` of the random artifact (the val split streamed, one student epoch).

The figure per stage is the peak of the process tree's summed PSS (``benchmarks/_memory.py``) at
4S over S; target <= 1.1. Writes benchmarks/results/memory_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _memory import peak_memory  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
STAGES = ("experts train", "experts add", "compile random", "compile ce-quantile", "evaluate")


def stage_commands(root: Path, work: Path, *, steps_epochs: float, args) -> dict[str, list[str]]:
    """The CLI argument lists of the five stages on the fake ImageNet at ``root``."""
    data = ["--dataset", "imagenet", "--data-root", str(root)]
    common = ["--device", "cpu", "--workers", str(args.workers)]
    store, added = str(work / "experts"), str(work / "experts-added")
    views = ["--ipc", str(args.ipc), "--teacher", "resnet18@0#1", "--experts", added, "--views", str(args.views), "--augment", "cutmix+rrc", "--batch-size", str(args.batch)]
    epochs = f"{steps_epochs:g}"
    return {
        "experts train": ["experts", "train", *data, "--model", "resnet18", "--recipe", "recipes/experts/imagenet-resnet18.toml", "--batch-size", str(args.batch),
                          "--epochs", epochs, "--every", epochs, "--experts", store, *common],  # fmt: skip
        "experts add": ["experts", "add", str(work / "init.safetensors"), *data, "--model", "resnet18", "--epoch", "0", "--seed", "1", "--experts", added, "--batch-size", str(args.batch), *common],
        "compile random": ["compile", *data, *views, "--select", "random", "--out", str(work / "random"), *common],
        "compile ce-quantile": ["compile", *data, *views, "--select", "ce-quantile", "--quantile", "0", "--out", str(work / "ce"), *common],
        "evaluate": ["evaluate", str(work / "random"), *data, "--experts", added, "--protocol", str(work / "protocol.toml"), *common],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=20, help="training images per class at size S (4S: four times as many)")
    parser.add_argument("--sides", type=int, nargs=2, default=(200, 500), help="range of the JPEGs' sides")
    parser.add_argument("--ipc", type=int, default=2)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps-epochs", type=float, default=0.25, help="--epochs and --every of the S training run (4S: a quarter of it, the same steps)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="20 classes x 20 / x 80 JPEGs of 150-300 px")
    parser.add_argument("--out", default=str(RESULTS / "memory_scale.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.classes, args.sides = 20, (150, 300)
    command = " ".join(["python benchmarks/memory_scale.py", *(sys.argv[1:] if argv is None else argv)])
    import tomli_w
    import torch
    from safetensors.torch import save_file

    from sl_compiler.tomlfile import read_toml

    from sl_compiler.data.fake import FakeSpec, write_fake
    from sl_compiler.models import create_model

    runs: dict[str, dict[str, dict]] = {stage: {} for stage in STAGES}
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="slc-memory-") as tmp:
        for label, factor in (("S", 1), ("4S", 4)):
            work = Path(tmp) / label
            spec = FakeSpec(classes=args.classes, per_class=args.per_class * factor, val_per_class=max(1, args.per_class * factor // 4), min_size=args.sides[0], max_size=args.sides[1], seed=factor)
            root = write_fake(work / "imagenet", "imagefolder", spec)
            torch.manual_seed(0)
            save_file(create_model("resnet18", args.classes, 3, 224).state_dict(), str(work / "init.safetensors"))
            # the imagenet protocol, one short student, tested in batches of --batch (its default 256 would hold more activations for the larger val split)
            protocol = {**read_toml(ROOT / "recipes" / "eval" / "imagenet.toml", "protocol", ""), "epochs": 1, "seeds": [0], "baselines": [], "batch_size": args.batch, "eval_batch_size": args.batch}
            (work / "protocol.toml").write_text(tomli_w.dumps(protocol))
            sizes[label] = {"train": spec.classes * spec.per_class, "val": spec.classes * spec.val_per_class}
            env = {**os.environ, "PYTHONPATH": str(ROOT), "SLC_PROGRESS": "0", "SLC_IN_MEMORY_GIB": "0", "SLC_CACHE": str(work / "cache"), "XDG_CONFIG_HOME": str(work / "config")}
            for stage, cli in stage_commands(root, work, steps_epochs=args.steps_epochs / factor, args=args).items():
                run = peak_memory([sys.executable, "-m", "cli.main", *cli], env=env, cwd=ROOT)
                if run["returncode"] != 0:
                    raise SystemExit(f"{stage} at {label} failed ({run['returncode']}):\n{run.pop('output')}")
                run.pop("output")
                runs[stage][label] = {**run, "command": "slc " + " ".join(cli)}
                print(f"{label:>3} {stage:<20} {run['tree_pss_bytes'] / 2**20:7.0f} MiB PSS {run['tree_rss_bytes'] / 2**20:7.0f} MiB RSS  {run['processes']} processes  {run['wall_s']:6.1f} s", flush=True)
            shutil.rmtree(work, ignore_errors=True)
    ratios = {stage: r["4S"]["tree_pss_bytes"] / r["S"]["tree_pss_bytes"] for stage, r in runs.items()}
    result = {
        "benchmark": "memory_scale",
        "command": command,
        "settings": {
            "dataset": "fake ImageNet (sl_compiler.data.fake, imagefolder layout), --dataset imagenet: resize 256, crop 224",
            "classes": args.classes, "per_class_S": args.per_class, "sides": list(args.sides), "model": "resnet18", "ipc": args.ipc,
            "views": args.views, "batch": args.batch, "workers": args.workers, "device": "cpu", "SLC_IN_MEMORY_GIB": 0,
        },  # fmt: skip
        "sizes": sizes,
        "measure": "peak over the process tree (slc + DataLoader workers) of the summed PSS from /proc/<pid>/smaps_rollup, polled every 20 ms",
        "torch": torch.__version__,
        "runs": runs,
        "ratios": ratios,
        "figures": [
            {"name": f"{stage}: peak memory 4S / S ({sizes['S']['train']} vs {sizes['4S']['train']} training images)", "value": round(ratio, 3), "unit": "x", "target": "<= 1.1"}
            for stage, ratio in ratios.items()
        ],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    for stage, ratio in ratios.items():
        print(f"{stage:<20} 4S/S {ratio:.3f}")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
