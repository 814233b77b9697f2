"""``evaluate(artifacts, protocol)``: every regime and baseline of every artifact, as one result.

Two phases. :func:`plan_artifact` checks everything that can fail before the first student
trains: the device, the output path, the student model for these images, each artifact's test
split (found through its manifest, or ``dataset``/``data_root``, decoded with the artifact's
preprocess, with the artifact's classes and shape), the teachers a regime or baseline needs, the
held-out slice and the baselines' images. A baseline that cannot run for an artifact (it records
no teacher, or has unequal class counts) is skipped, and the result says why and how to add it.
Then every planned cell trains and is tested.

Images stay uint8 until the batch and labels in their stored form (:mod:`.data`,
:mod:`.regimes`); file-backed splits are read through the streaming loader.

Input spaces. A protocol with ``zca = true`` whitens every uint8 input (the artifact's images,
the test and held-out images, the baselines') with the ZCA fitted on the artifact's training
split (cached); a set stored as float images (:mod:`sl_compiler.importers`) is already in its
own space and is used as stored, and its recorded space must be the protocol's (else a one-line
error). A teacher always labels in its own space (random-sl); in slkd it sees the students'
augmented inputs, so its whitening must be the protocol's. Stored labels made by a ZCA teacher
under a protocol without ZCA (or the reverse) are allowed, as a choice the row records
(``zca.labels`` beside ``zca.protocol``).

The cells' students train in fixed groups (:func:`~.trainer.lr_groups`, :func:`~.trainer.seed_groups`:
one batched group per cell, or one student each), and a student's accuracy depends on its group
alone. Under torchrun the groups of every cell are dealt round-robin to the ranks, the lr
candidates first (each rank trains its groups and scores them on the held-out slice), then, with
each cell's lr chosen from the gathered accuracies, the seeds; every rank gets every accuracy,
and rank 0 writes the results. The tables and JSON are those of one process; ``world_size`` and
the wall times are recorded beside them.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .. import __version__, dist
from ..artifact import Artifact
from ..artifact.format import key_width, sample_key
from ..data import ImageSet, dataset_key, load_dataset
from ..data.preprocess import Preprocess
from ..device import describe, prepare_model
from ..dist import Team
from ..data.zca import ZCA, check_record, zca_for
from ..errors import DataError, EvaluateError, ModelError
from ..experts import default_store, resolve
from ..models import create_model
from .baselines import holdout_indices, random_images, teacher_labels
from .data import EvalSet, eval_set
from .metrics import row_metrics
from .protocol import ARTIFACT_LR, Protocol
from .regimes import training_set
from .tables import write_results
from .trainer import GroupScore, cell_result, choose_lr, lr_groups, seed_groups, train_groups

# loaders that decode files and take the artifact's decode options (resolution, resize, lazy loading)
DECODING = ("cifar10", "cifar100", "tinyimagenet", "imagenet")


class Ensemble(torch.nn.Module):
    """Teachers whose logits are averaged (the paper's ensemble rule), for slkd."""

    def __init__(self, members: list[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x):
        return torch.stack([m(x).float() for m in self.members]).mean(0)


def preprocess(art: Artifact) -> dict:
    """The artifact's input transform: its manifest's ``dataset.preprocess``, else built from resolution, mean and std."""
    return Preprocess.from_info(art.manifest["dataset"]).to_dict()


def decode_options(name: str, pre: dict) -> dict:
    """Loader options that decode a split as the artifact was decoded: lazily, cropped (and resized) like its images."""
    kind = name.split(":")[0].strip().lower()
    if kind not in ("imagefolder", "wds") and dataset_key(name) not in DECODING:
        return {}
    options: dict = {"in_memory": False}
    crop = pre.get("crop")
    if isinstance(crop, (list, tuple)) and len(crop) == 2 and crop[0] == crop[1]:
        options["resolution"] = int(crop[0])
    if pre.get("resize"):
        options["resize"] = int(pre["resize"])
    return options


class _Context:
    """Datasets, teachers and baselines shared by the artifacts of one run (each loaded once)."""

    def __init__(self, protocol: Protocol, dataset, data_root, experts, teacher, device, batched, workers, skip_bad, compile, holdout_scores=False):
        self.protocol, self.dataset, self.data_root, self.teacher_ref = protocol, dataset, data_root, teacher
        self.store = default_store(experts)
        self.device, self.batched, self.workers, self.skip_bad, self.compile = device, batched, workers, skip_bad, compile
        self._splits: dict[tuple, ImageSet] = {}
        self._baselines: dict[tuple, tuple[dict, dict]] = {}
        self._tests: dict[tuple, EvalSet] = {}
        self._zca: dict[tuple, ZCA] = {}
        self.holdout_scores = holdout_scores  # also score the final students on the held-out slice

    def split(self, art: Artifact, split: str) -> ImageSet:
        name = self.dataset or art.manifest["dataset"]["name"]
        options = decode_options(name, preprocess(art))
        key = (name, split, tuple(sorted(options.items())))
        if key not in self._splits:
            self._splits[key] = load_dataset(name, self.data_root, split, **options)
        data = self._splits[key]
        if list(data.classes) != list(art.classes):
            raise EvaluateError(
                f"artifact {art.name} has classes {_short(art.classes)} but the {split} split of {name} has {_short(data.classes)}",
                "evaluate it on the dataset it was built from (--dataset/--data-root)",
            )
        if tuple(data.shape) != tuple(art.shape):
            raise EvaluateError(f"artifact {art.name} holds {art.shape} images but {name} {split} has {data.shape}", "evaluate it on the dataset it was built from")
        return data

    def teachers(self, art: Artifact, why: str, required: bool = True):
        """(reference, teachers) for ``art``: ``--teacher``, else the artifact's own; (None, None) if neither and not ``required``."""
        ref = self.teacher_ref or "+".join(t["reference"] for t in art.manifest.get("teachers", []) if "reference" in t)
        if not ref:
            if not required:
                return None, None
            raise EvaluateError(f"{why} needs a teacher, and artifact {art.name} records none", "pass --teacher ARCH@EPOCH[#SEEDS] (and --experts DIR), or leave it out")
        teachers = resolve(ref, self.store, art.manifest["dataset"])
        recorded = {t.get("sha256") for t in art.manifest.get("teachers", [])}
        if not self.teacher_ref and any(t.sha256 not in recorded for t in teachers):
            raise EvaluateError(f"the store's checkpoint for {ref} differs from the one that labelled {art.name}", "point --experts at the store the artifact was compiled with")
        return ref, teachers

    def eval_set(self, data: ImageSet, indices, art: Artifact, what: str, zca: ZCA | None = None) -> EvalSet:
        key = (id(data), None if indices is None else tuple(indices.tolist()), tuple(art.mean), tuple(art.std), zca.id if zca else None)
        if key not in self._tests:
            self._tests[key] = eval_set(data, indices, art.mean, art.std, self.device, workers=self.workers, skip_bad=self.skip_bad, desc=f"decode {what}", zca=zca)
        return self._tests[key]

    def zca(self, art: Artifact, eps: float, why: str) -> ZCA:
        """The ZCA at ``eps`` fitted on the training split of ``art``'s dataset (cached on disk and here)."""
        name = self.dataset or art.manifest["dataset"]["name"]
        try:
            train = self.split(art, "train")
        except DataError as exc:
            raise EvaluateError(f"{why} needs a ZCA fitted on the training split of {name}, which cannot be loaded ({exc.problem})", "give --dataset/--data-root a dataset with its train split, or use a protocol without zca") from None
        key = (id(train), float(eps))
        if key not in self._zca:
            self._zca[key] = zca_for(train, eps, self.workers)
        return self._zca[key]


def _short(classes: list[str]) -> str:
    return f"[{', '.join(classes[:3])}{', ...' if len(classes) > 3 else ''}] ({len(classes)})"


@dataclass
class _Baseline:
    images: torch.Tensor  # training-split indices
    teacher_ref: str | None = None
    teachers: list | None = None
    views: dict | None = None
    zca: ZCA | None = None  # the teachers' own whitening (random-sl labels in their space)


@dataclass
class _Plan:
    """Everything one artifact's cells need, checked before any of them trains."""

    art: Artifact
    test: ImageSet
    own: torch.Tensor | None
    holdout: torch.Tensor | None
    train: ImageSet | None
    slkd: tuple | None
    zca: ZCA | None = None  # the protocol's whitening of uint8 inputs
    lr: float | None = None  # the artifact's learned lr, under lr = "artifact"
    baselines: dict[str, _Baseline] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    cell_keys: dict[str, tuple] = field(default_factory=dict)  # table column -> cell (a baseline may be shared)


def evaluate(
    artifacts: list[str | Path | Artifact],
    protocol: Protocol,
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    experts: str | None = None,
    teacher: str | None = None,
    device: str = "auto",
    batched: bool | None = None,
    out: str | Path | None = None,
    workers: int | None = None,
    skip_bad: bool = False,
    compile: bool = False,
    holdout_scores: bool = False,
) -> dict:
    """Train and test students for each artifact under ``protocol``; write ``<out>.json``/``.csv`` if given.

    ``batched`` None: batched on CUDA, one at a time on the CPU (where batching measured slower).
    ``workers`` decode file-backed splits (default: the core count); ``skip_bad`` drops
    undecodable test or held-out images and records them; ``compile`` runs the students'
    training loss through ``torch.compile``. ``holdout_scores`` draws the held-out slice even at a
    fixed lr and scores every cell's final students on it too (``holdout_accuracy``: what
    ``slc sweep`` chooses the expert epoch by). Under torchrun every rank returns the result and
    rank 0 writes it.
    """
    start = time.perf_counter()
    team = dist.team()
    with team.together():
        device = dist.device(device)
        workers = dist.workers(workers)
        batched = device.type == "cuda" if batched is None else batched
        if not artifacts:
            raise EvaluateError("no artifact given", "pass one or more artifact folders")
        if out is not None and team.main:
            _check_writable(Path(out))
        from ..hub import open_artifact  # hf:// is resolved above the artifact reader

        arts = [a if isinstance(a, Artifact) else open_artifact(a) for a in artifacts]
        ctx = _Context(protocol, dataset, data_root, experts, teacher, device, batched, workers, skip_bad, compile, holdout_scores)
        plans = [plan_artifact(ctx, art) for art in arts]
        team.barrier()  # every rank's plan holds before any student trains
        cells = _cells(ctx, plans)
        _train_cells(ctx, cells, team)
        rows = [_row(ctx, plan, cells) for plan in plans]
        result = {
            "kind": "slc-evaluate/1",
            "slc_version": __version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "device": describe(device),
            "batched": batched,
            "compile": compile,
            "protocol": protocol.to_dict(),
            "artifacts": rows,
            "world_size": team.size,
            "wall_s": round(time.perf_counter() - start, 3),
        }
        if out is not None and team.main:
            write_results(result, out)
        team.barrier()
    return result


def _check_writable(out: Path) -> None:
    """``<out>.json`` can be written: the nearest existing folder above it is a writable folder."""
    folder = out.parent if out.parent != Path("") else Path(".")
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise EvaluateError(f"cannot write results under {out.parent} ({folder} is not a writable folder)", "pass an --out in a folder you can write")


def plan_artifact(ctx: _Context, art: Artifact) -> _Plan:
    """Check every precondition of ``art``'s cells (no training): raises, or returns what the cells need."""
    p = ctx.protocol
    test = ctx.split(art, "test")
    _check_model(p.model, art)
    own = _own_indices(art)
    zca = ctx.zca(art, p.zca_eps, f"protocol {p.name} (zca = true)") if p.zca else None
    if art.image_space is not None:  # float images: already inputs, so the protocol must put the test images in their space
        theirs = art.image_space["zca"]
        wanted = f"zca = true, zca_eps = {theirs['eps']:g}" if theirs else "zca = false"
        _same_space(theirs, zca, f"artifact {art.name}'s float images", f"evaluate it under a protocol with {wanted}: its images are in that space and are never normalised or whitened again")
    lr = None
    if p.lr == ARTIFACT_LR:
        lr = art.learned_lr
        if lr is None:
            raise EvaluateError(f'protocol {p.name} takes lr = "artifact", and artifact {art.name} records no learned lr', "import it with the lr its method learned (slc import mtt ... --lr-file lr_best.pt), or pass --lr or --lr-grid")
    slkd = None
    if "slkd" in p.regimes:
        ref, teachers = ctx.teachers(art, "regime slkd")
        for t in teachers:
            _same_space(t.zca, zca, f"teacher {t.reference} (slkd labels the students' own inputs)", "run slkd under a protocol with the teacher's whitening (zca = true for a ZCA teacher, false otherwise)")
        slkd = (ref, [t.load("cpu") for t in teachers])  # weights verified and fitted now, moved to the device later
    if "sl" in p.regimes and art.num_views > 1 and not art.views:
        raise EvaluateError(f"artifact {art.name} stores {art.num_views} labels per image but no view parameters to replay", "run slc verify on the artifact")
    plan = _Plan(art, test, own, None, None, slkd, zca, lr)
    needs_holdout = p.lr is None or ctx.holdout_scores
    needs_train = needs_holdout or bool(p.baselines)
    baselines = list(p.baselines)
    if baselines and art.ipc is None:
        for name in baselines:
            plan.skipped[name] = f"artifact {art.name} has unequal class counts, so a random baseline has no IPC"
        baselines = []
        needs_train = needs_holdout
    if needs_train:
        plan.train = ctx.split(art, "train")
        if needs_holdout:
            plan.holdout = holdout_indices(plan.train, p.holdout_fraction, p.baseline_seed, own)
    for name in baselines:
        baseline = _plan_baseline(ctx, plan, name)
        if isinstance(baseline, str):
            plan.skipped[name] = baseline
        else:
            plan.baselines[name] = baseline
    return plan


def _same_space(record: dict | None, zca: ZCA | None, what: str, fix: str) -> None:
    """``record`` (a float set's or a teacher's whitening) is the protocol's ``zca``: an EvaluateError naming the fix otherwise."""
    try:
        check_record(record, zca, what, fix)
    except DataError as exc:
        raise EvaluateError(exc.problem, exc.fix) from None


def _teacher_zca(ctx: _Context, art: Artifact, teachers: list) -> ZCA | None:
    """The whitening the teachers label in (their own, whatever the protocol's), or None."""
    record = teachers[0].zca if teachers else None
    if record is None:
        return None
    zca = ctx.zca(art, float(record["eps"]), f"teacher {teachers[0].reference}")
    _same_space(record, zca, f"teacher {teachers[0].reference}", "evaluate on the dataset the teacher was trained on")
    return zca


def _check_model(model: str, art: Artifact) -> None:
    """The student architecture exists and can be built for the artifact's images (on the meta device: no memory)."""
    try:
        with torch.device("meta"):
            create_model(model, num_classes=art.num_classes, channels=art.shape[0], resolution=art.shape[1])
    except ModelError as exc:
        raise EvaluateError(f"student {model!r} for artifact {art.name}: {exc.problem}", exc.fix) from None


def _plan_baseline(ctx: _Context, plan: _Plan, name: str) -> _Baseline | str:
    """The baseline's images (and teacher), or the reason it cannot run for this artifact."""
    art, p = plan.art, ctx.protocol
    ref = teachers = views = zca = None
    if name == "random-sl":
        ref, teachers = ctx.teachers(art, "baseline random-sl", required=False)
        if ref is None:
            return f"artifact {art.name} records no teacher to label random images with; add it with --teacher ARCH@EPOCH[#SEEDS] (and --experts DIR)"
        for t in teachers:
            t.load("cpu")  # the checkpoint is readable, matches its sha256 and fits its architecture
        zca = _teacher_zca(ctx, art, teachers)
    exclude = [t for t in (plan.own, plan.holdout) if t is not None]
    idx = random_images(plan.train, art.ipc, p.baseline_seed, torch.cat(exclude) if exclude else None)
    if name == "random-sl" and art.views:
        kind = art.manifest["labels"].get("augment") or art.manifest.get("recipe", {}).get("augment")
        if kind in (None, "none"):
            return f"artifact {art.name} has per-view labels but records no view kind to draw the baseline's views with"
        views = _views_like(art, len(idx), kind)
    return _Baseline(idx, ref, teachers, views, zca)


@dataclass
class _Cell:
    """One cell of the table: a regime or baseline of one artifact, its training set built on demand, and its students' results."""

    plan: _Plan
    name: str
    desc: str
    build: Callable[[], object]  # -> TrainingSet, on the rank that trains the cell's students
    test: Callable[[], EvalSet]
    holdout: Callable[[], EvalSet] | None
    info: dict | None = None  # a baseline's record
    lr: float | None = None
    selection: dict | None = None
    accuracies: list[float] = field(default_factory=list)
    holdout_accuracies: list[float] = field(default_factory=list)  # the same students on the held-out slice (holdout_scores)
    hits: list[list[int]] = field(default_factory=list)  # per seed, the test images right per class
    counts: list[int] | None = None  # the test images per class
    wall_s: float = 0.0


def _cells(ctx: _Context, plans: list[_Plan]) -> dict[tuple, _Cell]:
    """Every cell of every planned artifact in table order; a baseline shared by artifacts (same inputs) is one cell."""
    p = ctx.protocol
    cells: dict[tuple, _Cell] = {}
    for i, plan in enumerate(plans):
        art = plan.art
        test = lambda plan=plan: ctx.eval_set(plan.test, None, plan.art, "test", plan.zca)  # noqa: E731
        holdout = (lambda plan=plan: ctx.eval_set(plan.train, plan.holdout, plan.art, "held-out slice", plan.zca)) if plan.holdout is not None else None
        for regime in p.regimes:
            cells[("artifact", i, regime)] = _Cell(plan, regime, f"{art.name} {regime}", lambda plan=plan, regime=regime: _regime_set(ctx, plan, regime), test, holdout)
            plan.cell_keys[regime] = ("artifact", i, regime)
        for name, baseline in plan.baselines.items():
            labels_key = json.dumps(art.manifest["labels"], sort_keys=True) if baseline.teacher_ref else None
            views_key = json.dumps(art.manifest.get("recipe", {}), sort_keys=True) if baseline.views else None
            key = ("baseline", name, art.ipc, baseline.teacher_ref, labels_key, views_key, tuple(baseline.images.tolist()), plan.lr)
            if key not in cells:
                info = {"selection_seed": p.baseline_seed, "source_indices": baseline.images.tolist(), "teacher": baseline.teacher_ref}
                cells[key] = _Cell(plan, name, f"{name} ipc {art.ipc}", lambda plan=plan, name=name, baseline=baseline: _baseline_set(ctx, plan, name, baseline), test, holdout, info)
            plan.cell_keys[name] = key
    return cells


def _regime_set(ctx: _Context, plan: _Plan, regime: str):
    art, p = plan.art, ctx.protocol
    kwargs = {}
    if regime == "sl":
        kwargs = {"labels": art.labels, "views": art.views, "fill": art.manifest["labels"].get("fill") or "uniform"}
    elif regime == "slkd":
        kwargs = {"teacher": Ensemble([prepare_model(m, ctx.device) for m in plan.slkd[1]]), "temperature": p.temperature}
    return training_set(regime, art.images, art.targets, art.num_classes, art.mean, art.std, ctx.device, zca=plan.zca, **kwargs)


def _baseline_set(ctx: _Context, plan: _Plan, name: str, baseline: _Baseline):
    """The random baseline's training set: random training images, hard labels or the teacher's soft labels."""
    art = plan.art
    idx = baseline.images
    pixels, targets = plan.train.images(idx), plan.train.targets[idx]
    kwargs = {}
    if name == "random-sl":
        schema = art.manifest["labels"]
        labels = teacher_labels(baseline.teachers, pixels, baseline.views, art.mean, art.std, ctx.device, schema, art.num_classes, zca=baseline.zca)
        kwargs = {"views": baseline.views, "labels": labels, "fill": schema.get("fill") or "uniform"}
    return training_set("sl" if name == "random-sl" else "hl", pixels, targets, art.num_classes, art.mean, art.std, ctx.device, zca=plan.zca, **kwargs)


def _train_cells(ctx: _Context, cells: dict[tuple, _Cell], team: Team) -> None:
    """Train every cell's students (lr candidates first where the protocol chooses the lr), spread over the ranks.

    One process goes cell by cell (each cell's training set built once). A distributed run deals
    out the lr groups of every cell, then the seed groups, and gathers each stage's accuracies
    to every rank.
    """
    p = ctx.protocol
    built: dict = {}  # this rank's last built training set: (cell key, set)
    batches = [[key] for key in cells] if not team.distributed else [list(cells)]
    for keys in batches:
        if p.lr is None:
            work = [(key, g) for key in keys for g in lr_groups(p, ctx.batched)]
            scores = _run_groups(ctx, cells, work, "holdout", team, built)
            for key in keys:
                cells[key].lr, cells[key].selection = choose_lr(p, [a for (k, _), got in zip(work, scores) if k == key for a in got.accuracy])
        else:
            for key in keys:
                cells[key].lr = cells[key].plan.lr if p.lr == ARTIFACT_LR else p.lr
        work = [(key, g) for key in keys for g in seed_groups(p, cells[key].lr, ctx.batched)]
        for (key, _), got in zip(work, _run_groups(ctx, cells, work, "test", team, built)):
            cells[key].accuracies.extend(got.accuracy)
            cells[key].holdout_accuracies.extend(got.holdout or [])
            cells[key].hits.extend(got.hits)
            cells[key].counts = got.counts
    built.clear()


def _run_groups(ctx: _Context, cells: dict[tuple, _Cell], work: list[tuple], on: str, team: Team, built: dict) -> list[GroupScore]:
    """Scores of each ``(cell key, group)`` of ``work`` on the cell's ``on`` set; this rank trains its round-robin share.

    A rank trains its groups cell by cell and scores a cell's groups in one pass over the set.
    """
    mine = team.share(list(range(len(work))))
    done: dict[int, GroupScore] = {}
    times: dict[tuple, float] = {}
    for key in dict.fromkeys(work[i][0] for i in mine):
        start = time.perf_counter()
        cell = cells[key]
        if built.get("key") != key:
            built.clear()
            built.update(key=key, data=cell.build())
        ours = [i for i in mine if work[i][0] == key]
        evalset = cell.test() if on == "test" else cell.holdout()
        desc = cell.desc if on == "test" else f"{cell.desc} lr"
        also = cell.holdout() if on == "test" and ctx.holdout_scores and cell.holdout is not None else None
        for i, acc in zip(ours, train_groups(built["data"], ctx.protocol, [work[i][1] for i in ours], ctx.device, evalset, desc, ctx.compile, holdout=also)):
            done[i] = acc
        times[key] = time.perf_counter() - start
    out: list = [None] * len(work)
    for got, spent in team.all_gather((done, times)):
        for i, acc in got.items():
            out[i] = acc
        for key, seconds in spent.items():
            cells[key].wall_s += seconds
    return out


def _row(ctx: _Context, plan: _Plan, cells: dict[tuple, _Cell]) -> dict:
    """One artifact's row of the results: its cells, baselines, skips and metrics."""
    p, art = ctx.protocol, plan.art
    test_set = ctx.eval_set(plan.test, None, art, "test", plan.zca)
    table: dict[str, dict] = {}
    baseline_info = {}
    for name, key in plan.cell_keys.items():
        cell = cells[key]
        table[name] = cell_result(p, cell.lr, cell.selection, cell.accuracies, cell.wall_s, cell.hits, cell.counts)
        if cell.holdout_accuracies:
            table[name]["holdout_accuracy"] = list(cell.holdout_accuracies)
        if cell.info is not None:
            baseline_info[name] = cell.info
    return {
        "path": str(art.path),
        "name": art.name,
        "version": art.version,
        "content_hash": art.content_hash,
        "dataset": dataset_key(art.manifest["dataset"]["name"]),
        "test_set": {"size": len(test_set), "fingerprint": plan.test.fingerprint(), "preprocess": preprocess(art), "resident": test_set.resident, "skipped": [list(s) for s in test_set.skipped]},
        "ipc": art.ipc,
        "classes": list(art.classes),  # names for per_class (slc report)
        "samples": len(art),
        "method": _method(art),
        "labels": {k: art.manifest["labels"].get(k) for k in ("kind", "views", "k", "temperature")},
        "teachers": [t.get("reference") for t in art.manifest.get("teachers", [])],
        "slkd_teacher": plan.slkd[0] if plan.slkd else None,
        "zca": {"protocol": plan.zca.record() if plan.zca else None, "labels": (art.manifest["labels"].get("preprocess") or {}).get("zca"), "images": (art.image_space or {}).get("zca")},
        "images": art.image_space,  # None: uint8 images, normalised or whitened by the protocol
        "lr_source": "artifact" if p.lr == ARTIFACT_LR else ("holdout" if p.lr is None else "protocol"),
        "cells": table,
        "baselines": baseline_info,
        "skipped": dict(plan.skipped),
        "holdout": None if plan.holdout is None else {"size": len(plan.holdout), "fraction": p.holdout_fraction, "seed": p.baseline_seed},
        "metrics": row_metrics(table, list(p.regimes), list(plan.baselines), p.full_data_accuracy),
    }


def _own_indices(art: Artifact) -> torch.Tensor | None:
    """The artifact's source images in the training split, when recorded (slc compile records them)."""
    indices = art.manifest.get("selection", {}).get("source_indices")
    if not indices or art.manifest["dataset"].get("split", "train") != "train":
        return None
    return torch.as_tensor([int(i) for i in indices], dtype=torch.long)


def _method(art: Artifact) -> str:
    """A column name for ``slc report``: the provenance's method, else slc with its teacher and label settings, else the name."""
    method = art.manifest.get("provenance", {}).get("method")
    if method:
        return str(method)
    refs = [t["reference"] for t in art.manifest.get("teachers", []) if "reference" in t]
    if not refs:
        return art.name
    labels = art.manifest["labels"]
    details = [f"T{labels['temperature']:g}" if labels.get("temperature", 1.0) != 1.0 else "", f"top{labels['k']}" if labels.get("k") else ""]
    details.append(f"{labels['views']} {labels.get('augment', '')} views".replace("  ", " ") if labels.get("views", 1) > 1 else "")
    return " ".join(["slc", "+".join(refs), *filter(None, details)])


def _views_like(art: Artifact, n: int, kind: str) -> dict[str, torch.Tensor]:
    """Views for the random images drawn as the artifact's compile drew its own (kind, count, seed)."""
    from ..label import sample_views

    labels, recipe = art.manifest["labels"], art.manifest.get("recipe", {})
    seed = int(labels.get("view_seed", recipe.get("seed", 0)))
    return sample_views([sample_key(i, key_width(n)) for i in range(n)], art.num_views, kind, seed, art.shape)


__all__ = ["Ensemble", "decode_options", "evaluate", "plan_artifact", "preprocess"]
