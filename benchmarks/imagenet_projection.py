"""ImageNet-1K at full size, projected from rates measured here: hours, memory and disk per stage.

    .venv/bin/python benchmarks/imagenet_projection.py            # ResNet-18 at 224 px, timed on --device (auto)
    .venv/bin/python benchmarks/imagenet_projection.py --quick    # fewer timed batches (under a minute on 2 cores)
    .venv/bin/python benchmarks/imagenet_projection.py --assume 10000,3000,16   # a GPU not at hand: stated rates, nothing timed

There is no ImageNet on this machine, so the full-size figures are projections, and this script
says from what. It times, in this run, ResNet-18 at 224 px on ``--device``: the forward pass (in
eval mode, as teachers label) and the SGD training step (as experts and students train), under
slc's ``autocast`` (bf16 on CUDA, none on the CPU). From the results of the other benchmarks it
reads the rates that do not depend on the model:

- ``decode_throughput.json``: one decode worker's images/s for ``Resize(256) + CenterCrop(224)``
  of JPEGs of 200-500 px per side (ILSVRC2012's training images average about 400 x 350);
- ``listing_scale.json``: listing the 1,281,167-file split as folders and as the tar of tars
  (measured at full size), and the memory of its ids;
- ``memory_scale.json``: each stage's peak memory, which is flat in the source dataset's size (so the
  largest stage's peak at 4S is the projection, plus the split's ids and targets).

The model of a stage's time: on a GPU the decode workers (``cores - 1``) and the device overlap,
so an image costs ``max(1 / decode, 1 / compute)``; on a CPU they share the cores, so it costs
``1 / (decode_per_core * cores) + 1 / compute``. It leaves out what does not grow with the
images (start-up, checkpoints); a stage's real time is at least the projection. Disk: the
artifact's JPEGs at ILSVRC2012's mean training file size (138 GB / 1,281,167 = 108 KB; an
assumption: the images are copied, never re-encoded) plus its labels in the stored forms.
Writes benchmarks/results/imagenet_projection.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

TRAIN, VAL, CLASSES = 1_281_167, 50_000, 1000
MEAN_JPEG_BYTES = 138e9 / TRAIN  # ILSVRC2012_img_train.tar is 138 GB


def time_resnet18(device, batch: int, steps: int) -> dict[str, float]:
    """Images/s of ResNet-18 at 224 px: teacher forward (eval, no grad) and training step (SGD)."""
    import torch
    import torch.nn.functional as F

    from sl_compiler.device import autocast, prepare_batch, prepare_model
    from sl_compiler.models import create_model

    torch.manual_seed(0)
    model = prepare_model(create_model("resnet18", CLASSES, 3, 224).to(device), device)
    x = prepare_batch(torch.randn(batch, 3, 224, 224, device=device), device)
    y = torch.randint(0, CLASSES, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def forward():
        with torch.no_grad(), autocast(device):
            model(x)

    def train():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    rates = {}
    for name, step, mode in (("forward", forward, model.eval), ("train", train, model.train)):
        mode()
        step()  # warm-up: kernels chosen, memory allocated
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        rates[name] = batch * steps / (time.perf_counter() - start)
    return rates


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def read_result(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing; run benchmarks/{name}.py first")
    return json.loads(path.read_text())


def artifact_gb(image_bytes: float) -> dict[str, float]:
    """GB of an ImageNet-1K distilled set at IPC 10 and 50 with 20 views: images of ``image_bytes`` each, labels dense fp16 or top-10."""
    return {
        f"IPC {ipc}, {views} views, {form}": round(ipc * CLASSES * (image_bytes + views * per_view) / 1e9, 2)
        for ipc in (10, 50)
        for views, form, per_view in ((20, "dense fp16", 2 * CLASSES), (20, "top-10 fp16", 10 * 4))  # top-k: fp16 value + int16 index
    }


def project(rates: dict, decode_per_worker: float, cores: int, gpu: bool) -> dict[str, float]:
    """Hours of each stage at ImageNet-1K's size, by the model in the module docstring."""

    def seconds(images: float, compute: float, decoded: bool = True) -> float:
        if not decoded:
            return images / compute
        if gpu:
            return images * max(1 / (decode_per_worker * max(cores - 1, 1)), 1 / compute)
        return images * (1 / (decode_per_worker * cores) + 1 / compute)

    fwd, train = rates["forward"], rates["train"]
    stages = {
        "CE scoring of the training split (compile --select ce-quantile), one teacher": seconds(TRAIN, fwd),
        "compile IPC 10, 20 views (10,000 images decoded, 200,000 teacher forwards)": seconds(10_000, fwd / 20),
        "compile IPC 50, 20 views (50,000 images, 1,000,000 forwards)": seconds(50_000, fwd / 20),
        "expert training, one epoch (RandomResizedCrop + train step)": seconds(TRAIN, train),
        "expert test pass on the val split (per checkpoint)": seconds(VAL, fwd),
        "one student, IPC 10, 300 epochs (images resident: no decode) + one val pass": seconds(10_000 * 300, train, decoded=False) + seconds(VAL, fwd),
        "one student, IPC 50, 300 epochs + one val pass": seconds(50_000 * 300, train, decoded=False) + seconds(VAL, fwd),
    }
    return {name: round(s / 3600, 2) for name, s in stages.items()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="where ResNet-18 is timed (default auto: CUDA when present)")
    ap.add_argument("--batch", type=int, default=None, help="timed batch (default 32 on a CPU, 256 on a GPU)")
    ap.add_argument("--steps", type=int, default=None, help="timed batches per pass (default 4 on a CPU, 20 on a GPU; quick: 2 / 10)")
    ap.add_argument("--quick", action="store_true", help="fewer timed batches")
    ap.add_argument("--assume", default=None, metavar="FORWARD,TRAIN[,CORES]",
                    help="project a GPU that is not here from stated ResNet-18 img/s (forward, train) and CPU cores, timing nothing; recorded as assumed")

    ap.add_argument("--out", default=None, help="results JSON (default results/imagenet_projection.json; with --assume results/imagenet_projection_assumed.json)")
    args = ap.parse_args(argv)

    import torch

    from sl_compiler.device import describe, resolve_device

    decode, listing, memory = read_result("decode_throughput"), read_result("listing_scale"), read_result("memory_scale")
    if args.assume:
        parts = [float(v) for v in args.assume.split(",")]
        if len(parts) not in (2, 3) or min(parts) <= 0:
            raise SystemExit("error: --assume takes FORWARD,TRAIN[,CORES], positive numbers, e.g. --assume 10000,3000,16")
        rates, cores, gpu, batch, steps = {"forward": parts[0], "train": parts[1]}, int(parts[2]) if len(parts) == 3 else 16, True, None, 0
        machine = f"an assumed GPU (ResNet-18 forward {parts[0]:g} img/s, training {parts[1]:g} img/s) with {cores} CPU cores"
    else:
        device = resolve_device(args.device)
        gpu = device.type == "cuda"
        batch = args.batch or (256 if gpu else 32)
        steps = args.steps or ((10 if gpu else 2) if args.quick else (20 if gpu else 4))
        cores = os.cpu_count() or 1
        rates = time_resnet18(device, batch, steps)
        machine = describe(device)
    hours = project(rates, decode["slc_1_worker_img_per_s"], cores, gpu)

    peak_stage = max(memory["runs"], key=lambda s: memory["runs"][s]["4S"]["tree_pss_bytes"])
    peak = memory["runs"][peak_stage]["4S"]["tree_pss_bytes"]
    split_bytes = listing["ids_names_bytes"] + listing["targets_mb"] * 1e6 + TRAIN * 4  # ids, targets, float32 CE scores
    ram_gb = (peak + split_bytes) / 1e9
    disk = artifact_gb(MEAN_JPEG_BYTES)  # the JPEGs as copied
    resident = artifact_gb(3 * 224 * 224)  # what evaluate holds: uint8 images at the crop, labels as stored
    where = "an assumed GPU" if args.assume else f"this {'GPU' if gpu else 'CPU'}"
    figures = [{"name": f"{name}: hours on {where}", "value": value, "unit": "h", "target": None} for name, value in hours.items()]
    figures += [
        {"name": "ResNet-18 224 px teacher forward", "value": round(rates["forward"], 1), "unit": "img/s", "target": None},
        {"name": "ResNet-18 224 px training step", "value": round(rates["train"], 1), "unit": "img/s", "target": None},
        {"name": "listing the 1.28M-file training split, first / cached", "value": f"{listing['folders_list_first_s']} / {listing['folders_list_cached_s']}", "unit": "s", "target": None},
        {"name": f"peak memory of any stage ({peak_stage}, flat in the split's size) + the split's ids, targets and scores", "value": round(ram_gb, 2), "unit": "GB", "target": None},
    ]
    figures += [{"name": f"artifact on disk, {name}", "value": value, "unit": "GB", "target": None} for name, value in disk.items()]
    figures += [{"name": f"evaluate: the distilled set held as stored (uint8 224 px images + labels), {name}", "value": value, "unit": "GB", "target": None} for name, value in resident.items()]
    result = {
        "benchmark": "imagenet_projection",
        "command": "python benchmarks/imagenet_projection.py" + (" --quick" if args.quick else "") + (f" --assume {args.assume}" if args.assume else ""),
        "machine": machine,
        "rates": "assumed" if args.assume else "timed here",
        "cores": cores,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "settings": {"model": "resnet18, 224 px, 1000 classes", "batch": batch, "timed_steps": steps, "autocast": "bf16" if gpu else "none",
                     "decode_per_worker_img_s": decode["slc_1_worker_img_per_s"], "decode_source": decode["settings"],
                     "time_model": "GPU: max(decode, compute) per image with cores - 1 workers; CPU: decode and compute share the cores",
                     "mean_jpeg_bytes": round(MEAN_JPEG_BYTES)},  # fmt: skip
        "rates_img_s": {k: round(v, 1) for k, v in rates.items()},
        "hours": hours,
        "ram_gb": round(ram_gb, 2),
        "disk_gb": disk,
        "evaluate_resident_gb": resident,
        "figures": figures,
    }
    out = Path(args.out or RESULTS / ("imagenet_projection_assumed.json" if args.assume else "imagenet_projection.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    width = max(len(f["name"]) for f in figures)
    for f in figures:
        print(f"{f['name']:<{width}}  {f['value']} {f['unit']}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
