"""Preprocessing as data: how encoded images become the fixed-size uint8 images a model sees.

A split is decoded with torchvision's evaluation transform, ``Resize(resize)`` then
``CenterCrop(crop)`` on the PIL image (bilinear, antialiased as PIL always is when it shrinks):
the short side becomes ``resize``, the long side ``int(resize * long / short)``, and the crop's
top-left corner is ``int(round((size - crop) / 2.0))``. The same arithmetic, recorded as
``ImageSet.info()["preprocess"]``, travels with experts and artifacts, so that labelling and
testing decode an image exactly as the teacher's training did.

ImageNet's default is torchvision's (resize 256, crop 224: a crop of 0.875); every other dataset
resizes to the crop (a no-op when images already have its size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import DataError

INTERPOLATION = "bilinear"


@dataclass(frozen=True)
class Preprocess:
    """Resize the short side to ``resize``, centre-crop to ``crop`` (H, W), normalise with ``mean``/``std``."""

    resize: int
    crop: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = INTERPOLATION

    def to_dict(self) -> dict:
        return {
            "resize": int(self.resize),
            "crop": [int(self.crop[0]), int(self.crop[1])],
            "interpolation": self.interpolation,
            "mean": [round(float(m), 6) for m in self.mean],
            "std": [round(float(s), 6) for s in self.std],
        }

    @classmethod
    def from_info(cls, info: dict) -> "Preprocess":
        """From ``ImageSet.info()`` (or a manifest's dataset dict); older records without ``preprocess`` resized to the crop."""
        p = info.get("preprocess")
        if p:
            return cls(int(p["resize"]), (int(p["crop"][0]), int(p["crop"][1])), tuple(p["mean"]), tuple(p["std"]), p.get("interpolation", INTERPOLATION))
        h, w = info["resolution"]
        return cls(max(int(h), int(w)), (int(h), int(w)), tuple(info["mean"]), tuple(info["std"]))


def check_resize(resize: int | None, crop: tuple[int, int]) -> int:
    """``resize`` (default: the crop's longer side), refused when the crop would not fit in it."""
    if resize is None:
        return max(crop)
    if int(resize) != resize or resize < max(crop):
        raise DataError(f"resize {resize} is smaller than the crop {crop[0]}x{crop[1]}", f"pass a resize of at least {max(crop)} (the short side is resized to it, then the centre is cropped)")
    return int(resize)


def ratio_resize(crop: int, crop_fraction: float) -> int:
    """The resize that a centre crop of ``crop_fraction`` of the short side needs: ImageNet's 224 / 0.875 = 256 (timm's rule)."""
    return math.floor(crop / crop_fraction)


def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """(width, height) after torchvision's ``Resize(resize)``: short side ``resize``, long side ``int(resize * long / short)``."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resize, int(resize * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def crop_box(width: int, height: int, crop_h: int, crop_w: int) -> tuple[int, int, int, int]:
    """PIL's (left, top, right, bottom) of torchvision's ``CenterCrop((crop_h, crop_w))``."""
    top = int(round((height - crop_h) / 2.0))
    left = int(round((width - crop_w) / 2.0))
    return left, top, left + crop_w, top + crop_h
