"""What every analysis shares: its settings, its base artifacts, its cached student cells, its files.

An analysis is a grid of cells. A cell is an artifact (compiled from the store, as ``slc sweep``
compiles its (IPC, epoch) cells, with the same recipes: the two share artifacts and results) or
a *derived* one: a base artifact whose stored labels (or images) an ablation changed, held in
memory and trained on by the ordinary evaluator. A derived artifact's content hash is the
digest of its base's content hash and the transform's record, so each cell's result is cached
under ``<out>/cache/<content hash>-<protocol hash>.json`` (sweep's key and file form, plus the
per-class counts) and a rerun or a widened grid trains only the new cells.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..errors import RecipeError
from ..sweep import Cell as SweepCell
from ..sweep import SweepSpec, compile_cached, digest, expert_epochs, format_epoch, mean_std, plan, protocol_key, resolve_protocol

DEFAULT_BUDGET = 200  # student runs (cells x evaluation seeds) an analysis starts without --yes


@dataclass(frozen=True)
class AnalysisSpec:
    """The grid every analysis draws from: a dataset, an expert store's trajectories, IPCs and epochs, one protocol."""

    dataset: str
    teacher_arch: str
    ipcs: tuple[int, ...] = (10,)
    seeds: tuple[int, ...] = (0,)
    epochs: tuple[float, ...] | None = None  # None: every checkpoint the seeds share
    data_root: str | None = None
    protocol: str | None = None
    eval_seeds: tuple[int, ...] | None = None
    student_epochs: int | None = None
    experts: str | None = None
    select_seed: int = 0
    device: str = "auto"
    budget: int = DEFAULT_BUDGET
    yes: bool = False

    def sweep(self) -> SweepSpec:
        """The same grid as a sweep spec (its checks, epochs, recipes and protocol)."""
        return SweepSpec(
            dataset=self.dataset, teacher_arch=self.teacher_arch, ipcs=self.ipcs, seeds=self.seeds, epochs=self.epochs, data_root=self.data_root,
            protocol=self.protocol, eval_seeds=self.eval_seeds, student_epochs=self.student_epochs, experts=self.experts, select_seed=self.select_seed, device=self.device,
        )

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k not in ("yes", "data_root", "experts")}


@dataclass
class Score:
    """A cell's student accuracies (percent, one per evaluation seed) and per-class correct counts."""

    accuracies: list[float]
    per_class: dict = field(default_factory=dict)  # {"count": [C], "correct": [K][C]}

    @property
    def mean(self) -> float:
        return mean_std(self.accuracies)[0]

    @property
    def std(self) -> float | None:
        return mean_std(self.accuracies)[1]

    def class_accuracy(self, classes: list[int]) -> tuple[float, float | None]:
        """Mean and std over seeds of the accuracy (percent) on the test images of ``classes`` together."""
        count = sum(self.per_class["count"][c] for c in classes)
        per_seed = [100.0 * sum(row[c] for c in classes) / max(count, 1) for row in self.per_class["correct"]]
        return mean_std(per_seed)


class Grid:
    """One analysis run: the spec's protocol, classes and base cells; trains and caches cells under ``out``."""

    def __init__(self, spec: AnalysisSpec, out: str | Path, lookup: list[Path] = ()):
        from ..data import dataset_key
        from ..experts.store import default_store

        self.spec, self.out = spec, Path(out)
        self.sweep_spec = spec.sweep()
        self.protocol = resolve_protocol(self.sweep_spec)
        self.protocol_hash = protocol_key(self.protocol, spec.device)
        self.epochs = expert_epochs(self.sweep_spec)  # checks the store holds them, before anything runs
        store = default_store(spec.experts)
        self.trajectories = [store.trajectory(dataset_key(spec.dataset), spec.teacher_arch, s) for s in spec.seeds]
        self.num_classes = self.trajectories[0].num_classes
        self.lookup = [self.out / "cache", *lookup]
        self.counts = {"cached": 0, "computed": 0}

    # ---- checks, before any compile or training --------------------------------------------

    def check_budget(self, cells: int, what: str) -> None:
        """A grid of more student runs than ``--budget`` needs ``--yes``: its size is said first."""
        runs = cells * len(self.protocol.seeds)
        if runs > self.spec.budget and not self.spec.yes:
            raise RecipeError(
                f"the {what} grid is {cells} cells x {len(self.protocol.seeds)} seeds = {runs} student runs of {self.protocol.epochs} epochs, over --budget {self.spec.budget}",
                "pass --yes to run it, raise --budget, or shrink the grid",
            )

    def check_class(self, c: int, flag: str) -> None:
        if not 0 <= c < self.num_classes:
            raise RecipeError(f"{flag} {c} is not a class index of the {self.num_classes} classes", f"pass class indices 0..{self.num_classes - 1}")

    # ---- artifacts --------------------------------------------------------------------------

    def cells(self, epochs: list[float] | None = None) -> list[SweepCell]:
        """The sweep's (IPC, epoch) cells with their compile recipes, for ``epochs`` (default the grid's)."""
        spec = self.sweep_spec if epochs is None else replace(self.sweep_spec, epochs=tuple(epochs))
        return plan(spec)

    def base(self, cell: SweepCell, **recipe_changes):
        """The compiled artifact of a sweep cell (with recipe fields changed, e.g. temperature), compiled once under ``out/artifacts``."""
        from ..recipe import Recipe

        recipe = {**cell.recipe, **recipe_changes}
        folder = self.out / "artifacts" / f"ipc{cell.ipc}-{self.spec.teacher_arch}-e{format_epoch(cell.epoch)}-{digest(recipe)[:10]}"
        return compile_cached(Recipe(**recipe), folder, self.spec.experts, self.spec.device)

    def expert_accuracy(self, epoch: float) -> float | None:
        """The store's recorded test accuracy (percent) at ``epoch``, the mean over the seeds (None if unrecorded)."""
        values = [t.checkpoint_at(epoch).test_accuracy for t in self.trajectories]
        return None if any(v is None for v in values) else sum(values) / len(values)

    # ---- students ---------------------------------------------------------------------------

    def cached(self, artifact) -> Score | None:
        """A cell's score from this analysis's cache or a lookup folder (e.g. a sweep's cache), else None."""
        name = f"{artifact.content_hash}-{self.protocol_hash}.json"
        for folder in self.lookup:
            path = Path(folder) / name
            if path.exists():
                record = json.loads(path.read_text())
                return Score([float(a) for a in record["accuracies"]], record.get("per_class", {}))
        return None

    def score(self, artifact, per_class: bool = False) -> Score:
        """Train the protocol's students on ``artifact`` unless cached (with per-class counts if ``per_class``); cache the result."""
        from ..evaluate import evaluate

        got = self.cached(artifact)
        if got is not None and (got.per_class or not per_class):
            self.counts["cached"] += 1
            return got
        result = evaluate([artifact], self.protocol, data_root=self.spec.data_root, device=self.spec.device)
        cell = result["artifacts"][0]["cells"]["sl"]
        per_class = {"count": cell["per_class"]["count"], "correct": cell["per_class"]["correct"]}
        score = Score([100.0 * a for a in cell["accuracy"]], per_class)
        record = {"content_hash": artifact.content_hash, "protocol_hash": self.protocol_hash, "protocol": self.protocol.to_dict(), "accuracies": score.accuracies, "per_class": per_class}
        _write_text(self.out / "cache" / f"{artifact.content_hash}-{self.protocol_hash}.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
        self.counts["computed"] += 1
        return score

    def settings(self) -> dict:
        """What the result depends on, recorded in its JSON."""
        from .. import __version__

        return {"slc_version": __version__, "spec": self.spec.to_json(), "epochs": self.epochs, "protocol": {**self.protocol.to_dict(), "hash": self.protocol_hash}, "num_classes": self.num_classes}


def derive(artifact, transform: dict, labels: torch.Tensor | None = None, keep: torch.Tensor | None = None):
    """An in-memory copy of ``artifact`` with new dense ``labels`` (N, V, C) and/or only the samples ``keep``.

    ``transform`` (plain JSON) names the change; with the base's content hash it makes the copy's
    content hash, the key its students are cached under. The evaluator trains on the copy as on
    any artifact (its manifest still names the dataset, and the images it holds are excluded
    from the held-out slice).
    """
    new = copy.copy(artifact)
    images, targets = artifact.images, artifact.targets
    labels = artifact.dense_labels() if labels is None else labels
    views = artifact.views
    manifest = copy.deepcopy(artifact.manifest)
    if keep is not None:
        idx = keep.tolist()
        images, targets, labels = images[keep], targets[keep], labels[keep]
        views = None if views is None else {k: v[keep] for k, v in views.items()}
        new.keys, new.source_ids, new._raw = [artifact.keys[i] for i in idx], [artifact.source_ids[i] for i in idx], [artifact._raw[i] for i in idx]
        selection = manifest.get("selection", {})
        for name in ("source_indices", "source_ids"):
            if name in selection:
                selection[name] = [selection[name][i] for i in idx]
        per_class = torch.bincount(targets, minlength=artifact.num_classes).tolist()
        manifest["counts"] = {"samples": len(idx), "per_class": per_class}
        manifest["ipc"] = new.ipc = per_class[0] if len(set(per_class)) == 1 else None
    new.__dict__["images"] = images
    new.targets, new.views = targets, views
    new.labels = {"probs": labels.to(torch.float16)}
    new.label_kind = "dense"
    new.content_hash = digest({"base": artifact.content_hash, "transform": transform})
    manifest["content_hash"] = new.content_hash
    manifest["labels"] = {**manifest["labels"], "kind": "dense", "k": None, "derived": transform}
    new.manifest = manifest
    return new


# ---- results --------------------------------------------------------------------------------


@dataclass
class Result:
    """An analysis's outcome: JSON (settings and numbers), CSV rows, a markdown table and a PNG."""

    name: str
    data: dict
    rows: list[dict]
    markdown: str
    png: bytes
    counts: dict = field(default_factory=dict)

    def write(self, out: str | Path) -> dict[str, Path]:
        """``<name>.json``, ``.csv``, ``.md`` and ``.png`` in ``out``: the same inputs give the same bytes."""
        out = Path(out)
        paths = {ext: out / f"{self.name}.{ext}" for ext in ("json", "csv", "md", "png")}
        _write_text(paths["json"], json.dumps(_finite(self.data), indent=2, sort_keys=True) + "\n")
        _write_text(paths["csv"], to_csv(self.rows))
        _write_text(paths["md"], self.markdown)
        _write_bytes(paths["png"], self.png)
        return paths


def _write_bytes(path: Path, data: bytes) -> None:
    from ..plot import write_bytes

    write_bytes(path, data)


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode())


def to_csv(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell_text(v) for k, v in row.items()})
    return buf.getvalue()


def _cell_text(v) -> str:
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _finite(obj):
    """NaN and infinities as null: strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def pm(mean: float | None, std: float | None, digits: int = 1) -> str:
    """``41.2 ± 0.3``, ``41.2 ± n/a`` for one seed, empty for no value."""
    if mean is None:
        return ""
    return f"{mean:.{digits}f} ± {'n/a' if std is None else f'{std:.{digits}f}'}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]
