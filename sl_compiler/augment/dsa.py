"""Differentiable Siamese Augmentation (Zhao & Bilen, ICML 2021), batched on the device.

The student-training augmentation of DC/DSA/MTT and of the soft-label paper: color
(brightness, saturation, contrast), crop (zero-padded integer shift), cutout, flip, scale and
rotate, each with per-sample random parameters drawn as tensors. Mode ``single`` (DSA's default
``aug_mode='S'``) applies one operation family per batch; ``all`` applies every family in order.
Inputs are normalised float images (N, C, H, W), as in DSA.

Random numbers come from ``rng`` (:mod:`sl_compiler.augment.rng`, every operation takes either): a ``torch.Generator`` (one
stream: the family is drawn on the host, as DSA does) or :class:`~sl_compiler.augment.rng.Draws`
for K students at once, where each student draws its own family and every family's operations
keep fixed slots, so a student's images are the same batched or alone. Under ``Draws`` a family
that no student picked is not computed; the others are computed for the whole batch and kept
where picked.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..errors import RecipeError
from .rng import Draws, TorchRandom, as_random

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass(frozen=True)
class DSAParams:
    """DSA's ``ParamDiffAug`` defaults (also DD-Ranking's ``dsa_params``)."""

    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


def _u(rng, x: torch.Tensor) -> torch.Tensor:
    return rng.uniform(len(x), 1).view(-1, 1, 1, 1)


def brightness(x, p: DSAParams, rng):
    rng = as_random(rng, x.device)
    return x + (_u(rng, x) - 0.5) * p.brightness


def saturation(x, p: DSAParams, rng):
    rng = as_random(rng, x.device)
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_u(rng, x) * p.saturation) + mean


def contrast(x, p: DSAParams, rng):
    rng = as_random(rng, x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_u(rng, x) + p.contrast) + mean


def _affine(x, theta):
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def scale(x, p: DSAParams, rng):
    rng = as_random(rng, x.device)
    s = rng.uniform(len(x), 2) * (p.ratio_scale - 1.0 / p.ratio_scale) + 1.0 / p.ratio_scale
    theta = torch.zeros(len(x), 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1] = s[:, 0], s[:, 1]
    return _affine(x, theta)


def rotate(x, p: DSAParams, rng):
    rng = as_random(rng, x.device)
    angle = (rng.uniform(len(x), 1)[:, 0] - 0.5) * 2 * p.ratio_rotate / 180 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    return _affine(x, theta)


def flip(x, p: DSAParams, rng):
    rng = as_random(rng, x.device)
    return torch.where(_u(rng, x) < p.prob_flip, x.flip(3), x)


def crop(x, p: DSAParams, rng):
    """Shift each image by an integer offset in [-pad, pad] per axis, filling with zeros."""
    rng = as_random(rng, x.device)
    n, _, h, w = x.shape
    sh, sw = int(h * p.ratio_crop_pad + 0.5), int(w * p.ratio_crop_pad + 0.5)
    dy = rng.integers(n, 1, 2 * sh + 1) - sh
    dx = rng.integers(n, 1, 2 * sw + 1) - sw
    rows = torch.arange(h, device=x.device).view(1, h) + dy  # source row of each output row
    cols = torch.arange(w, device=x.device).view(1, w) + dx
    valid = ((rows >= 0) & (rows < h))[:, None, :, None] & ((cols >= 0) & (cols < w))[:, None, None, :]
    rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    out = x.gather(2, rows[:, None, :, None].expand(n, x.shape[1], h, w))
    out = out.gather(3, cols[:, None, None, :].expand(n, x.shape[1], h, w))
    return out * valid


def cutout(x, p: DSAParams, rng):
    """Zero one square of side ratio_cutout * size per image, centred anywhere (clipped at edges)."""
    rng = as_random(rng, x.device)
    n, _, h, w = x.shape
    ch, cw = int(h * p.ratio_cutout + 0.5), int(w * p.ratio_cutout + 0.5)
    oy = rng.integers(n, 1, h + (1 - ch % 2)) - ch // 2
    ox = rng.integers(n, 1, w + (1 - cw % 2)) - cw // 2
    r = torch.arange(h, device=x.device).view(1, h)
    c = torch.arange(w, device=x.device).view(1, w)
    hole = ((r >= oy) & (r < oy + ch))[:, None, :, None] & ((c >= ox) & (c < ox + cw))[:, None, None, :]
    return x * ~hole


# each family's operations in order, with the random slots each one draws per image
OPS = {
    "color": ((brightness, 1), (saturation, 1), (contrast, 1)),
    "crop": ((crop, 2),),
    "cutout": ((cutout, 2),),
    "flip": ((flip, 1),),
    "scale": ((scale, 2),),
    "rotate": ((rotate, 1),),
}


def family_slots(family: str) -> int:
    return sum(k for _, k in OPS[family])


class DSA:
    """``DSA(strategy, mode)(x, rng)``: the same random numbers give the same output."""

    def __init__(self, strategy: str = DEFAULT_STRATEGY, mode: str = "single", params: DSAParams | None = None):
        self.families = tuple(f for f in strategy.split("_") if f)
        unknown = [f for f in self.families if f not in OPS]
        if unknown or not self.families:
            raise RecipeError(f"unknown DSA operation(s) {unknown or strategy!r}", f"build the strategy from {', '.join(FAMILIES)} joined by _")
        if mode not in ("single", "all"):
            raise RecipeError(f"unknown DSA mode {mode!r}", "use single (one family per batch, DSA's default) or all")
        self.strategy, self.mode, self.params = strategy, mode, params or DSAParams()

    @property
    def slots(self) -> int:
        """Random slots per image under :class:`Draws`: every family's, plus the family choice."""
        return sum(family_slots(f) for f in self.families) + (self.mode == "single")

    def _family(self, family: str, x: torch.Tensor, rng) -> torch.Tensor:
        for op, _ in OPS[family]:
            x = op(x, self.params, rng)
        return x

    def __call__(self, x: torch.Tensor, rng) -> torch.Tensor:
        rng = as_random(rng, x.device)
        if self.mode == "all":
            for family in self.families:
                x = self._family(family, x, rng.reserve(family_slots(family)))
            return x
        if isinstance(rng, TorchRandom):
            # one stream: the family is drawn on the host, so a CUDA generator causes no device sync
            g = rng.g
            host = g if g.device.type == "cpu" else torch.Generator().manual_seed(g.initial_seed())
            pick = int(torch.randint(len(self.families), (1,), generator=host))
            return self._family(self.families[pick], x, rng)
        return self._per_student(x, rng)

    def _per_student(self, x: torch.Tensor, rng: Draws) -> torch.Tensor:
        """Each student's own family: computed for the batch, kept on that student's rows."""
        picks, host_picks = rng.student_integers(len(self.families))
        row_pick = picks.view(-1, 1).expand(-1, rng.per).reshape(-1, 1, 1, 1)
        chosen = set(range(len(self.families))) if host_picks is None else set(host_picks)
        out = x
        for i, family in enumerate(self.families):
            window = rng.reserve(family_slots(family))
            if i in chosen:
                out = torch.where(row_pick == i, self._family(family, x, window), out)
        return out

    def describe(self) -> dict:
        return {"kind": "dsa", "strategy": self.strategy, "mode": self.mode, **asdict(self.params)}
