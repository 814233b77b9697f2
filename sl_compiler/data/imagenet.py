"""ImageNet-1K (ILSVRC2012) in the layouts it is distributed in, read in place, never unpacked.

Training split, the first found in the root:

- ``train/<wnid>/*.JPEG`` (an ImageFolder);
- ``ILSVRC2012_img_train.tar``, the official tar of per-class tars, indexed through once
  (``files.scan_nested_tar``, cached): each image is then one read at an offset of the outer tar;
- Kaggle's ``ILSVRC/Data/CLS-LOC/train/<wnid>/``;
- an ImageFolder tar (``*train*.tar`` of ``<wnid>/<image>``).

Test split: ILSVRC's labelled validation set. Its *test* set carries no labels, so ``val`` comes
first and a ``test/`` of loose images is skipped (noted in ``meta["skipped"]``):

- ``val/<wnid>/*.JPEG`` (an ImageFolder);
- a flat ``val/ILSVRC2012_val_NNNNNNNN.JPEG`` or the official ``ILSVRC2012_img_val.tar``, labelled by
  the devkit: ``ILSVRC2012_validation_ground_truth.txt`` (a class id per image) and ``meta.mat``
  (class id -> wnid; read by ``matfile``, no scipy needed), found in ``ILSVRC2012_devkit_t12/data/``,
  in ``ILSVRC2012_devkit_t12.tar.gz`` (read in place) or loose in the root. ILSVRC2015's
  ``map_clsloc.txt`` (``wnid id name``, the same ids) may stand in for ``meta.mat``; Kaggle's
  ``LOC_val_solution.csv`` may stand in for both;
- Kaggle's flat ``ILSVRC/Data/CLS-LOC/val/`` with ``LOC_val_solution.csv``.

WebDataset and parquet shards in the root are found before any of these (``load_dataset``).
Classes are the sorted wnids (torchvision's order): the training class folders (or inner tars),
else the devkit's 1000 leaf synsets, else ``LOC_synset_mapping.txt``'s. Readable names (the
devkit's ``words``, else the mapping's) go to ``meta["class_names"]``. Images are decoded as
torchvision's evaluation transform does: resize 256, centre crop 224.
"""

from __future__ import annotations

import csv
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import cache, imagefolder, matfile
from .base import FileSource, ImageSet
from .encoded import image_set
from .files import FolderReader, Names, Suffixes, TarReader, image_ext, scan_nested_tar, scan_tar
from .preprocess import ratio_resize
from .stats import IMAGENET

TRAIN_TAR, VAL_TAR = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
KAGGLE = Path("ILSVRC") / "Data" / "CLS-LOC"
KAGGLE_VAL, KAGGLE_MAPPING = "LOC_val_solution.csv", "LOC_synset_mapping.txt"
VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.[A-Za-z]+$")
WNID = re.compile(r"^n\d{8}$")
CROP_FRACTION = 0.875
EXPECTED = "expected ImageNet as train/<wnid>/ and val/ folders, ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar with the devkit, or Kaggle's ILSVRC/Data/CLS-LOC/ with LOC_val_solution.csv"
NEED_LABELS = f"add the devkit ({DEVKIT}.tar.gz, or its data/{GROUND_TRUTH} and data/meta.mat) or Kaggle's {KAGGLE_VAL} to the root, or arrange val/ in <wnid>/ folders"


# ------------------------------------------------------------------------------ labels and names


@dataclass
class Labels:
    """What labels a flat val set: ``wnid_of(file name) -> wnid`` and where that comes from."""

    source: str
    ground_truth: list[int] | None = None  # devkit: class id of image n at [n - 1]
    id_to_wnid: dict[int, str] | None = None
    solution: dict[str, str] | None = None  # Kaggle: image stem -> wnid

    def wnid_of(self, name: str) -> str:
        base = re.split(r"[/:]", name)[-1]
        if self.solution is not None:
            wnid = self.solution.get(base.rsplit(".", 1)[0])
            if wnid is None:
                raise DataError(f"val image {name} is missing from {self.source}", "use the solution file of this val set, or remove the image")
            return wnid
        m = VAL_NAME.match(base)
        if m is None:
            raise DataError(f"val image {name} is not named ILSVRC2012_val_NNNNNNNN.JPEG, so {self.source} cannot label it", "remove it, or arrange val/ in <wnid>/ folders")
        n = int(m.group(1))
        if not 1 <= n <= len(self.ground_truth):
            raise DataError(f"val image {name} is missing from the ground-truth file {self.source} ({len(self.ground_truth)} lines)", "use the ground truth of this val set, or remove the image")
        cid = self.ground_truth[n - 1]
        if cid not in self.id_to_wnid:
            raise DataError(f"ground-truth line {n} ({name}) names class id {cid}, which the devkit's synsets do not define", "use the meta.mat (or map_clsloc.txt) that belongs to this ground truth")
        return self.id_to_wnid[cid]


@dataclass
class Devkit:
    """The parts of the devkit slc reads: the ground truth, class id -> wnid, wnid -> words, the leaf wnids."""

    where: str
    ground_truth: list[int] | None = None
    id_to_wnid: dict[int, str] = field(default_factory=dict)
    words: dict[str, str] = field(default_factory=dict)
    leaves: list[str] = field(default_factory=list)


def devkit_files(root: Path) -> tuple[dict[str, bytes], str]:
    """``{ground_truth, meta, map}`` bytes found in the devkit folder, its tar(.gz) or loose in the root."""
    wanted = {GROUND_TRUTH: "ground_truth", "meta.mat": "meta", "map_clsloc.txt": "map"}
    for folder in (root / DEVKIT / "data", root / DEVKIT, root / "devkit" / "data"):
        found = {key: (folder / name).read_bytes() for name, key in wanted.items() if (folder / name).is_file()}
        if found:
            return found, str(folder)
    for name in (f"{DEVKIT}.tar.gz", f"{DEVKIT}.tgz", f"{DEVKIT}.tar"):
        path = root / name
        if path.is_file():
            try:
                with tarfile.open(path) as tf:
                    found = {}
                    for member in tf:
                        base = member.name.rsplit("/", 1)[-1]
                        if member.isreg() and base in wanted and member.name.rsplit("/", 2)[-2:][0] == "data":
                            found[wanted[base]] = tf.extractfile(member).read()
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DataError(f"cannot read the devkit {path} ({exc})", "replace it with a complete copy") from None
            if found:
                return found, str(path)
    found = {key: (root / name).read_bytes() for name, key in wanted.items() if (root / name).is_file()}
    return found, str(root)


def read_devkit(root: Path) -> Devkit | None:
    files, where = devkit_files(root)
    if not files:
        return None
    kit = Devkit(where)
    if "meta" in files:
        synsets = matfile.read(files["meta"], f"{where}/meta.mat").get("synsets")
        if not isinstance(synsets, list) or not synsets or not isinstance(synsets[0], dict) or not {"ILSVRC2012_ID", "WNID"} <= set(synsets[0]):
            raise DataError(f"{where}/meta.mat holds no 'synsets' struct with ILSVRC2012_ID and WNID", "use the devkit's data/meta.mat as distributed")
        for s in synsets:
            cid, wnid = _scalar(s["ILSVRC2012_ID"]), str(s["WNID"])
            kit.id_to_wnid[cid] = wnid
            kit.words[wnid] = str(s.get("words", wnid))
            if _scalar(s.get("num_children", 0)) == 0:  # the 1000 classes are the leaves; the rest are their ancestors
                kit.leaves.append(wnid)
    elif "map" in files:
        for n, line in enumerate(files["map"].decode().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2 or not WNID.match(parts[0]) or not parts[1].isdigit():
                raise DataError(f"{where}/map_clsloc.txt:{n}: expected 'wnid id name', got {line[:60]!r}", "restore the file from the devkit")
            kit.id_to_wnid[int(parts[1])] = parts[0]
            kit.words[parts[0]] = " ".join(parts[2:]).replace("_", " ") or parts[0]
            kit.leaves.append(parts[0])
    if "ground_truth" in files:
        kit.ground_truth = []
        for n, line in enumerate(files["ground_truth"].decode().splitlines(), 1):
            if not line.strip():
                continue
            if not line.strip().isdigit():
                raise DataError(f"{where}/{GROUND_TRUTH}:{n} holds {line[:40]!r}, not a class id", "restore the file from the devkit")
            kit.ground_truth.append(int(line))
    return kit


def _scalar(value) -> int:
    """A MATLAB 1x1 number as an int (0 when empty)."""
    arr = np.asarray(value).ravel()
    return int(arr[0]) if arr.size else 0


def kaggle_file(root: Path, name: str) -> Path | None:
    return root / name if (root / name).is_file() else None


def read_solution(path: Path) -> dict[str, str]:
    """Kaggle's ``LOC_val_solution.csv``: image id -> the wnid of its first box."""
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if n == 1 and row and row[0] == "ImageId":
                continue
            if len(row) < 2 or not row[1].split() or not WNID.match(row[1].split()[0]):
                raise DataError(f"{path}:{n}: expected 'ImageId,wnid x y x y ...', got {','.join(row)[:60]!r}", "restore the file from Kaggle's ImageNet download")
            out[row[0]] = row[1].split()[0]
    return out


def read_mapping(path: Path) -> dict[str, str]:
    """``LOC_synset_mapping.txt``: wnid -> readable names, in file order."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        wnid, _, words = line.strip().partition(" ")
        if WNID.match(wnid):
            out[wnid] = words.strip() or wnid
    return out


def flat_labels(root: Path, kit: Devkit | None) -> Labels | None:
    """What labels a flat val set in ``root``: the devkit's ground truth, else Kaggle's solution file."""
    if kit is not None and kit.ground_truth is not None:
        if not kit.id_to_wnid:
            raise DataError(f"{kit.where} has {GROUND_TRUTH} but no meta.mat or map_clsloc.txt to map its class ids to wnids", "add the devkit's data/meta.mat")
        return Labels(f"{kit.where}/{GROUND_TRUTH}", ground_truth=kit.ground_truth, id_to_wnid=kit.id_to_wnid)
    solution = kaggle_file(root, KAGGLE_VAL)
    if solution is not None:
        return Labels(str(solution), solution=read_solution(solution))
    return None


# ------------------------------------------------------------------------------ where the splits are


def find_train(root: Path) -> tuple[str, Path] | None:
    """``(kind, path)`` of the training split: folder, ilsvrc-tar, kaggle or tar."""
    if (root / "train").is_dir() and imagefolder.has_class_folders(root / "train"):
        return ("folder", root / "train")
    if (root / TRAIN_TAR).is_file():
        return ("ilsvrc-tar", root / TRAIN_TAR)
    if (root / KAGGLE / "train").is_dir():
        return ("kaggle", root / KAGGLE / "train")
    tars = [p for p in root.glob("*.tar") if "train" in p.name.lower() and p.name != TRAIN_TAR]
    if len(tars) == 1:
        return ("tar", tars[0])
    return None


def find_val(root: Path, skipped: list[str]) -> tuple[str, Path] | None:
    """``(kind, path)`` of the labelled validation split: folder, flat, val-tar, kaggle or tar."""
    if (root / "val").is_dir():
        return ("folder" if imagefolder.has_class_folders(root / "val") else "flat", root / "val")
    if (root / KAGGLE / "val").is_dir():
        return ("kaggle", root / KAGGLE / "val")
    if (root / VAL_TAR).is_file():
        return ("val-tar", root / VAL_TAR)
    for name in ("validation", "test"):
        if (root / name).is_dir():
            if imagefolder.has_class_folders(root / name):
                return ("folder", root / name)
            skipped.append(f"{name}/ holds images without class folders (ILSVRC's test set is unlabelled)")
    tars = [p for p in root.glob("*.tar") if any(w in p.name.lower() for w in ("val", "test")) and p.name != VAL_TAR]
    if len(tars) == 1:
        return ("tar", tars[0])
    return None


def detect(root: Path) -> str | None:
    """``ImageNet (train: ..., val: ...)`` from what the root holds, without listing it."""
    if not root.is_dir():
        return None
    train, val = find_train(root), find_val(root, [])
    if train is None and val is None:
        return None
    kinds = {"folder": "class folders", "ilsvrc-tar": TRAIN_TAR, "kaggle": "Kaggle CLS-LOC", "tar": "ImageFolder tar", "flat": "flat val/", "val-tar": VAL_TAR}
    parts = [f"train: {kinds[train[0]] if train else 'none'}", f"val: {kinds[val[0]] if val else 'none'}"]
    if val and val[0] in ("flat", "val-tar", "kaggle"):
        kit = devkit_files(root)[0]
        parts[-1] += " + devkit" if "ground_truth" in kit else f" + {KAGGLE_VAL}" if kaggle_file(root, KAGGLE_VAL) else " (no labels found)"
    return f"ImageNet ({'; '.join(parts)})"


# ------------------------------------------------------------------------------ listings


@dataclass
class Split:
    ids: Names
    wnids: list[str]  # per image, or per class when ``targets`` is given
    source_read: object
    signature: object
    layout: str
    path: Path
    targets: torch.Tensor | None = None  # indices into ``wnids`` (a class list) when set


def list_train(root: Path, kind: str, path: Path) -> Split:
    if kind in ("folder", "kaggle"):
        listing = imagefolder.list_folder(root, path)
        return Split(listing.source.ids, listing.classes, listing.source.read, listing.signature, "Kaggle CLS-LOC" if kind == "kaggle" else "folder", path, listing.targets)
    if kind == "ilsvrc-tar":
        entry = cache.entry_path(f"imagenet-train-{path.name}", kind="imagenet-train-listing", source=cache.file_signature(path))
        hit = cache.load(entry)
        if hit is not None:  # the sorted listing itself, so that a second load runs no loop over 1.28M names
            t, meta = hit
            ids = Names.from_tensor(t["names"])
            reader = TarReader([path], np.zeros(len(ids), dtype=np.int32), t["offsets"].numpy(), t["sizes"].numpy())
            return Split(ids, meta["classes"], reader.read, cache.file_signature(path), TRAIN_TAR, path, t["targets"])
        index = scan_nested_tar(path)
        rows = []
        for pos, name in enumerate(index.names):
            inner, _, member = name.partition("/")
            if inner.lower().endswith(".tar") and member and "/" not in member and image_ext(member) and not member.startswith("."):
                rows.append((name, pos))
        if not rows:
            raise DataError(f"{path} holds no <wnid>.tar of images", "use ILSVRC2012_img_train.tar as distributed (a tar of 1000 per-class tars)")
        rows.sort()
        pos = np.asarray([r[1] for r in rows], dtype=np.int64)
        ids = Names(r[0] for r in rows)
        classes = sorted({r[0].split(".tar/", 1)[0] for r in rows})
        lookup = {c: k for k, c in enumerate(classes)}
        targets = torch.tensor([lookup[r[0].split(".tar/", 1)[0]] for r in rows], dtype=torch.int64)
        reader = TarReader([path], np.zeros(len(pos), dtype=np.int32), index.offsets[pos], index.sizes[pos])
        cache.save(entry, {"names": ids.tensor(), "offsets": torch.from_numpy(reader.offsets), "sizes": torch.from_numpy(reader.sizes), "targets": targets}, {"classes": classes})
        return Split(ids, classes, reader.read, cache.file_signature(path), TRAIN_TAR, path, targets)
    listing = imagefolder.list_tar(path, "train", prefix_required=False)
    return Split(listing.source.ids, listing.classes, listing.source.read, listing.signature, "tar", path, listing.targets)


def train_classes(root: Path, kind: str, path: Path) -> list[str]:
    """The sorted wnids of the training split, cheaply (folder names, or the outer tar's members)."""
    if kind in ("folder", "kaggle"):
        return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    if kind == "ilsvrc-tar":
        return sorted({n[: -len(".tar")] for n in scan_tar(path).names if n.lower().endswith(".tar") and "/" not in n})
    return imagefolder.list_tar(path, "train", prefix_required=False).classes


def classes_and_names(root: Path, kit: Devkit | None) -> tuple[list[str], dict[str, str]]:
    """Sorted wnids and their readable names (see the module's docstring for where from)."""
    mapping = read_mapping(root / KAGGLE_MAPPING) if (root / KAGGLE_MAPPING).is_file() else {}
    names = (kit.words if kit and kit.words else None) or mapping
    train = find_train(root)
    if train is not None:
        classes = train_classes(root, *train)
    elif kit is not None and kit.leaves:
        classes = sorted(kit.leaves)
    elif mapping:
        classes = sorted(mapping)
    else:
        raise DataError(f"no ImageNet training split or class list in {root}", EXPECTED)
    if not classes:
        raise DataError(f"the training split of {root} holds no classes", EXPECTED)
    return classes, names


def list_val(root: Path, kind: str, path: Path, classes: list[str], kit: Devkit | None) -> Split:
    lookup = {c: k for k, c in enumerate(classes)}
    if kind == "folder":
        listing = imagefolder.list_folder(root, path)
        extra = [c for c in listing.classes if c not in lookup]
        if extra:
            raise DataError(f"{path / extra[0]}/ is not a training class ({len(classes)} class folders)", "give train/ a folder for every class in val/, or remove that val folder")
        remap = torch.tensor([lookup[c] for c in listing.classes], dtype=torch.int64)
        return Split(listing.source.ids, classes, listing.source.read, listing.signature, "folder", path, remap[listing.targets])
    if kind == "tar":  # an ImageFolder tar of <wnid>/<image>
        listing = imagefolder.list_tar(path, "test", prefix_required=False, test_splits=("val", "validation", "test"))
        extra = [c for c in listing.classes if c not in lookup]
        if extra:
            raise DataError(f"{path}: class folder {extra[0]}/ is not a training class ({len(classes)} classes)", "give train every class of the val set, or rebuild the tar without it")
        remap = torch.tensor([lookup[c] for c in listing.classes], dtype=torch.int64)
        return Split(listing.source.ids, classes, listing.source.read, listing.signature, "tar", path, remap[listing.targets])
    labels = flat_labels(root, kit)
    if kind == "kaggle" and (labels is None or labels.solution is None) and kaggle_file(root, KAGGLE_VAL):
        labels = Labels(str(root / KAGGLE_VAL), solution=read_solution(root / KAGGLE_VAL))
    if labels is None:
        raise DataError(f"{path} holds val images without class folders, and no labels for them", NEED_LABELS)
    if kind == "val-tar":
        index = scan_tar(path)
        rows = sorted((n, pos) for pos, n in enumerate(index.names) if image_ext(n) and len(imagefolder.member_parts(n)) == 1 and not n.startswith("."))
        if not rows:
            raise DataError(f"{path} holds no images at its top level", f"use {VAL_TAR} as distributed (50,000 flat JPEGs)")
        pos = np.asarray([r[1] for r in rows], dtype=np.int64)
        ids = Names(r[0] for r in rows)
        read = TarReader([path], np.zeros(len(pos), dtype=np.int32), index.offsets[pos], index.sizes[pos]).read
        signature, layout = cache.file_signature(path), f"{path.name} + {Path(labels.source).name}"
        names = [f"{path.name}:{n}" for n in ids]
    else:
        rel = Path(os.path.relpath(path, root)).as_posix()
        files = sorted(e.name for e in os.scandir(path) if e.is_file() and image_ext(e.name) and not e.name.startswith("."))
        if not files:
            raise DataError(f"{path} holds no images", EXPECTED)
        ids = Names(f"{rel}/{f}" for f in files)
        read = FolderReader(root, ids).read
        signature = _folder_signature(root, ids)
        layout = f"flat {rel}/ + {Path(labels.source).name}"
        names = list(ids)
    targets = []
    for name in names:
        wnid = labels.wnid_of(name)
        if wnid not in lookup:
            raise DataError(
                f"val image {name} is labelled {wnid} by {Path(labels.source).name}, which is not among the {len(classes)} training classes",
                "give train/ every class of the val set, or remove that class's val images",
            )
        targets.append(lookup[wnid])
    return Split(ids, classes, read, signature, layout, path, torch.tensor(targets, dtype=torch.int64))


def _folder_signature(root: Path, ids: Names):
    def signature() -> list:
        return [str(root.resolve()), [(i, *imagefolder._size_mtime(root / i)) for i in ids]]

    return signature


# ------------------------------------------------------------------------------ the loader


def load(
    root: str | Path,
    split: str,
    resolution: int | None = None,
    resize: int | None = None,
    channels: int | None = None,
    in_memory: bool | None = None,
) -> ImageSet:
    """One split of ImageNet in any layout above; ``resolution`` (224) and ``resize`` (resolution / 0.875) set the decode."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"ImageNet root {root} is not a folder", EXPECTED)
    resolution = resolution or 224
    resize = resize or ratio_resize(resolution, CROP_FRACTION)
    kit = read_devkit(root)
    classes, names = classes_and_names(root, kit)
    skipped: list[str] = []
    if split == "train":
        found = find_train(root)
        if found is None:
            raise DataError(f"no ImageNet training split in {root}", EXPECTED)
        listing = list_train(root, *found)
    else:
        found = find_val(root, skipped)
        if found is None:
            raise DataError(f"no labelled ImageNet val split in {root}" + (f" ({'; '.join(skipped)})" if skipped else ""), EXPECTED)
        listing = list_val(root, *found, classes, kit)
    if listing.wnids != classes:  # a training listing names its own classes: they must be the ones found cheaply
        raise DataError(f"{listing.path}: its classes differ from the class folders of {root}", "reload after the dataset stopped changing")
    return image_set(
        name="imagenet",
        split=split,
        classes=classes,
        targets=listing.targets,
        source=FileSource(ids=listing.ids, exts=Suffixes(listing.ids), read=listing.source_read),
        signature=listing.signature,
        shape=(channels or 3, resolution, resolution),
        stats=IMAGENET,
        meta={
            "loader": "imagenet",
            "root": str(root),
            "layout": listing.layout,
            "path": str(listing.path),
            **({"class_names": [names.get(c, c) for c in classes]} if names else {}),
            **({"skipped": skipped} if skipped else {}),
        },
        in_memory=in_memory,
        resize=resize,
    )
