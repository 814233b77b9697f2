"""WebDataset shards: a folder of ``[prefix-]train-NNNN.tar`` and ``[prefix-]test-NNNN.tar`` (or val/validation).

A sample is the group of members sharing a key (the member name up to the first dot of its
base name, WebDataset's rule): one image (``.jpg``, ``.png``, ...) and its class as ASCII digits
(``.cls``). Class names come from ``classes.txt`` (one a line; a wnid first on a line, as in
``LOC_synset_mapping.txt``, is the class), ``classes.json`` (a list) or ``LOC_synset_mapping.txt``
in the folder, else they are the numbers ``0..K-1``. Shards are read in place, in sorted order, and
their listing is cached. The test split takes its classes, shape and normalisation from the
training split; a candidate test set without ``.cls`` labels (ILSVRC's test) is skipped, noted in
``meta["skipped"]``. ``timm``'s ``imagenet1k-train-NNNN.tar`` / ``imagenet1k-validation-NN.tar``
fit this layout, so ``--dataset imagenet`` finds them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..progress import bar
from . import cache
from .base import FileSource, ImageSet
from .encoded import image_set, probe_shape
from .files import IMAGE_EXTS, Names, Suffixes, TarReader, scan_tar

TEST_SPLITS = ("test", "val", "validation")
KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")
EXPECTED = "a WebDataset folder holds train-*.tar and test-*.tar (or [prefix-]train-NNNN.tar, validation-NNNN.tar) shards of samples <key>.jpg|png + <key>.cls"


def shards_of(root: Path, word: str) -> list[Path]:
    """Shards ``word-*.tar`` or ``<prefix>[-_]word-*.tar`` in ``root``, sorted."""
    pattern = re.compile(rf"^(?:.+[-_])?{re.escape(word)}-[^/]*\.tar$", re.IGNORECASE)
    return sorted(p for p in root.glob("*.tar") if pattern.match(p.name) and p.is_file())


def has_shards(root: Path) -> bool:
    return root.is_dir() and bool(shards_of(root, "train"))


def detect(root: Path) -> str | None:
    if not has_shards(root):
        return None
    counts = [f"{w}: {len(shards_of(root, w))}" for w in ("train", *TEST_SPLITS) if shards_of(root, w)]
    return f"WebDataset shards ({', '.join(counts)})"


def find_shards(root: Path, split: str, test_splits: tuple[str, ...] = TEST_SPLITS, skipped: list[str] | None = None) -> list[Path]:
    for word in ("train",) if split == "train" else test_splits:
        shards = shards_of(root, word)
        if shards and split != "train" and not labelled(shards[0]):
            if skipped is not None:
                skipped.append(f"{word} shards carry no .cls labels (unlabelled, like ILSVRC's test set)")
            continue
        if shards:
            return shards
    names = " or ".join(f"{w}-*.tar" for w in (("train",) if split == "train" else test_splits))
    raise DataError(f"no {names} shards in {root}" + (f" ({'; '.join(skipped)})" if skipped else ""), EXPECTED)


def labelled(shard: Path) -> bool:
    """Whether the shard's samples carry ``.cls`` members (looked up in its cached index)."""
    return any(n.lower().endswith(".cls") for n in scan_tar(shard).names)


def read_classes(root: Path, num_labels: int) -> list[str]:
    for name in ("classes.txt", "LOC_synset_mapping.txt"):
        if (root / name).is_file():
            lines = [line.strip() for line in (root / name).read_text().splitlines() if line.strip()]
            return [line.split()[0] if re.match(r"^n\d{8}\s", line) else line for line in lines]
    if (root / "classes.json").is_file():
        names = json.loads((root / "classes.json").read_text())
        if not isinstance(names, list):
            raise DataError(f"{root / 'classes.json'} is not a list of class names", "write the class names as a JSON list")
        return [str(n) for n in names]
    return [str(k) for k in range(num_labels)]


def list_samples(shards: list[Path]) -> tuple[Names, np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    """Per sample: id (``shard/member``), shard number, offset, size of its image; and its class (cached)."""
    entry = cache.entry_path(f"wdsindex-{shards[0].name}", kind="wdsindex", source=[cache.file_signature(s) for s in shards])
    hit = cache.load(entry)
    if hit is not None:
        t = hit[0]
        return Names.from_tensor(t["names"]), t["file"].numpy(), t["offsets"].numpy(), t["sizes"].numpy(), t["labels"]
    ids, file, offsets, sizes, labels = [], [], [], [], []
    for f, shard in enumerate(bar(len(shards), "list shards", unit="shard", iterable=shards)):
        index = scan_tar(shard)
        samples: dict[str, dict[str, int]] = {}
        for pos, name in enumerate(index.names):
            m = KEY_EXT.match(name)
            if m:
                samples.setdefault(m.group(1), {}).setdefault(m.group(2).lower(), pos)
        reader = TarReader([shard], np.zeros(len(index.names), dtype=np.int32), index.offsets, index.sizes)
        for key, members in samples.items():
            image = next((members[e] for e in members if e in IMAGE_EXTS), None)
            if image is None or "cls" not in members:
                raise DataError(f"sample {key!r} in {shard} lacks {'an image' if image is None else 'a .cls label'}", EXPECTED)
            text = reader.read(members["cls"]).strip()
            if not text.isdigit():
                raise DataError(f"sample {key!r} in {shard}: .cls holds {text[:20]!r}, not a class number", "write the class index as ASCII digits")
            ids.append(f"{shard.name}/{index.names[image]}")
            file.append(f)
            offsets.append(index.offsets[image])
            sizes.append(index.sizes[image])
            labels.append(int(text))
    out = (Names(ids), np.asarray(file, dtype=np.int32), np.asarray(offsets, dtype=np.int64), np.asarray(sizes, dtype=np.int64), torch.tensor(labels, dtype=torch.int64))
    names, f_, o, s, lab = out
    cache.save(entry, {"names": names.tensor(), "file": torch.from_numpy(f_), "offsets": torch.from_numpy(o), "sizes": torch.from_numpy(s), "labels": lab}, {})
    return out


def load(
    root: str | Path,
    split: str,
    resolution: int | None = None,
    resize: int | None = None,
    channels: int | None = None,
    in_memory: bool | None = None,
    dataset_name: str | None = None,
    stats: tuple | None = None,
    test_splits: tuple[str, ...] = TEST_SPLITS,
) -> ImageSet:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"WebDataset folder {root} does not exist", EXPECTED)
    skipped: list[str] = []
    shards = find_shards(root, split, test_splits, skipped)
    ids, file, offsets, sizes, labels = list_samples(shards)
    if not len(ids):
        raise DataError(f"the {split} shards in {root} hold no samples", EXPECTED)
    source = FileSource(ids=ids, exts=Suffixes(ids), read=TarReader(shards, file, offsets, sizes).read)
    if split == "train":
        classes = read_classes(root, int(labels.max()) + 1)
        shape = probe_shape(source, resolution, channels)
    else:
        train = load(root, "train", resolution, resize, channels, in_memory, dataset_name, stats, test_splits)
        classes, stats, shape, resize = train.classes, (train.mean, train.std), train.shape, train.resize
    if int(labels.max()) >= len(classes):
        raise DataError(f"{root}: a .cls label is {int(labels.max())} but there are {len(classes)} class names", "list every class in classes.txt, one a line, in label order")
    return image_set(
        name=dataset_name or f"wds:{root.name}",
        split=split,
        classes=classes,
        targets=labels,
        source=source,
        signature=[cache.file_signature(s) for s in shards],
        shape=shape,
        stats=stats,
        meta={"loader": "wds", "root": str(root), "layout": "webdataset", "shards": [s.name for s in shards], **({"skipped": skipped} if skipped else {})},
        in_memory=in_memory,
        resize=resize,
    )
