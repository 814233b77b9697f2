"""ImageSet: one split of a labelled image dataset, as every part of slc sees it.

Images are uint8 (N, C, H, W). Small datasets live in memory as one tensor (``pixels``); large
ones are files decoded on demand (``sources``) with the split's preprocessing (short side resized
to ``resize``, centre crop to ``shape``: ``preprocess``). When the source is already encoded
(JPEG, PNG), ``encoded(i)`` returns its own bytes, so that artifacts never re-encode an image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..errors import DataError
from .decode import decode_files
from .preprocess import Preprocess, check_resize


@dataclass
class FileSource:
    """Encoded images behind a reader: ``read(i) -> bytes``; ``ids[i]`` names file i; ``exts[i]`` its type.

    ``ids`` and ``exts`` are sequences (``files.Names``/``files.Suffixes`` for large listings).
    """

    ids: Sequence[str]
    exts: Sequence[str]
    read: Callable[[int], bytes]


@dataclass
class ImageSet:
    name: str
    split: str
    classes: list[str]
    targets: torch.Tensor  # int64 (N,)
    shape: tuple[int, int, int]  # (C, H, W) every image is decoded to
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixels: torch.Tensor | None = None  # uint8 (N, C, H, W), when held in memory
    sources: FileSource | None = None  # encoded files, when the source has them
    meta: dict = field(default_factory=dict)  # loader details recorded in manifests (root, layout)
    resize: int | None = None  # short side before the centre crop to ``shape``; default the crop's longer side

    def __post_init__(self):
        self.resize = check_resize(self.resize, tuple(self.shape[1:]))
        self.targets = torch.as_tensor(self.targets, dtype=torch.int64)
        if self.pixels is None and self.sources is None:
            raise ValueError("an ImageSet needs pixels or sources")
        n = len(self.targets)
        if len(self.mean) != self.shape[0] or len(self.std) != self.shape[0]:
            raise DataError(f"{self.name}/{self.split}: a {len(self.mean)}-channel normalisation for {self.shape[0]}-channel images", "pass channels= to match the normalisation, or load it as imagefolder:/parquet:PATH")
        if self.pixels is not None and (self.pixels.dtype != torch.uint8 or self.pixels.dim() != 4 or len(self.pixels) != n):
            raise ValueError(f"pixels must be uint8 (N, C, H, W) with N={n}")
        if self.sources is not None and len(self.sources.ids) != n:
            raise ValueError("sources and targets differ in length")
        if n and (int(self.targets.min()) < 0 or int(self.targets.max()) >= len(self.classes)):
            raise DataError(f"{self.name}/{self.split}: labels outside 0..{len(self.classes) - 1}", "check the dataset files")

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def resolution(self) -> int:
        return self.shape[1]

    def images(self, indices: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Decoded uint8 images (n, C, H, W), all of them when ``indices`` is None."""
        if self.pixels is not None:
            return self.pixels if indices is None else self.pixels[torch.as_tensor(indices, dtype=torch.long)]
        from .stream import stream

        idx = torch.arange(len(self)) if indices is None else torch.as_tensor(indices, dtype=torch.int64)
        out = torch.empty((len(idx), *self.shape), dtype=torch.uint8)
        done = 0
        for batch in stream(self, idx, batch_size=64, workers=0 if len(idx) <= 64 else None):
            out[done : done + len(batch.indices)] = batch.pixels
            done += len(batch.indices)
        return out

    def decode_batch(self, indices: Sequence[int], skip_bad: bool = False) -> tuple[torch.Tensor, dict[int, tuple[str, str | None]]]:
        """Decode source files ``indices`` to uint8 (B, C, H, W) and ``{index: (problem, fix)}`` of undecodable ones.

        Undecodable images raise :class:`DataError` naming the file unless ``skip_bad`` (their
        rows are then zeros). Used by the streaming loader's workers.
        """
        return decode_files(self.sources, list(indices), self.shape, skip_bad, self.resize)

    def encoded(self, i: int) -> tuple[bytes, str] | None:
        """The source's own bytes and extension (``jpg``, ``png``) for image i, if it has them."""
        if self.sources is None:
            return None
        return self.sources.read(i), self.sources.exts[i]

    def source_id(self, i: int) -> str:
        return self.sources.ids[i] if self.sources is not None else str(i)

    def class_indices(self) -> list[torch.Tensor]:
        """Indices of each class's images, in dataset order."""
        order = torch.argsort(self.targets, stable=True)
        counts = torch.bincount(self.targets, minlength=self.num_classes).tolist()
        return list(torch.split(order, counts))

    @property
    def preprocess(self) -> Preprocess:
        """How an encoded image becomes one of this split's images (resize, crop, mean, std)."""
        return Preprocess(self.resize, (self.shape[1], self.shape[2]), tuple(self.mean), tuple(self.std))

    def info(self) -> dict:
        """What a manifest records about this dataset."""
        return {
            "name": self.name,
            "split": self.split,
            "classes": list(self.classes),
            "num_classes": self.num_classes,
            "channels": self.shape[0],
            "resolution": [self.shape[1], self.shape[2]],
            "mean": [round(float(m), 6) for m in self.mean],
            "std": [round(float(s), 6) for s in self.std],
            "size": len(self),
            "fingerprint": self.fingerprint(),
            "preprocess": self.preprocess.to_dict(),
        }

    def fingerprint(self) -> str:
        """sha256 over classes, labels and content; cached.

        Sets of files hash their files' base names, whether held in memory or not (so loading a
        folder either way names one dataset), instead of reading every file: reading 140 GB to
        name a dataset would make every compile pay for it. Base names, not paths, so that
        ImageNet as folders, as the official tar of tars or as Kaggle's copy has one fingerprint,
        and an expert trained on one labels the others. Sets without files (torchvision's CIFAR
        pickles, idx files, synthetic data) hash their pixels.
        """
        if "_fingerprint" not in self.__dict__:
            h = hashlib.sha256()
            h.update("\n".join(self.classes).encode())
            h.update(self.targets.numpy().tobytes())
            if self.sources is not None:
                h.update("\n".join(i.rsplit("/", 1)[-1] for i in self.sources.ids).encode())
            else:
                h.update(self.pixels.contiguous().numpy().tobytes())
            self.__dict__["_fingerprint"] = h.hexdigest()
        return self.__dict__["_fingerprint"]

    def subset(self, indices: Sequence[int] | torch.Tensor, split: str | None = None) -> "ImageSet":
        """A new ImageSet of the given indices (in memory), e.g. a held-out slice of a training split."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(
            name=self.name,
            split=split or self.split,
            classes=self.classes,
            targets=self.targets[idx],
            shape=self.shape,
            mean=self.mean,
            std=self.std,
            pixels=self.images(idx),
            meta={**self.meta, "subset_of": self.split},
            resize=self.resize,
        )


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 or [0, 1] float images -> normalised float32, on x's device."""
    if x.dtype == torch.uint8:
        x = x.float().div_(255)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
