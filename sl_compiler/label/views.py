"""Augmented views: sample their parameters once, replay them anywhere, bit for bit.

This is the one implementation of augmented views in slc. Compile samples the parameters of V
views per image, replays them and labels each view with the teacher; the artifact stores the
parameters (``view.<name>`` tensors), and the student trainer replays the exact view that the
teacher labelled. Parameter tensors, per image n and view v (docs/artifact-format.md, "Views"):

=========  =======  =========  ==========================================================
name       dtype    per view   meaning
=========  =======  =========  ==========================================================
crop       int16    [4]        top, left, height, width of the crop, source pixels (rrc)
flip       uint8    []         1: mirror left-right after the crop (rrc)
partner    int32    []         sample position of the CutMix partner image (cutmix)
cut        int16    [4]        top, left, height, width of the box pasted from the partner,
                               output pixels; height or width 0 pastes nothing (cutmix)
=========  =======  =========  ==========================================================

A crop is resized back to the image size with bilinear sampling (``F.grid_sample``, pixel
centres, border padding). ``cutmix+rrc`` crops and flips both the image and its partner with the
view's ``crop``/``flip``, then pastes the partner's ``cut`` box.

Randomness is counter-based: view v of the image with key K draws its numbers from a hash of
(``derive_seed("view", seed, K)``, v, slot), so a view never depends on the batch size, on the
order of samples or on how many views were drawn before it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import RecipeError
from ..seeding import derive_seed

KINDS = ("cutmix", "rrc", "cutmix+rrc")
RRC_SCALE = (0.08, 1.0)  # area fraction of the crop (torchvision's RandomResizedCrop default)
RRC_RATIO = (3 / 4, 4 / 3)  # aspect ratio of the crop
# CutMix's mixing ratio lambda ~ Beta(1, 1) = U(0, 1) (Yun et al. 2019); the box covers 1 - lambda
PARAM_DTYPES = {"crop": torch.int16, "flip": torch.uint8, "partner": torch.int32, "cut": torch.int16}
_SLOTS = 9  # random numbers per view: 5 for the crop (scale, ratio, top, left, flip), 4 for CutMix
_M32 = 0xFFFFFFFF


def sample_views(keys: list[str], views: int, kind: str, seed: int, shape: tuple[int, int, int]) -> dict[str, torch.Tensor]:
    """Parameters of ``views`` augmented views of each image: ``{name: (N, V, ...)}`` on the CPU.

    ``keys`` are the artifact's sample keys in sample order; a CutMix partner is another sample's
    position in that order.
    """
    if kind not in KINDS:
        raise RecipeError(f"unknown view kind {kind!r}", f"use one of {', '.join(KINDS)}")
    n = len(keys)
    _, h, w = shape
    key_seeds = torch.tensor([derive_seed("view", seed, k) for k in keys], dtype=torch.int64)
    u = _uniform(key_seeds, views, _SLOTS)  # float64 (N, V, SLOTS) in [0, 1)
    params: dict[str, torch.Tensor] = {}
    if "rrc" in kind:
        area = (RRC_SCALE[0] + u[..., 0] * (RRC_SCALE[1] - RRC_SCALE[0])) * (h * w)
        log_lo, log_hi = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
        ratio = torch.exp(log_lo + u[..., 1] * (log_hi - log_lo))
        cw = torch.sqrt(area * ratio).round().clamp(1, w)
        ch = torch.sqrt(area / ratio).round().clamp(1, h)
        top = torch.floor(u[..., 2] * (h - ch + 1))
        left = torch.floor(u[..., 3] * (w - cw + 1))
        params["crop"] = torch.stack([top, left, ch, cw], -1).to(torch.int16)
        params["flip"] = (u[..., 4] < 0.5).to(torch.uint8)
    if "cutmix" in kind:
        if n < 2:
            raise RecipeError("CutMix views need at least 2 images", "raise --ipc or use --augment rrc")
        cut_ratio = torch.sqrt(1.0 - u[..., 5])
        half_h, half_w = torch.floor(h * cut_ratio / 2), torch.floor(w * cut_ratio / 2)
        cy, cx = torch.floor(u[..., 6] * h), torch.floor(u[..., 7] * w)
        y0, y1 = (cy - half_h).clamp(0, h), (cy + half_h).clamp(0, h)
        x0, x1 = (cx - half_w).clamp(0, w), (cx + half_w).clamp(0, w)
        params["cut"] = torch.stack([y0, x0, y1 - y0, x1 - x0], -1).to(torch.int16)
        partner = torch.floor(u[..., 8] * (n - 1)).long()
        own = torch.arange(n).view(n, 1)
        params["partner"] = (partner + (partner >= own).long()).to(torch.int32)  # never the image itself
    return params


def gather(params: dict[str, torch.Tensor], sample_index: torch.Tensor, view_index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-view rows ``{name: (B, ...)}`` for views ``(sample_index[b], view_index[b])`` of ``(N, V, ...)`` params."""
    return {name: p[sample_index, view_index] for name, p in params.items()}


def replay(
    images: torch.Tensor,
    index_of_sample: torch.Tensor,
    params: dict[str, torch.Tensor],
    partner_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """The views described by per-view ``params`` rows (see :func:`gather`), as a (B, C, H, W) batch.

    ``images`` is uint8 or float (N, C, H, W) on any device; view b is built from
    ``images[index_of_sample[b]]`` and, for CutMix, ``images[partner_index[b]]``. ``partner_index``
    defaults to ``params["partner"]``, right when ``images`` is the whole artifact in sample order;
    pass it when ``images`` is some other batch. uint8 in gives uint8 out, exactly the pixels the
    teacher labelled; float in gives float out.
    """
    base = images[index_of_sample]
    b, _, h, w = base.shape
    has_cut = "cut" in params
    if has_cut and partner_index is None:
        partner_index = params["partner"]
    partner = images[partner_index.long()] if has_cut else None
    if "crop" in params:
        theta = _crop_theta(params["crop"].to(base.device), params["flip"].to(base.device), h, w)
        both = base if partner is None else torch.cat([base, partner])
        grid = F.affine_grid(theta.repeat(len(both) // b, 1, 1), list(both.shape), align_corners=False)
        out = F.grid_sample(both.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        if images.dtype == torch.uint8:
            out = out.round_().clamp_(0, 255).to(torch.uint8)
        else:
            out = out.to(images.dtype)
        base, partner = (out, None) if partner is None else out.split(b)
    if has_cut:
        cut = params["cut"].to(base.device).long()
        rows = torch.arange(h, device=base.device).view(1, h, 1)
        cols = torch.arange(w, device=base.device).view(1, 1, w)
        top, left, ch, cw = (cut[:, i].view(b, 1, 1) for i in range(4))
        mask = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
        base = torch.where(mask.unsqueeze(1), partner, base)
    return base


class AugmentedViews:
    """All N x V views of the N images as one sliceable sequence (view j = image j // V, view j % V).

    Views are replayed on the fly, one batch at a time, so that labelling 300 views of ImageNet
    never holds them all in memory. ``images`` may live on the device that labels them.
    ``positions`` (int64 N) says which row of ``images`` holds each sample when ``images`` holds
    only some of them (one rank's share of a distributed compile: its views' images and CutMix
    partners); by default row n is sample n.
    """

    def __init__(self, images: torch.Tensor, params: dict[str, torch.Tensor], positions: torch.Tensor | None = None):
        self.images = images
        self.params = {k: v.to(images.device) for k, v in params.items()}
        self.views = next(iter(params.values())).shape[1]
        self.samples = len(images) if positions is None else len(positions)
        self.positions = None if positions is None else positions.to(images.device)

    def __len__(self) -> int:
        return self.samples * self.views

    def __getitem__(self, span: slice) -> torch.Tensor:
        j = torch.arange(span.start or 0, min(span.stop, len(self)), device=self.images.device)
        sample, view = j // self.views, j % self.views
        rows = gather(self.params, sample, view)
        if self.positions is None:
            return replay(self.images, sample, rows)
        partner = self.positions[rows["partner"].long()] if "partner" in rows else None
        return replay(self.images, self.positions[sample], rows, partner)


def _crop_theta(crop: torch.Tensor, flip: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Affine maps from output to input normalised coordinates, one per view (B, 2, 3)."""
    top, left, ch, cw = (crop[:, i].float() for i in range(4))
    sx = cw / w * (1.0 - 2.0 * flip.float())
    theta = torch.zeros(len(crop), 2, 3, device=crop.device)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = (2 * left + cw) / w - 1
    theta[:, 1, 1] = ch / h
    theta[:, 1, 2] = (2 * top + ch) / h - 1
    return theta


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32), in 16-bit halves so that int64 never overflows."""
    return ((x & 0xFFFF) * c + ((((x >> 16) * c) & 0xFFFF) << 16)) & _M32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with good avalanche (Wellons' "lowbias32")."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _uniform(key_seeds: torch.Tensor, views: int, slots: int) -> torch.Tensor:
    """float64 (N, V, S) in [0, 1): a hash of (key seed, view, slot), independent per entry."""
    counter = torch.arange(views * slots, dtype=torch.int64).view(1, views, slots)
    lo = (key_seeds & _M32).view(-1, 1, 1)
    hi = ((key_seeds >> 32) & _M32).view(-1, 1, 1)
    h = _hash32(_hash32(_hash32(counter) ^ hi) ^ lo)
    return h.double() / 2.0**32
