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

A recipe with ``labeler = "bptt"`` needs no teacher: :func:`compile_bptt` learns the labels of
the randomly selected images by truncated BPTT on the real data (``label/bptt.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__, dist
from .artifact import artifact_dirname, write_artifact
from .artifact.format import key_width, sample_key
from .data import ImageSet, dataset_key, load_dataset, stream
from .progress import bar
from .device import describe
from .dist import Team
from .errors import ArtifactError, DataError, ExpertError, RecipeError
from .experts import default_store, format_reference, parse_reference, resolve
from .label import PRECISION, AugmentedViews, Ensemble, LabelPieces, check_topk, label_spans, sample_views, stored_labels
from .label.pieces import indices_digest, pieces_key
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

    Under torchrun every rank checks the inputs, scores its share of the ce-quantile chunks and
    decodes and labels its share of the label batches; rank 0 gathers them and writes the
    artifact, which is byte-identical at any world size. Finished score chunks and label batches
    are kept, so a killed run resumes from them.
    """
    if recipe.labeler == "bptt":
        return compile_bptt(recipe, device=device, out=out, force=force, workers=workers, skip_bad=skip_bad)
    team = dist.team()
    with team.together():
        members = parse_reference(recipe.teacher)
        out = Path(out) if out is not None else default_out(recipe)
        if team.main and out.exists() and not force:
            raise ArtifactError(f"{out} already exists", "pick another --out, bump --version, or pass --force to replace it")
        if batch_size < 1:
            raise ArtifactError(f"batch size must be at least 1, got {batch_size}", "pass --batch-size 1 or more")
        device = dist.device(device)
        workers = dist.workers(workers)
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

        ensemble = Ensemble(teachers, preprocess["mean"], preprocess["std"], device, teachers_zca(preprocess, data, recipe, workers))
        rule = selection_rule(recipe, data, ensemble, batch_size=batch_size, workers=workers, skip_bad=skip_bad, team=team)
        pieces_of = lambda indices: LabelPieces(label_key(recipe, teachers, info, preprocess, indices, batch_size))  # noqa: E731
        picked = label_picks(recipe, data, ensemble, rule, params, pieces_of, team, batch_size=batch_size, workers=workers, skip_bad=skip_bad)
        if team.main:
            labels = picked.labels
            if params:
                labels["views"] = params
            write_artifact(
                out,
                name=recipe.artifact_name,
                version=recipe.version,
                dataset=info,
                images=SourceBytes(data, picked.indices) if data.sources is not None else data.pixels[picked.indices],
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
            picked.pieces.clear()
        team.barrier()  # every rank returns once the artifact exists (or raises with rank 0's error)
    return out


def compile_bptt(recipe: Recipe, *, device: str | torch.device = "auto", out: str | Path | None = None, force: bool = False, workers: int | None = None, skip_bad: bool = False) -> Path:
    """``labeler = "bptt"``: the recipe's random images with labels learned by truncated BPTT (``label/bptt.py``), no teacher.

    Every check runs before the unroll: one process, the output folder, the dataset, top-k, IPC and
    the student model for the data. The manifest records no teachers (``slc evaluate`` skips its
    random-sl baseline with the reason) and the settings in ``labels.bptt``.
    """
    from .label.bptt import learn_labels, settings
    from .models import create_model

    if dist.team().distributed:
        raise RecipeError("--labeler bptt runs in one process", "run slc compile without torchrun")
    if skip_bad:
        raise RecipeError("--skip-bad applies only to teacher labels", "drop --skip-bad, or remove the undecodable files")
    out = Path(out) if out is not None else default_out(recipe)
    if out.exists() and not force:
        raise ArtifactError(f"{out} already exists", "pick another --out, bump --version, or pass --force to replace it")
    device = dist.device(device)
    data = load_dataset(recipe.dataset, recipe.data_root, recipe.split)
    info = data.info()
    check_topk(recipe.topk, data.num_classes)
    create_model(recipe.bptt_model, data.num_classes, data.shape[0], data.shape[1])  # an unknown or too-small student fails here
    indices = random_per_class(data.targets, data.classes, recipe.ipc, recipe.seed)
    pixels = data.images(indices)
    learned = learn_labels(recipe, pixels, data.targets[indices], data, device, workers=dist.workers(workers))
    labels = {name: value[:, None] for name, value in stored_labels(learned.logits, 1.0, recipe.topk).items()}
    schema = {
        "temperature": 1.0,
        "teacher": None,
        "labeler": "bptt",
        "logits": "learned by truncated BPTT without a teacher (labels.bptt), float32, then softmax",
        "precision": PRECISION,
        "preprocess": preprocess_of(info),
        "augment": "none",
        "bptt": settings(recipe, len(indices), len(data), learned),
    }
    if recipe.topk is not None:
        schema["fill"] = "uniform"
    return write_artifact(
        out,
        name=recipe.artifact_name,
        version=recipe.version,
        dataset=info,
        images=SourceBytes(data, indices) if data.sources is not None else pixels,
        targets=data.targets[indices],
        source_ids=[data.source_id(i) for i in indices.tolist()],
        labels=labels,
        label_schema=schema,
        recipe={k: v for k, v in recipe.to_dict().items() if k != "data_root"},
        teachers=[],
        selection={"strategy": recipe.select, "seed": recipe.seed, "source_indices": indices.tolist(), "source_ids": [data.source_id(i) for i in indices.tolist()]},
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
    zca = f", ZCA eps {p['zca']['eps']} id {p['zca']['id'][:12]}" if p.get("zca") else ""
    return f"resize {p['resize']}, crop {p['crop'][0]}x{p['crop'][1]}, {p['interpolation']}, mean {p['mean']}, std {p['std']}{zca}"


def _decoding(p: dict) -> tuple:
    return p["resize"], tuple(p["crop"]), p["interpolation"]


def teachers_preprocess(members: list, store, dataset: str) -> dict:
    """The one preprocess every teacher of the reference was trained with (from its trajectory)."""
    key = dataset_key(dataset)
    seen: dict[str, list[str]] = {}
    for member in members:
        for seed in member.seeds:
            trajectory = store.trajectory(key, member.arch, seed)
            p = preprocess_of(trajectory.dataset)
            if trajectory.zca:
                p["zca"] = trajectory.zca
            seen.setdefault(json.dumps(p, sort_keys=True), []).append(f"{member.arch}#{seed}")
    if len(seen) > 1:
        each = "; ".join(f"{', '.join(names)}: {describe_preprocess(json.loads(p))}" for p, names in seen.items())
        raise ExpertError(f"the teachers of {format_reference(members)} were trained on differently preprocessed inputs ({each})", "ensemble only teachers trained at one resize, crop, normalisation and ZCA whitening")
    return json.loads(next(iter(seen)))


def teachers_zca(preprocess: dict, data: ImageSet, recipe: Recipe, workers: int | None = None):
    """The ZCA the teachers were trained with (fitted on the recipe dataset's training split, cached), or None."""
    record = preprocess.get("zca")
    if record is None:
        return None
    from .data.zca import check_record, zca_for

    train = data if data.split == "train" else load_dataset(recipe.dataset, recipe.data_root, "train")
    zca = zca_for(train, float(record["eps"]), workers)
    check_record(record, zca, f"the teachers of {recipe.teacher}", f"label with the dataset they were trained on (its training split fits their ZCA: {record['fit']['dataset']}, {record['fit']['size']} images)")
    return zca


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


# ---- selection and labelling ----------------------------------------------------------------------


@dataclass
class Rule:
    """How images are picked: ``pick(exclude)`` -> dataset indices in sample order; what scoring skipped; the record's extra keys."""

    pick: Callable[[torch.Tensor | None], torch.Tensor]
    skipped: dict[int, tuple[str, str]]
    extra: dict


def selection_rule(recipe: Recipe, data: ImageSet, ensemble: Ensemble, *, batch_size: int = 256, workers: int | None = None, skip_bad: bool = False, team: Team = dist.SOLO) -> Rule:
    """The recipe's picker for ``data``; ce-quantile scores the split first (shared over the ranks, cached)."""
    if recipe.select == "ce-quantile":
        check_decile(data.targets, data.classes, recipe.ipc, recipe.quantile)  # before any teacher work
        scores = ce_scores(ensemble, data, batch_size=batch_size, workers=workers, skip_bad=skip_bad, team=team)

        def pick(exclude):
            return quantile_per_class(scores.values, data.targets, data.classes, recipe.ipc, recipe.quantile, recipe.seed, exclude)

        extra = {"quantile": recipe.quantile, "quantiles": QUANTILES, "score": "teacher cross-entropy on the true label"}
        return Rule(pick, {i: (sid, problem) for i, sid, problem in scores.skipped}, extra)

    def pick(exclude):
        return random_per_class(data.targets, data.classes, recipe.ipc, recipe.seed, exclude)

    return Rule(pick, {}, {})


def label_key(recipe: Recipe, teachers: list, info: dict, preprocess: dict, indices: torch.Tensor, batch_size: int) -> str:
    """What a compile's labels depend on (:class:`LabelPieces`): recipe, teachers, data, picks, batches, arithmetic."""
    made = {k: v for k, v in recipe.to_dict().items() if k not in ("data_root", "name", "version")}
    return pieces_key(recipe=made, teachers=[t.sha256 for t in teachers], dataset=info["fingerprint"], preprocess=preprocess, indices=indices_digest(indices), batch_size=batch_size, precision=PRECISION)


@dataclass
class Picked:
    """The picked dataset indices in sample order, their stored-form labels ``(N, V, ...)`` (rank 0 only), the selection record."""

    indices: torch.Tensor
    labels: dict[str, torch.Tensor] | None
    record: dict
    pieces: LabelPieces


def label_picks(recipe: Recipe, data: ImageSet, ensemble: Ensemble, rule: Rule, params: dict | None, pieces_of, team: Team = dist.SOLO, *, batch_size: int, workers: int | None, skip_bad: bool) -> Picked:
    """Pick the images, decode the ones this rank's label batches need, and label those batches; rank 0 gathers every batch.

    The N x V label rows are cut into :func:`label_spans` batches. Batches already finished by an
    earlier run (``pieces_of(indices)``) are reused; the rest are dealt round-robin to the ranks,
    and each rank decodes only the images its batches show (and their CutMix partners). An
    undecodable pick (``skip_bad``) is excluded on every rank and its class's next draw replaces
    it; only new picks are decoded. Rank 0 writes each finished batch as a piece, so a killed run
    resumes from the pieces.
    """
    views = recipe.num_views
    skipped = dict(rule.skipped)
    pool = Decoded(data)
    while True:
        exclude = torch.zeros(len(data), dtype=torch.bool)
        exclude[list(skipped)] = True
        indices = rule.pick(exclude if skipped else None)
        pieces = pieces_of(indices)
        grid = label_spans(len(indices) * views, batch_size)
        done = pieces.load(grid) if team.main else {}
        todo = team.broadcast([span for span in grid if span not in done] if team.main else None)
        mine = team.rounds(todo)
        new = {}
        for rank_skipped in team.all_gather(pool.decode(indices[_shown(mine, views, params)], batch_size=batch_size, workers=workers, skip_bad=skip_bad)):
            new.update(rank_skipped)
        if not new:
            break
        skipped.update(new)
    pixels, positions = pool.take(indices)
    rows = AugmentedViews(pixels.to(ensemble.device), params, positions) if params else _Rows(pixels, positions)
    out = _LabelRows(len(indices), views) if team.main else None
    for span, tensors in done.items():
        out.put(span, tensors)
    with bar(sum(stop - start for start, stop in (s for s in mine if s is not None)), desc=f"label {ensemble.reference}") as progress:
        for span in mine:
            piece = None
            if span is not None:
                piece = (span, stored_labels(ensemble(rows[span[0] : span[1]]), recipe.temperature, recipe.topk))
                progress.update(span[1] - span[0])
                dist.fault("label")
            for got in team.gather(piece) or []:
                if got is not None:
                    out.put(*got)
                    pieces.save(*got)
    record = {
        "strategy": recipe.select,
        "seed": recipe.seed,
        "source_indices": indices.tolist(),
        "source_ids": [data.source_id(i) for i in indices.tolist()],
        **rule.extra,
    }
    if skipped:
        record["skipped"] = [{"source": sid, "problem": problem} for _, (sid, problem) in sorted(skipped.items())]
    return Picked(indices, out.labels() if out is not None else None, record, pieces)


def _shown(spans: list, views: int, params: dict | None) -> torch.Tensor:
    """Sample positions the label rows of ``spans`` show: each row's image and, for CutMix, its partner."""
    parts = [torch.arange(start, stop) for start, stop in (s for s in spans if s is not None)]
    if not parts:
        return torch.empty(0, dtype=torch.int64)
    rows = torch.cat(parts)
    sample = rows // views
    if params and "partner" in params:
        sample = torch.cat([sample, params["partner"][sample, rows % views].long()])
    return torch.unique(sample)


class Decoded:
    """The uint8 pixels of the picked images this rank has decoded; a split held in memory needs no decoding."""

    def __init__(self, data: ImageSet):
        self.data = data
        self.indices = torch.empty(0, dtype=torch.int64)
        self.pixels = torch.empty((0, *data.shape), dtype=torch.uint8)

    def decode(self, indices: torch.Tensor, *, batch_size: int, workers: int | None, skip_bad: bool) -> dict[int, tuple[str, str]]:
        """Decode those of ``indices`` not decoded yet, through the stream; returns the undecodable ones (``skip_bad``)."""
        if self.data.pixels is not None:
            return {}
        new = torch.unique(indices[~torch.isin(indices, self.indices)])
        if not len(new):
            return {}
        batches = stream(self.data, new, batch_size=batch_size, workers=workers, skip_bad=skip_bad)
        pixels = torch.empty((len(new), *self.data.shape), dtype=torch.uint8)  # filled in place: one copy of the picks in memory
        indices = torch.empty(len(new), dtype=torch.int64)
        done = 0
        for b in batches:
            pixels[done : done + len(b.indices)], indices[done : done + len(b.indices)] = b.pixels, b.indices
            done += len(b.indices)
        pixels, indices = pixels[:done], indices[:done]
        if len(self.indices):  # a later pass (the replacements of skipped picks) adds to the first
            pixels, indices = torch.cat([self.pixels, pixels]), torch.cat([self.indices, indices])
        self.pixels, self.indices = pixels, indices
        return {i: (sid, problem) for i, sid, problem in batches.skipped}

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pixels, positions)``: sample n of ``indices`` is ``pixels[positions[n]]`` (-1 where this rank decoded none)."""
        if self.data.pixels is not None:
            return self.data.pixels[indices], torch.arange(len(indices))
        lookup = torch.full((len(self.data),), -1, dtype=torch.int64)
        lookup[self.indices] = torch.arange(len(self.indices))
        return self.pixels, lookup[indices]


class _Rows:
    """Images in sample order, sliced like a tensor, read from the rows of :class:`Decoded` that hold them."""

    def __init__(self, pixels: torch.Tensor, positions: torch.Tensor):
        self.pixels, self.positions = pixels, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, span: slice) -> torch.Tensor:
        return self.pixels[self.positions[span]]


class _LabelRows:
    """Rank 0's stored-form labels of all N x V rows, filled batch by batch: ``labels()`` -> ``{name: (N, V, ...)}``."""

    def __init__(self, samples: int, views: int):
        self.samples, self.views = samples, views
        self.out: dict[str, torch.Tensor] = {}

    def put(self, span: tuple[int, int], tensors: dict[str, torch.Tensor]) -> None:
        for name, value in tensors.items():
            if name not in self.out:
                self.out[name] = torch.empty((self.samples * self.views, *value.shape[1:]), dtype=value.dtype)
            self.out[name][span[0] : span[1]] = value

    def labels(self) -> dict[str, torch.Tensor]:
        return {name: value.view(self.samples, self.views, *value.shape[1:]) for name, value in self.out.items()}


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
