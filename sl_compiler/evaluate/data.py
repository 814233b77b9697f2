"""Where an evaluation's images and labels live: uint8 on the device when they fit, else streamed or on the host.

Nothing here turns a whole split into floats. Images stay uint8 and are normalised (or
ZCA-whitened, :mod:`sl_compiler.data.zca`) one batch at a time; stored labels stay in their
stored form (see :mod:`.regimes`).

- :class:`Stored` keeps a tensor (a distilled set's images, its labels) on the device when it
  fits in half the free device memory (always, on the CPU), else in pinned host memory, and takes
  rows per batch from either.
- :class:`EvalSet` is a set to score students on (the test split, the held-out slice): resident
  on the device as uint8 when the split is held in memory (CIFAR's test split: 30 MB) or when a
  file-backed selection decodes to at most :data:`RESIDENT_BYTES`; otherwise streamed through
  :func:`sl_compiler.data.stream` (worker processes, pinned memory) on every pass (ImageNet val).
  Both give the same batches, so scoring does not depend on where the images are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import torch

from ..data import ImageSet, stream
from ..data.zca import ZCA, Inputs
from ..device import prepare_batch
from ..progress import bar

RESIDENT_BYTES = 256 << 20  # a file-backed selection up to this many decoded bytes is decoded once and kept
DEVICE_FRACTION = 0.5  # of the free device memory, for one resident tensor


def fits(nbytes: int, device: torch.device) -> bool:
    """Whether ``nbytes`` may live on ``device``: always on the CPU, within half the free memory on CUDA."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_FRACTION * free


class Stored:
    """A tensor on the device if it fits, else in (pinned) host memory; :meth:`take` returns rows on the device."""

    def __init__(self, tensor: torch.Tensor, device: torch.device, on_device: bool | None = None):
        self.device = device
        self.on_device = fits(tensor.nbytes, device) if on_device is None else on_device
        if self.on_device:
            self.tensor = tensor.to(device)
        else:
            self.tensor = tensor.cpu().pin_memory() if device.type == "cuda" else tensor.cpu()

    def __len__(self) -> int:
        return len(self.tensor)

    @property
    def shape(self) -> torch.Size:
        return self.tensor.shape

    def take(self, *index: torch.Tensor, host: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """``tensor[index]`` on the device; a host-resident tensor is indexed with ``host`` (the same indices on the CPU)."""
        if self.on_device:
            return self.tensor[index]
        rows = self.tensor[host]
        if self.device.type == "cuda":
            rows = rows.pin_memory()
        return rows.to(self.device, non_blocking=True)


@dataclass
class EvalSet:
    """Images to score students on, as uint8: ``pixels`` resident on the device, or ``source[indices]`` streamed.

    ``targets`` are those of the resident pixels (on the device), or of the streamed selection.
    ``skipped`` lists (index, source id, problem) of undecodable images dropped with ``skip_bad``.
    """

    targets: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixels: torch.Tensor | None = None
    source: ImageSet | None = None
    indices: torch.Tensor | None = None
    workers: int | None = None
    skip_bad: bool = False
    skipped: list = field(default_factory=list)
    zca: ZCA | None = None  # whiten instead of normalising (a ZCA protocol)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def resident(self) -> bool:
        return self.pixels is not None

    def batches(self, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(normalised or whitened float images, targets) on ``device``, ``batch_size`` at a time, in order."""
        inputs = Inputs(self.mean, self.std, self.zca)
        if self.pixels is not None:
            for i in range(0, len(self.pixels), batch_size):
                yield inputs(prepare_batch(self.pixels[i : i + batch_size], device)), self.targets[i : i + batch_size]
            return
        s = stream(self.source, self.indices, batch_size=batch_size, workers=self.workers, skip_bad=self.skip_bad)
        for b in s:
            yield inputs(prepare_batch(b.pixels, device)), b.targets.to(device, non_blocking=True)
        if s.skipped and not self.skipped:
            self.skipped = list(s.skipped)

    def describe(self) -> dict:
        return {"size": len(self), "resident": self.resident, "skipped": [list(s) for s in self.skipped]}


def eval_set(
    images: ImageSet,
    indices: torch.Tensor | None,
    mean,
    std,
    device: torch.device,
    *,
    workers: int | None = None,
    skip_bad: bool = False,
    desc: str = "decode",
    zca: ZCA | None = None,
) -> EvalSet:
    """``images[indices]`` (all when None) to score on: resident when it can be, else streamed per pass; ``zca`` whitens instead of normalising."""
    evalset = _eval_set(images, indices, mean, std, device, workers=workers, skip_bad=skip_bad, desc=desc)
    evalset.zca = zca
    return evalset


def _eval_set(images: ImageSet, indices, mean, std, device: torch.device, *, workers, skip_bad, desc) -> EvalSet:
    idx = torch.arange(len(images)) if indices is None else torch.as_tensor(indices, dtype=torch.int64)
    nbytes = len(idx) * math.prod(images.shape)
    mean, std = tuple(mean), tuple(std)
    if images.pixels is not None and fits(nbytes, device):
        pixels = images.pixels if indices is None else images.pixels[idx]
        return EvalSet(images.targets[idx].to(device), mean, std, pixels=pixels.to(device))
    if images.pixels is None and nbytes <= RESIDENT_BYTES and fits(nbytes, device):
        return _decode_once(images, idx, mean, std, device, workers, skip_bad, desc)
    return EvalSet(images.targets[idx], mean, std, source=images, indices=idx, workers=workers, skip_bad=skip_bad)


def _decode_once(images: ImageSet, idx: torch.Tensor, mean, std, device, workers, skip_bad, desc) -> EvalSet:
    """Decode a small file-backed selection once through the stream and keep its uint8 pixels on the device."""
    pixels = torch.empty((len(idx), *images.shape), dtype=torch.uint8, device=device)
    targets = torch.empty(len(idx), dtype=torch.int64)
    done = 0
    s = stream(images, idx, batch_size=256, workers=workers, skip_bad=skip_bad)
    with bar(len(idx), desc=desc) as progress:
        for b in s:
            n = len(b.indices)
            pixels[done : done + n] = b.pixels.to(device, non_blocking=True)
            targets[done : done + n] = b.targets
            done += n
            progress.update(n)
    return EvalSet(targets[:done].to(device), mean, std, pixels=pixels[:done], skipped=list(s.skipped), skip_bad=skip_bad)
