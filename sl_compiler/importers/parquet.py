"""Distilled sets published as parquet shards (the Hub's layout): image bytes, a class, maybe a soft label.

Columns: the image (a ``{bytes, path}`` struct, the Hub's ``Image`` feature, or binary), an
integer class (``label``), and optionally a soft label: a list of floats per row (C values),
probabilities or logits (``soft_kind``; ``auto`` tells them apart as ``interpret_labels`` does:
non-negative rows summing to 1 are probabilities). Logits become probabilities with a softmax at
``temperature``. The class is the integer column, else the soft label's argmax.

Images are stored as the source's own bytes (never re-encoded) and read by row group, so memory
stays flat; every image is first decoded once, strictly, to check it is whole and that all share
one size (the dataset's, when it has one), before anything is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data import dataset_key
from ..data.files import sniff_ext
from ..data.locations import recorded_root
from ..data.parquet import ParquetReader, columns, split_files
from ..errors import DataError, ImporterError
from ..progress import bar
from .common import CLASS_NAMES, interpret_labels, target_dataset, write_import

SOFT_COLUMNS = ("soft_label", "soft_labels", "probs", "probabilities", "logits", "soft")
SOFT_KINDS = ("auto", "probs", "logits")


def shard_files(path: Path, split: str) -> list[Path]:
    """A parquet file, or a folder's ``[data/]<split>-*.parquet`` (else every ``*.parquet`` in it)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ImporterError(f"{path} does not exist", "pass a .parquet file or a folder of parquet shards")
    files = split_files(path, split) or sorted(path.glob("*.parquet")) or sorted((path / "data").glob("*.parquet"))
    if not files:
        raise ImporterError(f"no {split}-*.parquet (or any .parquet) in {path} or {path / 'data'}", "pass a .parquet file or the folder the Hub repository was downloaded to")
    return files


def _soft_column(schema, wanted: str | None, path: Path) -> str | None:
    import pyarrow as pa

    def is_float_list(name):
        t = schema.field(name).type
        return (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and pa.types.is_floating(t.value_type)

    if wanted is not None:
        if wanted not in schema.names or not is_float_list(wanted):
            raise ImporterError(f"{path.name} has no list-of-floats column {wanted!r} (columns: {', '.join(schema.names)})", "pass --soft-column with the soft-label column's name")
        return wanted
    found = [n for n in schema.names if is_float_list(n)]
    named = [n for n in found if n in SOFT_COLUMNS or n == "label"]
    if len(named) == 1 or len(found) == 1:
        return (named or found)[0]
    if len(found) > 1:
        raise ImporterError(f"{path.name} has several list-of-floats columns ({', '.join(found)})", "pass --soft-column to say which holds the soft labels")
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Images(Sequence):
    """The artifact writer's ``images``: (source bytes, ext) per row, read by row group on demand."""

    def __init__(self, reader: ParquetReader, exts: list[str]):
        self.reader, self.exts = reader, exts

    def __len__(self) -> int:
        return len(self.exts)

    def __getitem__(self, i):
        return self.reader.read(int(i)), self.exts[int(i)]


def import_parquet(
    path: str | Path,
    *,
    dataset: str,
    data_root: str | Path | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    split: str = "train",
    soft_column: str | None = None,
    soft_kind: str = "auto",
    temperature: float = 1.0,
    out: str | Path | None = None,
    name: str | None = None,
    version: str = "1.0.0",
    force: bool = False,
) -> Path:
    """Import the parquet shard(s) at ``path`` (hard or soft labels) as an artifact; returns its folder."""
    import pyarrow.parquet as pq

    if soft_kind not in SOFT_KINDS:
        raise ImporterError(f"--soft-kind {soft_kind!r} is not one of {', '.join(SOFT_KINDS)}", "pass auto, probs or logits")
    if not temperature > 0:
        raise ImporterError(f"--temperature {temperature} is not positive", "pass a temperature > 0 (1 leaves the logits as they are)")
    path = Path(path).expanduser()
    files = shard_files(path, split)
    if data_root is None and dataset_key(dataset) not in CLASS_NAMES:  # ImageNet: its classes come from its recorded location
        data_root = recorded_root(dataset)
    target = target_dataset(dataset, data_root, mean, std)

    image = field = label = soft = None
    file_of, group_of, row_of, ids, hard, rows_soft = [], [], [], [], [], []
    for f, file in enumerate(files):
        try:
            pf = pq.ParquetFile(file)
            found = columns(pf.schema_arrow, file)
        except DataError as exc:
            raise ImporterError(exc.problem, exc.fix) from None
        except Exception as exc:  # noqa: BLE001 - arrow's errors for a damaged file
            raise ImporterError(f"cannot read {file} as parquet ({str(exc).splitlines()[0]})", "replace it with a complete copy") from None
        this_soft = _soft_column(pf.schema_arrow, soft_column, file)
        if image is None:
            (image, field, label), soft = found, this_soft
        elif (found, this_soft) != ((image, field, label), soft):
            raise ImporterError(f"{file.name} has other columns than {files[0].name}", "import shards of one set, with the same columns")
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            file_of.append(np.full(n, f, dtype=np.int32))
            group_of.append(np.full(n, g, dtype=np.int32))
            row_of.append(np.arange(n, dtype=np.int32))
        ids += [f"{file.name}#{r}" for r in range(pf.metadata.num_rows)]
        wanted = [c for c in (label, soft) if c is not None]
        table = pf.read(columns=wanted, use_threads=False) if wanted else None
        if label is not None:
            values = table.column(label)
            if values.null_count:
                raise ImporterError(f"{file.name}: {values.null_count} rows have no {label}", "fill every label, or drop those rows")
            hard.append(values.to_numpy().astype(np.int64))
        if soft is not None:
            values = table.column(soft).to_pylist()
            if any(v is None for v in values):
                raise ImporterError(f"{file.name}: some rows have no {soft}", "fill every soft label, or drop those rows")
            rows_soft += values
    if label is None and soft is None:
        raise ImporterError(f"{files[0].name} has no integer label column and no soft-label column", "publish a 'label' column (class index) or a list-of-floats soft label")
    n = len(ids)
    if n == 0:
        raise ImporterError(f"{path} holds no rows", "pass the shards of a non-empty set")
    where = files[0].name if len(files) == 1 else f"{path.name} ({len(files)} files)"
    targets, probs, given = _labels(rows_soft if soft is not None else None, hard, n, target.num_classes, f"{where} column {soft}", f"{where} column {label}", soft_kind, temperature)

    # every image whole and of one size, before anything is written
    reader = ParquetReader(files, image, field, np.concatenate(file_of), np.concatenate(group_of), np.concatenate(row_of))
    shape = tuple(target.shape) if target.shape is not None else None
    exts = []
    with bar(n, f"check {path.name}") as progress:
        for i in range(n):
            ext, this = _check_image(reader.read(i), f"{where} row {i}")
            shape = shape or this
            if this != shape:
                raise ImporterError(f"{where} row {i}: the image is {this[0]}x{this[1]}x{this[2]}, the set's {shape[0]}x{shape[1]}x{shape[2]}", "publish every image at the dataset's channels and resolution")
            exts.append(ext)
            progress.update(1)
    target.info["channels"], target.info["resolution"] = shape[0], list(shape[1:])
    logits = given == "logits"
    provenance = {
        "files": [{"file": f.name, "role": "shard", "sha256": _sha256(f), "bytes": f.stat().st_size} for f in files],
        "columns": {"image": image, "label": label, "soft": soft},
        "labels_given": given,
    }
    return write_import(
        kind="parquet",
        out=out,
        name=name,
        version=version,
        target=target,
        images=_Images(reader, exts),
        targets=targets,
        labels=None if probs is None else {"probs": probs},
        source_ids=ids,
        provenance=provenance,
        recipe={"soft_kind": soft_kind, **({"temperature": temperature} if logits else {})},
        label_schema={"source": given, **({"temperature": temperature} if logits else {})},
        force=force,
    )


def _labels(soft, hard, n, num_classes, soft_where, hard_where, soft_kind, temperature):
    """(targets, probs or None, what was given) from the soft rows and/or the integer class column."""
    targets = probs = None
    given = "hard"
    if soft is not None:
        widths = {len(v) for v in soft}
        if len(widths) != 1:
            raise ImporterError(f"{soft_where}: soft labels have {sorted(widths)[:3]} values per row", f"give every row {num_classes} values")
        x = torch.tensor(soft, dtype=torch.float64)
        targets, probs, given = interpret_labels(x, n, num_classes, soft_where)
        if soft_kind == "probs" and given == "logits":
            raise ImporterError(f"{soft_where} is not probabilities (rows must be >= 0 and sum to 1)", "pass --soft-kind logits, or auto")
        if soft_kind == "logits":
            given = "logits"
        if given == "logits":
            probs = torch.softmax(x / temperature, 1).float()
        elif temperature != 1.0:
            raise ImporterError(f"--temperature {temperature} applies to logits, but {soft_where} holds {given}", "drop --temperature, or pass --soft-kind logits")
    if hard:
        targets = interpret_labels(torch.from_numpy(np.concatenate(hard)), n, num_classes, hard_where)[0]
    return targets, probs, given


def _check_image(data: bytes, where: str) -> tuple[str, tuple[int, int, int]]:
    """The image's type and (C, H, W), decoding it fully: a truncated image is an error."""
    import io

    from PIL import Image

    ext = sniff_ext(data or b"")
    if ext is None:
        raise ImporterError(f"{where}: the image bytes are not JPEG, PNG, BMP, WebP or PPM", "publish encoded images")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds
        raise ImporterError(f"{where}: cannot decode the image ({exc})", "replace or drop the row") from None
    return ext, (1 if img.mode in ("1", "L", "LA", "I", "I;16", "F") else 3, img.size[1], img.size[0])
