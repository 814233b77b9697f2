"""A compile's finished label batches, kept until its artifact is written, so a killed run resumes.

A compile labels its N x V rows in the fixed batches of :func:`~.soft.label_spans` (whatever the
world size). Each finished batch is written atomically (``data.cache.save``) to
``$SLC_CACHE/labels/<key>/<start>-<stop>.safetensors`` in stored form, where ``key`` is a digest of
everything the labels depend on: the recipe (without its data path, name and version), the
teachers' checkpoint sha256s, the dataset's fingerprint and preprocess, the picked images, the
batch size and the arithmetic. A rerun with the same inputs (at any world size) labels only the
batches it does not find; the folder is removed once the artifact is written. In a distributed
compile only rank 0 reads and writes it, so it need not be shared between nodes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import torch

from ..data import cache

FORMAT = 1  # bump when what a piece holds changes


def pieces_key(**parts) -> str:
    """The folder name of a compile's pieces: a sha256 of ``parts`` (JSON-able) and the format."""
    return hashlib.sha256(json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str).encode()).hexdigest()


def indices_digest(indices: torch.Tensor) -> str:
    """sha256 of dataset indices as little-endian int64: which images, in which order."""
    return hashlib.sha256(indices.to(torch.int64).numpy().astype("<i8").tobytes()).hexdigest()


class LabelPieces:
    """The finished label batches of one compile (``key`` from :func:`pieces_key`)."""

    def __init__(self, key: str):
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise ValueError(f"bad pieces key {key!r}")
        self.key = key
        self.folder = cache.cache_dir().parent / "labels" / key

    def _path(self, span: tuple[int, int]) -> Path:
        return self.folder / f"{span[0]:012d}-{span[1]:012d}.safetensors"

    def load(self, spans: list[tuple[int, int]]) -> dict[tuple[int, int], dict[str, torch.Tensor]]:
        """The stored-form labels of each span in ``spans`` that a finished piece holds (others are absent)."""
        found = {}
        if not self.folder.is_dir():
            return found
        for span in spans:
            got = cache.load(self._path(span))
            if got is None:
                continue
            tensors, meta = got
            if meta.get("key") != self.key or meta.get("span") != list(span) or not tensors:
                continue
            if any(t.shape[:1] != (span[1] - span[0],) for t in tensors.values()):
                continue  # a damaged piece is labelled again, never trusted
            found[span] = tensors
        return found

    def save(self, span: tuple[int, int], tensors: dict[str, torch.Tensor]) -> None:
        """Write one finished batch atomically (a reader never sees half of it)."""
        cache.save(self._path(span), tensors, {"key": self.key, "span": list(span)})

    def clear(self) -> None:
        """Remove every piece: the artifact they made is written."""
        shutil.rmtree(self.folder, ignore_errors=True)
