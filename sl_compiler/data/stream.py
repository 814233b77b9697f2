"""The one streaming loader: an ImageSet and batches of indices in, uint8 batches out, in order.

Every stage that reads a whole split (expert training, selection scores, labelling, the test and
hold-out passes of an evaluation) reads it through :func:`stream`; nothing else decodes a split.

- A split held in memory (``ImageSet.pixels``: CIFAR, MNIST, small folders) is sliced in the
  calling process: no workers, no copies beyond the batch.
- A split of files (ImageNet) is decoded by torch DataLoader worker processes, one batch of
  indices per task, with pinned memory for CUDA and a bounded prefetch
  (``workers x prefetch`` batches in flight). What stays resident is that window, never the split.
- Batches come back in the order asked for, whatever the number of workers, so results do not
  depend on ``workers``. Which batches a process asks for is the caller's choice: a rank of a
  distributed run passes only its own share (``sl_compiler.dist``).
- A worker never raises across the process boundary (torch would wrap a one-line DataError in a
  traceback): it returns the error, and the caller raises the original one. With
  ``skip_bad=True`` an undecodable image is dropped from its batch instead and recorded in
  :attr:`Stream.skipped`.

Between two batches of files the consumer's freed heap pages go back to the OS
(:func:`release_heap`): glibc otherwise keeps the high-water mark of a fragmented heap, and peak
memory drifted up by 100-200 MB over a few hundred ResNet batches, so it grew with the number of
images streamed instead of staying flat.

``decode`` (optional) replaces the default per-image decoding (resize and centre crop to the
split's shape) with ``decode(data: bytes, index: int) -> uint8 (C, H, W)``: how expert training
applies a random resized crop to the original image, seeded per (seed, epoch, index).
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import torch

from ..errors import DataError
from .base import ImageSet

PREFETCH = 2  # batches in flight per worker

Decode = Callable[[bytes, int], torch.Tensor]


class Batch(NamedTuple):
    """One batch: dataset ``indices`` (int64 B), ``pixels`` uint8 (B, C, H, W), ``targets`` int64 (B)."""

    indices: torch.Tensor
    pixels: torch.Tensor
    targets: torch.Tensor


def default_workers() -> int:
    """The cores this process may run on (``--workers`` default)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def chunks(indices: Sequence[int] | torch.Tensor, batch_size: int) -> list[list[int]]:
    """``indices`` cut into consecutive batches of ``batch_size`` (the last may be short)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    idx = torch.as_tensor(indices, dtype=torch.int64).tolist() if not isinstance(indices, range) else list(indices)
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]


@dataclass
class _Failure:
    """What a worker sends back instead of raising: the index and the error's parts."""

    index: int
    problem: str
    fix: str | None


class _Decoder(torch.utils.data.Dataset):
    """``dataset[list of indices]`` -> (indices, uint8 pixels, targets, failures), decoded in the worker."""

    def __init__(self, images: ImageSet, decode: Decode | None, skip_bad: bool):
        self.images, self.decode, self.skip_bad = images, decode, skip_bad

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, batch: list[int]):
        images = self.images
        idx = torch.as_tensor(batch, dtype=torch.int64)
        try:
            if self.decode is None:
                pixels, bad = images.decode_batch(batch, skip_bad=self.skip_bad)
            else:
                pixels, bad = _decode_each(images, batch, self.decode, self.skip_bad)
        except DataError as exc:
            return idx, None, None, [_Failure(-1, exc.problem, exc.fix)]
        failures = [_Failure(i, problem, fix) for i, (problem, fix) in bad.items()]
        if bad:
            keep = torch.tensor([i not in bad for i in batch])
            idx, pixels = idx[keep], pixels[keep]
        release_heap()  # a worker's decode buffers, as the consumer's below
        return idx, pixels, images.targets[idx], failures


def _decode_each(images: ImageSet, batch: list[int], decode: Decode, skip_bad: bool):
    """Each file of ``batch`` through ``decode``; a decoder with ``decode_many(blobs, indices)``
    (a list of uint8 tensors or DataErrors) takes the whole batch at once, sharing per-batch work."""
    blobs: dict[int, bytes] = {}
    bad: dict[int, tuple[str, str | None]] = {}

    def failed(i: int, exc: DataError) -> None:
        if not skip_bad:
            raise exc
        bad[i] = (exc.problem, exc.fix)

    for i in batch:
        try:
            blobs[i] = images.sources.read(i)
        except DataError as exc:
            failed(i, exc)
    order = [i for i in batch if i in blobs]
    many = getattr(decode, "decode_many", None)
    decoded = many([blobs[i] for i in order], order) if many is not None else [_one(decode, blobs[i], i) for i in order]
    out, row = None, {i: j for j, i in enumerate(batch)}
    for i, img in zip(order, decoded):
        if isinstance(img, DataError):
            failed(i, img)
            continue
        if out is None:
            out = torch.zeros((len(batch), *img.shape), dtype=torch.uint8)
        out[row[i]] = img
    if out is None:
        out = torch.zeros((len(batch), *images.shape), dtype=torch.uint8)
    return out, bad


def _one(decode: Decode, data: bytes, index: int):
    try:
        return decode(data, index)
    except DataError as exc:
        return exc


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def release_heap() -> None:
    """Return the heap's free pages to the OS (``malloc_trim(0)``, well under a millisecond); a no-op without glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _worker_init(_):
    torch.set_num_threads(1)  # one decode per core; the parent's threads would oversubscribe


@dataclass
class Stream:
    """An iterable of :class:`Batch`; ``skipped`` lists ``(index, source id, problem)`` of dropped images."""

    images: ImageSet
    batches: list[list[int]]
    workers: int = 0
    decode: Decode | None = None
    pin_memory: bool = False
    skip_bad: bool = False
    skipped: list[tuple[int, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def total(self) -> int:
        """Images asked for (before any skipped)."""
        return sum(len(b) for b in self.batches)

    def __iter__(self) -> Iterator[Batch]:
        images = self.images
        if images.pixels is not None and self.decode is None:
            for batch in self.batches:
                idx = torch.as_tensor(batch, dtype=torch.int64)
                yield Batch(idx, images.pixels[idx], images.targets[idx])
            return
        if images.sources is None:
            raise DataError(f"{images.name}/{images.split} has no source files to decode", "pass decode=None for a split held in memory")
        decoder = _Decoder(images, self.decode, self.skip_bad)
        if self.workers == 0:
            results = (decoder[b] for b in self.batches)
        else:
            results = torch.utils.data.DataLoader(
                decoder,
                batch_size=None,
                sampler=self.batches,
                num_workers=self.workers,
                pin_memory=self.pin_memory,
                prefetch_factor=PREFETCH,
                worker_init_fn=_worker_init,
                persistent_workers=False,
            )
        for idx, pixels, targets, failures in results:
            for failure in failures:
                if failure.index < 0 or not self.skip_bad:
                    raise DataError(failure.problem, failure.fix)
                self.skipped.append((failure.index, images.source_id(failure.index), failure.problem))
            if len(idx):
                yield Batch(idx, pixels, targets)
            release_heap()


def stream(
    images: ImageSet,
    indices: Sequence[int] | torch.Tensor | None = None,
    *,
    batch_size: int = 256,
    batches: Iterable[Sequence[int]] | None = None,
    workers: int | None = None,
    decode: Decode | None = None,
    pin_memory: bool | None = None,
    skip_bad: bool = False,
) -> Stream:
    """Batches of ``images``: ``indices`` (default all, in order) cut by ``batch_size``, or explicit ``batches``.

    ``workers`` decoding processes (default: the core count; 0 decodes in this process) are used
    only for splits of files. ``pin_memory`` defaults to "CUDA is available".
    """
    if batches is None:
        batches = chunks(range(len(images)) if indices is None else indices, batch_size)
    else:
        batches = [list(map(int, b)) for b in batches]
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise DataError(f"--workers {workers} is negative", "pass --workers 0 (decode in the main process) or more")
    if images.pixels is not None and decode is None:
        workers = 0
    workers = min(workers, len(batches))
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return Stream(images, batches, workers, decode, pin_memory, skip_bad)
