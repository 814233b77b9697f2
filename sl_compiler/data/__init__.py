"""Source datasets, offline, from a local root.

``load_dataset(name, root, split)`` is the one entry point: ``name`` is a known dataset
(``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist``, ``tinyimagenet``, ``imagenet``),
``imagefolder:PATH``, ``wds:PATH`` (WebDataset shards) or ``synthetic[:options]``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..errors import DataError
from .base import FileSource, ImageSet, channel_stats, normalize
from .decode import decode_image
from .stream import Batch, Stream, stream

__all__ = ["Batch", "ImageSet", "FileSource", "Stream", "stream", "load_dataset", "known_datasets", "normalize", "channel_stats", "decode_image", "dataset_key"]

KNOWN = ("cifar10", "cifar100", "mnist", "fashion_mnist", "tinyimagenet", "imagenet", "synthetic")
SPLITS = ("train", "test")
# where a system package installs a dataset: used when no --data-root is given
DEFAULT_ROOTS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}


def known_datasets() -> list[str]:
    return [*KNOWN, "imagefolder:PATH", "wds:PATH"]


def dataset_key(name: str) -> str:
    """The canonical name an expert store and a manifest use for a dataset spec."""
    name = name.strip()
    if name.startswith("synthetic"):
        from .synthetic import canonical_name, parse_options

        return canonical_name(parse_options(name.partition(":")[2]))
    if name.startswith(("imagefolder:", "wds:")):
        kind, _, path = name.partition(":")
        return f"{kind}:{Path(path).name}"
    return name.lower().replace("-", "_")


def load_dataset(name: str, root: str | Path | None = None, split: str = "train", **options) -> ImageSet:
    """Load one split (``train`` or ``test``; ``val`` is an alias of ``test``) of a dataset.

    ``options`` (None values ignored) go to the loader: ``resolution``, ``channels`` and
    ``in_memory`` for encoded images (ImageFolder, ImageNet, TinyImageNet, WebDataset, CIFAR as
    JPEGs).
    """
    split = {"val": "test"}.get(split, split)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}", "use train or test")
    name = name.strip()
    options = {k: v for k, v in options.items() if v is not None}
    if name.startswith("synthetic"):
        from . import synthetic

        return synthetic.load(name.partition(":")[2], split, **check_options(name, synthetic.load, options))
    if name.startswith(("imagefolder:", "wds:")):
        from . import imagefolder, wds

        kind, _, path = name.partition(":")
        if not path:
            raise DataError(f"dataset {name!r} names no path", f"write {kind}:PATH")
        loader = imagefolder.load if kind == "imagefolder" else wds.load
        return loader(Path(path).expanduser(), split, **check_options(name, loader, options))
    key = dataset_key(name)
    if key not in KNOWN:
        raise DataError(f"unknown dataset {name!r}", f"use one of: {', '.join(known_datasets())}")
    if root is None and key in DEFAULT_ROOTS and Path(DEFAULT_ROOTS[key]).is_dir():
        root = DEFAULT_ROOTS[key]
    if root is None:
        raise DataError(f"dataset {name!r} needs --data-root", "point --data-root at the folder that holds its files")
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data root {root} does not exist", f"point --data-root at the folder that holds {name}")
    if key in ("cifar10", "cifar100"):
        from . import cifar

        return cifar.load(root, split, key, **check_options(name, cifar.load, options))
    if key in ("mnist", "fashion_mnist"):
        from . import idx

        return idx.load(root, split, key, **check_options(name, idx.load, options))
    if key == "tinyimagenet":
        from . import tinyimagenet

        return tinyimagenet.load(root, split, **check_options(name, tinyimagenet.load, options))
    from . import imagefolder

    return imagefolder.load(root, split, dataset_name="imagenet", **check_options(name, imagefolder.load, options))


def check_options(name: str, loader, options: dict) -> dict:
    """``options`` if ``loader`` takes them all, else a clear error naming the ones it does not."""
    accepted = set(inspect.signature(loader).parameters) - {"root", "split", "key", "spec", "dataset_name"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise DataError(f"dataset {name!r} takes no option {', '.join(unknown)}", f"its options are: {', '.join(sorted(accepted)) or 'none'}")
    return options
