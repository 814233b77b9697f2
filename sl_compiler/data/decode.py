"""Encoded bytes -> uint8 pixels: one image (PIL) or a batch (libjpeg through torchvision, PIL for the rest).

JPEGs already at the target shape are decoded in batches by torchvision's libjpeg decoder, whose
RGB output is bit-identical to PIL's; everything else, and every image that needs resizing, goes
through PIL (shorter side resized, centre crop). Decoding stays on the CPU on purpose: a GPU
decoder's output may differ from libjpeg's, and pixels must not depend on the machine.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import torch

from ..errors import DataError


def decode_image(data: bytes, shape: tuple[int, int, int], name: str = "image") -> torch.Tensor:
    """Decode encoded bytes to uint8 (C, H, W); resize (shorter side) and centre-crop to ``shape``."""
    from PIL import Image

    c, h, w = shape
    try:
        img = Image.open(io.BytesIO(data))
        img = img.convert("L" if c == 1 else "RGB")
    except Exception as exc:
        raise DataError(f"cannot decode image {name}: {exc}", "replace or remove the corrupt file") from None
    if img.size != (w, h):
        scale = max(h / img.size[1], w / img.size[0])
        new = (max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale)))
        img = img.resize(new, Image.BILINEAR)
        left, top = (new[0] - w) // 2, (new[1] - h) // 2
        img = img.crop((left, top, left + w, top + h))
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


@functools.cache
def batch_jpeg_decoder():
    """torchvision's batched libjpeg decoder, or None where torchvision no longer ships it (PIL then).

    torchvision 0.29 deprecates it in favour of TorchCodec; it is still libjpeg and bit-identical
    to PIL, and the PIL fallback keeps slc working once it is gone.
    """
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return None
    return lambda blobs, channels: decode_jpeg(
        [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs],
        mode=ImageReadMode.RGB if channels == 3 else ImageReadMode.UNCHANGED,
    )


def decode_files(source, indices: list[int], shape: tuple[int, int, int], skip_bad: bool = False) -> tuple[torch.Tensor, dict[int, tuple[str, str | None]]]:
    """Files ``indices`` of a ``FileSource`` as uint8 (B, C, H, W), and the undecodable ones.

    An undecodable file raises :class:`DataError` naming it, unless ``skip_bad``: then its row
    stays zero and ``{index: (problem, fix)}`` reports it.
    """
    out = torch.zeros((len(indices), *shape), dtype=torch.uint8)
    blobs = [source.read(i) for i in indices]
    jpegs = [j for j, i in enumerate(indices) if source.exts[i] == "jpg"]
    decoder = batch_jpeg_decoder()
    done = set()
    if jpegs and decoder is not None:
        try:
            decoded = decoder([blobs[j] for j in jpegs], shape[0])
        except RuntimeError:  # a bad file in the batch: PIL below names it
            decoded = []
        for j, img in zip(jpegs, decoded):
            if tuple(img.shape) == shape:
                out[j] = img
                done.add(j)
    bad: dict[int, tuple[str, str | None]] = {}
    for j, i in enumerate(indices):
        if j in done:
            continue
        try:
            out[j] = decode_image(blobs[j], shape, source.ids[i])
        except DataError as exc:
            if not skip_bad:
                raise
            bad[i] = (exc.problem, exc.fix)
    return out, bad
