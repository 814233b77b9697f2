"""Soft labels from logits: temperature, softmax, and optionally only the top k.

Temperature divides the logits before the softmax (T > 1 smooths). Top-k keeps the k largest
probabilities (after temperature) and their class indices; a reader spreads the remaining mass
evenly over the other classes (the artifact's ``labels.fill = "uniform"``).

:func:`teacher_labels` makes them batch by batch in the artifact's stored form (float16, int16
class indices), so that the float32 logits of N x V views never exist all at once: for ImageNet at
IPC 50 with 300 views they would be 60 GB.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..artifact.format import LABEL_DTYPE
from ..errors import RecipeError
from ..progress import bar
from .teacher import Ensemble, ImageBatches, as_ensemble, run_teachers


def soft_labels(logits: torch.Tensor, temperature: float = 1.0, topk: int | None = None) -> dict[str, torch.Tensor]:
    """``{"probs": float32 (..., C)}``, or ``{"topk_values": float32 (..., k), "topk_indices": int64 (..., k)}``."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if topk is None:
        return {"probs": probs}
    check_topk(topk, probs.shape[-1])
    values, indices = probs.topk(topk, dim=-1, largest=True, sorted=True)
    return {"topk_values": values, "topk_indices": indices}


def check_topk(topk: int | None, classes: int) -> None:
    """Top-k must not ask for more classes than there are."""
    if topk is not None and topk > classes:
        raise RecipeError(f"--topk {topk} is more than the {classes} classes", f"pass --topk {classes} or less, or leave it out for dense labels")


def stored_form(labels: dict[str, torch.Tensor], num_classes: int) -> dict[str, torch.Tensor]:
    """Labels as an artifact stores them: float16 probabilities, int16 (int32 past 32767 classes) indices."""
    index_dtype = torch.int16 if num_classes <= 32767 else torch.int32
    return {k: v.to(index_dtype if k == "topk_indices" else LABEL_DTYPE) for k, v in labels.items()}


def teacher_labels(
    teachers: Sequence | Ensemble,
    images: ImageBatches | torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    device: str | torch.device = "auto",
    batch_size: int = 256,
    *,
    views: int = 1,
    temperature: float = 1.0,
    topk: int | None = None,
) -> dict[str, torch.Tensor]:
    """Stored-form soft labels ``{name: (N, views, C|k)}`` of ``len(images) = N x views`` uint8 inputs.

    Row j of ``images`` is view ``j % views`` of image ``j // views`` (``AugmentedViews``' order).
    Every teacher runs on each batch (one decode, see :class:`Ensemble`); each batch's logits
    go through :func:`soft_labels` and :func:`stored_form` before the next batch runs.
    """
    ensemble = as_ensemble(teachers, mean, std, device)
    total = len(images)
    if total == 0 or total % views:
        raise RecipeError(f"{total} label rows do not make whole images of {views} views", "pass N x views inputs")
    out: dict[str, torch.Tensor] = {}
    with bar(total, desc=f"label {ensemble.reference}") as progress:
        for positions, logits in run_teachers(ensemble, images, batch_size):
            for name, value in stored_labels(logits, temperature, topk).items():
                if name not in out:
                    out[name] = torch.empty((total, *value.shape[1:]), dtype=value.dtype)
                out[name][positions] = value
            progress.update(len(positions))
    return {name: value.view(total // views, views, *value.shape[1:]) for name, value in out.items()}


def stored_labels(logits: torch.Tensor, temperature: float = 1.0, topk: int | None = None) -> dict[str, torch.Tensor]:
    """One batch of logits as stored-form soft labels on the CPU: what every labelling path keeps of a batch."""
    return {name: value.cpu() for name, value in stored_form(soft_labels(logits, temperature, topk), logits.shape[1]).items()}


def label_spans(rows: int, batch_size: int) -> list[tuple[int, int]]:
    """The fixed batches ``[k * batch_size, (k + 1) * batch_size)`` that ``rows`` label rows are made in.

    A compile labels exactly these batches whatever the world size (each whole, on one rank), so
    each view meets the teachers in the same batch as in a single process.
    """
    if batch_size < 1:
        raise RecipeError(f"batch size must be at least 1, got {batch_size}", "pass --batch-size 1 or more")
    return [(start, min(start + batch_size, rows)) for start in range(0, rows, batch_size)]
