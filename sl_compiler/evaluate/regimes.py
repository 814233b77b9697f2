"""What a student learns from, per regime: stored labels (sl), a teacher in the loop (slkd), hard labels (hl).

A :class:`TrainingSet` keeps a distilled set as stored: uint8 images and labels in their stored
form (fp16 probabilities ``(N, V, C)``, or top-k values and indices), on the device when they fit
(:class:`~.data.Stored`). ``batch(idx, view)`` gathers one step's rows for K students at once and
only then normalises the images and densifies the labels: IPC 50 x 300 views x 1000 classes is
never a float32 tensor.

Per-view labels (V > 1 views, with their recorded parameters): each student sees one stored view
per image per step (chosen by the trainer from its own seed), replayed with
``label.views.replay`` exactly as the teacher labelled it, with that view's label; no teacher is
needed. The protocol's augmentation then applies on top, or not (``augment_views = false``:
train on exactly the labelled views, as SRe2L/FKD replay them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..artifact import dense_from_topk
from ..errors import EvaluateError
from ..data.zca import ZCA, Inputs
from ..device import autocast
from .data import Stored


class StoredLabels:
    """Labels as stored: ``{"probs": (N, V, C)}`` or ``{"topk_values", "topk_indices": (N, V, k)}``, densified per batch."""

    def __init__(self, tensors: dict[str, torch.Tensor], num_classes: int, device: torch.device, fill: str = "uniform", on_device: bool | None = None):
        self.kind = "probs" if "probs" in tensors else "topk"
        names = ("probs",) if self.kind == "probs" else ("topk_values", "topk_indices")
        self.stores = {n: Stored(tensors[n], device, on_device) for n in names}
        self.num_classes, self.fill = num_classes, fill

    @property
    def views(self) -> int:
        return next(iter(self.stores.values())).shape[1]

    @property
    def on_device(self) -> bool:
        return all(s.on_device for s in self.stores.values())

    @property
    def nbytes(self) -> int:
        return sum(s.tensor.nbytes for s in self.stores.values())

    def take(self, idx: torch.Tensor, view, host: tuple | None = None) -> torch.Tensor:
        """float32 (M, C) labels of samples ``idx`` at ``view`` (a tensor of view indices, or 0)."""
        if self.kind == "probs":
            return self.stores["probs"].take(idx, view, host=host).float()
        values = self.stores["topk_values"].take(idx, view, host=host)
        indices = self.stores["topk_indices"].take(idx, view, host=host)
        return dense_from_topk(values, indices, self.num_classes, self.fill)


@dataclass
class TrainingSet:
    pixels: Stored  # uint8 (N, C, H, W), or float16/32 images stored in the model's input space (third-party sets)
    targets: torch.Tensor  # int64 (N,) on the device
    num_classes: int
    regime: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: StoredLabels | None = None  # sl
    views: dict[str, torch.Tensor] | None = None  # recorded view parameters (N, V, ...), per-view sl only
    host_views: dict[str, torch.Tensor] | None = None  # the same on the CPU, when the images live there
    teacher: torch.nn.Module | None = None  # slkd
    temperature: float = 1.0  # softmax temperature of the teacher's targets (slkd)
    zca: ZCA | None = None  # whiten uint8 images instead of normalising them (a ZCA protocol)

    @property
    def inputs(self) -> Inputs:
        """uint8 -> normalised or whitened float32; float images (already inputs) as they are, in float32."""
        return Inputs(self.mean, self.std, self.zca)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.pixels.shape[1:])

    @property
    def num_views(self) -> int:
        """Stored views a student chooses from per image (1 unless per-view labels are replayed)."""
        return self.labels.views if self.views is not None else 1

    @property
    def replays_views(self) -> bool:
        return self.views is not None

    @property
    def needs_host(self) -> bool:
        """Whether a store lives on the host, so that batches need their indices on the CPU too."""
        return not self.pixels.on_device or (self.labels is not None and not self.labels.on_device)

    def batch(self, idx: torch.Tensor, view: torch.Tensor | None = None, host: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised inputs (M, C, H, W) and probability targets (M, classes) for samples ``idx`` (any shape, M entries).

        ``view`` (same shape) picks each sample's stored view (per-view sets); ``host`` holds
        (idx, view) on the CPU when :attr:`needs_host`. Targets are None in ``slkd``.
        """
        flat = idx.reshape(-1)
        v = None if view is None else view.reshape(-1)
        h_idx = h_view = None
        if host is not None:
            h_idx = host[0].reshape(-1)
            h_view = None if host[1] is None else host[1].reshape(-1)
        if self.views is not None:
            return self.inputs(self._replay(flat, v, h_idx, h_view)), self.labels.take(flat, v, host=(h_idx, h_view))
        x = self.inputs(self.pixels.take(flat, host=(h_idx,)))
        if self.regime == "hl":
            return x, F.one_hot(self.targets[flat], self.num_classes).float()
        if self.regime == "slkd":
            return x, None
        return x, self.labels.take(flat, 0, host=(h_idx, 0))

    def _replay(self, flat, view, h_idx, h_view) -> torch.Tensor:
        """The stored views (uint8) of samples ``flat`` at ``view``, exactly as the teacher saw them."""
        from ..label.views import gather, replay

        params = gather(self.views, flat, view)
        base = self.pixels.take(flat, host=(h_idx,))
        m = len(flat)
        local = torch.arange(m, device=flat.device)
        if "partner" not in params:
            return replay(base, local, params)
        partner = params["partner"].long()
        h_partner = None if h_idx is None else gather(self.host_views, h_idx, h_view)["partner"].long()
        both = torch.cat([base, self.pixels.take(partner, host=(h_partner,))])
        return replay(both, local, params, partner_index=local + m)

    @torch.no_grad()
    def teacher_targets(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's probabilities (at ``temperature``) for augmented inputs (..., C, H, W).

        The teacher runs under the students' autocast (bf16 on CUDA): its targets are a training
        signal, never stored.
        """
        with autocast(x.device):
            logits = self.teacher(x.flatten(0, -4)).float()
        return F.softmax(logits / self.temperature, dim=-1).view(*x.shape[:-3], -1)


def training_set(
    regime: str,
    pixels: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    mean,
    std,
    device: torch.device,
    labels: dict[str, torch.Tensor] | torch.Tensor | None = None,
    views: dict[str, torch.Tensor] | None = None,
    teacher: torch.nn.Module | None = None,
    temperature: float = 1.0,
    fill: str = "uniform",
    on_device: bool | None = None,
    zca: ZCA | None = None,
) -> TrainingSet:
    """A set for ``regime``: uint8 ``pixels`` and stored ``labels`` (a dict as the artifact stores them, or a (N, V, C) tensor).

    ``pixels`` may be float (a set stored in its own input space): used as they are, never
    normalised or whitened again. ``zca`` whitens uint8 pixels instead of normalising them.
    ``on_device`` forces where the stores live (None: on the device when they fit).
    """
    device = torch.device(device)
    store = None
    if regime == "sl":
        tensors = {"probs": labels} if isinstance(labels, torch.Tensor) else labels
        if not tensors:  # a hard-label set in regime sl: its one-hot labels
            tensors = {"probs": F.one_hot(torch.as_tensor(targets), num_classes).to(torch.float16).unsqueeze(1)}
        store = StoredLabels(tensors, num_classes, device, fill, on_device)
    per_view = store is not None and store.views > 1 and views is not None
    if per_view and pixels.dtype != torch.uint8:
        raise EvaluateError("per-view labels need uint8 images to replay their views on", "store the images as uint8 (slc import --precision uint8)")
    images = Stored(pixels, device, on_device)
    return TrainingSet(
        pixels=images,
        targets=torch.as_tensor(targets).to(device),
        num_classes=num_classes,
        regime=regime,
        mean=tuple(mean),
        std=tuple(std),
        labels=store,
        views={k: v.to(device) for k, v in views.items()} if per_view else None,
        host_views={k: v.cpu() for k, v in views.items()} if per_view and not images.on_device else None,
        teacher=teacher,
        temperature=temperature,
        zca=zca,
    )
