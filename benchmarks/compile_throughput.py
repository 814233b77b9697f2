"""Compile throughput: labelling and streamed scoring against bare PyTorch loops, and what labels cost.

    .venv/bin/python benchmarks/compile_throughput.py            # CIFAR-10 IPC 50, 20 CutMix views; a 4,000-JPEG folder (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/compile_throughput.py --quick    # IPC 10, 5 views; a 1,000-JPEG folder (under 3 minutes)
    .venv/bin/python benchmarks/compile_throughput.py --views 300 --folder-images 50000 --repeats 3 --device cuda   # longer runs

Three parts, in one process; slc and the bare loop alternate ``--repeats`` times, the best of each
counts, ratio = bare seconds / slc seconds (target >= 0.9):

1. **labelling** (images in memory): ``bare`` normalises and runs the teacher over uint8 inputs
   it precomputed itself (the plain images; CutMix views made with this script's own tensor
   ops), then softmax and float16, batch by batch; ``slc`` is ``sl_compiler.label.teacher_labels``,
   the call compile makes, which also replays every view from its recorded parameters on the fly
   (its teachers loaded once beforehand, as compile loads them once).
2. **streamed scoring** (a dataset of files, as ImageNet): a fake-ImageNet-like folder of JPEGs of
   mixed sizes, generated here, decoded at ``--folder-resolution`` px; ``bare`` is a torch
   DataLoader with PIL decode, shorter-side resize and centre crop in ``--workers`` processes,
   then normalise, forward and per-image cross-entropy; ``slc`` is ``sl_compiler.select.ce_scores``
   (the streaming loader, the same workers, an empty scores cache). Then slc with 2 workers
   against 1 (ratio = 1-worker seconds / 2-worker seconds).
3. **compile end to end** (``compile_artifact``, in memory): images/s, peak RSS, label bytes.

The bare loops share only the teacher's ``nn.Module`` with slc (the same network on both sides);
their normalisation, decoding, views and loss are written below, and both run in float32 (TF32 off
on CUDA, as slc labels). The teacher is a ConvNet-D3 at its initial weights (epoch 0) in a
temporary store: throughput does not depend on the weights. Writes
benchmarks/results/compile_throughput.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


from sl_compiler import compile as pipeline  # noqa: E402
from sl_compiler.artifact import load  # noqa: E402
from sl_compiler.data import load_dataset  # noqa: E402
from sl_compiler.data.fake import FakeSpec, write_fake  # noqa: E402
from sl_compiler.device import describe, resolve_device  # noqa: E402
from sl_compiler.experts import ExpertStore, resolve  # noqa: E402
from sl_compiler.label import AugmentedViews, Ensemble, sample_views, teacher_labels  # noqa: E402
from sl_compiler.models import create_model  # noqa: E402
from sl_compiler.recipe import Recipe  # noqa: E402
from sl_compiler.select import ce_scores, random_per_class  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


# ---- the bare side: nothing below calls slc -------------------------------------------------------


@contextlib.contextmanager
def bare_fp32(device):
    """Plain float32 inference, TF32 off on CUDA (what slc's labels use)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def bare_inputs(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, device) -> torch.Tensor:
    x = x.to(device, non_blocking=True).float().div_(255).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def bare_cutmix(images: torch.Tensor, views: int, seed: int = 0) -> torch.Tensor:
    """``views`` CutMix views of each image (N x V, uint8): a random partner's box pasted in, lambda ~ U(0, 1)."""
    n, _, h, w = images.shape
    g = torch.Generator().manual_seed(seed)
    base = torch.arange(n).repeat_interleave(views)
    partner = (base + torch.randint(1, max(n, 2), (n * views,), generator=g)) % n
    cut = torch.sqrt(1 - torch.rand(n * views, generator=g))
    ch, cw = (h * cut).long(), (w * cut).long()
    top = (torch.rand(n * views, generator=g) * (h - ch + 1)).long()
    left = (torch.rand(n * views, generator=g) * (w - cw + 1)).long()
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    mask = (rows >= top.view(-1, 1, 1)) & (rows < (top + ch).view(-1, 1, 1)) & (cols >= left.view(-1, 1, 1)) & (cols < (left + cw).view(-1, 1, 1))
    return torch.where(mask.unsqueeze(1), images[partner], images[base])


def bare_label(model, inputs: torch.Tensor, mean, std, device, batch_size: int, temperature: float = 1.0) -> float:
    """Seconds to label precomputed uint8 ``inputs``: normalise, forward, softmax, float16 rows."""
    m, s = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (mean, std))
    out = None
    sync(device)
    start = time.perf_counter()
    with bare_fp32(device):
        for i in range(0, len(inputs), batch_size):
            probs = torch.softmax(model(bare_inputs(inputs[i : i + batch_size], m, s, device)).float() / temperature, -1).half().cpu()
            if out is None:
                out = torch.empty(len(inputs), probs.shape[1], dtype=torch.float16)
            out[i : i + len(probs)] = probs
    sync(device)
    return time.perf_counter() - start


class BareFolder(torch.utils.data.Dataset):
    """JPEG files -> uint8 (3, S, S): PIL decode, shorter side resized to S (bilinear), centre crop."""

    def __init__(self, files: list[Path], targets: list[int], size: int):
        self.files, self.targets, self.size = files, targets, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image

        s = self.size
        with Image.open(self.files[i]) as f:
            img = f.convert("RGB")
        scale = s / min(img.size)
        img = img.resize((max(s, round(img.size[0] * scale)), max(s, round(img.size[1] * scale))), Image.BILINEAR)
        left, top = (img.size[0] - s) // 2, (img.size[1] - s) // 2
        img = img.crop((left, top, left + s, top + s))
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1), self.targets[i]


def bare_scores(model, files, targets, size: int, mean, std, device, batch_size: int, workers: int) -> float:
    """Seconds for a DataLoader + PIL + forward + cross-entropy pass over ``files``, keeping (N,) scores."""
    loader = torch.utils.data.DataLoader(BareFolder(files, targets, size), batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda")
    m, s = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (mean, std))
    scores = torch.empty(len(files))
    done = 0
    sync(device)
    start = time.perf_counter()
    with bare_fp32(device):
        for x, y in loader:
            logits = model(bare_inputs(x, m, s, device)).float()
            scores[done : done + len(y)] = F.cross_entropy(logits, y.to(device), reduction="none").cpu()
            done += len(y)
    sync(device)
    return time.perf_counter() - start


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- the benchmark ----------------------------------------------------------------------------


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    parser.add_argument("--ipc", type=int, default=50)
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--folder-images", type=int, default=4000, help="JPEGs in the streamed-scoring folder (10 classes)")
    parser.add_argument("--folder-resolution", type=int, default=32, help="decoded size of the folder's images")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes of both streamed loops")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="IPC 10, 5 views, 1,000 folder images, 3 repeats")
    parser.add_argument("--out", default=str(RESULTS / "compile_throughput.json"))
    args = parser.parse_args(argv)
    args.command = " ".join(["python benchmarks/compile_throughput.py", *(sys.argv[1:] if argv is None else argv)])
    if args.quick:
        args.ipc, args.views, args.folder_images, args.repeats = 10, 5, 1000, 3
    device = resolve_device(args.device)

    work = Path(tempfile.mkdtemp(prefix="slc-bench-"))
    saved_cache = os.environ.get("SLC_CACHE")
    try:
        return run(args, device, work)
    finally:
        if saved_cache is None:
            os.environ.pop("SLC_CACHE", None)
        else:
            os.environ["SLC_CACHE"] = saved_cache
        shutil.rmtree(work, ignore_errors=True)


def add_teacher(store: Path, info: dict, classes: int, shape) -> list:
    torch.manual_seed(0)
    model = create_model("convnet_d3", classes, shape[0], shape[1])
    ExpertStore(store).add_checkpoint(model.state_dict(), dataset_info=info, arch="convnet_d3", epoch=0, seed=0)
    return resolve("convnet_d3@0", store, info)


def best_of(repeats: int, *passes):
    """Alternate the passes ``repeats`` times; the best seconds of each."""
    times = [[] for _ in passes]
    for _ in range(repeats):
        for t, run_pass in zip(times, passes):
            t.append(run_pass())
    return [min(t) for t in times]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(args, device, work: Path) -> dict:
    start = time.perf_counter()
    data = load_dataset(args.dataset, args.data_root, "train")
    info = data.info()
    load_s = time.perf_counter() - start
    teachers = add_teacher(work / "experts", info, data.num_classes, data.shape)
    model = teachers[0].load(device)  # the same network for both sides
    ensemble = Ensemble(teachers, data.mean, data.std, device)  # loaded once, as compile loads it once for scoring and labelling

    # 1. labelling, in memory
    indices = random_per_class(data.targets, data.classes, args.ipc, seed=0)
    images = data.images(indices)
    n = len(indices)
    params = sample_views([f"{i:06d}" for i in range(n)], args.views, "cutmix", seed=0, shape=data.shape)
    settings = {"plain": (images, images, 1), f"cutmix x{args.views}": (AugmentedViews(images.to(device), params), bare_cutmix(images, args.views), args.views)}
    bare_label(model, images[: args.batch_size], data.mean, data.std, device, args.batch_size)  # warm-up
    labelling = []
    for label, (source, inputs, views) in settings.items():
        bare, lib = best_of(
            args.repeats,
            lambda: bare_label(model, inputs, data.mean, data.std, device, args.batch_size),
            lambda: timed(lambda: (teacher_labels(ensemble, source, data.mean, data.std, device, args.batch_size, views=views), sync(device))),
        )
        count = len(inputs)
        labelling.append({"setting": label, "images": count, "bare_s": bare, "slc_s": lib, "bare_img_s": count / bare, "slc_img_s": count / lib, "ratio": bare / lib})

    # 2. streamed scoring of a folder of JPEGs
    classes = 10
    per_class = math.ceil(args.folder_images / classes)
    spec = FakeSpec(classes=classes, per_class=per_class, val_per_class=1, min_size=args.folder_resolution * 3 // 2, max_size=args.folder_resolution * 3)
    root = write_fake(work / "folder", "imagefolder", spec)
    # the bare loop's own listing, as torchvision's ImageFolder makes it: sorted class folders, sorted files
    class_dirs = sorted(d for d in (root / "train").iterdir() if d.is_dir())
    files = [f for d in class_dirs for f in sorted(d.iterdir())]
    targets = [k for k, d in enumerate(class_dirs) for _ in sorted(d.iterdir())]
    folder = load_dataset(f"imagefolder:{root}", split="train", resolution=args.folder_resolution, in_memory=False)
    ids = [str(p.relative_to(root)) for p in files]
    assert list(folder.sources.ids) == ids and folder.targets.tolist() == targets  # both loops read the same files in the same order
    folder_teachers = add_teacher(work / "folder-experts", folder.info(), classes, folder.shape)
    folder_model = folder_teachers[0].load(device)
    folder_ensemble = Ensemble(folder_teachers, folder.mean, folder.std, device)
    runs = iter(range(10**6))

    def slc_scores(workers: int) -> float:
        os.environ["SLC_CACHE"] = str(work / f"cache-{next(runs)}")  # an empty cache: every run scores
        sync(device)
        return timed(lambda: (ce_scores(folder_ensemble, folder, device, args.batch_size, workers=workers), sync(device)))

    bare, lib = best_of(
        args.repeats,
        lambda: bare_scores(folder_model, files, targets, args.folder_resolution, folder.mean, folder.std, device, args.batch_size, args.workers),
        lambda: slc_scores(args.workers),
    )
    one, two = best_of(args.repeats, lambda: slc_scores(1), lambda: slc_scores(2))
    count = len(files)
    streamed = {
        "images": count,
        "classes": classes,
        "decoded_px": args.folder_resolution,
        "source_px": [args.folder_resolution * 3 // 2, args.folder_resolution * 3],
        "workers": args.workers,
        "bare_s": bare,
        "slc_s": lib,
        "bare_img_s": count / bare,
        "slc_img_s": count / lib,
        "ratio": bare / lib,
        "slc_1_worker_img_s": count / one,
        "slc_2_workers_img_s": count / two,
        "workers_2_vs_1": one / two,
    }

    # 3. compile end to end, in memory
    compiles = []
    for label, views_n, topk in (("plain dense", 0, None), (f"cutmix x{args.views} dense", args.views, None), (f"cutmix x{args.views} top-{args.topk}", args.views, args.topk)):
        recipe = Recipe(dataset=args.dataset, data_root=args.data_root, ipc=args.ipc, teacher="convnet_d3@0", views=views_n, augment="cutmix" if views_n else "none", topk=topk, name="bench")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        path = pipeline.compile_artifact(recipe, experts=work / "experts", device=device, out=work / label.replace(" ", "-"), batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        manifest = load(path).manifest
        labelled = n * max(views_n, 1)
        compiles.append(
            {
                "setting": label,
                "seconds": seconds,
                "labelled_img_s": labelled / seconds,
                "peak_rss_mib": peak_rss_mib(),
                "peak_cuda_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
                "bytes_images": manifest["bytes"]["images"],
                "bytes_labels": manifest["bytes"]["labels"],
                "labels_per_image_bytes": manifest["bytes"]["labels"] / n,
                "labels_vs_images": manifest["bytes"]["labels"] / manifest["bytes"]["images"],
            }
        )

    result = {
        "benchmark": "compile_throughput",
        "command": args.command,
        "settings": {
            "dataset": args.dataset,
            "ipc": args.ipc,
            "views": args.views,
            "topk": args.topk,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "folder_images": count,
            "folder_resolution": args.folder_resolution,
            "workers": args.workers,
        },
        "device": describe(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dataset_load_s": load_s,
        "teacher": "convnet_d3 at initial weights (throughput does not depend on them)",
        "labelling": labelling,
        "streamed_scoring": streamed,
        "compile": compiles,
        "figures": [{"name": f"labelling {r['setting']}: slc / bare", "value": round(r["ratio"], 3), "unit": "x", "target": ">= 0.9"} for r in labelling]
        + [
            {"name": f"CE scoring of {count} JPEGs, {args.workers} workers: slc / bare DataLoader+PIL", "value": round(streamed["ratio"], 3), "unit": "x", "target": ">= 0.9"},
            {"name": "CE scoring: slc 2 workers / 1 worker", "value": round(streamed["workers_2_vs_1"], 3), "unit": "x", "target": None},
            {"name": f"CE scoring: slc images/s ({args.workers} workers)", "value": round(streamed["slc_img_s"], 1), "unit": "img/s", "target": None},
        ]
        + [{"name": f"compile {c['setting']}: labelled images/s", "value": round(c["labelled_img_s"], 1), "unit": "img/s", "target": None} for c in compiles]
        + [{"name": f"compile {c['setting']}: label bytes / image bytes", "value": round(c["labels_vs_images"], 3), "unit": "x", "target": None} for c in compiles],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")

    print(f"{args.dataset} IPC {args.ipc}, ConvNet-D3 teacher, {describe(device)}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print(f"{'labelling':<22}{'images':>8}{'bare img/s':>12}{'slc img/s':>12}{'ratio':>8}")
    for r in labelling:
        print(f"{r['setting']:<22}{r['images']:>8}{r['bare_img_s']:>12.0f}{r['slc_img_s']:>12.0f}{r['ratio']:>8.3f}")
    s = streamed
    print(f"{'CE scoring (streamed)':<22}{s['images']:>8}{s['bare_img_s']:>12.0f}{s['slc_img_s']:>12.0f}{s['ratio']:>8.3f}   ({s['workers']} workers; slc 1 worker {s['slc_1_worker_img_s']:.0f} img/s, 2 workers {s['slc_2_workers_img_s']:.0f} img/s: {s['workers_2_vs_1']:.2f}x)")
    print(f"{'compile (end to end)':<26}{'s':>7}{'img/s':>8}{'peak MiB':>10}{'images B':>10}{'labels B':>10}{'labels/img':>11}")
    for c in compiles:
        print(f"{c['setting']:<26}{c['seconds']:>7.1f}{c['labelled_img_s']:>8.0f}{c['peak_rss_mib']:>10.0f}{c['bytes_images']:>10}{c['bytes_labels']:>10}{c['labels_vs_images']:>11.3f}")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
