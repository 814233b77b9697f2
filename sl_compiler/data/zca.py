"""ZCA whitening as data: fitted once on a training split, cached, recorded by hash, applied per batch.

The semantics are kornia's ``ZCAWhitening`` (what MTT and no-distillation use, eps 0.1): images
flattened to (N, D), the mean ``mu`` and the unbiased covariance ``C = Xc^T Xc / (N - 1)``,
``C = U diag(S) U^T``, and ``T = U diag(1 / sqrt(S + eps)) U^T``; an image ``x`` becomes
``(x - mu) T``. Their input is ``ToTensor()`` alone: pixels / 255 in [0, 1], *not* normalised by
the dataset's mean and std (``softlabel/utils.py``: with ``--zca`` the transform is
``ToTensor()``), so a ZCA model's input is ``zca(pixels / 255)`` and the mean/std are unused.
Augmentation (DSA) then acts on the whitened images, as in both codebases.

The fit streams the split in uint8 batches converted to float64 per batch and merges per-batch
means and centred scatter matrices (Chan et al.'s pairwise update), so memory is flat in the
dataset size (two D x D float64 matrices) and one batch or many give the same fit up to float64
rounding. The eigendecomposition runs in float64 (``eigh``: for a symmetric positive
semi-definite matrix it is the SVD kornia takes); ``mean`` and ``transform`` are kept in float32,
the precision they are applied in.

A fit has two names: ``id``, the sha256 of what it was fitted on (dataset fingerprint, decoding,
eps, input, size), which is the same on every machine and is what compatibility checks compare;
and ``sha256``, of its float32 tensors, which names the exact numbers (an eigendecomposition on
another BLAS may differ in the last bits). Fits are cached in ``$SLC_CACHE/data`` by ``id``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import torch

from ..errors import DataError
from . import cache
from .base import ImageSet, normalize
from .preprocess import Preprocess
from .stream import stream

METHOD = "kornia-zca/1"  # bump when the arithmetic of a fit changes
INPUT = "unit"  # pixels / 255, no mean/std normalisation (MTT, no-distillation)
DEFAULT_EPS = 0.1
FIT_BATCH = 1024
MAX_FEATURES = 3 * 64 * 64  # TinyImageNet: two 12288 x 12288 float64 matrices (2.3 GiB); ImageNet's 150528 would need 338 GiB


def fit_spec(info: dict, eps: float) -> dict:
    """What a fit depends on: the split's content (fingerprint, size) and decoding, eps, the input scale and the method.

    Not the dataset's name or its mean/std: the input is pixels / 255, and a renamed copy of the
    same images is the same fit.
    """
    if info.get("split", "train") != "train":
        raise DataError(f"ZCA is fitted on the training split, not on {info['name']}/{info['split']}", "fit it on the train split of the dataset")
    shape = [int(info["channels"]), *map(int, info["resolution"])]
    d = shape[0] * shape[1] * shape[2]
    if d > MAX_FEATURES:
        raise DataError(f"ZCA of {info['name']}'s {'x'.join(map(str, shape))} images needs a {d} x {d} covariance ({2 * d * d * 8 / 2**30:.0f} GiB in float64)", f"use ZCA on small images (at most {MAX_FEATURES} values per image: CIFAR, TinyImageNet), as MTT does")
    decode = Preprocess.from_info(info).to_dict()
    return {
        "method": METHOD,
        "input": INPUT,
        "eps": float(eps),
        "fingerprint": info["fingerprint"],
        "size": int(info["size"]),
        "shape": shape,
        "decode": {k: decode[k] for k in ("resize", "crop", "interpolation")},
    }


def spec_id(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def tensors_sha256(mean: torch.Tensor, transform: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in (mean, transform):
        h.update(t.detach().cpu().contiguous().to(torch.float32).reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class ZCA:
    """A fitted whitening: ``mean`` (D,) and symmetric ``transform`` (D, D) in float32, and its record."""

    mean: torch.Tensor
    transform: torch.Tensor
    spec: dict
    dataset: str = ""  # the name of the split it was fitted on, for the record
    eigenvalues: torch.Tensor | None = None  # float64 (D,), of the covariance, when fitted here
    _on: dict = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return spec_id(self.spec)

    @property
    def sha256(self) -> str:
        if "sha256" not in self._on:
            self._on["sha256"] = tensors_sha256(self.mean, self.transform)
        return self._on["sha256"]

    @property
    def eps(self) -> float:
        return float(self.spec["eps"])

    def record(self) -> dict:
        """What trajectories, manifests and results record: both names, eps, input and what it was fitted on."""
        return {"id": self.id, "sha256": self.sha256, "eps": self.eps, "input": INPUT, "method": METHOD, "fit": {"dataset": self.dataset, "split": "train", **{k: self.spec[k] for k in ("fingerprint", "size", "shape", "decode")}}}

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._on:
            self._on[key] = (self.mean.to(device), self.transform.to(device))
        return self._on[key]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten float (B, C, H, W) in input scale (pixels / 255): ``(x - mean) T`` in float32, on x's device.

        A single image runs as two rows: a one-row product takes the CPU's matrix-vector path, whose
        rounding differs from the matrix-matrix one, and labels must not depend on the batch size.
        """
        mean, t = self._tensors(x.device)
        flat = x.reshape(len(x), -1).float() - mean
        out = ((flat @ t) if len(flat) != 1 else (flat.expand(2, -1) @ t)[:1]).reshape(x.shape)
        return out.contiguous(memory_format=torch.channels_last) if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last) else out


@dataclass(frozen=True)
class Inputs:
    """How uint8 pixels become a model's input: normalised by ``mean``/``std``, or ``zca(pixels / 255)``.

    Float images (a third-party set stored in its own space) are already inputs: taken as they are.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    zca: ZCA | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            return x.float()
        if self.zca is None:
            return normalize(x, self.mean, self.std)
        return self.zca.apply(x.float().div_(255))

    def record(self) -> dict | None:
        return None if self.zca is None else self.zca.record()


def covariance(images: ImageSet, batch_size: int = FIT_BATCH, workers: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(mean (D,), unbiased covariance (D, D), N) in float64 of ``images`` / 255, streamed in uint8 batches.

    Per batch b: its mean and centred scatter ``M_b``; merged as ``M += M_b + d d^T n_a n_b / n``
    with ``d = mean_b - mean_a`` (Chan, Golub, LeVeque), so no batch's offset from the mean is lost
    to cancellation and the result does not depend on the batch size beyond float64 rounding.
    """
    d = images.shape[0] * images.shape[1] * images.shape[2]
    mean = torch.zeros(d, dtype=torch.float64)
    scatter = torch.zeros(d, d, dtype=torch.float64)
    n = 0
    for batch in stream(images, batch_size=batch_size, workers=workers):
        x = batch.pixels.reshape(len(batch.pixels), d).to(torch.float64).div_(255)
        nb = len(x)
        mb = x.mean(0)
        xc = x.sub_(mb)
        delta = mb - mean
        total = n + nb
        scatter.add_(xc.T @ xc).add_(torch.outer(delta, delta), alpha=n * nb / total)
        mean.add_(delta, alpha=nb / total)
        n = total
    if n < 2:
        raise DataError(f"ZCA needs at least 2 training images, {images.name}/{images.split} has {n}", "fit it on a real training split")
    return mean, scatter / (n - 1), n


def fit(images: ImageSet, eps: float = DEFAULT_EPS, batch_size: int = FIT_BATCH, workers: int | None = None) -> ZCA:
    """Fit kornia's ZCA on ``images`` (a training split), streamed; not cached (see :func:`zca_for`)."""
    if not eps > 0:
        raise DataError(f"ZCA eps {eps} must be positive", "use eps 0.1 (kornia's value in MTT and no-distillation)")
    spec = fit_spec(images.info(), eps)
    mean, cov, _ = covariance(images, batch_size, workers)
    s, u = torch.linalg.eigh(cov)
    s = s.clamp_min(0)  # a PSD matrix's tiny negative eigenvalues are rounding
    transform = (u * torch.rsqrt(s + eps)) @ u.T
    return ZCA(mean.float(), transform.float(), spec, images.name, s)


def zca_for(images: ImageSet, eps: float = DEFAULT_EPS, workers: int | None = None) -> ZCA:
    """The ZCA of training split ``images`` at ``eps``: from the cache (keyed by the fit's id), else fitted and cached."""
    spec = fit_spec(images.info(), eps)
    path = cache.entry_path(f"zca-{images.name}", zca=spec_id(spec))
    hit = cache.load(path)
    if hit is not None:
        tensors, meta = hit
        if meta.get("spec") == spec and {"mean", "transform"} <= set(tensors):
            return ZCA(tensors["mean"], tensors["transform"], spec, images.name, tensors.get("eigenvalues"))
    zca = fit(images, eps, workers=workers)
    cache.save(path, {"mean": zca.mean, "transform": zca.transform, "eigenvalues": zca.eigenvalues}, {"spec": spec})
    return zca


def check_record(record: dict | None, zca: ZCA | None, what: str, fix: str) -> None:
    """``record`` (a trajectory's, a manifest's) and ``zca`` (this run's) are the same whitening, or both absent."""
    if record is None and zca is None:
        return
    if record is None or zca is None:
        have = "ZCA-whitened" if record is not None else "not whitened"
        raise DataError(f"{what}: {have} inputs, but this run {'does not whiten' if zca is None else 'whitens'} them", fix)
    if record.get("id") not in (None, zca.id) or float(record.get("eps", zca.eps)) != zca.eps:
        raise DataError(f"{what} was whitened with another ZCA fit (id {str(record.get('id'))[:12]}, eps {record.get('eps')}) than this run's (id {zca.id[:12]}, eps {zca.eps})", fix)


__all__ = ["DEFAULT_EPS", "Inputs", "ZCA", "check_record", "covariance", "fit", "fit_spec", "zca_for"]
