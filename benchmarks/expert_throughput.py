"""Expert training throughput: slc's training loop against a bare PyTorch loop, in memory and streamed from files.

    .venv/bin/python benchmarks/expert_throughput.py            # CIFAR-10 in memory + a 1,000-image JPEG folder (several minutes on 2 cores)
    .venv/bin/python benchmarks/expert_throughput.py --quick    # CIFAR-like tensors + a 320-image folder (about 2 minutes)
    .venv/bin/python benchmarks/expert_throughput.py --device cuda --workers 16 --stream-size 224 --stream-batch 256   # a GPU box

Two settings, each run in one process with the same model, initialisation, optimizer and batch:

- **in memory**: ConvNet-D3 at 32 px on uint8 images held on the device (CIFAR-10's training split,
  or in ``--quick`` random CIFAR-like tensors), SGD momentum 0.9, a 4 px reflect-padded random crop
  and a horizontal flip. ``slc`` is what ``slc experts train`` runs between checkpoints
  (``experts.train.training_batches`` + ``training_step``: per-step derived generators, uint8
  normalised per batch, autocast and channels_last on CUDA); ``bare`` is a hand-written loop over
  the same uint8 tensor with its own crop and flip.
- **streamed**: ResNet-18 at ``--stream-size`` px (96 by default, to stay CPU-feasible) on a
  folder of JPEGs of varied sizes written for the run (a fake ImageNet-like set), decoded by
  ``--workers`` processes each epoch with RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3) + flip of
  the original image. ``slc`` streams it through ``sl_compiler.data.stream`` with its
  counter-based crops; ``bare`` is torchvision's ImageFolder + RandomResizedCrop + DataLoader with
  the same workers (the loop of torchvision's references/classification/train.py).

The bare loops import nothing from slc but the model constructor. Loops alternate ``--repeats``
times after a warm-up; the best of each counts; each timed pass includes starting its workers.
ratio = slc img/s / bare img/s (target >= 0.9). Writes benchmarks/results/expert_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sl_compiler.data import load_dataset  # noqa: E402
from sl_compiler.data.base import ImageSet  # noqa: E402
from sl_compiler.device import describe, resolve_device  # noqa: E402
from sl_compiler.experts.recipe import ExpertRecipe  # noqa: E402
from sl_compiler.experts.train import Ranks, Split, make_optimizer, training_batches, training_step  # noqa: E402
from sl_compiler.models import create_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# slc: the trainer's own loop


def slc_pass(model, optimizer, split: Split, recipe: ExpertRecipe, steps: int, device) -> None:
    """``steps`` steps of epoch 0 exactly as ``experts.train`` runs them."""
    for x, y in training_batches(split, recipe, 0, 0, 0, steps, Ranks()):
        training_step(model, optimizer, x, y, recipe.lr, recipe.label_smoothing)
    sync(device)


# ---------------------------------------------------------------------------------------------
# bare: plain PyTorch, written without slc's data, augmentation or training code


def bare_memory_pass(model, optimizer, pixels: torch.Tensor, targets: torch.Tensor, mean, std, batch: int, steps: int, device) -> None:
    """Hand-written loop over uint8 ``pixels`` on the device: normalise, pad 4 + random crop, flip, SGD step."""
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(pixels), generator=g).to(device)
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    cl = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    for i in range(steps):
        idx = order[i * batch : (i + 1) * batch]
        x = (pixels[idx].float() / 255 - m) / s
        n, c, h, w = x.shape
        padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
        dy, dx = (torch.randint(0, 9, (n,), generator=g).to(device) for _ in range(2))
        rows = (dy.view(n, 1) + torch.arange(h, device=device)).view(n, 1, h, 1).expand(n, c, h, w + 8)
        cols = (dx.view(n, 1) + torch.arange(w, device=device)).view(n, 1, 1, w).expand(n, c, h, w)
        x = padded.gather(2, rows).gather(3, cols)  # the rows of the window, then its columns
        flip = (torch.rand(n, generator=g) < 0.5).to(device).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x).contiguous(memory_format=cl)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(x).float(), targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)


def bare_stream_pass(model, optimizer, root: Path, size: int, batch: int, steps: int, workers: int, device) -> None:
    """torchvision's ImageFolder + RandomResizedCrop + flip in DataLoader workers, normalised on the device."""
    import torchvision
    import torchvision.transforms as T

    dataset = torchvision.datasets.ImageFolder(str(root / "train"), T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.PILToTensor()]))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[: steps * batch].tolist()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=order, num_workers=workers, pin_memory=device.type == "cuda", prefetch_factor=2 if workers else None)
    m = torch.tensor(IMAGENET_MEAN, device=device).view(1, -1, 1, 1)
    s = torch.tensor(IMAGENET_STD, device=device).view(1, -1, 1, 1)
    cl = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    for pixels, targets in loader:
        x = ((pixels.to(device, non_blocking=True).float() / 255 - m) / s).contiguous(memory_format=cl)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(x).float(), targets.to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)


# ---------------------------------------------------------------------------------------------


def write_folder(root: Path, classes: int, per_class: int, seed: int = 0) -> Path:
    """root/train/c<k>/<i>.jpg: smooth random JPEGs of 100-180 px sides (a fake ImageNet in miniature)."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    for k in range(classes):
        folder = root / "train" / f"c{k:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = (int(v) for v in torch.randint(100, 181, (2,), generator=g))
            coarse = torch.rand(1, 3, 6, 6, generator=g) * 255
            img = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0] + torch.rand(3, h, w, generator=g) * 20
            Image.fromarray(img.clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.jpg", quality=90)
    return root


def compare(name: str, passes: dict, repeats: int) -> dict:
    """Warm each pass up, then alternate them ``repeats`` times; seconds per repeat."""
    for run in passes.values():
        run(warmup=True)
    seconds = {k: [] for k in passes}
    for _ in range(repeats):
        for key, run in passes.items():
            seconds[key].append(timed(run))
    print(f"  {name}: " + ", ".join(f"{k} best {min(v):.2f} s" for k, v in seconds.items()), flush=True)
    return seconds


def in_memory(args, device) -> dict:
    if args.quick:
        g = torch.Generator().manual_seed(0)
        pixels = (torch.rand(args.images, 3, 32, 32, generator=g) * 255).to(torch.uint8)
        data = ImageSet("cifar-like", "train", [f"c{k}" for k in range(10)], torch.arange(args.images) % 10, (3, 32, 32), (0.49, 0.48, 0.45), (0.2, 0.2, 0.2), pixels=pixels)
    else:
        data = load_dataset("cifar10", args.data_root, "train")
    batch, steps = args.memory_batch, args.memory_steps
    if steps * batch > len(data):
        raise SystemExit(f"--memory-steps {steps} x batch {batch} exceeds the {len(data)} images")
    recipe = ExpertRecipe(lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=batch, epochs=1, milestones=(), augment="crop_flip", crop_padding=4)
    split = Split(data, device)  # uint8 on the device, once
    pixels, targets = split.pixels, split.targets
    init = create_model("convnet_d3", data.num_classes, 3, 32).state_dict()
    models = {}
    for key in ("slc", "bare"):
        model = create_model("convnet_d3", data.num_classes, 3, 32)
        model.load_state_dict(init)
        model = model.to(device, memory_format=torch.channels_last if device.type == "cuda" else torch.contiguous_format).train()
        models[key] = (model, make_optimizer(model, recipe))
    passes = {
        "bare": lambda warmup=False: bare_memory_pass(*models["bare"], pixels, targets, data.mean, data.std, batch, 2 if warmup else steps, device),
        "slc": lambda warmup=False: slc_pass(*models["slc"], split, recipe, 2 if warmup else steps, device),
    }
    seconds = compare("in memory", passes, args.repeats)
    img_s = {k: steps * batch / min(v) for k, v in seconds.items()}
    return {
        "settings": {"data": data.name, "images": len(data), "model": "convnet_d3", "resolution": 32, "batch_size": batch, "steps": steps, "augment": "crop 4 px reflect + flip", "held": split.describe()},
        "seconds": seconds,
        "img_s": img_s,
        "ratio": img_s["slc"] / img_s["bare"],
    }


def streamed(args, device) -> dict:
    batch, steps, size = args.stream_batch, args.stream_steps, args.stream_size
    with tempfile.TemporaryDirectory(prefix="slc-expert-throughput-") as tmp:
        root = write_folder(Path(tmp), args.stream_classes, args.stream_per_class)
        data = load_dataset(f"imagefolder:{root}", split="train", resolution=size, in_memory=False)
        if steps * batch > len(data):
            raise SystemExit(f"--stream-steps {steps} x batch {batch} exceeds the {len(data)} images")
        data = ImageSet(data.name, "train", data.classes, data.targets, data.shape, IMAGENET_MEAN, IMAGENET_STD, sources=data.sources, meta=data.meta)
        recipe = ExpertRecipe(lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=batch, epochs=1, milestones=(), augment="random_resized_crop")
        split = Split(data, device, workers=args.workers)
        init = create_model("resnet18", data.num_classes, 3, size).state_dict()
        models = {}
        for key in ("slc", "bare"):
            model = create_model("resnet18", data.num_classes, 3, size)
            model.load_state_dict(init)
            model = model.to(device, memory_format=torch.channels_last if device.type == "cuda" else torch.contiguous_format).train()
            models[key] = (model, make_optimizer(model, recipe))
        passes = {
            "bare": lambda warmup=False: bare_stream_pass(*models["bare"], root, size, batch, 1 if warmup else steps, args.workers, device),
            "slc": lambda warmup=False: slc_pass(*models["slc"], split, recipe, 1 if warmup else steps, device),
        }
        seconds = compare("streamed", passes, args.repeats)
    img_s = {k: steps * batch / min(v) for k, v in seconds.items()}
    return {
        "settings": {
            "data": f"{args.stream_classes} classes x {args.stream_per_class} JPEGs, 100-180 px sides",
            "model": "resnet18",
            "resolution": size,
            "batch_size": batch,
            "steps": steps,
            "workers": args.workers,
            "augment": "RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3) + flip of the original image, in the decode workers",
        },
        "seconds": seconds,
        "img_s": img_s,
        "ratio": img_s["slc"] / img_s["bare"],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "cifar10"), help="CIFAR-10 for the in-memory setting (not read with --quick)")
    parser.add_argument("--images", type=int, default=4096, help="--quick: CIFAR-like images held in memory")
    parser.add_argument("--memory-batch", type=int, default=256)
    parser.add_argument("--memory-steps", type=int, default=20)
    parser.add_argument("--stream-classes", type=int, default=50)
    parser.add_argument("--stream-per-class", type=int, default=20)
    parser.add_argument("--stream-size", type=int, default=96, help="RandomResizedCrop output and ResNet-18 input size")
    parser.add_argument("--stream-batch", type=int, default=32)
    parser.add_argument("--stream-steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="decode workers of both streamed loops")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="CIFAR-like tensors, 6 + 6 steps, a 320-image folder: about 2 minutes on 2 cores")
    parser.add_argument("--out", default=str(RESULTS / "expert_throughput.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.memory_batch, args.memory_steps = 128, 6
        args.stream_classes, args.stream_per_class, args.stream_steps = 20, 16, 6
    device = resolve_device(args.device)
    print(f"expert training throughput on {describe(device)}, {torch.get_num_threads()} threads", flush=True)
    memory = in_memory(args, device)
    stream = streamed(args, device)
    result = {
        "benchmark": "expert_throughput",
        "command": "python benchmarks/expert_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": describe(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "in_memory": memory,
        "streamed": stream,
        "figures": [
            {"name": f"expert training in memory (convnet_d3, 32 px, batch {memory['settings']['batch_size']}): slc / bare loop", "value": round(memory["ratio"], 3), "unit": "ratio", "target": ">= 0.9"},
            {"name": "expert training in memory: slc images/s", "value": round(memory["img_s"]["slc"], 1), "unit": "img/s", "target": None},
            {"name": f"expert training streamed (resnet18, {stream['settings']['resolution']} px RRC, batch {stream['settings']['batch_size']}, {args.workers} workers): slc / bare torchvision loop", "value": round(stream["ratio"], 3), "unit": "ratio", "target": ">= 0.9"},
            {"name": "expert training streamed: slc images/s", "value": round(stream["img_s"]["slc"], 1), "unit": "img/s", "target": None},
        ],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"{'setting':<12}{'bare img/s':>12}{'slc img/s':>12}{'ratio':>8}")
    for name, part in (("in memory", memory), ("streamed", stream)):
        print(f"{name:<12}{part['img_s']['bare']:>12.1f}{part['img_s']['slc']:>12.1f}{part['ratio']:>8.3f}")
    print(f"target >= 0.9; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
