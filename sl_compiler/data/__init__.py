"""Source datasets, offline, read in place from where they live.

``load_dataset(name, root=None, split="train", resolution=None, resize=None, ...)`` is the one
entry point. ``name`` is a registered dataset (``registry``: ``cifar10``, ``cifar100``,
``mnist``, ``fashion_mnist``, ``tinyimagenet``, ``imagenet``), ``imagefolder:PATH``,
``wds:PATH`` (WebDataset shards), ``parquet:PATH`` (the Hub's parquet shards) or
``synthetic[:options]``. A registered dataset's root is ``root``, else its recorded location
(``locations``: ``SLC_DATA_<NAME>``, ``slc data add``); WebDataset or parquet shards found in that
root are read as such.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .base import FileSource, ImageSet, normalize
from .decode import decode_image
from .preprocess import Preprocess
from .registry import DatasetEntry, known_datasets, lookup, register
from .stream import Batch, Stream, stream

__all__ = [
    "Batch",
    "DatasetEntry",
    "FileSource",
    "ImageSet",
    "Preprocess",
    "Stream",
    "dataset_key",
    "decode_image",
    "known_datasets",
    "load_dataset",
    "normalize",
    "register",
    "stream",
]

SPLITS = ("train", "test")


def dataset_key(name: str) -> str:
    """The canonical name an expert store and a manifest use for a dataset spec.

    Names slc does not know (a renamed or imported set's) are only normalised, never refused:
    the key names data that was loaded elsewhere.
    """
    try:
        entry, rest = lookup(name)
    except DataError:
        return name.strip().lower().replace("-", "_")
    if entry.kind == "spec":
        return entry.function("synthetic:key")(rest) if entry.name == "synthetic" else entry.name
    if entry.kind == "path":
        return f"{entry.name}:{Path(rest).name}"
    return entry.name


def load_dataset(name: str, root: str | Path | None = None, split: str = "train", **options) -> ImageSet:
    """Load one split (``train`` or ``test``; ``val`` is an alias of ``test``) of a dataset.

    ``options`` (None values ignored) go to the loader: ``resolution`` (the centre crop),
    ``resize`` (the short side before it; ImageNet 256 for a 224 crop, else the crop),
    ``channels`` and ``in_memory`` for encoded images (ImageFolder, ImageNet, TinyImageNet,
    WebDataset, parquet, CIFAR as JPEGs).
    """
    split = {"val": "test", "validation": "test"}.get(split, split)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}", "use train or test")
    entry, rest = lookup(name)
    options = entry.with_defaults({k: v for k, v in options.items() if v is not None})
    if entry.kind == "spec":
        return call(entry, entry.function(), rest, split, options)
    if entry.kind == "path":
        return call(entry, entry.function(), Path(rest).expanduser(), split, options)
    from .locations import resolve_root

    root = resolve_root(entry, root)
    shards = shard_entry(root)
    if shards is not None:  # the dataset published as WebDataset or parquet shards
        extra = {"dataset_name": entry.name, "stats": entry.normalization, "test_splits": entry.test_splits}
        return call(shards, shards.function(), root, split, options, extra, label=entry.name)
    return call(entry, entry.function(), root, split, options)


def shard_entry(root: Path) -> DatasetEntry | None:
    """The ``wds`` or ``parquet`` entry when ``root`` holds such shards, else None."""
    from . import parquet, wds

    if root.is_dir():
        if parquet.shard_folder(root) is not None:
            return lookup("parquet:.")[0]
        if wds.has_shards(root):
            return lookup("wds:.")[0]
    return None


def call(entry: DatasetEntry, loader, target, split: str, options: dict, extra: dict | None = None, label: str | None = None) -> ImageSet:
    """``loader(target, split, ...)`` after checking it takes every option given."""
    accepted = entry.options(loader)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataError(f"dataset {label or entry.name!r} takes no option {', '.join(unknown)}", f"its options are: {', '.join(accepted) or 'none'}")
    return loader(target, split, **entry.bind, **(extra or {}), **options)
