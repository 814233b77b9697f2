"""torchvision's two ImageNet transforms, deterministic: RandomResizedCrop + flip, and Resize + CenterCrop.

**RandomResizedCrop** (training). The crop of image ``index`` in ``epoch`` of a run seeded ``seed``
comes from a counter-based hash of (seed, epoch, index), never from a random stream, so the pixels
of a batch do not depend on which worker decoded them, on the number of workers, on the batch
size or on where a run was resumed. torchvision's algorithm (``RandomResizedCrop.get_params``) is
reproduced: up to 10 tries of an area fraction ~ U(scale) and a log-uniform aspect ratio in
``ratio``; the first box that fits is placed uniformly; if none fits, a centre crop of the whole
image clamped to ``ratio``. The box is cut from the *original* image, resized to size x size with
PIL's bilinear filter (torchvision's PIL path: crop, then resize), then mirrored with probability
1/2 (``RandomHorizontalFlip`` after the crop).

**Resize + CenterCrop** (evaluation of imported checkpoints): the shorter side resized to
``resize`` (the longer to ``int(resize * long / short)``, as torchvision computes it), bilinear,
then the centre ``crop`` x ``crop`` window (offsets rounded as ``CenterCrop`` rounds them).

Both are decoders for the streaming loader (``stream(images, decode=...)``, called in its worker
processes as ``decode(data, index) -> uint8 (C, H, W)``). :func:`resized_crop_batch` applies the
same crop draw to a batch of decoded tensors, for splits held in memory without source files.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from ..seeding import derive_seed

SCALE = (0.08, 1.0)  # area fraction of the crop (torchvision's default)
RATIO = (3 / 4, 4 / 3)  # aspect ratio (width / height) of the crop
TRIES = 10  # torchvision's rejection loop
SLOTS = 4 * TRIES + 1  # uniforms per image: (area, ratio, top, left) per try, then the flip
_M32 = 0xFFFFFFFF


def uniforms(seed: int, epoch: int, indices) -> torch.Tensor:
    """float64 (N, SLOTS) in [0, 1): a hash of (seed, epoch, dataset index, slot), independent per entry."""
    base = derive_seed("random_resized_crop", seed, epoch)
    idx = torch.as_tensor(indices, dtype=torch.int64).view(-1, 1)
    key = _hash32(_hash32(_hash32(torch.tensor(base & _M32)) ^ (base >> 32) ^ (idx & _M32)) ^ ((idx >> 32) & _M32))
    slot = torch.arange(SLOTS, dtype=torch.int64).view(1, -1)
    return _hash32(_hash32(slot) ^ key).double() / 2.0**32


def crop_boxes(u: torch.Tensor, heights, widths, scale=SCALE, ratio=RATIO) -> torch.Tensor:
    """int64 (N, 4) boxes ``[top, left, height, width]`` of images ``heights x widths``, from :func:`uniforms` rows ``u``."""
    n = len(u)
    h_img = torch.as_tensor(heights, dtype=torch.float64).view(n, 1)
    w_img = torch.as_tensor(widths, dtype=torch.float64).view(n, 1)
    tries = u[:, : 4 * TRIES].view(n, TRIES, 4)
    target = h_img * w_img * (scale[0] + tries[..., 0] * (scale[1] - scale[0]))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + tries[..., 1] * (log_hi - log_lo))
    cw = torch.sqrt(target * aspect).round()
    ch = torch.sqrt(target / aspect).round()
    fits = (cw > 0) & (cw <= w_img) & (ch > 0) & (ch <= h_img)
    first = fits.to(torch.int8).argmax(1, keepdim=True)  # the first try that fits (0 when none does)
    pick = lambda t: t.gather(1, first).view(n)  # noqa: E731
    ch, cw, h_img, w_img = pick(ch), pick(cw), h_img.view(n), w_img.view(n)
    top = torch.floor(pick(tries[..., 2]) * (h_img - ch + 1))
    left = torch.floor(pick(tries[..., 3]) * (w_img - cw + 1))
    # no try fits: torchvision's fallback, the whole image clamped to the ratio range, centred
    in_ratio = w_img / h_img
    fb_w = torch.where(in_ratio > ratio[1], (h_img * ratio[1]).round(), w_img)
    fb_h = torch.where(in_ratio < ratio[0], (w_img / ratio[0]).round(), h_img)
    found = fits.any(1)
    ch, cw = torch.where(found, ch, fb_h), torch.where(found, cw, fb_w)
    top = torch.where(found, top, torch.div(h_img - ch, 2, rounding_mode="floor"))
    left = torch.where(found, left, torch.div(w_img - cw, 2, rounding_mode="floor"))
    return torch.stack([top, left, ch, cw], 1).long()


def flips(u: torch.Tensor) -> torch.Tensor:
    """bool (N,): mirror image n, from its last uniform."""
    return u[:, -1] < 0.5


def open_image(data: bytes, channels: int, name: str):
    """A PIL image in RGB (or L for one channel); a corrupt file is a :class:`DataError` naming it."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        return img.convert("L" if channels == 1 else "RGB")
    except Exception as exc:
        raise DataError(f"cannot decode image {name}: {exc}", "replace or remove the corrupt file") from None


def to_tensor(img) -> torch.Tensor:
    """PIL image -> uint8 (C, H, W)."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _index_name(index: int) -> str:
    return f"#{index}"


@dataclass(frozen=True)
class RandomResizedCrop:
    """Decoder: image ``index`` -> its crop for ``epoch`` of run ``seed``, resized to ``size``, maybe mirrored."""

    seed: int
    epoch: int
    size: int
    channels: int = 3
    scale: tuple[float, float] = SCALE
    ratio: tuple[float, float] = RATIO
    flip: bool = True
    name: Callable[[int], str] = _index_name  # names a file in errors (ImageSet.source_id)

    def __call__(self, data: bytes, index: int) -> torch.Tensor:
        (out,) = self.decode_many([data], [index])
        if isinstance(out, DataError):
            raise out
        return out

    def decode_many(self, blobs: list[bytes], indices: list[int]) -> list:
        """The crops of a batch: its boxes drawn in one call (per image they cost as much as decoding a
        small JPEG); a corrupt file gives its DataError in its place."""
        from PIL import Image

        images = []
        for data, index in zip(blobs, indices):
            try:
                images.append(open_image(data, self.channels, self.name(index)))
            except DataError as exc:
                images.append(exc)
        ok = [k for k, img in enumerate(images) if not isinstance(img, DataError)]
        if ok:
            u = uniforms(self.seed, self.epoch, [indices[k] for k in ok])
            boxes = crop_boxes(u, [images[k].height for k in ok], [images[k].width for k in ok], self.scale, self.ratio).tolist()
            for k, (top, left, h, w), mirror in zip(ok, boxes, flips(u).tolist()):
                out = images[k].crop((left, top, left + w, top + h)).resize((self.size, self.size), Image.BILINEAR)
                if self.flip and mirror:
                    out = out.transpose(Image.FLIP_LEFT_RIGHT)
                images[k] = to_tensor(out)
        return images


@dataclass(frozen=True)
class ResizeCenterCrop:
    """Decoder: torchvision's ``Resize(resize)`` then ``CenterCrop(crop)`` (bilinear), the preprocess of its ImageNet weights."""

    resize: int
    crop: int
    channels: int = 3
    name: Callable[[int], str] = _index_name

    def __post_init__(self):
        if not 0 < self.crop <= self.resize:
            raise DataError(f"a centre crop of {self.crop} px after resizing to {self.resize} px", "give a crop between 1 and the resize")

    def __call__(self, data: bytes, index: int) -> torch.Tensor:
        from ..data.decode import decode_image  # the loaders' own arithmetic, tested against torchvision

        return decode_image(data, (self.channels, self.crop, self.crop), self.name(index), self.resize)


def resized_crop_batch(x: torch.Tensor, seed: int, epoch: int, indices: torch.Tensor, scale=SCALE, ratio=RATIO) -> torch.Tensor:
    """The RandomResizedCrop + flip of decoded images ``x`` (B, C, H, W) of dataset ``indices``, at their own size.

    Cropped and resized on x's device by bilinear sampling (``label.views.replay``), the same
    boxes as :class:`RandomResizedCrop` draws for images of that size.
    """
    from ..label.views import replay

    b, _, h, w = x.shape
    u = uniforms(seed, epoch, indices.cpu())
    params = {"crop": crop_boxes(u, [h] * b, [w] * b, scale, ratio).to(torch.int16), "flip": flips(u).to(torch.uint8)}
    return replay(x, torch.arange(b, device=x.device), params)


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32), in 16-bit halves so that int64 never overflows."""
    return ((x & 0xFFFF) * c + ((((x >> 16) * c) & 0xFFFF) << 16)) & _M32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with good avalanche (Wellons' "lowbias32"), on int64 tensors."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)
