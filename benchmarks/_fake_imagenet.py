"""A fake-ImageNet-like folder for the benchmarks: ``root/train/n<class>/<i>.jpg``, JPEGs of mixed sizes.

Each class has its own colour plus noise (so that JPEG sizes and decode times look like photos'
rather than flat fills); image sides are drawn from ``sizes``, quality 90, seeded: the same
arguments write the same files. No ImageNet is on these machines; this stands in for it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def fake_imagenet(root: Path, classes: int, per_class: int, sizes: tuple[int, int], seed: int = 0) -> tuple[list[Path], list[int]]:
    """Write the folder; returns the files in sorted order and their classes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    files, targets = [], []
    for k in range(classes):
        folder = root / "train" / f"n{k:08d}"
        folder.mkdir(parents=True)
        colour = rng.integers(30, 220, 3)
        for i in range(per_class):
            h, w = rng.integers(sizes[0], sizes[1] + 1, 2)
            arr = np.clip(colour + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=90)
            path = folder / f"{i:05d}.jpg"
            path.write_bytes(buf.getvalue())
            files.append(path)
            targets.append(k)
    return files, targets
