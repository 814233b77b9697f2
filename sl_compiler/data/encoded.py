"""Datasets of encoded files (JPEG, PNG) -> ImageSet: decoded once and cached when small, lazy when large.

Small sets (decoded size under ``IN_MEMORY_LIMIT``) are decoded in one pass into ``pixels`` and
cached (``data.cache``), so the second load reads one safetensors file. JPEGs are decoded in
batches by torchvision's libjpeg decoder on worker threads (it releases the GIL); its RGB output
is bit-identical to PIL's, which decodes everything else and every image that needs resizing
(torchvision's Resize + CenterCrop arithmetic: ``preprocess``). Decoding stays on the CPU on
purpose: a GPU decoder's output may differ from libjpeg's, and pixels must not depend on the
machine. Large sets (ImageNet) keep only ``sources`` and decode on demand, through the stream.
"""

from __future__ import annotations

import hashlib
import io
import math
from concurrent.futures import ThreadPoolExecutor

import torch

from ..errors import DataError
from ..progress import bar
from . import cache
from .base import FileSource, ImageSet
from .decode import decode_files
from .files import Names
from .preprocess import check_resize
from .stats import IMAGENET, pixel_stats

IN_MEMORY_LIMIT = 4 * 2**30  # bytes of decoded uint8 pixels
CHUNK = 512  # images per decode task


def probe_shape(source: FileSource, resolution: int | None, channels: int | None) -> tuple[int, int, int]:
    """The (C, H, W) every image decodes to: from the options, else from the first image (square, its shorter side)."""
    from PIL import Image

    if resolution is not None and channels is not None:
        return (channels, resolution, resolution)
    data = source.read(0)
    try:
        img = Image.open(io.BytesIO(data))
        size, mode = min(img.size), img.mode
    except Exception as exc:
        raise DataError(f"cannot decode image {source.ids[0]}: {exc}", "replace or remove the corrupt file") from None
    c = channels if channels is not None else (1 if mode in ("1", "L", "LA", "I", "I;16", "F") else 3)
    return (c, resolution or size, resolution or size)


def decode_all(source: FileSource, shape: tuple[int, int, int], desc: str, resize: int | None = None) -> torch.Tensor:
    """Every image of ``source`` as uint8 (N, C, H, W), in order, with a progress bar."""
    n = len(source.ids)
    out = torch.empty((n, *shape), dtype=torch.uint8)
    workers = max(1, min(torch.get_num_threads(), math.ceil(n / CHUNK)))
    with ThreadPoolExecutor(workers) as pool, bar(n, desc) as progress:
        for done in pool.map(lambda start: _decode_chunk(source, shape, resize, out, start), range(0, n, CHUNK)):
            progress.update(done)
    return out


def _decode_chunk(source: FileSource, shape: tuple[int, int, int], resize: int | None, out: torch.Tensor, start: int) -> int:
    idx = list(range(start, min(start + CHUNK, len(source.ids))))
    out[idx[0] : idx[-1] + 1] = decode_files(source, idx, shape, resize=resize)[0]
    return len(idx)


def ids_digest(ids) -> str:
    """sha256 of the ``\n``-joined ids: what a cache key records of a listing."""
    return hashlib.sha256(ids.joined() if isinstance(ids, Names) else "\n".join(ids).encode()).hexdigest()


def image_set(
    *,
    name: str,
    split: str,
    classes: list[str],
    targets: torch.Tensor,
    source: FileSource,
    signature: object,
    shape: tuple[int, int, int],
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None,
    meta: dict,
    in_memory: bool | None = None,
    resize: int | None = None,
) -> ImageSet:
    """An ImageSet over encoded files; ``signature`` identifies their content for the cache.

    ``signature`` may be a callable, called only when the set is decoded into memory (a listing
    of a million files need not stat each one to stay lazy). ``stats`` None means: computed from
    these pixels (callers pass the training split's for test splits), ImageNet's constants when
    the set stays lazy. ``resize`` is the short side before the centre crop to ``shape``.
    """
    if not len(targets):
        raise DataError(f"{name}/{split} holds no images", "check the dataset root")
    resize = check_resize(resize, tuple(shape[1:]))
    keep = in_memory if in_memory is not None else len(targets) * math.prod(shape) < IN_MEMORY_LIMIT
    pixels = None
    if keep:
        # keyed by content and preprocessing, not by name: cifar10 and imagefolder:PATH over the same tar share one entry
        source_key = signature() if callable(signature) else signature
        entry = cache.entry_path(
            f"pixels-{split}-{'x'.join(map(str, shape))}", kind="pixels", source=source_key, ids=ids_digest(source.ids), shape=shape, resize=resize
        )
        tensors, saved = cache.load(entry) or ({}, {})
        pixels = tensors.get("pixels")
        if pixels is None or tuple(pixels.shape) != (len(targets), *shape) or pixels.dtype != torch.uint8:
            pixels = decode_all(source, shape, f"decode {name}/{split}", resize)
            saved = {"stats": pixel_stats(pixels)}  # a second pass over the pixels, so it is kept too
            cache.save(entry, {"pixels": pixels}, saved)
        mean, std = stats or saved.get("stats") or pixel_stats(pixels)
    else:
        mean, std = stats or IMAGENET
    return ImageSet(
        name=name,
        split=split,
        classes=classes,
        targets=targets,
        shape=shape,
        mean=tuple(mean),
        std=tuple(std),
        pixels=pixels,
        sources=source,
        meta={**meta, "in_memory": keep},
        resize=resize,
    )
