"""CE scoring and labelling on N ranks of torchrun (1 thread each) against one process with N threads, in one run.

    .venv/bin/python benchmarks/dist_scaling.py            # 20 classes x 100 fake ImageNet JPEGs of 800-1200 px
    .venv/bin/python benchmarks/dist_scaling.py --quick    # 10 classes x 32 (under a minute on 2 cores)
    .venv/bin/python benchmarks/dist_scaling.py --ranks 8 --classes 100 --per-class 100

What torchrun shares out in ``slc compile`` is timed through the same library calls, on a lazy
fake ImageNet (``sl_compiler.data.fake``, layout imagefolder: JPEGs of 800-1200 px decoded with
Resize(36) + CenterCrop(32), so that decoding the large source images dominates) with one
random-init ConvNet-D3 teacher. Why so large: on a GPU the teacher costs next to nothing and
decoding ImageNet's JPEGs is the work that ranks share; on this CPU ConvNet-D3's forward of one
image (1.8 ms on one thread) costs as much as decoding a 400 px JPEG (1.7 ms), while a 1000 px one
takes 11 ms. ``--sides`` sets the range.

- ``score``: ``select.ce_scores`` of every training image (cross-entropy scoring, its chunks
  dealt to the ranks). slc's chunks are 4,096 images (ImageNet has 313); this set is far
  smaller, so ``--chunk`` cuts it into as many chunks per rank as ImageNet would have (8 per
  rank by default), else one rank would score a single chunk alone;
- ``label``: ``compile.label_picks`` of ``--ipc`` random images per class (decoding each rank's
  share of the picks, then the teacher on its label batches of ``--label-batch``, gathered on
  rank 0).

Each configuration runs in processes of its own, with the decoding in the ranks themselves
(``--workers 0``), on the same data and a fresh scores and labels cache:

- ``one``: a plain process, ``OMP_NUM_THREADS=N`` and N torch threads;
- ``ranks``: ``python -m torch.distributed.run --standalone --nproc-per-node N``, one thread each;
- ``one_workers`` (context, no target): a plain process with 1 thread and N - 1 decode workers.

The configurations alternate ``--repeats`` times; the best time of each counts. ratio = one's
seconds / ranks' seconds, per part (target >= 1.6 for 2 ranks: both parts are decode-bound here).
Each rank's time is from a barrier after setup (data listed, teacher loaded) to a barrier after
the part. Writes benchmarks/results/dist_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
CROP, RESIZE = 32, 36
PARTS = ("score", "label")


def child(args) -> None:
    """One process of a configuration: set up, then time each part between barriers; rank 0 writes the times."""
    import torch

    import sl_compiler.select.ce_quantile as ce
    from sl_compiler import dist
    from sl_compiler.compile import label_picks, selection_rule
    from sl_compiler.data import load_dataset
    from sl_compiler.experts import resolve
    from sl_compiler.label import Ensemble, LabelPieces
    from sl_compiler.label.pieces import pieces_key
    from sl_compiler.recipe import Recipe
    from sl_compiler.select import ce_scores

    torch.set_num_threads(args.child_threads)
    ce.SCORE_CHUNK = args.child_chunk
    team = dist.team()
    data = load_dataset("imagenet", args.child_data, "train", resolution=CROP, resize=RESIZE, in_memory=False)
    ensemble = Ensemble(resolve("convnet_d3@0#0", args.child_store, data.info()), data.mean, data.std, "cpu")
    recipe = Recipe(dataset="imagenet", ipc=args.child_ipc, teacher="convnet_d3@0#0")
    seconds = {}
    for part in PARTS:
        team.barrier()
        start = time.perf_counter()
        if part == "score":
            ce_scores(ensemble, data, batch_size=min(256, args.child_chunk), workers=args.child_workers, team=team)
        else:
            rule = selection_rule(recipe, data, ensemble, team=team)
            label_picks(recipe, data, ensemble, rule, None, lambda idx: LabelPieces(pieces_key(benchmark=args.child_tag, rows=len(idx))), team, batch_size=args.child_batch, workers=args.child_workers, skip_bad=False)
        team.barrier()
        seconds[part] = time.perf_counter() - start
    if team.main:
        Path(args.child).write_text(json.dumps({"seconds": seconds, "images": {"score": len(data), "label": args.child_ipc * data.num_classes}}))


def run_config(name: str, ranks: int, args, data: Path, store: Path, cache: Path, run: int) -> dict:
    """One configuration in its own processes; returns the part -> seconds of rank 0."""
    for sub in ("scores", "labels"):
        shutil.rmtree(cache / sub, ignore_errors=True)  # every run scores and labels from scratch (the listing cache stays)
    out = cache / f"{name}-{run}.json"
    threads = {"one": ranks, "ranks": 1, "one_workers": 1}[name]
    workers = ranks - 1 if name == "one_workers" else 0
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(ROOT), SLC_CACHE=str(cache), SLC_PROGRESS="0", OMP_NUM_THREADS=str(threads), CUDA_VISIBLE_DEVICES="")
    script = [__file__, "--child", str(out), "--child-data", str(data), "--child-store", str(store), "--child-threads", str(threads), "--child-workers", str(workers), "--child-ipc", str(args.ipc), "--child-tag", f"{name}-{run}",
              "--child-chunk", str(args.chunk), "--child-batch", str(args.label_batch)]  # fmt: skip
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)] if name == "ranks" else [sys.executable]
    proc = subprocess.run([*launcher, *script], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"error: configuration {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 classes x 32 images, 1 repeat: under a minute on 2 cores")
    ap.add_argument("--ranks", type=int, default=2, help="ranks, and the threads of the one-process run (default 2: this machine's cores)")
    ap.add_argument("--classes", type=int, default=None, help="fake ImageNet classes (default 20; quick 10)")
    ap.add_argument("--per-class", type=int, default=None, help="training images per class (default 100; quick 32)")
    ap.add_argument("--sides", type=int, nargs=2, default=(800, 1200), metavar=("MIN", "MAX"), help="range of the JPEGs' sides in px (default 800 1200: decoding dominates)")
    ap.add_argument("--ipc", type=int, default=None, help="images per class labelled (default 50; quick 16)")
    ap.add_argument("--chunk", type=int, default=None, help="images per score chunk (default: 8 chunks per rank)")
    ap.add_argument("--label-batch", type=int, default=None, help="label rows per batch (default: 8 batches per rank)")
    ap.add_argument("--repeats", type=int, default=None, help="alternating runs of each configuration (default 2; quick 1)")
    ap.add_argument("--data", default=None, help="folder for the fake ImageNet (default: a temporary folder)")
    ap.add_argument("--out", default=str(RESULTS / "dist_scaling.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    for name, kind in (("data", str), ("store", str), ("threads", int), ("workers", int), ("ipc", int), ("tag", str), ("chunk", int), ("batch", int)):
        ap.add_argument(f"--child-{name}", type=kind, default=None, help=argparse.SUPPRESS)  # a configuration's process (torchrun must not mistake them for its own)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return {}
    classes = args.classes or (10 if args.quick else 20)
    per_class = args.per_class or (32 if args.quick else 100)
    args.ipc = min(per_class, args.ipc or (16 if args.quick else 50))
    args.chunk = args.chunk or max(1, -(-classes * per_class // (8 * args.ranks)))
    args.label_batch = args.label_batch or max(1, -(-classes * args.ipc // (8 * args.ranks)))
    repeats = args.repeats or (1 if args.quick else 2)

    import torch

    from sl_compiler.data import load_dataset
    from sl_compiler.data.fake import FakeSpec, write_fake
    from sl_compiler.experts import ExpertStore
    from sl_compiler.models import create_model

    spec = FakeSpec(classes=classes, per_class=per_class, val_per_class=1, min_size=args.sides[0], max_size=args.sides[1], seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = Path(args.data) if args.data else tmp / "fake-imagenet"
        if not (data / "FAKE.json").is_file() or json.loads((data / "FAKE.json").read_text()) != {"layout": "imagefolder", **spec.__dict__}:
            write_fake(data, "imagefolder", spec, force=True)
        cache = tmp / "cache"
        os.environ["SLC_CACHE"] = str(cache)
        images = load_dataset("imagenet", data, "train", resolution=CROP, resize=RESIZE, in_memory=False)  # lists the files and takes the statistics once, for every run
        torch.manual_seed(0)
        teacher = create_model("convnet_d3", images.num_classes, images.shape[0], images.shape[1])
        store = tmp / "experts"
        ExpertStore(store).add_checkpoint(teacher.state_dict(), dataset_info=images.info(), arch="convnet_d3", epoch=0, seed=0)
        configs = ("one", "ranks", "one_workers")
        runs = {name: [] for name in configs}
        for run in range(repeats):
            for name in configs:
                runs[name].append(run_config(name, args.ranks, args, data, store, cache, run))
    best = {name: {part: min(r["seconds"][part] for r in rs) for part in PARTS} for name, rs in runs.items()}
    counts = runs["one"][0]["images"]
    ratio = {part: best["one"][part] / best["ranks"][part] for part in PARTS}
    n = args.ranks
    result = {
        "benchmark": "dist_scaling",
        "command": "benchmarks/dist_scaling.py" + (" --quick" if args.quick else "") + (f" --ranks {n}" if n != 2 else ""),
        "settings": {
            "ranks": n, "classes": classes, "per_class": per_class, "images_scored": counts["score"], "ipc": args.ipc, "images_labelled": counts["label"],
            "sources": f"fake ImageNet JPEGs, {args.sides[0]}-{args.sides[1]} px per side", "decode": f"Resize({RESIZE}) + CenterCrop({CROP}), bilinear", "teacher": "convnet_d3, random init, float32",
            "score_chunk": args.chunk, "score_batch": min(256, args.chunk), "label_batch": args.label_batch, "repeats": repeats, "workers": "0 (decoding in each rank) for one and ranks; one_workers: N - 1",
            "configurations": {"one": f"1 process, {n} threads", "ranks": f"torchrun --nproc-per-node {n}, 1 thread each, gloo", "one_workers": f"1 process, 1 thread, {n - 1} decode worker(s)"},
        },  # fmt: skip
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__},
        "seconds": {name: [{part: round(r["seconds"][part], 3) for part in PARTS} for r in rs] for name, rs in runs.items()},
        "img_per_s": {name: {part: round(counts[part] / best[name][part], 1) for part in PARTS} for name in configs},
        "ratio": {part: round(ratio[part], 3) for part in PARTS},
        "target": ">= 1.6" if n == 2 else None,
        "figures": [
            {"name": f"CE scoring img/s, {n} ranks x 1 thread / 1 process x {n} threads", "value": round(ratio["score"], 3), "unit": "x", "target": ">= 1.6" if n == 2 else None},
            {"name": f"labelling img/s (decode + teacher), {n} ranks x 1 thread / 1 process x {n} threads", "value": round(ratio["label"], 3), "unit": "x", "target": ">= 1.6" if n == 2 else None},
            {"name": f"CE scoring img/s, {n} ranks / 1 process with {n - 1} decode worker(s)", "value": round(best["one_workers"]["score"] / best["ranks"]["score"], 3), "unit": "x", "target": None},
        ],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"| {counts['score']} fake ImageNet JPEGs ({args.sides[0]}-{args.sides[1]} px -> {CROP} px), ConvNet-D3 | scoring img/s | labelling img/s ({counts['label']} images) |\n|---|---:|---:|")
    for name, label in (("one", f"1 process, {n} threads"), ("ranks", f"{n} ranks, 1 thread each"), ("one_workers", f"1 process, {n - 1} decode worker(s)")):
        print(f"| {label} | {result['img_per_s'][name]['score']} | {result['img_per_s'][name]['label']} |")
    print(f"| ratio ranks / one process | {ratio['score']:.3f} | {ratio['label']:.3f} |  (target >= 1.6 for 2 ranks)")
    return result


if __name__ == "__main__":
    main()
