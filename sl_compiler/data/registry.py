"""Datasets by name: one entry per dataset, dispatched in one place (like the model registry).

An entry names its loader as ``module:function`` (imported only when the dataset is loaded, so
listing datasets for ``--help`` imports no torch), the options that loader takes, the layouts a
root may hold, its normalisation and its default preprocessing (crop, and the crop's fraction
of the resized short side). Three kinds of names:

- ``root``: a dataset whose files live somewhere (``cifar10``, ``imagenet``): the location comes
  from ``--data-root``, the environment or ``slc data add`` (``locations``). Any of them may also
  come as WebDataset or parquet shards (``shards``), detected in the root.
- ``path``: ``imagefolder:PATH``, ``wds:PATH``, ``parquet:PATH``: the path is part of the name.
- ``spec``: ``synthetic[:options]``: generated, options in the name.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .stats import NORMALIZATION

BOUND = {"root", "split", "spec"}  # loader parameters that are not user options


@dataclass(frozen=True)
class DatasetEntry:
    """What slc knows about one dataset name."""

    name: str
    summary: str
    loader: str  # "module:function" under sl_compiler.data; called (root|path|spec, split, **bind, **options)
    kind: str = "root"  # root | path | spec
    layouts: tuple[str, ...] = ()
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # None: the training split's own statistics
    crop: int | None = None  # default resolution; None: the first training image's short side
    crop_fraction: float | None = None  # default resize = crop / crop_fraction; None: resize = crop
    test_splits: tuple[str, ...] = ("test", "val", "validation")  # what stands for the test split, in order of preference
    default_root: str | None = None  # where a system package installs it
    aliases: tuple[str, ...] = ()
    bind: dict = field(default_factory=dict)  # fixed keyword arguments of the loader
    detect: str | None = None  # "module:function": root -> a layout description, or None

    def function(self, attr: str | None = None):
        module, _, fn = (attr or self.loader).partition(":")
        return getattr(importlib.import_module(f"sl_compiler.data.{module}"), fn)

    def options(self, loader=None) -> list[str]:
        """The options its loader takes (``resolution``, ``resize``, ``channels``, ``in_memory``)."""
        return sorted(set(inspect.signature(loader or self.function()).parameters) - BOUND - set(self.bind) - {"dataset_name", "stats", "test_splits"})

    def with_defaults(self, options: dict) -> dict:
        """``options`` with this dataset's default crop and resize filled in."""
        options = dict(options)
        if self.crop is not None and options.get("resolution") is None and "resolution" in self.options():
            options["resolution"] = self.crop
        if self.crop_fraction is not None and options.get("resize") is None and options.get("resolution") is not None:
            from .preprocess import ratio_resize

            options["resize"] = ratio_resize(options["resolution"], self.crop_fraction)
        return options

    def describe_layout(self, root: Path) -> str | None:
        """What this dataset's files in ``root`` look like (shards first, as ``load_dataset`` reads them), None when nothing of it is there."""
        if self.kind == "root":
            shards = self.function("parquet:detect")(root) or self.function("wds:detect")(root)
            if shards:
                return shards
        return self.function(self.detect)(root) if self.detect else None


_REGISTRY: dict[str, DatasetEntry] = {}
_ALIASES: dict[str, str] = {}


def register(entry: DatasetEntry) -> DatasetEntry:
    if entry.name in _REGISTRY or entry.name in _ALIASES:
        raise ValueError(f"dataset {entry.name!r} registered twice")
    _REGISTRY[entry.name] = entry
    for alias in entry.aliases:
        _ALIASES[alias] = entry.name
    return entry


def entries(kind: str | None = None) -> list[DatasetEntry]:
    return [e for e in _REGISTRY.values() if kind is None or e.kind == kind]


def normal(name: str) -> str:
    """``Fashion-MNIST`` -> ``fashion_mnist``; aliases -> their dataset."""
    key = name.strip().lower().replace("-", "_")
    return _ALIASES.get(key, key)


def known_datasets() -> list[str]:
    """Every name ``--dataset`` takes, as written: ``cifar10``, ..., ``imagefolder:PATH``, ``synthetic[:options]``."""
    return [e.name if e.kind == "root" else f"{e.name}:PATH" if e.kind == "path" else f"{e.name}[:options]" for e in _REGISTRY.values()]


def lookup(name: str) -> tuple[DatasetEntry, str]:
    """The entry for a ``--dataset`` value and what follows its ``:`` (a path, options, or '')."""
    head, colon, rest = name.strip().partition(":")
    entry = _REGISTRY.get(normal(head))
    if entry is None:
        raise DataError(f"unknown dataset {name!r}", f"use one of: {', '.join(known_datasets())}")
    if entry.kind == "root" and colon:
        raise DataError(f"dataset {head!r} takes no ':'", f"write --dataset {entry.name} and give its location with --data-root (or slc data add {entry.name} PATH)")
    if entry.kind == "path" and not rest:
        raise DataError(f"dataset {name!r} names no path", f"write {entry.name}:PATH")
    return entry, rest


def root_entry(name: str) -> DatasetEntry:
    """The entry of a dataset that lives at a location (what ``slc data add`` takes)."""
    entry = _REGISTRY.get(normal(name))
    if entry is None or entry.kind != "root":
        names = ", ".join(e.name for e in entries("root"))
        raise DataError(f"{name!r} is not a dataset with a location", f"name one of: {names} (imagefolder:PATH, wds:PATH and parquet:PATH carry their path)")
    return entry


IMAGENET_LAYOUTS = (
    "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (ImageFolder)",
    "ILSVRC2012_img_train.tar (a tar of per-class tars) and ILSVRC2012_img_val.tar, with ILSVRC2012_devkit_t12[.tar.gz]",
    "val/ILSVRC2012_val_*.JPEG (flat) with ILSVRC2012_validation_ground_truth.txt and the devkit's meta.mat (or map_clsloc.txt)",
    "Kaggle: ILSVRC/Data/CLS-LOC/{train,val}/ with LOC_val_solution.csv and LOC_synset_mapping.txt",
    "WebDataset shards (*train-NNNN.tar, *validation-NNNN.tar) or parquet shards ([data/]train-*.parquet)",
)

register(DatasetEntry(
    "cifar10", "CIFAR-10: 10 classes of 32 px", "cifar:load", bind={"key": "cifar10"}, normalization=NORMALIZATION["cifar10"],
    layouts=("torchvision's cifar-10-batches-py/", "train/ and test/ class folders, or *train*.tar and *test*.tar of them"), detect="cifar:detect_cifar10",
))
register(DatasetEntry(
    "cifar100", "CIFAR-100: 100 classes of 32 px", "cifar:load", bind={"key": "cifar100"}, normalization=NORMALIZATION["cifar100"],
    layouts=("torchvision's cifar-100-python/", "train/ and test/ class folders, or *train*.tar and *test*.tar of them"), detect="cifar:detect_cifar100",
))
register(DatasetEntry(
    "mnist", "MNIST: 10 digits, 28 px grey", "idx:load", bind={"key": "mnist"}, normalization=NORMALIZATION["mnist"],
    layouts=("the four idx files, gzipped or not (also under raw/ or MNIST/raw/)",), detect="idx:detect",
))
register(DatasetEntry(
    "fashion_mnist", "Fashion-MNIST: 10 clothing classes, 28 px grey", "idx:load", bind={"key": "fashion_mnist"}, normalization=NORMALIZATION["fashion_mnist"],
    layouts=("the four idx files, gzipped or not (also under raw/ or FashionMNIST/raw/)",), default_root="/usr/share/datasets/fashion-mnist", detect="idx:detect",
))
register(DatasetEntry(
    "tinyimagenet", "TinyImageNet: 200 classes of 64 px", "tinyimagenet:load", normalization=NORMALIZATION["tinyimagenet"], crop=64,
    test_splits=("val", "validation", "test"), aliases=("tiny_imagenet", "tiny_imagenet_200"),
    layouts=("tiny-imagenet-200/ as distributed (val/images/ + val_annotations.txt)", "val/<wnid>/[images/] per-class folders"), detect="tinyimagenet:detect",
))
register(DatasetEntry(
    "imagenet", "ImageNet-1K (ILSVRC2012), decoded as torchvision does: resize 256, centre crop 224", "imagenet:load",
    normalization=NORMALIZATION["imagenet"], crop=224, crop_fraction=0.875, test_splits=("val", "validation", "test"),
    aliases=("imagenet1k", "imagenet_1k", "ilsvrc2012"), layouts=IMAGENET_LAYOUTS, detect="imagenet:detect",
))
register(DatasetEntry("imagefolder", "any ImageFolder: PATH/train/<class>/<image> and test/ (or val/), as folders or tars", "imagefolder:load", kind="path", detect="imagefolder:detect"))
register(DatasetEntry("wds", "WebDataset shards: PATH/train-*.tar and test-*.tar of <key>.jpg|png + <key>.cls", "wds:load", kind="path", detect="wds:detect"))
register(DatasetEntry("parquet", "parquet shards of image bytes and labels as the Hub publishes them: PATH/[data/]train-*.parquet", "parquet:load", kind="path", detect="parquet:detect"))
register(DatasetEntry("synthetic", "seeded class-dependent images made on the spot: synthetic:classes=10,size=32,train=100,test=20,seed=0", "synthetic:load", kind="spec"))
