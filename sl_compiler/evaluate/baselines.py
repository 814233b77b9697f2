"""Baselines under the identical protocol: random real images at the artifact's IPC.

``random-hl`` trains on them with hard labels; ``random-sl`` with the artifact's own teacher's
labels, made as compile makes them (ensemble logits, the artifact's temperature and top-k, the
reader's top-k fill rule). The images come from the training split minus the artifact's own
images (a random artifact would otherwise be its own baseline) and minus the held-out slice (an
lr is never chosen on a baseline's own training images).
"""

from __future__ import annotations

import torch

from ..data import ImageSet
from ..errors import EvaluateError, RecipeError
from ..seeding import derive_seed
from ..select import random_per_class

LOGIT_BYTES = 256 << 20  # float32 teacher logits labelled at once for random-sl


def _pick(train: ImageSet, ipc: int, seed: int, exclude: torch.Tensor | None) -> torch.Tensor:
    """``ipc`` random images per class (compile's random selection) from the split minus ``exclude``."""
    allowed = torch.ones(len(train), dtype=torch.bool)
    if exclude is not None and len(exclude):
        allowed[exclude] = False
    pool = torch.nonzero(allowed).flatten()
    try:
        return pool[random_per_class(train.targets[pool], train.classes, ipc, seed)]
    except RecipeError as exc:
        raise EvaluateError(f"too few training images left for the baselines and the held-out slice: {exc.problem}", "use a smaller holdout_fraction or IPC") from None


def holdout_indices(train: ImageSet, fraction: float, seed: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """The lr-selection slice: ``fraction`` of the smallest class, from every class; never ``exclude`` (an artifact's own images)."""
    smallest = int(torch.bincount(train.targets, minlength=train.num_classes).min())
    return _pick(train, max(1, round(fraction * smallest)), derive_seed(seed, "holdout"), exclude)


def random_images(train: ImageSet, ipc: int, seed: int, exclude: torch.Tensor | None) -> torch.Tensor:
    """The random baseline's images: ``ipc`` per class, none of the artifact's own nor the held-out slice."""
    return _pick(train, ipc, derive_seed(seed, "random-baseline"), exclude)


def teacher_labels(teachers, pixels: torch.Tensor, views: dict | None, mean, std, device, schema: dict, num_classes: int, zca=None) -> dict[str, torch.Tensor]:
    """Labels of ``teachers`` for ``pixels`` (or their ``views``) in the artifact's stored form: fp16 ``probs`` (N, V, C) or top-k.

    Made as compile makes them (``schema``: temperature, k), a chunk of samples at a time so that
    the float32 logits in flight stay under :data:`LOGIT_BYTES` (IPC 50 x 300 views x 1000
    classes would be 60 GB at once). ``zca``: the teachers' own whitening (they label in their
    input space, whatever the students').
    """
    from ..label import AugmentedViews, soft_labels, teacher_logits

    v = 1 if views is None else next(iter(views.values())).shape[1]
    source = pixels if views is None else AugmentedViews(pixels, views)
    per_chunk = max(1, LOGIT_BYTES // (v * num_classes * 4)) * v
    temperature, k = schema.get("temperature") or 1.0, schema.get("k")
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(source), per_chunk):
        logits = teacher_logits(teachers, _Span(source, start, min(start + per_chunk, len(source))), mean, std, device, zca=zca)
        for name, t in soft_labels(logits, temperature, k).items():
            t = t.half() if t.is_floating_point() else t.to(torch.int16 if num_classes <= 32767 else torch.int32)
            parts.setdefault(name, []).append(t.view(-1, v, t.shape[-1]))
    return {name: torch.cat(ts) for name, ts in parts.items()}



class _Span:
    """Items ``start:stop`` of a sliceable batch source (a tensor or ``AugmentedViews``), re-indexed from 0."""

    def __init__(self, source, start: int, stop: int):
        self.source, self.start, self.stop = source, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, span: slice):
        a = self.start + (span.start or 0)
        return self.source[slice(a, min(self.start + span.stop, self.stop))]
