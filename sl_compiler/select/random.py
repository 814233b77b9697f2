"""Random images per class, from one recorded seed, with batched tensor ops (no per-image loop)."""

from __future__ import annotations

import torch

from ..errors import RecipeError
from ..seeding import generator


def per_class_ranks(targets: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Rank (0 = smallest score) of each image within its class; ties break by dataset index."""
    order = torch.argsort(scores, stable=True)
    order = order[torch.argsort(targets[order], stable=True)]
    counts = torch.bincount(targets)
    starts = torch.cumsum(counts, 0) - counts
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(len(order)) - starts[targets[order]]
    return ranks


def check_ipc(targets: torch.Tensor, classes: list[str], ipc: int) -> None:
    """IPC must fit in the smallest class."""
    counts = torch.bincount(targets, minlength=len(classes))
    smallest = int(torch.argmin(counts))
    if int(counts[smallest]) < ipc:
        raise RecipeError(
            f"--ipc {ipc} is larger than the smallest class ({classes[smallest]!r} has {int(counts[smallest])} images)",
            f"pass --ipc {int(counts[smallest])} or less",
        )


def in_sample_order(picked: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Indices sorted by (class, dataset index): the artifact's sample order."""
    picked = torch.sort(picked).values
    return picked[torch.argsort(targets[picked], stable=True)]


def draw_per_class(u: torch.Tensor, candidate: torch.Tensor, targets: torch.Tensor, ipc: int) -> torch.Tensor:
    """The ``ipc`` candidates of each class with the smallest draws ``u``, in sample order.

    Callers check first that every class has ``ipc`` candidates. Leaving an image out of the
    candidates replaces it by the class's next draw and keeps every other pick.
    """
    u = u.masked_fill(~candidate, 2.0)  # draws are in [0, 1): non-candidates rank after every candidate
    picked = torch.nonzero(per_class_ranks(targets, u) < ipc).flatten()
    return in_sample_order(picked, targets)


def random_per_class(targets: torch.Tensor, classes: list[str], ipc: int, seed: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """``ipc`` distinct images of every class, uniformly at random; the same seed picks the same images.

    ``exclude`` (bool, N) leaves images out (undecodable files skipped with ``--skip-bad``); the
    draws of the others do not change.
    """
    candidate = torch.ones(len(targets), dtype=torch.bool) if exclude is None else ~exclude
    check_ipc(targets[candidate], classes, ipc)
    u = torch.rand(len(targets), generator=generator("select", "random", seed), dtype=torch.float64)
    return draw_per_class(u, candidate, targets, ipc)
