"""Peak memory of ``slc experts train`` on a streamed image folder of size S and 4S: flat in the dataset's size?

    .venv/bin/python benchmarks/memory_experts.py            # 100 classes x 20 / x 80 JPEGs of 200-500 px (the issue's fake ImageNet sizes)
    .venv/bin/python benchmarks/memory_experts.py --quick    # 20 classes x 10 / x 40 JPEGs of 150-300 px (about 2 minutes on 2 cores)

Each size gets a folder of JPEGs of varied sizes (train/ and test/, one test image per five
training images), then ``slc experts train --stream`` runs ResNet-18 on it at 224 px with
torchvision's ImageNet augmentation (RandomResizedCrop of the original file + flip, in
``--workers`` decode processes), a checkpoint at epoch 0 (which streams the whole test split) and
a few training steps: the same number at both sizes (``--epochs``/``--every`` scaled by 1/4).

:func:`peak_rss` measures a command's whole process tree (the trainer and its decode workers)
by sampling ``/proc``: the peak of the summed PSS (proportional set size: pages shared between
the trainer and its forked workers counted once), the peak of the summed RSS (shared pages
counted in every process) and the largest single process's peak RSS
(``resource.RUSAGE_CHILDREN``). The target is a 4S/S ratio of the tree's peak PSS <= 1.1.
Writes benchmarks/results/memory_experts.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECIPE = """# memory_experts.py: torchvision's ImageNet augmentation at a small batch
source = "benchmarks/memory_experts.py"
lr = 0.1
momentum = 0.9
weight_decay = 1e-4
batch_size = {batch}
epochs = 90
milestones = []
augment = "random_resized_crop"
"""


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from the parent ids in /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])  # after "pid (comm) state"
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) bytes of one process, from /proc/<pid>/smaps_rollup (PSS = RSS where the kernel lacks it)."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:  # gone, or no smaps_rollup: fall back to status
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        except OSError:
            return 0, 0
    return rss, pss or rss


def peak_rss(cmd: list[str], *, env: dict | None = None, cwd: str | Path | None = None, interval: float = 0.05, timeout: float | None = None) -> dict:
    """Run ``cmd`` and return the peak memory of its process tree, sampled every ``interval`` seconds.

    Keys: ``tree_pss_bytes`` (peak of the summed PSS), ``tree_rss_bytes`` (peak of the summed
    RSS), ``largest_rss_bytes`` (the largest single process's own peak, from ru_maxrss),
    ``processes`` (most processes seen at once), ``returncode``, ``wall_s``, ``output`` (its
    last 2,000 characters).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
        tree_rss = tree_pss = most = 0
        while proc.poll() is None:
            pids = _tree(proc.pid)
            sizes = [_memory(p) for p in pids]
            tree_rss = max(tree_rss, sum(r for r, _ in sizes))
            tree_pss = max(tree_pss, sum(p for _, p in sizes))
            most = max(most, len(pids))
            if timeout is not None and time.perf_counter() - start > timeout:
                proc.kill()
            time.sleep(interval)
        log.seek(0)
        output = log.read()[-2000:]
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {
        "tree_pss_bytes": tree_pss,
        "tree_rss_bytes": tree_rss,
        "largest_rss_bytes": largest if largest > before * 1024 else None,  # None: an earlier child was larger
        "processes": most,
        "returncode": proc.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "output": output,
    }


def write_folder(root: Path, classes: int, per_class: int, sides: tuple[int, int], seed: int) -> Path:
    """root/{train,test}/c<k>/<i>.jpg: smooth random JPEGs, sides in ``sides``; one test image per five train."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    for split, count in (("train", per_class), ("test", max(1, per_class // 5))):
        for k in range(classes):
            folder = root / split / f"n{k:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                w, h = (int(v) for v in torch.randint(sides[0], sides[1] + 1, (2,), generator=g))
                img = F.interpolate(torch.rand(1, 3, 8, 8, generator=g) * 255, size=(h, w), mode="bilinear", align_corners=False)[0]
                img = img + torch.rand(3, h, w, generator=g) * 16
                Image.fromarray(img.clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=20, help="training images per class at size S (4S: four times as many)")
    parser.add_argument("--sides", type=int, nargs=2, default=(200, 500), help="range of the JPEGs' widths and heights")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps-epochs", type=float, default=0.25, help="--epochs and --every of the S run (the 4S run: a quarter), a few steps each")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="20 classes x 10 / x 40 JPEGs of 150-300 px")
    parser.add_argument("--out", default=str(RESULTS / "memory_experts.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.classes, args.per_class, args.sides = 20, 10, (150, 300)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLC_PROGRESS": "0"}
    runs = {}
    with tempfile.TemporaryDirectory(prefix="slc-memory-experts-") as tmp:
        tmp = Path(tmp)
        recipe = tmp / "recipe.toml"
        recipe.write_text(RECIPE.format(batch=args.batch))
        for label, factor in (("S", 1), ("4S", 4)):
            root = write_folder(tmp / label, args.classes, args.per_class * factor, tuple(args.sides), seed=factor)
            epochs = f"{args.steps_epochs / factor:g}"
            cmd = [sys.executable, "-m", "cli.main", "experts", "train", "--dataset", f"imagefolder:{root}", "--model", "resnet18", "--recipe", str(recipe), "--stream",
                   "--epochs", epochs, "--every", epochs, "--workers", str(args.workers), "--experts", str(tmp / f"experts-{label}"), "--device", "cpu"]  # fmt: skip
            run = peak_rss(cmd, env={**env, "SLC_CACHE": str(tmp / f"cache-{label}")}, cwd=ROOT)
            if run["returncode"] != 0:
                raise SystemExit(f"{label} run failed ({run['returncode']}):\n{run['output']}")
            trajectory = json.loads(next((tmp / f"experts-{label}").rglob("trajectory.json")).read_text())
            run.update(train_images=args.classes * args.per_class * factor, test_images=trajectory["test_set"]["size"], steps=trajectory["checkpoints"][-1]["steps"], command=" ".join(cmd[1:]))
            runs[label] = run
            print(f"{label}: {run['train_images']} train / {run['test_images']} test images, {run['steps']} steps: tree PSS {run['tree_pss_bytes'] / 2**20:.0f} MiB, tree RSS {run['tree_rss_bytes'] / 2**20:.0f} MiB, {run['processes']} processes, {run['wall_s']} s", flush=True)
    ratio = runs["4S"]["tree_pss_bytes"] / runs["S"]["tree_pss_bytes"]
    rss_ratio = runs["4S"]["tree_rss_bytes"] / runs["S"]["tree_rss_bytes"]
    result = {
        "benchmark": "memory_experts",
        "command": "python benchmarks/memory_experts.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {"classes": args.classes, "per_class_S": args.per_class, "sides": list(args.sides), "model": "resnet18", "resolution": 224, "batch": args.batch, "workers": args.workers, "augment": "random_resized_crop (streamed)", "device": "cpu"},
        "runs": {k: {key: v for key, v in run.items() if key != "output"} for k, run in runs.items()},
        "pss_ratio": ratio,
        "rss_ratio": rss_ratio,
        "figures": [
            {"name": "experts train peak memory (process tree PSS), 4S / S", "value": round(ratio, 3), "unit": "ratio", "target": "<= 1.1"},
            {"name": "experts train peak memory (process tree RSS), 4S / S", "value": round(rss_ratio, 3), "unit": "ratio", "target": "<= 1.1"},
            {"name": f"experts train peak memory at 4S ({runs['4S']['train_images']} images), process tree PSS", "value": round(runs["4S"]["tree_pss_bytes"] / 2**20), "unit": "MiB", "target": None},
        ],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"4S / S: PSS {ratio:.3f}, RSS {rss_ratio:.3f} (target <= 1.1); wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
