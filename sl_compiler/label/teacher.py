"""Teacher inference: every teacher of an ensemble on each batch, one decode pass, in float32.

An :class:`Ensemble` loads all its members at once and runs each on every batch, so an image is
decoded once however many teachers label it (issue 11: one pass per teacher decoded a whole split
ten times for a ten-seed ensemble). Memory: the weights of every member at once, in float32
(ResNet-18 45 MB, ConvNet-D3 under 2 MB each), plus one batch of activations per member in turn.

Members' logits are averaged in float32 (the caller applies one softmax), the rule of the paper
and of DESIGN.md. Non-finite logits are an error naming the teacher: a label built from them
would silently poison every student trained on the artifact.

Labels are data, so teachers run in full float32 on every device (:func:`full_precision`): no
bf16 autocast, and no TF32 for CUDA's matmuls and convolutions, whatever the caller set. On the
CPU, results do not depend on how images are batched: a batch of one runs as a batch of two
(oneDNN convolutions and MKL's matrix-vector product take another path for a single image, whose
rounding differs).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Protocol, Sequence

import torch

from ..data import ImageSet, Stream, stream
from ..data.zca import ZCA, Inputs
from ..device import prepare_batch, resolve_device
from ..errors import ExpertError
from ..progress import bar

PRECISION = "float32"  # what the manifest's ``labels.precision`` records


class ImageBatches(Protocol):
    """Anything that gives uint8 (B, C, H, W) batches by slice: a tensor, ``AugmentedViews``."""

    def __len__(self) -> int: ...

    def __getitem__(self, span: slice) -> torch.Tensor: ...


@contextlib.contextmanager
def full_precision(device: torch.device, grad: bool = False):
    """Float32 inference on ``device``: autocast off, TF32 off for CUDA matmuls and cuDNN convolutions.

    cuDNN is also made deterministic (no benchmark-picked algorithms), so that a rebuild on the
    same kind of machine gives the same labels. The flags are restored on exit. Autograd is off
    unless ``grad`` (labels learned by gradient, ``bptt.py``).
    """
    flags = [
        (torch.backends.cuda.matmul, "allow_tf32", False),
        (torch.backends.cudnn, "allow_tf32", False),
        (torch.backends.cudnn, "deterministic", True),
        (torch.backends.cudnn, "benchmark", False),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in flags]
    try:
        for owner, name, value in flags:
            setattr(owner, name, value)
        with torch.autocast(device.type, enabled=False), torch.set_grad_enabled(grad):
            yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


class Ensemble:
    """The teachers of one ensemble, all loaded on ``device``: ``ensemble(uint8 batch)`` -> averaged logits.

    ``teachers`` are :class:`sl_compiler.experts.Teacher` (anything with ``load(device)`` and
    ``reference``); ``mean``/``std`` their shared input normalisation, or ``zca`` the whitening
    they were trained with (then their input is ``zca(pixels / 255)``).
    """

    def __init__(self, teachers: Sequence, mean: Sequence[float], std: Sequence[float], device: str | torch.device = "auto", zca: ZCA | None = None):
        self.teachers = list(teachers)
        if not self.teachers:
            raise ExpertError("no teachers to label with", "name at least one teacher, e.g. --teacher convnet_d3@20")
        self.device = resolve_device(device)
        self.mean, self.std = tuple(mean), tuple(std)
        self.inputs = Inputs(self.mean, self.std, zca)
        self.models = [t.load(self.device).float() for t in self.teachers]

    @property
    def reference(self) -> str:
        return "+".join(t.reference for t in self.teachers)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """float32 (B, C) logits on the device, the mean over members, for uint8 (B, C, H, W) ``pixels``."""
        single = len(pixels) == 1
        with full_precision(self.device):
            x = self.inputs(prepare_batch(pixels, self.device))
            if single:
                x = torch.cat([x, x])
            outs = [model(x).float() for model in self.models]
            finite = torch.stack([torch.isfinite(out).all() for out in outs])
            if not bool(finite.all()):  # one host sync per batch, not one per member
                bad = self.teachers[int((~finite).nonzero()[0])]
                raise ExpertError(
                    f"teacher {bad.reference} gives non-finite (NaN or inf) logits",
                    "the checkpoint is broken or diverged; pick an earlier epoch or retrain the trajectory",
                )
            total = outs[0]
            for out in outs[1:]:
                total = total.add_(out)
            total = total.div_(len(outs))
        return total[:1] if single else total


def as_ensemble(teachers: Sequence | Ensemble, mean: Sequence[float], std: Sequence[float], device: str | torch.device = "auto", zca: ZCA | None = None) -> Ensemble:
    """``teachers`` loaded as an :class:`Ensemble`; one already loaded is used as it is."""
    return teachers if isinstance(teachers, Ensemble) else Ensemble(teachers, mean, std, device, zca)


def run_teachers(ensemble: Ensemble, images: Stream | ImageBatches | torch.Tensor, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(positions int64 (B,), logits float32 (B, C) on the device)`` per batch: one decode, every teacher.

    ``images`` is a :class:`sl_compiler.data.Stream` (positions are its dataset indices; decoding
    runs in its worker processes) or a sliceable uint8 source cut into ``batch_size`` slices
    (positions count from 0).
    """
    if isinstance(images, Stream):
        for batch in images:
            yield batch.indices, ensemble(batch.pixels)
        return
    for start in range(0, len(images), batch_size):
        pixels = images[start : start + batch_size]
        yield torch.arange(start, start + len(pixels)), ensemble(pixels)


def teacher_logits(
    teachers: Sequence | Ensemble,
    images: ImageBatches | torch.Tensor | ImageSet,
    mean: Sequence[float],
    std: Sequence[float],
    device: str | torch.device = "auto",
    batch_size: int = 256,
    *,
    workers: int | None = None,
    zca: ZCA | None = None,
) -> torch.Tensor:
    """Ensemble-averaged float32 logits (N, C) on the CPU of uint8 ``images``, with a progress bar.

    ``images``: a uint8 tensor, ``AugmentedViews`` (views replayed per batch from the decoded
    images), or an :class:`ImageSet`, streamed through ``workers`` decoding processes (default:
    the core count). Every teacher runs on each batch (see :class:`Ensemble`); an ``Ensemble``
    given as ``teachers`` is used as it is (its own normalisation and device).
    """
    ensemble = as_ensemble(teachers, mean, std, device, zca)
    n = len(images)
    if n == 0:
        raise ExpertError("no images to label", "select at least one image")
    source = stream(images, batch_size=batch_size, workers=workers) if isinstance(images, ImageSet) else images
    logits: torch.Tensor | None = None
    with bar(n, desc=f"label {ensemble.reference}") as progress:
        for positions, out in run_teachers(ensemble, source, batch_size):
            if logits is None:
                logits = torch.empty(n, out.shape[1], dtype=torch.float32)
            logits[positions] = out.cpu()
            progress.update(len(positions))
    return logits
