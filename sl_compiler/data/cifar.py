"""CIFAR-10 and CIFAR-100: torchvision's pickled batches, else an ImageFolder (folders or tars).

torchvision's layout is ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` and
``cifar-100-python/{train,test,meta}`` (fine labels), inside the root or as the root itself.
The pickles are read with an unpickler that builds numpy arrays and nothing else, so a
tampered file cannot run code. Without them, the root is read as an ImageFolder (the shared
JPEG CIFAR-10 is ``cifar10-train.tar``/``cifar10-test.tar``), whose sorted class folders are
CIFAR's own index order.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import imagefolder
from .base import ImageSet
from .stats import NORMALIZATION

LAYOUT = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": ("batches.meta", b"label_names"),
        "labels": b"labels",
        "classes": 10,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": ("meta", b"fine_label_names"),
        "labels": b"fine_labels",
        "classes": 100,
    },
}
TITLE = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays; refuses every other global."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
    MULTIARRAY = {"_reconstruct", "scalar"}

    def find_class(self, module, name):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in self.MULTIARRAY:
            return getattr(np._core.multiarray if hasattr(np, "_core") else np.core.multiarray, name)
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = ArrayUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"missing {path}", "restore torchvision's CIFAR files (python version) in the root") from None
    except Exception as exc:
        raise DataError(f"{path} is not a CIFAR pickle ({exc})", "replace it with the file from torchvision's CIFAR archive") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a CIFAR pickle (no dict inside)", "replace it with the file from torchvision's CIFAR archive")
    return data


def find_pickles(root: Path, key: str) -> Path | None:
    """The folder holding torchvision's pickles: ``root/<folder>`` or ``root`` itself."""
    layout = LAYOUT[key]
    for folder in (root / layout["folder"], root):
        if (folder / layout["meta"][0]).is_file():
            return folder
    return None


def load(
    root: Path, split: str, key: str, resolution: int | None = None, resize: int | None = None, channels: int | None = None, in_memory: bool | None = None
) -> ImageSet:
    """One split of CIFAR-10/100 from torchvision's pickles, else from an ImageFolder root."""
    folder = find_pickles(root, key)
    if folder is not None:
        if (resolution not in (None, 32)) or (channels not in (None, 3)) or resize not in (None, 32):
            raise DataError(f"{TITLE[key]} pickles hold 3x32x32 images, not {channels or 3}x{resolution or 32} (resize {resize})", "drop the resolution/resize/channels options")
        return load_pickles(folder, split, key)
    if imagefolder.locate(root, split) is None:
        raise DataError(
            f"no {TITLE[key]} files in {root}",
            f"expected torchvision's {LAYOUT[key]['folder']}/, train/ and test/ class folders, or *train*.tar and *test*.tar",
        )
    images = imagefolder.load(root, split, dataset_name=key, resolution=resolution, resize=resize, channels=channels, in_memory=in_memory)
    if images.num_classes != LAYOUT[key]["classes"]:
        raise DataError(f"{root} holds {images.num_classes} class folders, {TITLE[key]} has {LAYOUT[key]['classes']}", f"point --data-root at a {TITLE[key]} root")
    return images


def detect(root: Path, key: str) -> str | None:
    """The layout of ``key``'s files in ``root``, None when there are none."""
    if not root.is_dir():
        return None
    if find_pickles(root, key) is not None:
        return "torchvision pickles"
    return imagefolder.detect(root)


def detect_cifar10(root: Path) -> str | None:
    return detect(root, "cifar10")


def detect_cifar100(root: Path) -> str | None:
    return detect(root, "cifar100")


def load_pickles(folder: Path, split: str, key: str) -> ImageSet:
    layout = LAYOUT[key]
    meta_file, names_key = layout["meta"]
    names = read_pickle(folder / meta_file).get(names_key)
    if not isinstance(names, list) or len(names) != layout["classes"]:
        raise DataError(f"{folder / meta_file} lacks {layout['classes']} class names", "replace it with the file from torchvision's CIFAR archive")
    pixels, targets = [], []
    for name in layout[split]:
        batch = read_pickle(folder / name)
        data, labels = batch.get(b"data"), batch.get(layout["labels"])
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels is None or len(labels) != len(data):
            raise DataError(f"{folder / name} is malformed (expected uint8 data of N x 3072 and N labels)", "replace it with the file from torchvision's CIFAR archive")
        pixels.append(torch.from_numpy(data.reshape(-1, 3, 32, 32)))
        targets.append(torch.as_tensor(np.asarray(labels, dtype=np.int64)))
    mean, std = NORMALIZATION[key]
    return ImageSet(
        name=key,
        split=split,
        classes=[n.decode() if isinstance(n, bytes) else str(n) for n in names],
        targets=torch.cat(targets),
        shape=(3, 32, 32),
        mean=mean,
        std=std,
        pixels=torch.cat(pixels),
        meta={"loader": "cifar", "root": str(folder), "layout": "torchvision-pickle", "in_memory": True},
    )
