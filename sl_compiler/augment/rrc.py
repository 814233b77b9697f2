"""RandomResizedCrop on image batches on the device, as torchvision samples it, for every image at once.

torchvision's ``RandomResizedCrop.get_params``: up to 10 attempts of (area fraction ~ U(scale),
log aspect ratio ~ U(log ratio)); the first whose box fits is kept, at a uniform position; if none
fits, a centre crop with the ratio clamped to the range. Here the 10 attempts are drawn as one
(N, 10) tensor and the first fitting one is picked per image, so no image waits on another. The
box is resized back to the input size with bilinear sampling (``F.grid_sample``, pixel centres,
border padding), the replay rule of :mod:`sl_compiler.label.views`; unlike torchvision's tensor
resize there is no antialiasing when the box is larger than the output.

Inputs may be normalised float images (bilinear sampling commutes with per-channel
normalisation), so uint8 batches from the device are cropped after ``normalize``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .rng import as_random

SCALE = (0.08, 1.0)  # torchvision's defaults; SRe2L's student protocol uses the same
RATIO = (3 / 4, 4 / 3)
ATTEMPTS = 10
SLOTS = 2 * ATTEMPTS + 2  # random slots per image: area and ratio per attempt, then top and left


def crop_boxes(rng, n: int, h: int, w: int, scale=SCALE, ratio=RATIO) -> torch.Tensor:
    """float32 (n, 4) boxes (top, left, height, width) in source pixels, torchvision's sampling."""
    u = rng.uniform(n, SLOTS)
    area = (scale[0] + u[:, :ATTEMPTS] * (scale[1] - scale[0])) * (h * w)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + u[:, ATTEMPTS : 2 * ATTEMPTS] * (log_hi - log_lo))
    cw = torch.sqrt(area * aspect).round()
    ch = torch.sqrt(area / aspect).round()
    fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # the first attempt that fits (0 when none does)
    found = fits.any(1)
    # torchvision's fallback: the whole image, its ratio clamped into range, centred
    in_ratio = w / h
    fw, fh = (w, int(round(w / ratio[0]))) if in_ratio < ratio[0] else (int(round(h * ratio[1])), h) if in_ratio > ratio[1] else (w, h)
    cw = torch.where(found, cw.gather(1, first)[:, 0], torch.full_like(cw[:, 0], fw))
    ch = torch.where(found, ch.gather(1, first)[:, 0], torch.full_like(ch[:, 0], fh))
    top = torch.where(found, torch.floor(u[:, -2] * (h - ch + 1)), torch.floor((h - ch) / 2))
    left = torch.where(found, torch.floor(u[:, -1] * (w - cw + 1)), torch.floor((w - cw) / 2))
    return torch.stack([top, left, ch, cw], 1)


def resize_boxes(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Each image's box (top, left, height, width) resized to the image's own size, mirrored where ``flip``."""
    n, _, h, w = x.shape
    top, left, ch, cw = boxes.to(x.device, torch.float32).unbind(1)
    sx = cw / w if flip is None else cw / w * (1.0 - 2.0 * flip.float())
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, (2 * left + cw) / w - 1], 1), torch.stack([zero, ch / h, (2 * top + ch) / h - 1], 1)], 1)
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x.float(), grid.to(x.device), mode="bilinear", padding_mode="border", align_corners=False).to(x.dtype)


def random_resized_crop(x: torch.Tensor, rng, scale=SCALE, ratio=RATIO) -> torch.Tensor:
    """RandomResizedCrop of every image of float ``x`` (N, C, H, W) back to H x W."""
    rng = as_random(rng, x.device)
    n, _, h, w = x.shape
    return resize_boxes(x, crop_boxes(rng, n, h, w, scale, ratio))
