"""Encoded bytes -> uint8 pixels: one image (PIL) or a batch (libjpeg through torchvision, PIL for the rest).

Images are resized and centre-cropped with torchvision's arithmetic (``preprocess``). JPEGs that
need neither (already the crop's size, short side equal to ``resize``) are decoded in batches by
torchvision's libjpeg decoder, whose RGB output is bit-identical to PIL's; everything else goes
through PIL. Decoding is strict: a truncated file is an error naming it, never a grey-filled
image. It stays on the CPU on purpose: a GPU decoder's output may differ from libjpeg's, and
pixels must not depend on the machine.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import torch

from ..errors import DataError
from .files import sniff_ext
from .preprocess import crop_box, resized_size

FIX = "replace or remove the corrupt file (or pass --skip-bad to leave it out)"


def decode_image(data: bytes, shape: tuple[int, int, int], name: str = "image", resize: int | None = None) -> torch.Tensor:
    """Decode encoded bytes to uint8 (C, H, W): short side resized to ``resize`` (default: the crop's longer side), centre crop to ``shape``."""
    from PIL import Image

    c, h, w = shape
    resize = resize or max(h, w)
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # decodes now, strictly: a truncated file raises here (LOAD_TRUNCATED_IMAGES stays off)
        img = img.convert("L" if c == 1 else "RGB")
    except Exception as exc:
        raise DataError(f"cannot decode image {name}: {exc}", FIX) from None
    size = resized_size(*img.size, resize)
    if size != img.size:
        img = img.resize(size, Image.BILINEAR)
    if img.size != (w, h):
        img = img.crop(crop_box(*img.size, h, w))
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


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header, without decoding it; None when PIL cannot tell."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:
        return None


def decode_files(
    source, indices: list[int], shape: tuple[int, int, int], skip_bad: bool = False, resize: int | None = None
) -> tuple[torch.Tensor, dict[int, tuple[str, str | None]]]:
    """Files ``indices`` of a ``FileSource`` as uint8 (B, C, H, W), and the undecodable ones.

    An undecodable file raises :class:`DataError` naming it, unless ``skip_bad``: then its row
    stays zero and ``{index: (problem, fix)}`` reports it.
    """
    resize = resize or max(shape[1:])
    out = torch.zeros((len(indices), *shape), dtype=torch.uint8)
    bad: dict[int, tuple[str, str | None]] = {}
    blobs: list[bytes | None] = []
    for i in indices:
        try:
            blobs.append(source.read(i))
        except DataError as exc:  # a missing file or a truncated tar
            if not skip_bad:
                raise
            bad[i] = (exc.problem, exc.fix)
            blobs.append(None)
    done = set()
    decoder = batch_jpeg_decoder()
    if decoder is not None and resize == min(shape[1:]):  # only images of exactly the crop's size skip PIL
        # the header says which JPEGs are already the crop's size; decoding the others twice (libjpeg, then PIL to resize) would waste the first pass
        jpegs = [j for j, blob in enumerate(blobs) if blob is not None and sniff_ext(blob) == "jpg" and header_size(blob) == (shape[2], shape[1])]
        try:
            decoded = decoder([blobs[j] for j in jpegs], shape[0]) if jpegs else []
        except RuntimeError:  # a bad file in the batch: PIL below names it
            decoded = []
        for j, img in zip(jpegs, decoded):
            if tuple(img.shape) == shape:
                out[j] = img
                done.add(j)
    for j, i in enumerate(indices):
        if j in done or blobs[j] is None:
            continue
        try:
            out[j] = decode_image(blobs[j], shape, source.ids[i], resize)
        except DataError as exc:
            if not skip_bad:
                raise
            bad[i] = (exc.problem, exc.fix)
    return out, bad
