"""What the JPEG copy of CIFAR-10 costs: full-data training on lossless images against their JPEG round trip.

    .venv/bin/python benchmarks/jpeg_cost.py --quick   # 1 epoch x 2 seeds per variant, about 15 min on 2 cores
    .venv/bin/python benchmarks/jpeg_cost.py           # 5 epochs x 3 seeds per variant

../shared/data holds CIFAR-10 only as JPEG, so the copy cannot be compared with its originals here.
Fashion-MNIST's originals are lossless (Debian's idx files). So this benchmark estimates the copy's
JPEG quality from its quantisation tables (75), encodes every Fashion-MNIST image at that quality
with libjpeg (torchvision.io) and decodes it again. It then trains ConvNet-D3 on the whole
training set of each variant with the CIFAR-10 experts' recipe and the same seeds: same init, same
order, same augmentation. So each pair differs only in the pixels. Test accuracy is read on the
original test images and on their JPEG copies. "JPEG train + JPEG test" is the CIFAR copy's
situation. Writes benchmarks/results/jpeg_cost.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import tarfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CIFAR_TAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-train.tar"
RECIPE = ROOT / "recipes" / "experts" / "cifar10-convnet_d3-momentum.toml"
# libjpeg's standard luminance quantisation table (ITU T.81 Annex K), natural order
LUMINANCE = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip


def libjpeg_table(quality: int) -> list[int]:
    """The luminance table libjpeg writes at ``quality`` (jcparam.c's scaling)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(255, max(1, (q * scale + 50) // 100)) for q in LUMINANCE]


def estimate_quality(jpeg: bytes) -> int:
    """The libjpeg quality whose luminance table is nearest to this JPEG's (exact for libjpeg/Pillow files)."""
    from PIL import Image

    table = list(Image.open(io.BytesIO(jpeg)).quantization[0])
    return min(range(1, 101), key=lambda q: sum(abs(a - b) for a, b in zip(libjpeg_table(q), table)))


def first_jpeg(tar_path: Path) -> bytes:
    """The first .jpg member's bytes, read in place."""
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith(".jpg"):
                return tar.extractfile(member).read()
    raise FileNotFoundError(f"{tar_path} holds no .jpg member")


def jpeg_round_trip(pixels: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode uint8 (N, C, H, W) images as JPEG at ``quality`` and decode them, batched through libjpeg."""
    from torchvision.io import decode_jpeg, encode_jpeg

    out = torch.empty_like(pixels)
    for start in range(0, len(pixels), 4096):
        chunk = list(pixels[start : start + 4096])
        out[start : start + len(chunk)] = torch.stack(decode_jpeg(encode_jpeg(chunk, quality=quality)))
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) between two uint8 image batches."""
    mse = (a.double() - b.double()).pow(2).mean()
    return float(10 * torch.log10(255.0**2 / mse)) if mse > 0 else float("inf")


def train_variant(name: str, train, tests: dict, test_data: dict, seeds: list[int], epochs: float, store, device) -> dict:
    """Train one expert per seed on ``train``; test accuracy of the last checkpoint on every test set."""
    from sl_compiler.experts.recipe import ExpertRecipe
    from sl_compiler.experts.train import Split, ValPass, evaluate_accuracy, initial_model, train_one

    recipe = ExpertRecipe.from_toml(RECIPE)
    accuracies = {key: [] for key in tests}
    for seed in seeds:
        result = train_one(store, Split(train, device), ValPass(test_data["original"]), "convnet_d3", seed, recipe, min(epochs, 1.0), device, stop=epochs)
        model = initial_model("convnet_d3", train, seed).to(device)
        model.load_state_dict(result.trajectory.load_state(result.trajectory.checkpoints[-1]))
        for key, split in test_data.items():
            accuracies[key].append(round(evaluate_accuracy(model, split), 2))
    return accuracies


def run(args) -> dict:
    from sl_compiler.data import load_dataset
    from sl_compiler.device import describe, resolve_device
    from sl_compiler.experts.store import ExpertStore
    from sl_compiler.experts.train import Split
    from sl_compiler.sweep import mean_std

    device = resolve_device(args.device)
    if args.quality == "auto":
        if not CIFAR_TAR.is_file():
            raise FileNotFoundError(f"{CIFAR_TAR} is missing: pass --quality Q (75 is the shared CIFAR-10 copy's)")
        quality, quality_source = estimate_quality(first_jpeg(CIFAR_TAR)), f"estimated from the quantisation tables of {CIFAR_TAR.name}"
    else:
        quality, quality_source = int(args.quality), "--quality"
    original = {split: load_dataset(args.dataset, args.data_root, split) for split in ("train", "test")}
    jpeg = {split: dataclasses.replace(s, name=f"jpeg{quality}-{s.name}", pixels=jpeg_round_trip(s.pixels, quality)) for split, s in original.items()}
    tests = {"original": original["test"], "jpeg": jpeg["test"]}
    test_data = {key: Split(t, device) for key, t in tests.items()}  # uint8 on the device once, for both variants
    store = ExpertStore(Path(args.out) / "experts")
    seeds = list(range(args.seeds))
    by_variant = {
        "original": train_variant("original", original["train"], tests, test_data, seeds, args.epochs, store, device),
        "jpeg": train_variant("jpeg", jpeg["train"], tests, test_data, seeds, args.epochs, store, device),
    }

    def paired(a: list[float], b: list[float]) -> dict:
        mean, std = mean_std([x - y for x, y in zip(a, b)])
        return {"mean": round(mean, 2), "std": round(std, 2)}

    def stats(values: list[float]) -> dict:
        mean, std = mean_std(values)
        return {"mean": round(mean, 2), "std": round(std, 2), "accuracies": values}

    cost_copy = paired(by_variant["original"]["original"], by_variant["jpeg"]["jpeg"])
    cost_train = paired(by_variant["original"]["original"], by_variant["jpeg"]["original"])
    return {
        "dataset": original["train"].name,
        "quality": quality,
        "quality_source": quality_source,
        "psnr_db": {"train": round(psnr(original["train"].pixels, jpeg["train"].pixels), 2), "test": round(psnr(original["test"].pixels, jpeg["test"].pixels), 2)},
        "protocol": {"model": "convnet_d3", "recipe": str(RECIPE.relative_to(ROOT)), "epochs": args.epochs, "seeds": seeds, "device": describe(device), "torch": torch.__version__},
        "accuracy": {f"{train}_train_{test}_test": stats(acc) for train, tests_acc in by_variant.items() for test, acc in tests_acc.items()},
        "cost_points": {"jpeg_train_jpeg_test": cost_copy, "jpeg_train_original_test": cost_train},
        "figures": [
            {"name": f"JPEG q{quality} cost, full-data training, JPEG train + JPEG test (the CIFAR copy's case)", "value": cost_copy["mean"], "unit": "points", "target": "measured"},
            {"name": f"JPEG q{quality} cost, full-data training, JPEG train + original test", "value": cost_train["mean"], "unit": "points", "target": "measured"},
        ],
    }


def table(result: dict) -> str:
    acc, cost = result["accuracy"], result["cost_points"]
    rows = [
        f"{result['dataset']}, ConvNet-D3, {result['protocol']['epochs']} epoch(s) of full-data training, seeds {result['protocol']['seeds']}; "
        f"JPEG quality {result['quality']} ({result['quality_source']}), PSNR {result['psnr_db']['train']} dB",
        "",
        "| trained on | tested on original | tested on JPEG |",
        "|---|---:|---:|",
    ]
    for train in ("original", "jpeg"):
        a, b = acc[f"{train}_train_original_test"], acc[f"{train}_train_jpeg_test"]
        rows.append(f"| {train} | {a['mean']:.2f} ± {a['std']:.2f} | {b['mean']:.2f} ± {b['std']:.2f} |")
    rows += [
        "",
        f"cost of the JPEG copy (original/original minus JPEG/JPEG, paired by seed): {cost['jpeg_train_jpeg_test']['mean']:+.2f} ± {cost['jpeg_train_jpeg_test']['std']:.2f} points",
        f"cost of JPEG training images alone (tested on originals): {cost['jpeg_train_original_test']['mean']:+.2f} ± {cost['jpeg_train_original_test']['std']:.2f} points",
    ]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch x 2 seeds per variant (default: 5 epochs x 3 seeds)")
    parser.add_argument("--dataset", default="fashion_mnist", help="a dataset with lossless originals")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--quality", default="auto", help="JPEG quality; auto: the shared CIFAR-10 copy's")
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (0..N-1)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "jpeg-cost"), help="work folder (the trained experts)")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    args.epochs = args.epochs if args.epochs is not None else (1.0 if args.quick else 5.0)
    args.seeds = args.seeds if args.seeds is not None else (2 if args.quick else 3)

    from sl_compiler.errors import SlcError

    started = time.perf_counter()
    try:
        result = run(args)
    except (SlcError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    result["seconds"] = round(time.perf_counter() - started, 1)
    path = Path(args.results) / "jpeg_cost.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(table(result))
    print(f"wrote {path} after {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
