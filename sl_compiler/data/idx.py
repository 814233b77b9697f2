"""MNIST and Fashion-MNIST from their original idx files, gzipped or not.

Looked for in the root and in the sub-folders torchvision uses (``MNIST/raw``,
``FashionMNIST/raw``, ``raw``): ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``. Debian's
``dataset-fashion-mnist`` installs the gzipped files in ``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import ImageSet
from .stats import NORMALIZATION

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SUBDIRS = ("", "raw", "MNIST/raw", "FashionMNIST/raw")
CLASSES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
TITLE = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


def find(root: Path, stem: str, key: str) -> Path:
    for sub in SUBDIRS:
        for suffix in ("", ".gz"):
            path = root / sub / (stem + suffix)
            if path.is_file():
                return path
    example = " (Debian: apt-get install dataset-fashion-mnist, then /usr/share/datasets/fashion-mnist)" if key == "fashion_mnist" else ""
    raise DataError(f"missing {stem}[.gz] in {root}", f"point --data-root at the folder with {TITLE[key]}'s four idx files{example}")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes with ``ndim`` dimensions, checked against its header."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path} is a corrupt gzip file ({exc})", "replace it with a complete copy") from None
    header = 4 + 4 * ndim
    if len(data) < header or data[:2] != b"\0\0" or data[2] != 0x08 or data[3] != ndim:
        raise DataError(f"{path} is not an idx file of {ndim}-d unsigned bytes", "replace it with the original idx file")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != header + math.prod(dims):
        raise DataError(f"{path} holds {len(data) - header} bytes of data, its header says {dims}", "the file is truncated; replace it with the original")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def detect(root: Path) -> str | None:
    """``idx files`` when ``root`` holds the training images file, else None."""
    for sub in SUBDIRS:
        for suffix in ("", ".gz"):
            if (root / sub / (FILES["train"][0] + suffix)).is_file():
                return f"idx files{' (gzipped)' if suffix else ''}{f' in {sub}/' if sub else ''}"
    return None


def load(root: Path, split: str, key: str) -> ImageSet:
    images_file, labels_file = (find(root, stem, key) for stem in FILES[split])
    images, labels = read_idx(images_file, 3), read_idx(labels_file, 1)
    if len(images) != len(labels):
        raise DataError(f"{images_file.name} holds {len(images)} images but {labels_file.name} {len(labels)} labels", f"replace both with {TITLE[key]}'s original files")
    mean, std = NORMALIZATION[key]
    return ImageSet(
        name=key,
        split=split,
        classes=CLASSES[key],
        targets=torch.from_numpy(labels.astype(np.int64)),
        shape=(1, *images.shape[1:]),
        mean=mean,
        std=std,
        pixels=torch.from_numpy(images.copy()).unsqueeze(1),
        meta={"loader": "idx", "root": str(root), "files": [str(images_file), str(labels_file)], "in_memory": True},
    )
