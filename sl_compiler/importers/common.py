"""What every importer shares: the target dataset, safe tensor loading, de-normalisation, labels.

Third-party distilled sets are float tensors in the *normalised* space of their training code. An
artifact stores uint8 images, so an import undoes the normalisation with the stated mean and std
(``--mean/--std``, else the constants of the distillation codebases for that dataset, which
``sl_compiler.data.stats.NORMALIZATION`` holds, else the dataset's own statistics), rounds to the nearest of 256 levels and records what that cost: for
pixels inside [0, 1] the error is at most 0.5/255; pixels further outside (distilled images often
overshoot) are clipped, and the manifest's provenance records the clipped fraction and the largest
error, together with the sha256 of every file read. The manifest's ``dataset.mean/std`` are the
stated ones, so a student normalises exactly as the method did.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data import dataset_key, load_dataset
from ..data.locations import recorded_root, ways_to_set
from ..data.idx import CLASSES as IDX_CLASSES
from ..data.stats import NORMALIZATION
from ..errors import ImporterError

# Image shapes the distillation codebases use for the known datasets (ImageNet subsets vary)
SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "tinyimagenet": (3, 64, 64),
}

CLASS_NAMES = {
    **IDX_CLASSES,
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "cifar100": (
        "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle "
        "caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant "
        "flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man "
        "maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree "
        "plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
        "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train "
        "trout tulip turtle wardrobe whale willow_tree wolf woman worm"
    ).split(),
}

# numpy scalars and dtypes are plain data; DC's res_*.pt keeps its accuracies as numpy floats
_NUMPY_DATA_GLOBALS = [
    getattr(getattr(np, "_core", None) or np.core, "multiarray").scalar,
    np.dtype,
    *(getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType") and n[:-5] in {
        "Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float16", "Float32", "Float64",
    }),
]


@dataclass
class Target:
    """The dataset an import claims to be: the manifest's dataset dict and the normalisation to undo."""

    info: dict
    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalisation_source: str  # "flags", "convention" or "dataset"
    shape: tuple[int, int, int] | None  # (C, H, W) when the dataset fixes it

    @property
    def num_classes(self) -> int:
        return len(self.info["classes"])


def target_dataset(dataset: str, data_root: str | Path | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Target:
    """Resolve ``--dataset`` (+ ``--data-root``, ``--mean``, ``--std``) into a :class:`Target`.

    With a data root (or a synthetic spec) the training split is loaded for its exact classes and
    fingerprint; otherwise known datasets use their standard class names and shapes.
    """
    if (mean is None) != (std is None):
        raise ImporterError("--mean and --std go together", "pass both, one value per channel, or neither")
    key = dataset_key(dataset)
    base = key.split(":")[0]
    data_root = data_root if data_root is not None else recorded_root(dataset)  # `slc data add` / SLC_DATA_<NAME>
    if data_root is not None or base in ("synthetic", "imagefolder", "wds", "parquet"):
        images = load_dataset(dataset, data_root, "train")
        info = images.info()
        info["name"] = key
        shape: tuple[int, int, int] | None = tuple(images.shape)
        own = (tuple(images.mean), tuple(images.std))
    elif key in CLASS_NAMES:
        shape = SHAPES[key]
        info = {"name": key, "classes": list(CLASS_NAMES[key]), "num_classes": len(CLASS_NAMES[key]), "channels": shape[0], "resolution": list(shape[1:])}
    else:
        raise ImporterError(f"dataset {dataset!r} needs --data-root to know its classes (only the class list and statistics are read)", ways_to_set(key))
    if mean is not None:
        stated, source = (tuple(mean), tuple(std)), "flags"
    elif key in NORMALIZATION:
        stated, source = NORMALIZATION[key], "convention"
    else:  # only datasets loaded above reach here
        stated, source = own, "dataset"
    stated = tuple(tuple(round(float(v), 6) for v in values) for values in stated)  # what the manifest records is what was used
    channels = info.get("channels") or (shape[0] if shape else len(stated[0]))
    if len(stated[0]) != channels or len(stated[1]) != channels or min(stated[1]) <= 0:
        raise ImporterError(f"mean {list(stated[0])} / std {list(stated[1])} do not fit {channels}-channel {key}", f"pass --mean and --std with {channels} values each, std > 0")
    info["mean"], info["std"] = list(stated[0]), list(stated[1])
    return Target(info, stated[0], stated[1], source, shape)


@dataclass
class SourceFile:
    """A file an import read: its name (never an absolute path), role and sha256, for the provenance."""

    path: Path
    role: str
    sha256: str = ""
    data: bytes = field(default=b"", repr=False)

    def record(self) -> dict:
        return {"file": self.path.name, "role": self.role, "sha256": self.sha256, "bytes": len(self.data)}


def read_file(path: str | Path, role: str) -> SourceFile:
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImporterError(f"{role} file {path} does not exist", "check the path") from None
    except OSError as exc:
        raise ImporterError(f"cannot read {role} file {path}: {exc.strerror}", "check the path and its permissions") from None
    return SourceFile(path, role, hashlib.sha256(data).hexdigest(), data)


def load_torch(source: SourceFile):
    """``torch.load(weights_only=True)`` of a read file: tensors, containers and numpy scalars only."""
    try:
        with torch.serialization.safe_globals(_NUMPY_DATA_GLOBALS):
            return torch.load(io.BytesIO(source.data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Weights only load failed" in first or isinstance(exc, pickle.UnpicklingError):
            unsafe = _unsafe_globals(source.data)
            what = f" (it pickles {', '.join(unsafe[:3])})" if unsafe else ""
            raise ImporterError(
                f"{source.path.name} holds Python objects that safe loading (weights_only=True) refuses{what}",
                "re-save it from its own code as plain tensors: torch.save(tensor.cpu(), path)",
            ) from None
        raise ImporterError(f"{source.path.name} is not a readable torch file ({first})", f"pass the {source.role} file the method saved with torch.save") from None


def _unsafe_globals(data: bytes) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data)))
    except Exception:  # noqa: BLE001 - only used to enrich the message above
        return []


def as_tensor(obj, what: str, source: SourceFile) -> torch.Tensor:
    if isinstance(obj, np.ndarray):
        obj = torch.from_numpy(obj)
    if not isinstance(obj, torch.Tensor):
        raise ImporterError(f"{source.path.name}: {what} is a {type(obj).__name__}, not a tensor", f"pass the file that holds the {what} tensor")
    return obj.detach().cpu()


PRECISIONS = ("uint8", "float16", "float32")


def to_float(images: torch.Tensor, target: Target, where: str, precision: str, zca: dict | None) -> tuple[torch.Tensor, dict, dict]:
    """Float (N, C, H, W) images kept in their own space as float32 (bit-exact from float32 input) or float16.

    Returns the stored images, their space (``{"normalize": {mean, std}}`` with the stated
    statistics, or ``{"zca": record}``) and the quantisation record: the largest absolute change
    (0 for float32 from float32 or float16; float16 rounds to 11 significant bits).
    """
    _check_shape(images, target, where)
    if not images.dtype.is_floating_point:
        raise ImporterError(f"{where}: images have dtype {images.dtype}, but --precision {precision} keeps float images", "pass the float tensor the method saved, or --precision uint8")
    if not bool(torch.isfinite(images).all()):
        raise ImporterError(f"{where}: images hold NaN or inf", "export the images from a finished, finite run")
    stored = images.to(torch.float16 if precision == "float16" else torch.float32).contiguous()
    space = {"normalize": None, "zca": zca} if zca is not None else {"normalize": {"mean": list(target.mean), "std": list(target.std)}, "zca": None}
    record = {
        "input": str(images.dtype).removeprefix("torch."),
        "stored": precision,
        "max_abs_error": round(float((stored.double() - images.double()).abs().max()), 10),
        "space": "zca" if zca is not None else "normalized",
    }
    return stored, space, record


def zca_claim(target: Target, eps: float) -> dict:
    """The whitening a ZCA-space set says it was made in: kornia's ZCA at ``eps`` on the training split of the target dataset.

    With a data root the split is known, so the record carries the fit's ``id``
    (:func:`sl_compiler.data.zca.fit_spec`) that an evaluation's own fit must match; without one
    the id is null and any fit at the same eps on that dataset is accepted (and recorded).
    """
    from ..data.zca import INPUT, METHOD, fit_spec, spec_id

    known = "fingerprint" in target.info and target.info.get("split", "train") == "train" and "size" in target.info
    return {
        "id": spec_id(fit_spec(target.info, eps)) if known else None,
        "sha256": None,  # the method's own fit; its tensors were not shipped
        "eps": float(eps),
        "input": INPUT,
        "method": METHOD,
        "fit": {"dataset": target.info["name"], "split": "train", "by": "the method's code (MTT/no-distillation: kornia ZCAWhitening on ToTensor() images)"},
    }


def _check_shape(images: torch.Tensor, target: Target, where: str) -> None:
    if images.dim() != 4:
        raise ImporterError(f"{where}: images have shape {tuple(images.shape)}", "pass an (N, C, H, W) image tensor")
    if target.shape is not None and tuple(images.shape[1:]) != tuple(target.shape):
        raise ImporterError(
            f"{where}: images are {tuple(images.shape[1:])} but {target.info['name']} images are {tuple(target.shape)}",
            "pass the --dataset the set was distilled from",
        )
    if images.shape[1] != len(target.mean):
        raise ImporterError(f"{where}: images have {images.shape[1]} channels, the normalisation {len(target.mean)}", "pass --mean/--std with one value per channel")


def to_uint8(images: torch.Tensor, target: Target, where: str) -> tuple[torch.Tensor, dict]:
    """Normalised float (N, C, H, W) -> uint8 via ``x * std + mean``; uint8 input is kept as is.

    Returns the images and the quantisation record: ``max_abs_error`` over all pixels (clipping
    included) and ``max_abs_error_in_range`` (at most 0.5/255), both in [0, 1] pixel units, and
    the ``clipped_fraction`` of values more than half a level outside [0, 1].
    """
    _check_shape(images, target, where)
    if images.dtype == torch.uint8:
        return images.contiguous(), {"input": "uint8", "max_abs_error": 0.0, "max_abs_error_in_range": 0.0, "clipped_fraction": 0.0}
    if not images.dtype.is_floating_point:
        raise ImporterError(f"{where}: images have dtype {images.dtype}", "pass float (normalised) or uint8 images")
    x = images.double()
    if not bool(torch.isfinite(x).all()):
        raise ImporterError(f"{where}: images hold NaN or inf", "export the images from a finished, finite run")
    mean = torch.tensor(target.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(target.std, dtype=torch.float64).view(1, -1, 1, 1)
    pixels = x.mul(std).add_(mean)
    clipped = pixels.clamp(0.0, 1.0)
    quantised = clipped.mul(255.0).round_()
    restored = quantised / 255.0
    half = 0.5 / 255  # a value less than half a level outside [0, 1] rounds to 0 or 255 anyway
    outside = (pixels < -half) | (pixels > 1 + half)
    record = {
        "input": str(images.dtype).removeprefix("torch."),
        "max_abs_error": round(float((restored - pixels).abs().max()), 8),
        "max_abs_error_in_range": round(float((restored - clipped).abs().max()), 8),
        "clipped_fraction": round(float(outside.double().mean()), 8),
    }
    return quantised.to(torch.uint8), record


def interpret_labels(labels: torch.Tensor, n: int, num_classes: int, where: str) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """-> (targets int64 (N,), probs float32 (N, C) or None for hard labels, what was given).

    Hard labels: integer (N,) class indices (or whole-number floats), or one-hot rows. Soft labels
    (N, C): rows that are non-negative and sum to 1 are probabilities; anything else is logits
    (DATM stores logits), turned into probabilities with a softmax. The target class of a soft
    label is its argmax.
    """
    if labels.dim() == 0 or len(labels) != n:
        raise ImporterError(f"{where}: {tuple(labels.shape)} labels for {n} images", "pass one label (index or row) per image")
    if labels.dim() == 1:
        if labels.dtype.is_floating_point and not bool((labels == labels.round()).all()):
            raise ImporterError(f"{where}: 1-d labels are not whole class indices", "pass int class indices, or (N, C) soft labels")
        if labels.dtype == torch.bool:
            raise ImporterError(f"{where}: labels are booleans", "pass int class indices")
        targets = labels.long()
        if int(targets.min()) < 0 or int(targets.max()) >= num_classes:
            raise ImporterError(
                f"{where}: labels run {int(targets.min())}..{int(targets.max())} but the dataset has {num_classes} classes",
                "pass the --dataset the set was distilled from",
            )
        return targets, None, "hard"
    if labels.dim() != 2 or not labels.dtype.is_floating_point:
        raise ImporterError(f"{where}: labels have shape {tuple(labels.shape)} and dtype {labels.dtype}", "pass (N,) class indices or (N, C) float soft labels")
    if labels.shape[1] != num_classes:
        raise ImporterError(f"{where}: labels have {labels.shape[1]} classes but the dataset has {num_classes}", "pass the --dataset the set was distilled from")
    x = labels.double()
    if not bool(torch.isfinite(x).all()):
        raise ImporterError(f"{where}: labels hold NaN or inf", "export the labels from a finished, finite run")
    targets = x.argmax(1)
    if bool(((x == 0) | (x == 1)).all()) and bool((x.sum(1) == 1).all()):
        return targets, None, "one-hot"
    if bool((x >= 0).all()) and bool(((x.sum(1) - 1).abs() <= 1e-3).all()):
        return targets, (x / x.sum(1, keepdim=True)).float(), "probabilities"
    return targets, torch.softmax(x, 1).float(), "logits"


def default_name(kind: str, target: Target, n: int) -> str:
    """``<kind>-<dataset>-ipc<k>``, lowercased into the artifact name alphabet."""
    ipc = n // target.num_classes if n % target.num_classes == 0 else n
    stem = re.sub(r"[^a-z0-9_-]+", "-", f"{kind}-{target.info['name']}".lower()).strip("-")
    return f"{stem}-ipc{ipc}" if n % target.num_classes == 0 else f"{stem}-n{n}"


def write_import(
    *,
    kind: str,
    out: str | Path | None,
    name: str | None,
    version: str,
    target: Target,
    images,
    targets: torch.Tensor,
    labels: dict[str, torch.Tensor] | None,
    source_ids: list[str],
    provenance: dict,
    recipe: dict,
    teachers: Sequence[dict] = (),
    label_schema: dict | None = None,
    license: str | None = None,
    force: bool = False,
    image_space: dict | None = None,
    learned_lr: float | None = None,
) -> Path:
    """Write the imported set through ``artifact.write_artifact``; returns the artifact folder.

    ``labels`` is None for hard labels, else ``{"probs": (N, C)}`` or the top-k pair;
    ``image_space`` the space of float images (stored as they are), ``learned_lr`` the lr the set learned.
    """
    from ..artifact import artifact_dirname, write_artifact

    n = len(targets)
    name = name or default_name(kind, target, n)
    out = Path(out) if out is not None else Path(artifact_dirname(name, version))
    return write_artifact(
        out,
        name=name,
        version=version,
        dataset=target.info,
        images=images,
        targets=targets,
        source_ids=source_ids,
        labels=labels,
        label_schema=label_schema,
        recipe={"importer": kind, **recipe},
        teachers=teachers,
        selection={"strategy": "imported", "seed": None, "source_indices": list(range(n))},
        provenance={"format": kind, "normalisation": {"mean": list(target.mean), "std": list(target.std), "source": target.normalisation_source}, **provenance},
        license=license,
        force=force,
        image_space=image_space,
        learned_lr=learned_lr,
    )
