"""The compile pipeline: recipe -> selected images -> teacher soft labels -> artifact.

Every check that can fail runs before the expensive work (reference syntax, output folder,
dataset, the teachers and their shared preprocessing, IPC, top-k, views), and the artifact is
written to a temporary folder and renamed at the end, so a bad input or a killed run leaves
nothing that looks like an artifact.

Memory stays flat in the size of the source split: selection works from the targets alone
(random) or from per-image scores streamed through the teachers (ce-quantile, ``select``); only
the selected images are decoded and held (uint8), every teacher of an ensemble labels each batch
of them (one decode), their views are replayed batch by batch, labels are kept in their stored
form (float16), and the writer reads each image's encoded bytes once, when it writes it.

The data is decoded as the teachers saw it in training (their ``preprocess``: resize, crop,
interpolation, normalisation), and the manifest records it in ``labels.preprocess``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .artifact import artifact_dirname, write_artifact
from .artifact.format import key_width, sample_key
from .data import ImageSet, dataset_key, load_dataset, stream
from .device import describe, resolve_device
from .errors import ArtifactError, DataError, ExpertError
from .experts import default_store, format_reference, parse_reference, resolve
from .label import PRECISION, AugmentedViews, Ensemble, check_topk, sample_views, teacher_labels
from .label.views import RRC_RATIO, RRC_SCALE
from .recipe import QUANTILES, Recipe
from .select import ce_scores, check_decile, quantile_per_class, random_per_class

DEFAULT_OUT = Path("artifacts")


def default_out(recipe: Recipe) -> Path:
    """``./artifacts/<name>-<version>-<recipe hash>``: two recipes that differ in anything (seed,
    temperature, top-k, views, augment ...) never share a default folder. The hash is the first 8
    hex digits of the sha256 of the recipe's canonical JSON without ``data_root`` (a machine's
    path, not part of what is made)."""
    import hashlib

    from .artifact.format import canonical_json

    body = {k: v for k, v in recipe.to_dict().items() if k != "data_root"}
    digest = hashlib.sha256(canonical_json(body)).hexdigest()[:8]
    return DEFAULT_OUT / f"{artifact_dirname(recipe.artifact_name, recipe.version)}-{digest}"


def compile_artifact(
    recipe: Recipe,
    *,
    experts: str | Path | None = None,
    device: str | torch.device = "auto",
    out: str | Path | None = None,
    force: bool = False,
    batch_size: int = 256,
    workers: int | None = None,
    skip_bad: bool = False,
) -> Path:
    """Compile ``recipe`` into an artifact folder and return its path (default ``default_out(recipe)``).

    ``experts`` is the expert store (default ``$SLC_EXPERTS``, then ``./experts``); ``batch_size``
    (teacher inference) and ``workers`` (decoding processes for datasets of files; default the
    core count) change speed and memory, never the result. ``skip_bad`` leaves undecodable images
    out (recorded in ``manifest.selection.skipped``) instead of stopping at the first.
    """
    members = parse_reference(recipe.teacher)
    out = Path(out) if out is not None else default_out(recipe)
    if out.exists() and not force:
        raise ArtifactError(f"{out} already exists", "pick another --out, bump --version, or pass --force to replace it")
    if batch_size < 1:
        raise ArtifactError(f"batch size must be at least 1, got {batch_size}", "pass --batch-size 1 or more")
    device = resolve_device(device)
    store = default_store(experts)
    data = load_dataset(recipe.dataset, recipe.data_root, recipe.split)
    preprocess = teachers_preprocess(members, store, recipe.dataset)
    data = at_preprocess(data, recipe, preprocess)
    info = data.info()
    teachers = resolve(members, store, info)
    check_topk(recipe.topk, data.num_classes)
    n = recipe.ipc * data.num_classes  # every strategy picks ipc images of each class
    keys = [sample_key(i, key_width(n)) for i in range(n)]
    params = sample_views(keys, recipe.views, recipe.augment, recipe.seed, data.shape) if recipe.views else None

    ensemble = Ensemble(teachers, preprocess["mean"], preprocess["std"], device)
    picked = select_images(recipe, data, ensemble, batch_size=batch_size, workers=workers, skip_bad=skip_bad)
    source = AugmentedViews(picked.pixels.to(device), params) if params else picked.pixels
    labels = teacher_labels(ensemble, source, ensemble.mean, ensemble.std, batch_size=batch_size, views=recipe.num_views, temperature=recipe.temperature, topk=recipe.topk)
    if params:
        labels["views"] = params

    return write_artifact(
        out,
        name=recipe.artifact_name,
        version=recipe.version,
        dataset=info,
        images=SourceBytes(data, picked.indices) if data.sources is not None else picked.pixels,
        targets=data.targets[picked.indices],
        source_ids=[data.source_id(i) for i in picked.indices.tolist()],
        labels=labels,
        label_schema=label_schema(recipe, format_reference(members), preprocess),
        recipe={k: v for k, v in recipe.to_dict().items() if k != "data_root"},  # no machine paths; the fingerprint names the data
        teachers=[t.manifest_entry() for t in teachers],
        selection=picked.record,
        provenance={"tool": f"slc {__version__}", "torch": torch.__version__, "device": describe(device)},
        ipc=recipe.ipc,
        force=force,
    )


# ---- preprocessing -------------------------------------------------------------------------------


def preprocess_of(info: dict) -> dict:
    """The input transform recorded in a dataset info (``preprocess``), in canonical form.

    Infos written before datasets recorded it give the transform their decoding implied: the
    shorter side resized to the crop size, bilinear, and the info's mean and std.
    """
    given = info.get("preprocess") or {}
    crop = given.get("crop", info["resolution"])
    crop = [int(crop), int(crop)] if isinstance(crop, (int, float)) else [int(c) for c in crop]
    return {
        "resize": int(given.get("resize") or max(crop)),
        "crop": crop,
        "interpolation": str(given.get("interpolation", "bilinear")),
        "mean": [round(float(m), 6) for m in given.get("mean", info["mean"])],
        "std": [round(float(s), 6) for s in given.get("std", info["std"])],
    }


def describe_preprocess(p: dict) -> str:
    return f"resize {p['resize']}, crop {p['crop'][0]}x{p['crop'][1]}, {p['interpolation']}, mean {p['mean']}, std {p['std']}"


def _decoding(p: dict) -> tuple:
    return p["resize"], tuple(p["crop"]), p["interpolation"]


def teachers_preprocess(members: list, store, dataset: str) -> dict:
    """The one preprocess every teacher of the reference was trained with (from its trajectory)."""
    key = dataset_key(dataset)
    seen: dict[str, list[str]] = {}
    for member in members:
        for seed in member.seeds:
            p = preprocess_of(store.trajectory(key, member.arch, seed).dataset)
            seen.setdefault(json.dumps(p, sort_keys=True), []).append(f"{member.arch}#{seed}")
    if len(seen) > 1:
        each = "; ".join(f"{', '.join(names)}: {describe_preprocess(json.loads(p))}" for p, names in seen.items())
        raise ExpertError(f"the teachers of {format_reference(members)} were trained on differently preprocessed inputs ({each})", "ensemble only teachers trained at one resize, crop and normalisation")
    return json.loads(next(iter(seen)))


def at_preprocess(data: ImageSet, recipe: Recipe, preprocess: dict) -> ImageSet:
    """``data`` (the recipe's split as it loads by default), loaded again at the teachers' resize and crop if they differ."""
    have = preprocess_of(data.info())
    if _decoding(have) == _decoding(preprocess):
        return data
    crop = preprocess["crop"]
    problem = f"the teachers were trained on inputs of {describe_preprocess(preprocess)}, but {recipe.dataset} decodes to {describe_preprocess(have)}"
    fix = "label with teachers trained on this dataset as it loads, or give the dataset in a form that decodes at the teachers' size"
    if crop[0] != crop[1]:
        raise DataError(problem, fix)
    options = {"resolution": crop[0]}
    if "preprocess" in data.info():  # loaders that record preprocess take its resize
        options["resize"] = preprocess["resize"]
    try:
        data = load_dataset(recipe.dataset, recipe.data_root, recipe.split, **options)
    except DataError as exc:
        raise DataError(f"{problem} ({exc.problem})", fix) from None
    if _decoding(preprocess_of(data.info())) != _decoding(preprocess):
        raise DataError(problem, fix)
    return data


# ---- selection ----------------------------------------------------------------------------------


@dataclass
class Selection:
    """The picked dataset indices in sample order, their decoded uint8 pixels, and ``manifest.selection``."""

    indices: torch.Tensor
    pixels: torch.Tensor
    record: dict


def select_images(recipe: Recipe, data: ImageSet, ensemble: Ensemble, *, batch_size: int = 256, workers: int | None = None, skip_bad: bool = False) -> Selection:
    """Pick ``recipe.ipc`` images per class and decode them; with ``skip_bad`` a bad file is replaced by the next pick."""
    skipped: dict[int, tuple[str, str]] = {}
    if recipe.select == "ce-quantile":
        check_decile(data.targets, data.classes, recipe.ipc, recipe.quantile)  # before any teacher work
        scores = ce_scores(ensemble, data, batch_size=batch_size, workers=workers, skip_bad=skip_bad)
        skipped.update({i: (sid, problem) for i, sid, problem in scores.skipped})

        def pick(exclude):
            return quantile_per_class(scores.values, data.targets, data.classes, recipe.ipc, recipe.quantile, recipe.seed, exclude)

        extra = {"quantile": recipe.quantile, "quantiles": QUANTILES, "score": "teacher cross-entropy on the true label"}
    else:

        def pick(exclude):
            return random_per_class(data.targets, data.classes, recipe.ipc, recipe.seed, exclude)

        extra = {}
    indices, pixels = decode_picked(data, pick, skipped, batch_size=batch_size, workers=workers, skip_bad=skip_bad)
    record = {
        "strategy": recipe.select,
        "seed": recipe.seed,
        "source_indices": indices.tolist(),
        "source_ids": [data.source_id(i) for i in indices.tolist()],
        **extra,
    }
    if skipped:
        record["skipped"] = [{"source": sid, "problem": problem} for _, (sid, problem) in sorted(skipped.items())]
    return Selection(indices, pixels, record)


def decode_picked(data: ImageSet, pick, skipped: dict, *, batch_size: int, workers: int | None, skip_bad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``pick(exclude)``'s indices and their uint8 pixels, decoded once through the stream.

    An undecodable pick (``skip_bad``) joins ``skipped`` and is excluded; the picker then draws its
    replacement and only the new picks are decoded. Without ``skip_bad`` it is an error naming it.
    """
    exclude = torch.zeros(len(data), dtype=torch.bool)
    pool_idx, pool_pix = torch.empty(0, dtype=torch.int64), torch.empty((0, *data.shape), dtype=torch.uint8)
    while True:
        exclude[list(skipped)] = True
        indices = pick(exclude if skipped else None)
        if data.pixels is not None:
            return indices, data.pixels[indices]
        new = indices[~torch.isin(indices, pool_idx)]
        batches = stream(data, new, batch_size=batch_size, workers=workers, skip_bad=skip_bad)
        pix = torch.empty((len(new), *data.shape), dtype=torch.uint8)
        kept = torch.empty(len(new), dtype=torch.int64)
        done = 0
        for batch in batches:
            pix[done : done + len(batch.indices)] = batch.pixels
            kept[done : done + len(batch.indices)] = batch.indices
            done += len(batch.indices)
        if not batches.skipped and not len(pool_idx):
            return indices, pix  # the usual case: every pick decoded, in sample order
        pool_idx, pool_pix = torch.cat([pool_idx, kept[:done]]), torch.cat([pool_pix, pix[:done]])
        if not batches.skipped:
            order = torch.argsort(pool_idx)
            return indices, pool_pix[order[torch.searchsorted(pool_idx[order], indices)]]
        skipped.update({i: (sid, problem) for i, sid, problem in batches.skipped})


class SourceBytes(Sequence):
    """The selected images' own encoded bytes, read one at a time as the writer asks for them."""

    def __init__(self, data: ImageSet, indices: torch.Tensor):
        self.data, self.indices = data, indices.tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[bytes, str]:
        return self.data.encoded(self.indices[i])


def label_schema(recipe: Recipe, teacher: str, preprocess: dict) -> dict:
    """What ``manifest.labels`` records beyond the tensors' own shapes: how the labels were made."""
    schema = {
        "temperature": recipe.temperature,
        "teacher": teacher,
        "logits": "mean over teachers, float32, then softmax(logits / temperature)",
        "precision": PRECISION,
        "preprocess": preprocess,
        "augment": recipe.augment,
    }
    if recipe.topk is not None:
        schema["fill"] = "uniform"
    if recipe.views:
        schema["view_seed"] = recipe.seed
        schema["view_sampling"] = {
            "rrc_scale": list(RRC_SCALE),
            "rrc_ratio": [round(r, 6) for r in RRC_RATIO],
            "cutmix_lambda": "uniform(0, 1), box area 1 - lambda",
            "replay": "sl_compiler.label.views.replay",
        }
    return schema
