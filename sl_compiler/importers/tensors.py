"""Tensor files: MTT/TESLA/DATM (``images_best.pt``, ``labels_best.pt``, ``lr_best.pt``) and a plain
(N, C, H, W) tensor with a label tensor (DD-Ranking's input).

A plain tensor's soft labels do not say which class each image was distilled for. DD-Ranking's
sets, like the distillation codebases', are class-major (``[0]*ipc + [1]*ipc + ...``), so that
is the default when N is a multiple of the class count; ``targets`` names a file of class
indices instead, or ``"argmax"`` takes each soft label's most likely class. The manifest's
provenance records which rule gave the classes.

MTT's ``distill.py`` saves the synthetic images as one normalised float tensor and the labels as
int64 class indices; DATM saves learned soft labels as logits; ``lr_best.pt`` holds the learned
student learning rate (``syn_lr``) as a 0-d tensor, recorded as the manifest's ``learned_lr``
(and, as before, the recipe's ``lr``) for a protocol with ``lr = "artifact"``.

Precision. By default float images are quantised to uint8 (``to_uint8``: at most 0.5/255 in
range, clipping recorded). ``precision="float32"`` (or ``"float16"``) keeps them as floats in
their own space (format 1.1): float32 input is stored bit for bit, float16 rounds to 11
significant bits. A run with ``--zca`` saves ``images_best.pt`` in ZCA space: import it with
``zca=0.1`` (kornia's eps), which keeps float32 by default and records the whitening, so that an
evaluation under a ZCA protocol feeds the images as they are and whitens only the test images.
(MTT's ``images_zca_*.pt`` are the same images un-whitened into [0, 1] pixels, not normalised.)
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import ImporterError
from .common import PRECISIONS, SourceFile, Target, as_tensor, interpret_labels, load_torch, read_file, target_dataset, to_float, to_uint8, write_import, zca_claim


def import_mtt(
    images: str | Path,
    labels: str | Path,
    *,
    dataset: str,
    lr_file: str | Path | None = None,
    data_root: str | Path | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    version: str = "1.0.0",
    force: bool = False,
    precision: str | None = None,
    zca: float | None = None,
) -> Path:
    """Import an MTT/TESLA/DATM result (soft labels welcome) into an artifact; returns its folder.

    ``precision`` ``uint8`` (default), ``float16`` or ``float32`` (default with ``zca``); ``zca``
    the eps of the ZCA whitening the images are in (None: normalised).
    """
    precision = check_precision(precision, zca)
    target = target_dataset(dataset, data_root, mean, std)
    recipe = {}
    files = [read_file(images, "images"), read_file(labels, "labels")]
    if lr_file is not None:
        lr_source = read_file(lr_file, "lr")
        lr = as_tensor(load_torch(lr_source), "learning rate", lr_source)
        if lr.numel() != 1 or not lr.dtype.is_floating_point or not math.isfinite(float(lr)) or float(lr) <= 0:
            raise ImporterError(f"{lr_source.path.name}: the learning rate is {tuple(lr.shape)} {lr.dtype}, not one positive number", "pass the lr_best.pt that MTT saved")
        recipe["lr"] = float(lr.reshape(()))
        files.append(lr_source)
    return _import_pair("mtt", files, target, recipe, out=out, name=name, version=version, force=force, precision=precision, zca=zca, learned_lr=recipe.get("lr"))


def check_precision(precision: str | None, zca: float | None) -> str:
    """The storage precision asked for (default: uint8, float32 for ZCA-space images), refused where it cannot hold the images."""
    if zca is not None and not zca > 0:
        raise ImporterError(f"--zca {zca} is not a positive eps", "pass kornia's eps of the run, 0.1 in MTT and no-distillation")
    precision = precision or ("float32" if zca is not None else "uint8")
    if precision not in PRECISIONS:
        raise ImporterError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
    if zca is not None and precision == "uint8":
        raise ImporterError("ZCA-whitened images are not pixels: uint8 cannot hold them", "pass --precision float32 (exact) or float16")
    return precision


TARGET_RULES = ("class-major", "argmax")


def import_tensor(
    images: str | Path,
    labels: str | Path,
    *,
    dataset: str,
    targets: str | Path | None = None,
    data_root: str | Path | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    version: str = "1.0.0",
    force: bool = False,
    precision: str | None = None,
    zca: float | None = None,
) -> Path:
    """Import a plain (N, C, H, W) image tensor and its (N,) or (N, C) label tensor.

    ``targets`` decides each image's class: None (hard labels give it; soft labels are read
    class-major when N is a multiple of the class count), ``"class-major"``, ``"argmax"``, or a
    file (a ``.pt`` tensor or ``.npy`` array of N class indices). ``precision`` and ``zca`` as
    for :func:`import_mtt`.
    """
    precision = check_precision(precision, zca)
    target = target_dataset(dataset, data_root, mean, std)
    files = [read_file(images, "images"), read_file(labels, "labels")]
    if targets is not None and str(targets) not in TARGET_RULES:
        files.append(read_file(targets, "targets"))
    x = as_tensor(load_torch(files[0]), "images", files[0])
    y = as_tensor(load_torch(files[1]), "labels", files[1])
    rule = str(targets) if targets is not None and str(targets) in TARGET_RULES else ("file" if targets is not None else None)
    where = files[1].path.name

    def classes(own: torch.Tensor, given: str):
        return resolve_targets(rule, own, given, target.num_classes, files[2] if rule == "file" else None, where)

    return write_tensors(
        "tensor", x, y, target, files=files, recipe={}, images_from=files[0].path.name, labels_from=where,
        out=out, name=name, version=version, force=force, classes=classes, precision=precision, zca=zca,
    )


def resolve_targets(rule: str | None, own: torch.Tensor, given: str, num_classes: int, source: SourceFile | None, where: str) -> tuple[torch.Tensor | None, dict]:
    """(class per image, or None to keep the labels' own; the provenance record of the rule used).

    ``own`` and ``given`` are what :func:`interpret_labels` made of the labels.
    """
    n, hard = len(own), given in ("hard", "one-hot")
    if rule is None:
        if hard:
            return None, {"rule": "labels", "note": "hard labels are the classes"}
        if n % num_classes:
            raise ImporterError(
                f"{where}: {n} soft labels for {num_classes} classes is not a whole number per class, so the images cannot be class-major",
                "pass --targets FILE (one class index per image, .pt or .npy), or --targets argmax to take each soft label's most likely class",
            )
        rule = "class-major"
    if rule == "class-major":
        if n % num_classes:
            raise ImporterError(f"{where}: {n} images for {num_classes} classes cannot be class-major", "pass --targets FILE or --targets argmax")
        classes = torch.arange(num_classes).repeat_interleave(n // num_classes)
        record = {"rule": "class-major", "note": f"[0]*{n // num_classes} + [1]*{n // num_classes} + ..., the order of DD-Ranking and the distillation codebases"}
    elif rule == "argmax":
        classes, record = own, {"rule": "argmax", "note": "each soft label's most likely class"}
    else:
        classes = _read_targets(source, n, num_classes)
        record = {"rule": "file", "file": source.path.name, "sha256": source.sha256}
    if hard and not torch.equal(own, classes):  # hard labels already name the class: the rule must agree
        i = int((own != classes).nonzero()[0])
        raise ImporterError(f"{where}: image {i} has hard label {int(own[i])} but --targets gives class {int(classes[i])}", "leave --targets out: hard labels are the classes")
    return classes, record


def _read_targets(source: SourceFile, n: int, num_classes: int) -> torch.Tensor:
    """N class indices from a .npy array (no pickles) or a torch file (weights_only)."""
    if source.path.suffix == ".npy":
        try:
            t = torch.from_numpy(np.load(io.BytesIO(source.data), allow_pickle=False))
        except ValueError as exc:
            raise ImporterError(f"{source.path.name} is not a plain .npy array ({str(exc).splitlines()[0]})", "save it with numpy.save(path, array) of integers") from None
    else:
        t = as_tensor(load_torch(source), "targets", source)
    if t.dim() != 1 or len(t) != n or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ImporterError(f"{source.path.name}: targets are {t.dtype} {tuple(t.shape)}", f"pass {n} integer class indices, one per image")
    t = t.long()
    if n and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ImporterError(f"{source.path.name}: targets run {int(t.min())}..{int(t.max())} but the dataset has {num_classes} classes", "pass the --dataset the set was distilled from")
    return t


def _import_pair(kind: str, files: list[SourceFile], target: Target, recipe: dict, **write) -> Path:
    images, labels = files[0], files[1]
    x = as_tensor(load_torch(images), "images", images)
    y = as_tensor(load_torch(labels), "labels", labels)
    return write_tensors(kind, x, y, target, files=files, recipe=recipe, images_from=images.path.name, labels_from=labels.path.name, **write)


def tensor_sha256(x: torch.Tensor) -> str:
    """sha256 of a tensor's raw bytes (C order), so a manifest names the exact float tensor imported."""
    return hashlib.sha256(x.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def write_tensors(
    kind: str,
    x: torch.Tensor,
    y: torch.Tensor,
    target: Target,
    *,
    files: list[SourceFile],
    recipe: dict,
    images_from: str,
    labels_from: str,
    out: str | Path | None,
    name: str | None,
    version: str,
    force: bool,
    extra: dict | None = None,
    classes=None,
    precision: str = "uint8",
    zca: float | None = None,
    learned_lr: float | None = None,
) -> Path:
    """The shared tail of every tensor importer: check, de-normalise, interpret labels, write.

    ``images_from``/``labels_from`` name where the tensors came from, in errors and source ids.
    ``classes(own, given) -> (classes or None, record)`` decides the class of each image (default:
    the label's own, the argmax for soft labels); its record goes to the provenance as ``targets``.
    ``precision`` float16/float32 keeps the images as floats in their space (``zca``: its eps).
    """
    space = None
    if precision == "uint8":
        pixels, quantisation = to_uint8(x, target, images_from)
    else:
        pixels, space, quantisation = to_float(x, target, images_from, precision, zca_claim(target, zca) if zca is not None else None)
    targets, probs, given = interpret_labels(y, len(pixels), target.num_classes, labels_from)
    if classes is not None:
        chosen, record = classes(targets, given)
        targets = targets if chosen is None else chosen
        extra = {**(extra or {}), "targets": record}
    provenance = {
        "files": [f.record() for f in files],
        "images_tensor": {"shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch."), "sha256": tensor_sha256(x)},
        "quantisation": quantisation,
        "labels_given": given,
        **(extra or {}),
    }
    return write_import(
        kind=kind,
        out=out,
        name=name,
        version=version,
        target=target,
        images=pixels,
        targets=targets,
        labels=None if probs is None else {"probs": probs},
        source_ids=[f"{images_from}#{i}" for i in range(len(pixels))],
        provenance=provenance,
        recipe=recipe,
        label_schema={"source": given},
        force=force,
        image_space=space,
        learned_lr=learned_lr,
    )
