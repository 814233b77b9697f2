"""Tiny lazy datasets for the compile, label and select tests: an ImageFolder of JPEGs of mixed sizes.

Loaded with ``in_memory=False`` (or with the in-memory limit at 0, for code that loads by name),
they decode through the streaming loader as ImageNet does, at any worker count.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sl_compiler.data import load_dataset
from sl_compiler.experts import ExpertStore
from sl_compiler.models import create_model


def write_folder(root: Path, classes=("ant", "bee", "cat"), per_class: int = 6, size: int = 20) -> Path:
    """``root/{train,test}/<class>/<i>.jpg``: noise around a class colour, sizes from ``size`` up."""
    for k, cls in enumerate(classes):
        for split in ("train", "test"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng(100 * k + i)
            base = np.array([60 + 60 * k, 200 - 50 * k, 40 + 90 * (k % 2)], dtype=np.int16)
            arr = np.clip(base + rng.integers(-50, 50, (size + i, size + 2 * i, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=90)
            for split in ("train", "test"):
                (root / split / cls / f"{i:03d}.jpg").write_bytes(buf.getvalue())
    return root


def lazy(root: Path, resolution: int = 16, split: str = "train"):
    return load_dataset(f"imagefolder:{root}", split=split, resolution=resolution, in_memory=False)


def add_teachers(store: Path, data, seeds=(0,), arch: str = "convnet_d3", epoch: float = 0, info: dict | None = None) -> Path:
    """Randomly initialised experts for ``data`` (seeded by their seed) at ``epoch``: labels need no training."""
    for seed in seeds:
        torch.manual_seed(seed)
        model = create_model(arch, data.num_classes, data.shape[0], data.shape[1])
        ExpertStore(store).add_checkpoint(model.state_dict(), dataset_info=info or data.info(), arch=arch, epoch=epoch, seed=seed)
    return store


def corrupt(data, index: int) -> str:
    """Overwrite image ``index``'s file with bytes no decoder reads; returns its source id."""
    sid = data.source_id(index)
    (Path(data.meta["path"]).parent / sid).write_bytes(b"not a jpeg at all")
    return sid
