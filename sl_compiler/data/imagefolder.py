"""ImageFolder: ``<split>/<class>/<image>``, from a folder or straight from tars, never extracted.

A root is one of: a folder with ``train/`` and ``test/`` (or ``val/``); a folder with
``*train*.tar`` and ``*test*.tar`` (or ``*val*.tar``) whose members are ``<split>/<class>/<image>``
or ``<class>/<image>`` (the layout of the shared CIFAR-10); or one tar holding ``train/`` and
``test/``. Classes are the sorted class folder names; images are in sorted path order, so a
folder and a tar of the same files give the same dataset. Sample ids are the paths below the
root (``train/cat/0001.jpg``). The test split takes its classes, image shape and normalisation
from the training split. A test folder of images without class folders (ILSVRC's unlabelled
test set) is skipped for the next candidate, and the skip is noted in ``meta["skipped"]``.

A folder's listing is cached (``data.cache``), keyed by its folders' modification times, so a
million-file split is listed once; files are stat'ed only when the split is small enough to be
decoded into memory, whose cache must notice a changed file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..progress import bar
from . import cache
from .base import FileSource, ImageSet
from .encoded import image_set, probe_shape
from .files import FolderReader, Names, Suffixes, TarReader, image_ext, scan_tar
from .stats import NORMALIZATION

TEST_SPLITS = ("test", "val", "validation")
EXPECTED = "an ImageFolder root holds train/<class>/<image> and test/ (or val/), as folders, as *train*.tar and *test*.tar, or as one tar"


@dataclass
class Listing:
    """The files of one split before decoding: what ``encoded.image_set`` needs."""

    classes: list[str]
    targets: torch.Tensor
    source: FileSource
    signature: object  # JSON-able, or a callable returning it (called only to key a decoded cache)
    meta: dict
    skipped: list[str] = field(default_factory=list)


def split_names(split: str, test_splits: tuple[str, ...] = TEST_SPLITS) -> tuple[str, ...]:
    return ("train",) if split == "train" else tuple(test_splits)


def load(
    root: str | Path,
    split: str,
    dataset_name: str | None = None,
    resolution: int | None = None,
    resize: int | None = None,
    channels: int | None = None,
    in_memory: bool | None = None,
    stats: tuple | None = None,
    test_splits: tuple[str, ...] = TEST_SPLITS,
) -> ImageSet:
    """One split of an ImageFolder root (folder, folder of tars, or a tar).

    ``dataset_name`` (e.g. ``cifar10``) names the set and picks its standard normalisation
    (``stats`` overrides it). ``resolution``/``channels`` default to the first training image's;
    ``resize`` (the short side before the centre crop) to the resolution; ``in_memory`` to
    "decoded size under 4 GB".
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"ImageFolder root {root} does not exist", EXPECTED)
    name = dataset_name or f"imagefolder:{root.name}"
    listing = list_split(root, split, test_splits)
    if split == "train":
        classes, stats = listing.classes, stats or NORMALIZATION.get(dataset_name or "")
        shape = probe_shape(listing.source, resolution, channels)
    else:
        train = load(root, "train", dataset_name, resolution, resize, channels, in_memory, stats, test_splits)
        if listing.classes != train.classes:
            missing, extra = sorted(set(train.classes) - set(listing.classes)), sorted(set(listing.classes) - set(train.classes))
            raise DataError(
                f"{listing.meta['path']}: test classes differ from train's (missing {missing[:5]}, extra {extra[:5]})",
                "give test/ (or val/) one folder per training class",
            )
        classes, stats, shape, resize = train.classes, (train.mean, train.std), train.shape, train.resize
    return image_set(
        name=name,
        split=split,
        classes=classes,
        targets=listing.targets,
        source=listing.source,
        signature=listing.signature,
        shape=shape,
        stats=stats,
        meta={"loader": "imagefolder", "root": str(root), **listing.meta, **({"skipped": listing.skipped} if listing.skipped else {})},
        in_memory=in_memory,
        resize=resize,
    )


def list_split(root: Path, split: str, test_splits: tuple[str, ...] = TEST_SPLITS) -> Listing:
    """List the images of a split under ``root``: a folder first, then a split-named tar."""
    skipped: list[str] = []
    found = locate(root, split, test_splits, skipped)
    if found is None:
        names = " or ".join(f"{d}/" for d in split_names(split, test_splits))
        raise DataError(f"no {names} folder or *{split}*.tar in {root}" + (f" ({'; '.join(skipped)})" if skipped else ""), EXPECTED)
    kind, path = found
    listing = list_folder(root, path) if kind == "folder" else list_tar(path, split, prefix_required=path == root, test_splits=test_splits)
    listing.skipped = skipped
    return listing


def has_class_folders(folder: Path) -> bool:
    """Whether ``folder`` holds sub-folders (classes), not only loose images (an unlabelled set)."""
    with os.scandir(folder) as entries:
        return any(e.is_dir() and not e.name.startswith(".") for e in entries)


def locate(root: Path, split: str, test_splits: tuple[str, ...] = TEST_SPLITS, skipped: list[str] | None = None) -> tuple[str, Path] | None:
    """``("folder", dir)`` or ``("tar", file)`` holding ``split`` under ``root``, None if absent.

    A candidate folder with images but no class folders is unlabelled: it is passed over, with a
    note appended to ``skipped``.
    """
    if root.is_file():
        return ("tar", root)
    for d in split_names(split, test_splits):
        if (root / d).is_dir():
            if has_class_folders(root / d):
                return ("folder", root / d)
            if skipped is not None:
                skipped.append(f"{d}/ holds images without class folders (unlabelled, like ILSVRC's test set)")
    for word in split_names(split, test_splits):
        tars = sorted(p for p in root.glob("*.tar") if word in p.name.lower())
        if len(tars) > 1:
            raise DataError(f"several {word} tars in {root}: {', '.join(p.name for p in tars)}", "keep one tar per split in the root")
        if tars:
            return ("tar", tars[0])
    return None


def detect(root: Path) -> str | None:
    """``folders``/``tars``/``one tar`` when ``root`` looks like an ImageFolder root, else None."""
    if root.is_file():
        return "ImageFolder (one tar)" if root.suffix == ".tar" else None
    if not root.is_dir():
        return None
    try:
        found = locate(root, "train")
    except DataError:
        return None
    if found is None:
        return None
    test = locate(root, "test")
    parts = [f"{found[1].name}{'/' if found[0] == 'folder' else ''}"] + ([f"{test[1].name}{'/' if test[0] == 'folder' else ''}"] if test else [])
    return f"ImageFolder ({', '.join(parts)})"


def list_folder(root: Path, split_dir: Path) -> Listing:
    """``split_dir/<class>/**/<image>``; hidden entries and linked folders are skipped."""
    ids, targets, classes = folder_index(root, split_dir)

    def signature() -> str:  # every file's size and mtime: only when the split is decoded into memory
        rows = [(i, *_size_mtime(root / i)) for i in ids]
        return hashlib.sha256(json.dumps([str(root.resolve()), rows]).encode()).hexdigest()

    return Listing(
        classes=classes,
        targets=targets,
        source=FileSource(ids=ids, exts=Suffixes(ids), read=FolderReader(root, ids).read),
        signature=signature,
        meta={"layout": "folder", "path": str(split_dir)},
    )


def _size_mtime(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def folder_index(root: Path, split_dir: Path, classes: list[str] | None = None) -> tuple[Names, torch.Tensor, list[str]]:
    """(ids, targets, classes) of ``split_dir``'s class folders, cached by every folder's mtime.

    ``classes`` (default: the sorted sub-folders) fixes which folders are read and their order.
    """
    if classes is None:
        classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
        if not classes:
            raise DataError(f"{split_dir} holds no class folders", "put each class's images in its own folder: <split>/<class>/<image>")
    rel = os.path.relpath(split_dir, root)
    rel = "" if rel == "." else Path(rel).as_posix() + "/"
    entry = cache.entry_path(f"folderindex-{split_dir.name}", kind="folderindex", folder=str(split_dir.resolve()), rel=rel, classes=classes)
    hit = cache.load(entry)
    if hit is not None and _unchanged(hit[1].get("dirs", [])):
        return Names.from_tensor(hit[0]["names"]), hit[0]["targets"], classes
    rows, dirs = [], []
    for k, cls in enumerate(bar(len(classes), f"list {split_dir}", unit="class", iterable=classes)):
        before = len(rows)
        rows += ((i, k) for i in walk_images(split_dir / cls, f"{rel}{cls}", dirs))
        if len(rows) == before:
            raise DataError(f"class folder {split_dir / cls} holds no images", "add .jpg/.png images to it or remove it")
    rows.sort()
    ids = Names(r[0] for r in rows)
    targets = torch.tensor([r[1] for r in rows], dtype=torch.int64)
    cache.save(entry, {"names": ids.tensor(), "targets": targets}, {"dirs": dirs})
    return ids, targets, classes


def _unchanged(dirs: list) -> bool:
    """Whether every folder of a cached listing still has its recorded mtime (so its entries are the same)."""
    try:
        return bool(dirs) and all(os.stat(d).st_mtime_ns == m for d, m in dirs)
    except OSError:
        return False


def walk_images(folder: Path | str, rel: str, dirs: list | None = None):
    """Ids of every image below ``folder`` (no stat per file); visited folders and their mtimes go to ``dirs``."""
    if dirs is not None:
        dirs.append((os.path.abspath(folder), os.stat(folder).st_mtime_ns))
    with os.scandir(folder) as entries:
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):
                yield from walk_images(e.path, f"{rel}/{e.name}", dirs)
            elif image_ext(e.name) and e.is_file():
                yield f"{rel}/{e.name}"


def member_parts(name: str) -> list[str]:
    """``./train/cat/1.jpg`` -> ``[train, cat, 1.jpg]`` (names are validated by ``scan_tar``)."""
    return [p for p in name.split("/") if p not in ("", ".")]


def list_tar(tar: Path, split: str, prefix_required: bool, test_splits: tuple[str, ...] = TEST_SPLITS) -> Listing:
    """Members ``<split>/<class>/<image>`` of ``tar`` (or ``<class>/<image>`` in a tar named for its split)."""
    index = scan_tar(tar)
    names, dirs = [member_parts(n) for n in index.names], [member_parts(d) for d in index.dirs]
    first = {p[0] for p in names + dirs if p}
    prefix = next((d for d in split_names(split, test_splits) if d in first), None)
    if prefix is None and prefix_required:
        raise DataError(f"no {' or '.join(f'{d}/' for d in split_names(split, test_splits))} members in {tar}", EXPECTED)
    depth = 0 if prefix is None else 1
    rows, dir_classes = [], set()
    for pos, (n, parts) in enumerate(zip(index.names, names)):
        hidden = any(p.startswith(".") for p in parts)  # as in a folder: .DS_Store, .thumbs/ and the like
        if len(parts) >= depth + 2 and (prefix is None or parts[0] == prefix) and image_ext(n) and not hidden:
            rows.append(("/".join(parts), pos, parts[depth]))
    for parts in dirs:
        if len(parts) == depth + 1 and (prefix is None or parts[0] == prefix) and not parts[-1].startswith("."):
            dir_classes.add(parts[depth])
    classes = sorted({r[2] for r in rows} | dir_classes)
    where = f"{tar}:{prefix}/" if prefix else str(tar)
    if not classes:
        raise DataError(f"{where} holds no class folders", EXPECTED)
    empty = sorted(set(classes) - {r[2] for r in rows})
    if empty:
        raise DataError(f"class folder {empty[0]}/ in {where} holds no images", "add images to it or rebuild the tar without it")
    rows.sort()
    lookup = {c: k for k, c in enumerate(classes)}
    pos = np.asarray([r[1] for r in rows], dtype=np.int64)
    ids = Names(r[0] for r in rows)
    return Listing(
        classes=classes,
        targets=torch.tensor([lookup[r[2]] for r in rows], dtype=torch.int64),
        source=FileSource(ids=ids, exts=Suffixes(ids), read=TarReader([tar], np.zeros(len(pos), dtype=np.int32), index.offsets[pos], index.sizes[pos]).read),
        signature=cache.file_signature(tar),
        meta={"layout": "tar", "path": str(tar)},
    )
