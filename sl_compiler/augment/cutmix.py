"""CutMix (Yun et al., ICCV 2019), batched: each image gets one box pasted from a partner image.

Per sample: lambda ~ Beta(1, 1) (CutMix's default, i.e. uniform), a box of area (1 - lambda)
centred uniformly and clipped at the edges, the partner drawn by a random permutation of the
batch (of each student's own batch, under :class:`~sl_compiler.augment.rng.Draws`). Targets mix
by the box's true area, so that soft and one-hot targets stay consistent.
"""

from __future__ import annotations

import torch

from .rng import as_random

SLOTS = 4  # random slots per image: partner, lambda, box centre row, box centre column


def cutmix(x: torch.Tensor, targets: torch.Tensor | None, rng) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mix a batch ``x`` (N, C, H, W) and its probability targets (N, K); returns both mixed.

    ``targets`` None (a teacher labels the mixed images afterwards) gives None back.
    """
    rng = as_random(rng, x.device)
    n, _, h, w = x.shape
    partner = rng.permutation(n)
    lam = rng.uniform(n, 1)[:, 0]
    cut = torch.sqrt(1.0 - lam)
    bh, bw = (cut * h).long(), (cut * w).long()
    cy = rng.integers(n, 1, h)[:, 0]
    cx = rng.integers(n, 1, w)[:, 0]
    y0, y1 = (cy - bh // 2).clamp(0, h), (cy + bh // 2).clamp(0, h)
    x0, x1 = (cx - bw // 2).clamp(0, w), (cx + bw // 2).clamp(0, w)
    r = torch.arange(h, device=x.device).view(1, h)
    c = torch.arange(w, device=x.device).view(1, w)
    box = ((r >= y0[:, None]) & (r < y1[:, None]))[:, None, :, None] & ((c >= x0[:, None]) & (c < x1[:, None]))[:, None, None, :]
    mixed = torch.where(box, x[partner], x)
    if targets is None:
        return mixed, None
    pasted = ((y1 - y0) * (x1 - x0)).to(targets.dtype) / (h * w)
    mixed_targets = targets * (1 - pasted[:, None]) + targets[partner] * pasted[:, None]
    return mixed, mixed_targets
