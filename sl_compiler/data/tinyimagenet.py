"""TinyImageNet as distributed (``tiny-imagenet-200/``): 200 classes of 64x64 JPEGs.

``train/<wnid>/images/*.JPEG`` is the training split; the labelled ``val/`` split is the test
split, since the official test images carry no labels: as distributed (``val/images/`` with
``val/val_annotations.txt``) or re-arranged into per-class folders (``val/<wnid>/images/*.JPEG``
or ``val/<wnid>/*.JPEG``). Classes are the sorted wnids of ``wnids.txt`` (the order an
ImageFolder of the same data gives); ``words.txt``, when present, adds readable names to
``meta``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..errors import DataError
from .base import FileSource, ImageSet
from .encoded import image_set
from .files import FolderReader, Names, Suffixes, image_ext
from .stats import NORMALIZATION

EXPECTED = "expected TinyImageNet as distributed: wnids.txt, train/<wnid>/images/*.JPEG, val/images/ and val/val_annotations.txt (or val/<wnid>/ folders)"


def find_root(root: Path) -> Path:
    for candidate in (root, root / "tiny-imagenet-200"):
        if (candidate / "train").is_dir() or (candidate / "wnids.txt").is_file():
            return candidate
    raise DataError(f"no TinyImageNet in {root}", EXPECTED)


def read_classes(root: Path) -> list[str]:
    if (root / "wnids.txt").is_file():
        wnids = sorted({line.strip() for line in (root / "wnids.txt").read_text().splitlines() if line.strip()})
    elif (root / "train").is_dir():
        wnids = sorted(e.name for e in os.scandir(root / "train") if e.is_dir() and not e.name.startswith("."))
    else:
        wnids = []
    if not wnids:
        raise DataError(f"no classes in {root} (wnids.txt missing or empty, no train/ folders)", EXPECTED)
    return wnids


def read_words(root: Path, wnids: list[str]) -> list[str] | None:
    """Readable class names from words.txt (``wnid<TAB>names``), if it is there."""
    if not (root / "words.txt").is_file():
        return None
    words = dict(line.split("\t", 1) for line in (root / "words.txt").read_text().splitlines() if "\t" in line)
    return [words.get(w, w).strip() for w in wnids]


def list_train(root: Path, wnids: list[str]) -> list[tuple[str, int]]:
    rows = []
    for k, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            folder = root / "train" / wnid
        if not folder.is_dir():
            raise DataError(f"missing class folder {folder}", EXPECTED)
        files = sorted(fn for fn in os.listdir(folder) if image_ext(fn) and not fn.startswith("."))
        if not files:
            raise DataError(f"class folder {folder} holds no images", "restore its JPEGs from the TinyImageNet archive")
        rows += [(Path(os.path.relpath(folder / fn, root)).as_posix(), k) for fn in files]
    return rows


def list_val(root: Path, wnids: list[str]) -> list[tuple[str, int]]:
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        if (root / "val").is_dir() and any(e.is_dir() and e.name in set(wnids) for e in os.scandir(root / "val")):
            return list_val_folders(root, wnids)
        raise DataError(f"missing {annotations}", "restore val/val_annotations.txt from the TinyImageNet archive (it holds the val labels), or arrange val/ in per-class folders")
    lookup = {w: k for k, w in enumerate(wnids)}
    rows = []
    for n, line in enumerate(annotations.read_text().splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in lookup:
            raise DataError(f"{annotations}:{n}: expected 'file<TAB>wnid' with a known wnid, got {line[:60]!r}", "restore the file from the TinyImageNet archive")
        if not (root / "val" / "images" / fields[0]).is_file():
            raise DataError(f"{annotations}:{n} names {fields[0]}, missing from {root / 'val' / 'images'}", "restore val/images/ from the TinyImageNet archive")
        rows.append((f"val/images/{fields[0]}", lookup[fields[1]]))
    if not rows:
        raise DataError(f"{annotations} lists no images", "restore the file from the TinyImageNet archive")
    return rows


def list_val_folders(root: Path, wnids: list[str]) -> list[tuple[str, int]]:
    """``val/<wnid>/images/*.JPEG`` (or ``val/<wnid>/*.JPEG``): a val split re-arranged by class."""
    lookup = {w: k for k, w in enumerate(wnids)}
    folders = sorted(e.name for e in os.scandir(root / "val") if e.is_dir() and not e.name.startswith(".") and e.name != "images")
    unknown = [f for f in folders if f not in lookup]
    if unknown:
        raise DataError(f"val/{unknown[0]}/ is not one of the {len(wnids)} classes of wnids.txt", "give val/ one folder per training class (its wnid)")
    rows = []
    for wnid in folders:
        folder = root / "val" / wnid / "images"
        folder = folder if folder.is_dir() else root / "val" / wnid
        files = sorted(fn for fn in os.listdir(folder) if image_ext(fn) and not fn.startswith("."))
        rows += [(Path(os.path.relpath(folder / fn, root)).as_posix(), lookup[wnid]) for fn in files]
    if not rows:
        raise DataError(f"the class folders of {root / 'val'} hold no images", EXPECTED)
    return rows


def detect(root: Path) -> str | None:
    try:
        root = find_root(root)
    except DataError:
        return None
    val = "val_annotations.txt" if (root / "val" / "val_annotations.txt").is_file() else "per-class val/" if (root / "val").is_dir() else "no val/"
    return f"TinyImageNet ({val})"


def load(root: Path, split: str, resolution: int | None = None, resize: int | None = None, in_memory: bool | None = None) -> ImageSet:
    root = find_root(root)
    wnids = read_classes(root)
    rows = list_train(root, wnids) if split == "train" else list_val(root, wnids)
    ids = Names(r[0] for r in rows)

    def signature() -> str:  # only when decoded into memory
        stats = [os.stat(root / i) for i in ids]
        return hashlib.sha256(json.dumps([str(root.resolve()), [(s.st_size, s.st_mtime_ns) for s in stats]]).encode()).hexdigest()

    names = read_words(root, wnids)
    size = resolution or 64
    return image_set(
        name="tinyimagenet",
        split=split,
        classes=wnids,
        targets=torch.tensor([r[1] for r in rows], dtype=torch.int64),
        source=FileSource(ids=ids, exts=Suffixes(ids), read=FolderReader(root, ids).read),
        signature=signature,
        shape=(3, size, size),
        stats=NORMALIZATION["tinyimagenet"],
        meta={"loader": "tinyimagenet", "root": str(root), "layout": "folder", **({"class_names": names} if names else {})},
        in_memory=in_memory,
        resize=resize,
    )
