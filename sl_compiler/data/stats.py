"""Normalisation: the constants of the known datasets, and exact statistics of uint8 pixels.

The constants are those of the dataset-distillation code bases our anchors build on
(DC/DSA/DM and MTT's ``utils.get_dataset``), so that experts and students see the inputs those
papers' networks saw; ImageNet's are torchvision's. Everything else is normalised with statistics
computed from its own training pixels.
"""

from __future__ import annotations

import torch

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2861,), (0.3530,)),
    "tinyimagenet": IMAGENET,
    "imagenet": IMAGENET,
}


def pixel_stats(pixels: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std of uint8 (N, C, H, W) in [0, 1] units.

    Exact and memory-light: a histogram of the 256 byte values per channel, never a float copy
    of the whole set.
    """
    return stats_from_counts(byte_counts(pixels))


def byte_counts(pixels: torch.Tensor) -> torch.Tensor:
    """int64 (C, 256): how often each byte value occurs per channel; counts of batches add up."""
    c = pixels.shape[1]
    rows = max(1, (1 << 24) // max(1, pixels[0].numel()))
    counts = torch.zeros(c, 256, dtype=torch.int64)
    for start in range(0, len(pixels), rows):
        block = pixels[start : start + rows]
        for ch in range(c):
            counts[ch] += torch.bincount(block[:, ch].flatten(), minlength=256)
    return counts


def stats_from_counts(counts: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and unbiased std per channel, rounded to 6 digits, from :func:`byte_counts`."""
    values = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum(1).double()
    mean = (counts * values).sum(1) / n
    var = ((counts * values.square()).sum(1) - n * mean.square()) / (n - 1).clamp_min(1)
    std = var.clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())
