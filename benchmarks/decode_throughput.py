"""Decode-and-resize throughput: slc's streaming loader against a bare DataLoader + PIL loop, same workers, same run.

    .venv/bin/python benchmarks/decode_throughput.py            # fake ImageNet, 100 classes x 20, 200-500 px, 2 workers
    .venv/bin/python benchmarks/decode_throughput.py --quick    # 20 classes x 10 (well under a minute)
    .venv/bin/python benchmarks/decode_throughput.py --workers 8 --classes 200

Both decode every training image of a fake ImageNet (``slc data fake --layout imagefolder``: JPEGs
of varied sizes and aspect ratios) with torchvision's evaluation transform, Resize(256) then
CenterCrop(224), into uint8 batches of 64, with ``--workers`` DataLoader worker processes:

- ``slc``: ``sl_compiler.data.stream(load_dataset("imagenet", root, in_memory=False), workers=W)``,
  the loader every stage reads through;
- ``bare``: written without slc's code: ``os.walk`` lists the files, a torch ``Dataset`` opens each
  with PIL, ``torchvision.transforms`` Resize(256) + CenterCrop(224) + PILToTensor, default collate.

They alternate ``--repeats`` times in one process (the fake set is written and listed first, and
each side warms up once); the best of each counts; ratio = slc img/s / bare img/s (target >= 0.9).
The two outputs are compared: the pixels must be bit-identical. slc with one worker is measured
too (worker scaling). Writes benchmarks/results/decode_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
BATCH = 64


# ---------------------------------------------------------------- the bare loop (no slc code below)


class BareFolder(torch.utils.data.Dataset):
    """ImageNet's ``train/<wnid>/*.JPEG``, decoded as torchvision's references evaluate."""

    def __init__(self, split_dir: Path):
        from torchvision import transforms

        classes = sorted(d for d in os.listdir(split_dir) if (split_dir / d).is_dir())
        self.items = sorted((str(split_dir / c / f), k) for k, c in enumerate(classes) for f in os.listdir(split_dir / c))
        self.transform = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.PILToTensor()])

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        path, label = self.items[i]
        with open(path, "rb") as f:
            img = Image.open(f).convert("RGB")
        return self.transform(img), label


def bare_pass(dataset: BareFolder, workers: int) -> tuple[float, torch.Tensor]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=False, num_workers=workers, prefetch_factor=2 if workers else None)
    start = time.perf_counter()
    first = None
    for images, _ in loader:
        first = images if first is None else first
    return time.perf_counter() - start, first


# ---------------------------------------------------------------- slc


def slc_pass(images, workers: int) -> tuple[float, torch.Tensor]:
    from sl_compiler.data import stream

    start = time.perf_counter()
    first = None
    for batch in stream(images, batch_size=BATCH, workers=workers, pin_memory=False):
        first = batch.pixels if first is None else first
    return time.perf_counter() - start, first


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 classes x 10 images: well under a minute on 2 cores")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for both loops (default 2)")
    ap.add_argument("--classes", type=int, default=None, help="fake ImageNet classes (default 100; quick 20)")
    ap.add_argument("--per-class", type=int, default=None, help="training images per class (default 20; quick 10)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating passes of each loop (default 3)")
    ap.add_argument("--data", default=None, help="folder for the fake ImageNet (default: a temporary folder)")
    ap.add_argument("--out", default=str(RESULTS / "decode_throughput.json"))
    args = ap.parse_args(argv)
    classes = args.classes or (20 if args.quick else 100)
    per_class = args.per_class or (10 if args.quick else 20)

    from sl_compiler.data import load_dataset
    from sl_compiler.data.fake import FakeSpec, write_fake

    spec = FakeSpec(classes=classes, per_class=per_class, val_per_class=1, min_size=200, max_size=500, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else Path(tmp) / "fake-imagenet"
        if not (root / "FAKE.json").is_file() or json.loads((root / "FAKE.json").read_text()) != {"layout": "imagefolder", **spec.__dict__}:
            write_fake(root, "imagefolder", spec, force=True)
        os.environ.setdefault("SLC_CACHE", str(Path(tmp) / "cache"))
        images = load_dataset("imagenet", root, "train", in_memory=False)
        bare = BareFolder(root / "train")
        n = len(images)
        assert len(bare) == n
        torch.set_num_threads(1)  # the workers decode; the main process only collects
        _, bare_first = bare_pass(bare, args.workers)  # warm-up (page cache, worker start)
        _, slc_first = slc_pass(images, args.workers)
        identical = bool(torch.equal(bare_first, slc_first))
        times = {"bare": [], "slc": [], "slc_1_worker": []}
        for _ in range(args.repeats):
            times["bare"].append(bare_pass(bare, args.workers)[0])
            times["slc"].append(slc_pass(images, args.workers)[0])
            times["slc_1_worker"].append(slc_pass(images, 1)[0])
    ips = {k: n / min(v) for k, v in times.items()}
    ratio = ips["slc"] / ips["bare"]
    scaling = ips["slc"] / ips["slc_1_worker"]
    result = {
        "benchmark": "decode_throughput",
        "command": "benchmarks/decode_throughput.py" + (" --quick" if args.quick else ""),
        "settings": {"classes": classes, "per_class": per_class, "images": n, "sizes": "200-500 px per side", "transform": "Resize(256) + CenterCrop(224), bilinear", "batch_size": BATCH, "workers": args.workers, "repeats": args.repeats},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "bare_img_per_s": round(ips["bare"], 1),
        "slc_img_per_s": round(ips["slc"], 1),
        "slc_1_worker_img_per_s": round(ips["slc_1_worker"], 1),
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "pixels_identical": identical,
        "ratio": round(ratio, 3),
        "target": ">= 0.9",
        "figures": [
            {"name": f"decode+resize img/s, slc stream / bare DataLoader+PIL ({args.workers} workers)", "value": round(ratio, 3), "unit": "x", "target": ">= 0.9"},
            {"name": f"decode+resize img/s, slc {args.workers} workers / 1 worker", "value": round(scaling, 3), "unit": "x", "target": None},
        ],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"| decode + Resize(256) + CenterCrop(224), {n} fake ImageNet JPEGs (200-500 px), batch {BATCH} | img/s |\n|---|---|")
    print(f"| bare DataLoader + PIL + torchvision.transforms, {args.workers} workers | {ips['bare']:.1f} |")
    print(f"| slc stream, {args.workers} workers | {ips['slc']:.1f} |\n| slc stream, 1 worker | {ips['slc_1_worker']:.1f} |")
    print(f"| ratio slc / bare | {ratio:.3f} (target >= 0.9); pixels identical: {identical} |")
    if not identical:
        print("error: slc's pixels differ from torchvision's", file=sys.stderr)
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
