"""Parquet shards of image bytes and labels, as the Hugging Face Hub publishes image datasets.

Where: ``PATH/data/<split>-00000-of-00004[-hash].parquet`` (the Hub's repositories),
``PATH/<split>-*.parquet``, or ``PATH/<split>/*.parquet`` (the Hub's parquet conversion). Columns:
the image, a struct ``{bytes, path}`` (the Hub's ``Image`` feature) or plain binary (``image``,
``img`` or the only such column), and the class, an integer (``label``, ``labels``,
``fine_label``). Class names: ``classes.txt`` or ``LOC_synset_mapping.txt`` in the folder (one a
line; a leading wnid is the class), else the ``ClassLabel`` names in the Hub's schema metadata,
else ``0..K-1``. A split whose labels are all -1 (the Hub's ImageNet test) is unlabelled and
skipped for the next candidate, noted in ``meta["skipped"]``.

Read in place, by row group: a reader opens its files in the process that reads (DataLoader
workers open their own) and keeps the one row group it last read, so memory stays at a row group
per process whatever the dataset's size, and a batch of consecutive indices costs one read. Random
access reads a whole row group per image (the Hub's image sets use about 100 rows a group).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import cache
from .base import FileSource, ImageSet
from .encoded import image_set, probe_shape
from .files import Names, sniff_ext

TEST_SPLITS = ("test", "validation", "val")
IMAGE_COLUMNS = ("image", "img", "jpg", "png")
LABEL_COLUMNS = ("label", "labels", "fine_label", "cls", "class")
EXPECTED = "a parquet dataset holds [data/]train-*.parquet (and test-/validation-) shards with an image column ({bytes, path} or binary) and an integer label column"


def _pq():
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise DataError("reading parquet needs pyarrow", "pip install pyarrow") from None
    return pq


def split_files(root: Path, word: str) -> list[Path]:
    """The parquet shards of split ``word`` under ``root``, sorted."""
    pattern = re.compile(rf"^{re.escape(word)}([-_.].*)?\.parquet$", re.IGNORECASE)
    for folder in (root / "data", root):
        if folder.is_dir():
            found = sorted(p for p in folder.glob("*.parquet") if pattern.match(p.name) and p.is_file())
            if found:
                return found
    if (root / word).is_dir():
        return sorted(p for p in (root / word).glob("*.parquet") if p.is_file())
    return []


def shard_folder(root: Path) -> Path | None:
    """``root`` when it holds training parquet shards, else None."""
    return root if root.is_dir() and split_files(root, "train") else None


def detect(root: Path) -> str | None:
    if shard_folder(root) is None:
        return None
    counts = [f"{w}: {len(split_files(root, w))}" for w in ("train", *TEST_SPLITS) if split_files(root, w)]
    return f"parquet shards ({', '.join(counts)})"


def columns(schema, path: Path) -> tuple[str, str | None, str | None]:
    """(image column, its bytes field or None for plain binary, label column or None)."""
    import pyarrow as pa

    def image_field(name):
        t = schema.field(name).type
        if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0:
            return "bytes"
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return None
        return False

    names = list(schema.names)
    image = next((n for n in IMAGE_COLUMNS if n in names and image_field(n) is not False), None)
    if image is None:
        found = [n for n in names if image_field(n) is not False]
        if len(found) != 1:
            raise DataError(f"{path}: no image column (a {{bytes, path}} struct or binary) among {names}", EXPECTED)
        image = found[0]
    label = next((n for n in LABEL_COLUMNS if n in names and pa.types.is_integer(schema.field(n).type)), None)
    return image, image_field(image), label


def hub_class_names(schema, label: str | None) -> list[str] | None:
    """The ``ClassLabel`` names the Hub's ``datasets`` writes into the schema metadata."""
    meta = (schema.metadata or {}).get(b"huggingface")
    if not meta or label is None:
        return None
    try:
        feature = json.loads(meta)["info"]["features"][label]
    except (ValueError, KeyError, TypeError):
        return None
    names = feature.get("names") if isinstance(feature, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else None


def read_classes(root: Path, hub_names: list[str] | None, num_labels: int) -> list[str]:
    for name in ("classes.txt", "LOC_synset_mapping.txt"):
        if (root / name).is_file():
            lines = [line.strip() for line in (root / name).read_text().splitlines() if line.strip()]
            return [line.split()[0] if re.match(r"^n\d{8}(\s|$)", line) else line for line in lines]
    return hub_names or [str(k) for k in range(num_labels)]


class ParquetReader:
    """``read(i)``: the image bytes of item i, row ``row[i]`` of row group ``group[i]`` of ``paths[file[i]]``."""

    def __init__(self, paths: list[Path], column: str, field: str | None, file: np.ndarray, group: np.ndarray, row: np.ndarray):
        self.paths, self.column, self.field = paths, column, field
        self.file, self.group, self.row = file, group, row
        self._reset()

    def _reset(self):
        self._pid, self._files, self._key, self._values = os.getpid(), {}, None, None

    def _open(self, f: int):
        if self._pid != os.getpid():  # a forked worker opens its own files
            self._reset()
        if f not in self._files:
            try:
                self._files[f] = _pq().ParquetFile(self.paths[f])
            except OSError as exc:
                raise DataError(f"cannot read {self.paths[f]} ({exc})", "restore the parquet file or reload the dataset") from None
        return self._files[f]

    def read(self, i: int) -> bytes:
        f, g = int(self.file[i]), int(self.group[i])
        pf = self._open(f)
        if self._key != (f, g):
            name = f"{self.column}.{self.field}" if self.field else self.column
            try:
                table = pf.read_row_group(g, columns=[name], use_threads=False)
            except Exception as exc:  # noqa: BLE001 - arrow raises many kinds for a damaged file
                raise DataError(f"cannot read row group {g} of {self.paths[f]} ({str(exc).splitlines()[0]})", "replace the parquet file with a complete copy") from None
            values = table.column(0).combine_chunks()
            self._values = values.field(self.field) if self.field else values
            self._key = (f, g)
        value = self._values[int(self.row[i])].as_py()
        if not value:
            raise DataError(f"{self.paths[f].name} row group {g} row {int(self.row[i])} holds no image bytes", "drop the row or restore the file")
        return value

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()


class SniffedExts(Sequence):
    """``exts[i]``: the image type of item i from its bytes (parquet rows carry no file names)."""

    def __init__(self, read, n: int):
        self.read, self.n = read, n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        return sniff_ext(self.read(i)) or "bin"

    def __len__(self):
        return self.n


def list_split(root: Path, files: list[Path]) -> dict:
    """Row positions and labels of every row of ``files`` (cached by the files' signatures)."""
    pq = _pq()
    entry = cache.entry_path(f"parquetindex-{files[0].name}", kind="parquetindex", root=str(root.resolve()), source=[cache.file_signature(f) for f in files])
    hit = cache.load(entry)
    if hit is not None:
        t, meta = hit
        return {**{k: v.numpy() for k, v in t.items() if k != "names"}, "names": Names.from_tensor(t["names"]), **meta}
    file, group, row, labels, ids = [], [], [], [], []
    image = field = label = hub = None
    for f, path in enumerate(files):
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"cannot read {path} as parquet ({str(exc).splitlines()[0]})", "replace it with a complete copy") from None
        found = columns(pf.schema_arrow, path)
        if image is None:
            image, field, label = found
            hub = hub_class_names(pf.schema_arrow, label)
        elif found != (image, field, label):
            raise DataError(f"{path} has columns {found} but {files[0].name} {(image, field, label)}", "give every shard of a split the same columns")
        md = pf.metadata
        for g in range(md.num_row_groups):
            n = md.row_group(g).num_rows
            file.append(np.full(n, f, dtype=np.int32))
            group.append(np.full(n, g, dtype=np.int32))
            row.append(np.arange(n, dtype=np.int32))
        total = md.num_rows
        if label is not None:
            values = pf.read(columns=[label], use_threads=False).column(0)
            if values.null_count:
                raise DataError(f"{path}: {values.null_count} rows have no {label}", "fill every label, or drop the unlabelled rows")
            labels.append(values.to_numpy().astype(np.int64))
        else:
            labels.append(np.full(total, -1, dtype=np.int64))
        rel = path.relative_to(root).as_posix()
        ids += [f"{rel}/{r}" for r in range(total)]
    out = {
        "file": np.concatenate(file),
        "group": np.concatenate(group),
        "row": np.concatenate(row),
        "labels": np.concatenate(labels),
        "names": Names(ids),
        "image": image,
        "field": field,
        "label": label,
        "hub_names": hub,
    }
    cache.save(
        entry,
        {k: torch.from_numpy(out[k]) for k in ("file", "group", "row", "labels")} | {"names": out["names"].tensor()},
        {k: out[k] for k in ("image", "field", "label", "hub_names")},
    )
    return out


def find_split(root: Path, split: str, test_splits: tuple[str, ...], skipped: list[str]) -> tuple[list[Path], dict]:
    for word in ("train",) if split == "train" else test_splits:
        files = split_files(root, word)
        if not files:
            continue
        listing = list_split(root, files)
        if listing["label"] is None or (len(listing["labels"]) and bool((listing["labels"] < 0).all())):
            skipped.append(f"{word} parquet shards carry no labels (unlabelled, like the Hub's ImageNet test)")
            continue
        return files, listing
    names = " or ".join(f"{w}-*.parquet" for w in (("train",) if split == "train" else test_splits))
    raise DataError(f"no {names} shards in {root} or {root / 'data'}" + (f" ({'; '.join(skipped)})" if skipped else ""), EXPECTED)


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
        raise DataError(f"parquet folder {root} does not exist", EXPECTED)
    skipped: list[str] = []
    files, listing = find_split(root, split, test_splits, skipped)
    labels = listing["labels"]
    if not len(labels):
        raise DataError(f"the {split} parquet shards in {root} hold no rows", EXPECTED)
    bad = np.flatnonzero(labels < 0)
    if len(bad):
        raise DataError(f"row {listing['names'][int(bad[0])]} of {root} has label {int(labels[bad[0]])}", "drop the unlabelled rows (slc needs a class for every image)")
    reader = ParquetReader(files, listing["image"], listing["field"], listing["file"], listing["group"], listing["row"])
    source = FileSource(ids=listing["names"], exts=SniffedExts(reader.read, len(labels)), read=reader.read)
    if split == "train":
        classes = read_classes(root, listing["hub_names"], int(labels.max()) + 1)
        shape = probe_shape(source, resolution, channels)
    else:
        train = load(root, "train", resolution, resize, channels, in_memory, dataset_name, stats, test_splits)
        classes, stats, shape, resize = train.classes, (train.mean, train.std), train.shape, train.resize
    if int(labels.max()) >= len(classes):
        raise DataError(f"{root}: a label is {int(labels.max())} but there are {len(classes)} classes", "list every class in classes.txt, one a line, in label order")
    hub = listing["hub_names"]
    return image_set(
        name=dataset_name or f"parquet:{root.name}",
        split=split,
        classes=classes,
        targets=torch.from_numpy(labels),
        source=source,
        signature=[cache.file_signature(f) for f in files],
        shape=shape,
        stats=stats,
        meta={
            "loader": "parquet",
            "root": str(root),
            "layout": "parquet",
            "files": [f.name for f in files],
            **({"class_names": hub} if hub and hub != classes else {}),
            **({"skipped": skipped} if skipped else {}),
        },
        in_memory=in_memory,
        resize=resize,
    )
