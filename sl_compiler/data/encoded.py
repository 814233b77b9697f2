"""Datasets of encoded files (JPEG, PNG) -> ImageSet: decoded once and cached when small, lazy when large.

Small sets (decoded size under ``$SLC_IN_MEMORY_GIB``, default 4 GiB) are decoded in one pass into ``pixels`` and
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
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from ..errors import DataError
from ..progress import bar
from . import cache
from .base import FileSource, ImageSet
from .decode import decode_files
from .files import Names
from .preprocess import check_resize

IN_MEMORY_LIMIT = 4 * 2**30  # bytes of decoded uint8 pixels; $SLC_IN_MEMORY_GIB overrides it
STATS_ALL_BYTES = 4 * 2**30  # a split this small (decoded) takes its statistics from every pixel; fixed, so no setting changes them
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


def in_memory_limit() -> int:
    """Bytes of decoded pixels up to which a split of files is decoded into memory: ``$SLC_IN_MEMORY_GIB`` GiB, default 4.

    0 streams every split of files from disk (what ImageNet does at any setting).
    """
    value = os.environ.get("SLC_IN_MEMORY_GIB")
    if value is None:
        return IN_MEMORY_LIMIT
    try:
        gib = float(value)
        if gib < 0 or gib != gib:
            raise ValueError
    except ValueError:
        raise DataError(f"SLC_IN_MEMORY_GIB={value!r} is not a size in GiB", "set it to a number such as 4, or 0 to stream every dataset of files") from None
    return int(gib * 2**30)


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
    the pixels (callers pass the training split's for test splits) by :func:`split_stats`, the
    same numbers whether the set is held in memory or not. ``resize`` is the short side before
    the centre crop to ``shape``.
    """
    if not len(targets):
        raise DataError(f"{name}/{split} holds no images", "check the dataset root")
    resize = check_resize(resize, tuple(shape[1:]))
    keep = in_memory if in_memory is not None else len(targets) * math.prod(shape) < in_memory_limit()
    pixels = None
    if keep:
        # keyed by content and preprocessing, not by name: cifar10 and imagefolder:PATH over the same tar share one entry
        source_key = signature() if callable(signature) else signature
        entry = cache.entry_path(
            f"pixels-{split}-{'x'.join(map(str, shape))}", kind="pixels", source=source_key, ids=ids_digest(source.ids), shape=shape, resize=resize
        )
        tensors, _ = cache.load(entry) or ({}, {})
        pixels = tensors.get("pixels")
        if pixels is None or tuple(pixels.shape) != (len(targets), *shape) or pixels.dtype != torch.uint8:
            pixels = decode_all(source, shape, f"decode {name}/{split}", resize)
            cache.save(entry, {"pixels": pixels}, {})
    def build(mean, std) -> ImageSet:
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

    if stats is None:
        small = len(targets) * math.prod(shape) < STATS_ALL_BYTES
        content = (signature() if small else None) if callable(signature) else signature
        stats = split_stats(build((0.5,) * shape[0], (0.5,) * shape[0]), content)
    return build(*stats)


STATS_SAMPLE = 10_000  # images whose pixels set the normalisation of a split too large to read whole


def split_stats(images: ImageSet, content: object = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a split's decoded pixels: all of them when the split is small
    (decoded under ``STATS_ALL_BYTES``), else of ``STATS_SAMPLE`` images drawn with a fixed seed.

    The same rule whether the split is held in memory or streamed, so loading a folder either way
    normalises it identically; cached by file ids, ``content`` (the files' signature, when cheap)
    and preprocessing.
    """
    from ..seeding import generator
    from .stats import byte_counts, stats_from_counts
    from .stream import stream

    n = len(images)
    if n * math.prod(images.shape) < STATS_ALL_BYTES or n <= STATS_SAMPLE:
        sample = torch.arange(n)
    else:
        sample = torch.sort(torch.randperm(n, generator=generator("stats", n))[:STATS_SAMPLE]).values
    entry = cache.entry_path(f"stats-{images.split}", kind="stats", source=content, ids=ids_digest(images.sources.ids), shape=images.shape, resize=images.resize, sample=len(sample))
    hit = cache.load(entry)
    if hit is not None and "counts" in hit[0]:
        return stats_from_counts(hit[0]["counts"])
    counts = torch.zeros(images.shape[0], 256, dtype=torch.int64)
    with bar(len(sample), f"statistics {images.name}/{images.split}") as progress:
        for batch in stream(images, sample, batch_size=256, skip_bad=True):  # a bad file fails where it is used, not here
            counts += byte_counts(batch.pixels)
            progress.update(len(batch.indices))
    cache.save(entry, {"counts": counts}, {})
    return stats_from_counts(counts)


