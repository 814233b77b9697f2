"""Sweep: which expert epoch labels best at each IPC?

The paper's central finding is that the best expert is an *early-stopped* one, and that the best
epoch depends on the budget. A sweep compiles every (IPC, expert epoch) pair, trains students on
each artifact under one evaluation protocol, and reports accuracy against expert epoch per IPC:
a table, a plot, the best epoch per IPC and the Pareto frontier over (IPC, accuracy).

Work is cached twice, so that a rerun or an extended grid does only the new work: each cell's
artifact lives in ``<out>/artifacts/<cell>`` (named by a digest of its recipe), and each result in
``<out>/cache/<artifact content hash>-<protocol hash>.json``. Under torchrun the cells are spread
over the ranks (``sl_compiler.dist``); the reports are those of one process.

The best epoch is chosen on a held-out slice of the training split (``select_on="holdout"``, the
default), with test accuracy shown beside it; ``select_on="test"`` is the paper's way. The slice
is the one ``slc evaluate`` draws for lr selection (:func:`~.evaluate.baselines.holdout_indices`):
``holdout_fraction`` of the smallest class from every class, drawn with ``baseline_seed`` from the
training split minus the cell's own images. The sweep's selection is random with one seed, so it
does not depend on the teacher: every epoch of an IPC trains on the same images and is scored on
the same slice, which none of those images is in (tests/test_sweep.py checks both).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import dist
from .errors import EvaluateError, ExpertError, RecipeError
from .evaluate.protocol import Protocol
from .seeding import format_seeds

SELECT_ON = ("holdout", "test")  # what chooses the best epoch: the held-out slice (default) or the test set (the paper's way)


@dataclass(frozen=True)
class SweepSpec:
    """Everything a sweep needs; ``epochs=None`` means every checkpoint the expert seeds share."""

    dataset: str
    teacher_arch: str
    ipcs: tuple[int, ...]
    seeds: tuple[int, ...] = (0,)  # expert seeds; several make each teacher an ensemble (logits averaged)
    epochs: tuple[float, ...] | None = None
    data_root: str | None = None
    protocol: str | None = None  # an evaluation protocol TOML; None: the dataset's default protocol
    eval_seeds: tuple[int, ...] | None = None  # None: the protocol's seeds
    student_epochs: int | None = None  # overrides the protocol's student epochs (short CPU runs)
    experts: str | None = None
    select_seed: int = 0
    device: str = "auto"
    select_on: str = "holdout"

    def __post_init__(self):
        if self.select_on not in SELECT_ON:
            raise RecipeError(f"unknown --select-on value {self.select_on!r}", "use --select-on holdout (a held-out slice of the training split, the default) or test (the paper's way)")
        if not self.ipcs or any(int(i) != i or i < 1 for i in self.ipcs):
            raise RecipeError(f"bad IPC list {list(self.ipcs)}", "give positive integers, e.g. --ipc 1,10,50")
        if len(set(self.ipcs)) != len(self.ipcs):
            raise RecipeError(f"IPC list {list(self.ipcs)} repeats a value", "give each IPC once")
        if not self.seeds:
            raise RecipeError("no expert seeds given", "give --seeds, e.g. 0 or 0-4")
        if self.epochs is not None:
            if not self.epochs or any(not math.isfinite(e) or e < 0 for e in self.epochs):
                raise RecipeError(f"bad expert epoch list {list(self.epochs)}", "give non-negative epochs, e.g. --epochs 0.25,0.5,1 or all")
        if self.student_epochs is not None and self.student_epochs < 1:
            raise RecipeError(f"bad student epoch count {self.student_epochs}", "give a positive --student-epochs")


@dataclass
class Cell:
    """One (IPC, expert epoch) point: its recipe, artifact and student accuracy (percent) on the test set and the held-out slice."""

    ipc: int
    epoch: float
    teacher: str
    recipe: dict
    artifact: str = ""
    content_hash: str = ""
    mean: float = float("nan")
    std: float | None = float("nan")  # None: one evaluation seed, no spread measured
    accuracies: list[float] = field(default_factory=list)
    holdout_mean: float = float("nan")  # nan: not measured (a result cached before slc scored the slice, under --select-on test)
    holdout_std: float | None = float("nan")
    holdout_accuracies: list[float] = field(default_factory=list)
    holdout_size: int | None = None
    cached: bool = False

    def score(self, on: str) -> float:
        """The accuracy that chooses the best epoch: held-out mean or test mean."""
        return self.holdout_mean if on == "holdout" else self.mean

    def summary(self) -> dict:
        """The JSON form: no run-dependent fields (cached or not), so reruns write the same bytes."""
        out = asdict(self)
        out.pop("cached")
        if math.isnan(self.holdout_mean):  # not measured: null, not JSON's invalid NaN
            out["holdout_mean"] = out["holdout_std"] = None
        return out


@dataclass
class SweepResult:
    """A finished grid under one protocol; renders itself as markdown, JSON, a plot and recipes."""

    spec: SweepSpec
    protocol: dict
    protocol_hash: str
    cells: list[Cell]

    @property
    def counts(self) -> dict[str, int]:
        cached = sum(c.cached for c in self.cells)
        return {"cached": cached, "computed": len(self.cells) - cached}

    @property
    def has_holdout(self) -> bool:
        """Every cell was scored on the held-out slice (not so for results cached by an older slc under --select-on test)."""
        return all(not math.isnan(c.holdout_mean) for c in self.cells)

    def best(self, on: str | None = None) -> dict[int, Cell]:
        """The best cell per IPC by ``on`` (default the spec's ``select_on``): highest mean accuracy, the earlier epoch on a tie."""
        on = on or self.spec.select_on
        out: dict[int, Cell] = {}
        for cell in sorted(self.cells, key=lambda c: (c.ipc, c.epoch)):
            if cell.ipc not in out or cell.score(on) > out[cell.ipc].score(on):
                out[cell.ipc] = cell
        return out

    def holdout_record(self) -> dict:
        """The held-out slice as recorded: fraction and seed (the protocol's) and its size per IPC."""
        sizes = {str(c.ipc): c.holdout_size for c in sorted(self.cells, key=lambda c: c.ipc) if c.holdout_size is not None}
        return {"fraction": self.protocol.get("holdout_fraction"), "seed": self.protocol.get("baseline_seed"), "size": sizes}

    def pareto(self) -> list[Cell]:
        """The frontier over (IPC, accuracy): each IPC's best cell when it beats every smaller IPC's best."""
        frontier: list[Cell] = []
        top = -math.inf
        for ipc, cell in sorted(self.best().items()):
            if cell.mean > top:
                frontier.append(cell)
                top = cell.mean
        return frontier

    def to_markdown(self) -> str:
        """Accuracy (mean ± std over evaluation seeds; ± n/a for one seed) per expert epoch (rows) and IPC (columns).

        With held-out scores each IPC has two columns, held-out then test; the chosen epoch is in
        bold, and the epoch the other criterion would choose is listed below for comparison.
        """
        ipcs = sorted({c.ipc for c in self.cells})
        epochs = sorted({c.epoch for c in self.cells})
        grid = {(c.ipc, c.epoch): c for c in self.cells}
        on, both = self.spec.select_on, self.has_holdout
        best = self.best()
        heads = [h for i in ipcs for h in ((f"IPC {i} held-out", f"IPC {i} test") if both else (f"IPC {i}",))]
        lines = [
            f"Student accuracy (%) on {self.spec.dataset}, teacher {self.spec.teacher_arch} seeds {format_seeds(list(self.spec.seeds))}, "
            f"protocol {self.protocol.get('name', '?')} ({self.protocol_hash}), mean ± std over {len(self.protocol.get('seeds', []))} seeds",
            f"Best epoch chosen on {_criterion(on, self.holdout_record())}; in bold.",
            "",
            "| expert epoch | " + " | ".join(heads) + " |",
            "|---:|" + "---:|" * len(heads),
        ]
        for epoch in epochs:
            row = []
            for ipc in ipcs:
                cell = grid.get((ipc, epoch))
                texts = ["", ""] if cell is None else [_mean_std(cell.holdout_mean, cell.holdout_std), _mean_std(cell.mean, cell.std)]
                for text in texts if both else texts[1:]:
                    row.append(f"**{text}**" if cell is not None and best[ipc] is cell else text)
            lines.append(f"| {format_epoch(epoch)} | " + " | ".join(row) + " |")
        lines += ["", f"Best expert epoch per IPC (on {'held-out' if on == 'holdout' else 'test'}): " + _picks(best, ipcs, both)]
        if both:
            other = "test" if on == "holdout" else "holdout"
            label = {"test": "test (the paper's way)", "holdout": "held-out"}[other]
            lines.append(f"On {label} it would be: " + _picks(self.best(other), ipcs, both))
        lines.append("Pareto frontier (IPC, test accuracy): " + ", ".join(f"({c.ipc}, {c.mean:.1f} %)" for c in self.pareto()))
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        """``slc-sweep/1``, with fields added (not renamed): ``select_on``, ``holdout`` and ``best_by``; ``best`` is the chosen epoch.

        A file written before held-out selection lacks them and chose on test (:func:`load_sweep`).
        """
        def picks(best: dict[int, Cell]) -> dict:
            return {str(i): {"epoch": c.epoch, "teacher": c.teacher, "mean": c.mean, "std": c.std, "holdout_mean": _json_float(c.holdout_mean), "content_hash": c.content_hash} for i, c in sorted(best.items())}

        return {
            "kind": "slc-sweep/1",
            "spec": spec_json(self.spec),
            "protocol": {**self.protocol, "hash": self.protocol_hash},
            "select_on": self.spec.select_on,
            "holdout": self.holdout_record(),
            "cells": [c.summary() for c in sorted(self.cells, key=lambda c: (c.ipc, c.epoch))],
            "best": picks(self.best()),
            "best_by": {on: picks(self.best(on)) for on in SELECT_ON if on == "test" or self.has_holdout},
            "pareto": [{"ipc": c.ipc, "epoch": c.epoch, "mean": c.mean, "std": c.std} for c in self.pareto()],
        }

    def curves(self, on: str = "test") -> dict[int, list[tuple[float, float, float]]]:
        """Per IPC, (epoch, mean, std) of the test (or held-out) accuracy."""
        out: dict[int, list[tuple[float, float, float]]] = {}
        for c in self.cells:
            out.setdefault(c.ipc, []).append((c.epoch, c.mean, c.std) if on == "test" else (c.epoch, c.holdout_mean, c.holdout_std))
        return out

    def write(self, out: Path) -> dict[str, Path]:
        """``sweep.md``, ``sweep.json`` and ``sweep.png`` in ``out``."""
        from .plot import accuracy_by_epoch

        out = Path(out)
        paths = {"markdown": out / "sweep.md", "json": out / "sweep.json", "plot": out / "sweep.png"}
        write_text(paths["markdown"], self.to_markdown())
        write_text(paths["json"], json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        holdout = self.curves("holdout") if self.has_holdout else None
        chosen = {ipc: c.epoch for ipc, c in self.best().items()}
        accuracy_by_epoch(self.curves(), paths["plot"], f"{self.spec.dataset}: {self.spec.teacher_arch} soft labels", holdout=holdout, chosen=chosen)
        return paths

    def write_recipes(self, folder: Path) -> list[Path]:
        """The winning compile recipe per IPC as TOML, named ``<dataset>-<arch>-ipc<N>.toml``.

        The data root is left out (a recipe must not carry this machine's paths): give
        ``slc compile --recipe FILE --data-root ROOT``.
        """
        from .recipe import Recipe

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for ipc, cell in sorted(self.best().items()):
            fields = {k: v for k, v in cell.recipe.items() if k != "data_root"}
            recipe = Recipe(**{**fields, "name": _recipe_stem(self.spec, ipc)})
            path = folder / f"{_recipe_stem(self.spec, ipc)}.toml"
            write_text(path, recipe.to_toml())
            paths.append(path)
        return paths


def format_epoch(epoch: float) -> str:
    """0.25 -> "0.25", 1.0 -> "1": the expert store's spelling of a checkpoint epoch."""
    from .experts.store import format_epoch as store_format

    return store_format(epoch)


def run_sweep(spec: SweepSpec, out: str | Path) -> SweepResult:
    """Compile and evaluate every (IPC, epoch) cell not yet cached under ``out``; write the reports.

    Under torchrun the cells are dealt round-robin to the ranks: a rank compiles and evaluates
    each of its cells alone (``dist.alone``), into ``out``, which every rank must see; the cells'
    results are gathered and rank 0 writes the reports, the same as one process's.
    """
    from .progress import bar

    team = dist.team()
    out = Path(out)
    with team.together():
        protocol = resolve_protocol(spec)
        protocol_hash = protocol_key(protocol, spec.device)
        cells = plan(spec)
        scored = holdout_room(spec, protocol)
        if team.distributed:
            _check_shared(out, team)
        mine = team.share(list(range(len(cells))))
        with bar(len(mine), desc="sweep", unit="cell") as progress:
            for i in mine:
                progress.set_postfix_str(f"IPC {cells[i].ipc} epoch {format_epoch(cells[i].epoch)}")
                with dist.alone():
                    _run_cell(cells[i], spec, protocol, out, scored[cells[i].ipc])
                progress.update(1)
        for done in team.all_gather({i: cells[i] for i in mine}):
            for i, cell in done.items():
                cells[i] = cell
        result = SweepResult(spec=spec, protocol=protocol.to_dict(), protocol_hash=protocol_hash, cells=cells)
        if team.main:
            result.write(out)
        team.barrier()
    return result


def _check_shared(out: Path, team) -> None:
    """Every rank sees ``out`` (its cells' artifacts and results go there): rank 0 leaves a mark each rank must find."""
    import uuid

    mark = out / f".slc-shared-{team.broadcast(uuid.uuid4().hex if team.main else None)}"
    if team.main:
        out.mkdir(parents=True, exist_ok=True)
        mark.touch()
    team.barrier()
    blind = [rank for rank, seen in enumerate(team.all_gather(mark.exists())) if not seen]
    if team.main:
        mark.unlink(missing_ok=True)
    if blind:
        raise RecipeError(
            f"sweep --out {out} is not shared by every rank: rank {blind[0]} does not see what rank 0 writes there",
            "put --out on a filesystem every node mounts (each rank writes its cells' artifacts and results there)",
        )


def plan(spec: SweepSpec) -> list[Cell]:
    """One cell per (IPC, epoch), each with its compile recipe; checks that the store holds the epochs."""
    from .recipe import Recipe

    epochs = expert_epochs(spec)
    cells = []
    for ipc in spec.ipcs:
        for epoch in epochs:
            teacher = f"{spec.teacher_arch}@{format_epoch(epoch)}#{format_seeds(list(spec.seeds))}"
            recipe = Recipe(
                dataset=spec.dataset,
                data_root=spec.data_root,
                ipc=ipc,
                teacher=teacher,
                select="random",
                seed=spec.select_seed,
                name=f"sweep-ipc{ipc}-e{format_epoch(epoch).replace('.', '_')}",
            )
            cells.append(Cell(ipc=ipc, epoch=epoch, teacher=teacher, recipe=recipe.to_dict()))
    return cells


def expert_epochs(spec: SweepSpec) -> list[float]:
    """The epochs to sweep: those asked for (each must exist for every seed), or all shared ones."""
    from .data import dataset_key
    from .experts.store import default_store

    store = default_store(spec.experts)
    key = dataset_key(spec.dataset)
    held: list[set[float]] = []
    for seed in spec.seeds:
        trajectory = store.trajectory(key, spec.teacher_arch, seed)
        held.append({float(c.epoch) for c in trajectory.checkpoints})
    shared = sorted(set.intersection(*held))
    if spec.epochs is None:
        if not shared:
            raise ExpertError(f"the {spec.teacher_arch} trajectories of seeds {format_seeds(list(spec.seeds))} share no checkpoint", "train them with the same --every, or pass --epochs")
        return shared
    missing = [e for e in spec.epochs if not any(abs(e - s) < 1e-6 for s in shared)]
    if missing:
        raise ExpertError(
            f"no {spec.teacher_arch} checkpoint at epoch {', '.join(format_epoch(e) for e in missing)} for {key} seeds {format_seeds(list(spec.seeds))}; "
            f"the store has epochs {', '.join(format_epoch(e) for e in shared)}",
            "pick epochs from that list or train the expert further",
        )
    return sorted(float(e) for e in spec.epochs)


def resolve_protocol(spec: SweepSpec) -> Protocol:
    """The evaluation protocol with the sweep's overrides: stored labels only, no baselines."""
    from .evaluate.protocol import default_protocol

    protocol = Protocol.from_toml(spec.protocol) if spec.protocol else default_protocol(spec.dataset)
    return protocol.override(seeds=spec.eval_seeds, epochs=spec.student_epochs, regimes=("sl",), baselines=())


def protocol_key(protocol: Protocol, device: str) -> str:
    """What a cached result depends on: the protocol's fields (not its notes) and the device kind."""
    from .device import resolve_device

    fields = {k: v for k, v in protocol.to_dict().items() if k != "notes"}
    return digest({"protocol": fields, "device": resolve_device(device).type})[:16]


def digest(obj) -> str:
    """sha256 of an object's canonical JSON: the same content, the same key."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def compile_cached(recipe, folder: Path, experts: str | None, device: str):
    """The artifact of ``recipe`` in ``folder``: loaded when an earlier run compiled it, else compiled now.

    An artifact exists exactly when its manifest does (the writer renames it into place last), so
    a folder without one is debris of this work folder and is replaced.
    """
    from .artifact import load
    from .compile import compile_artifact

    folder = Path(folder)
    if not (folder / "manifest.json").exists():
        compile_artifact(recipe, experts=experts, device=device, out=folder, force=folder.exists())
    return load(folder)


@dataclass(frozen=True)
class Scores:
    """One artifact's students: test accuracy (percent) per seed, and the same students on the held-out slice when scored."""

    test: list[float]
    holdout: list[float] | None = None
    holdout_size: int | None = None


def cached_accuracies(artifact, protocol: Protocol, device: str, cache: Path, data_root: str | None = None) -> tuple[list[float], bool]:
    """Student test accuracies (percent, one per protocol seed) of ``artifact``, and whether they came from ``cache``."""
    scores, cached = cached_scores(artifact, protocol, device, cache, data_root)
    return scores.test, cached


def cached_scores(artifact, protocol: Protocol, device: str, cache: Path, data_root: str | None = None, holdout: bool = False, test_only_ok: bool = False) -> tuple[Scores, bool]:
    """The :class:`Scores` of ``artifact`` (``holdout``: with the held-out slice's), and whether they came from ``cache``.

    The cache file is ``<cache>/<content hash>-<protocol hash>.json``: the same bytes trained under
    the same protocol give the same numbers, whatever the artifact's folder or name. A file
    written before slc scored the slice holds test accuracies only: it serves a test-only ask (or
    ``test_only_ok``: the slice's scores are welcome, not needed), and one that needs the slice
    trains the students again (the same test numbers) and rewrites it.
    """
    key = protocol_key(protocol, device)
    path = Path(cache) / f"{artifact.content_hash}-{key}.json"
    if path.exists():
        record = json.loads(path.read_text())
        if not holdout or test_only_ok or "holdout_accuracies" in record:
            held = record.get("holdout_accuracies")
            return Scores([float(a) for a in record["accuracies"]], None if held is None else [float(a) for a in held], record.get("holdout", {}).get("size")), True
    scores = evaluate_scores(artifact, protocol, device, data_root, holdout)
    record = {"content_hash": artifact.content_hash, "protocol_hash": key, "protocol": protocol.to_dict(), "accuracies": scores.test}
    if scores.holdout is not None:
        record |= {"holdout_accuracies": scores.holdout, "holdout": {"size": scores.holdout_size, "fraction": protocol.holdout_fraction, "seed": protocol.baseline_seed}}
    write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return scores, False


def evaluate_scores(artifact, protocol: Protocol, device: str, data_root: str | None = None, holdout: bool = False) -> Scores:
    """Train the protocol's students on ``artifact`` in its one regime; their accuracy (percent) per seed on the test set (and the slice)."""
    from .evaluate import evaluate

    if len(protocol.regimes) != 1 or protocol.baselines:
        raise ValueError("cached evaluations hold one regime and no baselines")
    result = evaluate([artifact], protocol, data_root=data_root, device=device, holdout_scores=holdout)
    row = result["artifacts"][0]
    cell = row["cells"][protocol.regimes[0]]
    if not holdout:
        return Scores([100.0 * a for a in cell["accuracy"]])
    return Scores([100.0 * a for a in cell["accuracy"]], [100.0 * a for a in cell["holdout_accuracy"]], row["holdout"]["size"])


def holdout_room(spec: SweepSpec, protocol: Protocol) -> dict[int, bool]:
    """Per IPC, whether the cells are scored on the held-out slice: always under ``select_on="holdout"``
    (an IPC whose slice cannot be drawn is an error, raised before any student trains), where it
    can be drawn under ``"test"``."""
    out = {}
    train = None
    for ipc in spec.ipcs:
        try:
            train = train if train is not None else train_split(spec)
            held_out_slice(train, protocol, selection(train, spec, ipc), ipc)
            out[ipc] = True
        except RecipeError:
            if spec.select_on == "holdout":
                raise
            out[ipc] = False
    return out


def train_split(spec: SweepSpec, **options):
    """The training split the cells select from (its targets, and pixels where it is held in memory); ``options`` go to the loader."""
    from .data import load_dataset

    return load_dataset(spec.dataset, spec.data_root, "train", **options)


def selection(train, spec: SweepSpec, ipc: int):
    """The training-split indices a cell at ``ipc`` compiles from: the random selection of ``select_seed`` (teacher-independent)."""
    from .select import random_per_class

    return random_per_class(train.targets, train.classes, ipc, spec.select_seed)


NO_ROOM_FIX = "use --select-on test (the paper's way), a smaller --ipc, or a protocol with a smaller holdout_fraction"


def held_out_slice(train, protocol: Protocol, exclude, ipc: int, fix: str = NO_ROOM_FIX):
    """``slc evaluate``'s held-out slice (protocol fraction and seed) of ``train`` minus ``exclude``; a RecipeError naming ``fix`` when there is no room."""
    from .evaluate.baselines import holdout_indices

    try:
        return holdout_indices(train, protocol.holdout_fraction, protocol.baseline_seed, exclude)
    except EvaluateError:
        import torch

        left = torch.bincount(train.targets, minlength=train.num_classes)
        if exclude is not None and len(exclude):
            left -= torch.bincount(train.targets[exclude], minlength=train.num_classes)
        c = int(left.argmin())
        problem = f"class {train.classes[c]!r} has {int(left[c])} training images outside the selection, fewer than the slice takes from each class"
        raise RecipeError(f"no training images are left for a held-out slice at IPC {ipc}: {problem}", fix) from None


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and (population) standard deviation, as the evaluation tables report them; the std of one value is None (n/a)."""
    return statistics.fmean(values), (statistics.pstdev(values) if len(values) > 1 else None)


def cell_folder(cell: Cell, spec: SweepSpec, out: Path) -> Path:
    """Where a cell's artifact lives under ``out`` (the sweep and ``--predict`` share it)."""
    seeds = format_seeds(list(spec.seeds)).replace(",", "_")
    return Path(out) / "artifacts" / f"ipc{cell.ipc}-{spec.teacher_arch}-e{format_epoch(cell.epoch)}-s{seeds}-{digest(cell.recipe)[:10]}"


def _run_cell(cell: Cell, spec: SweepSpec, protocol: Protocol, out: Path, holdout: bool) -> None:
    from .recipe import Recipe

    folder = cell_folder(cell, spec, out)
    artifact = compile_cached(Recipe(**cell.recipe), folder, spec.experts, spec.device)
    cell.artifact = str(folder)
    cell.content_hash = artifact.content_hash
    scores, cell.cached = cached_scores(artifact, protocol, spec.device, out / "cache", spec.data_root, holdout, test_only_ok=spec.select_on == "test")
    cell.accuracies = scores.test
    cell.mean, cell.std = mean_std(cell.accuracies)
    if scores.holdout is not None:
        cell.holdout_accuracies, cell.holdout_size = scores.holdout, scores.holdout_size
        cell.holdout_mean, cell.holdout_std = mean_std(scores.holdout)


def _recipe_stem(spec: SweepSpec, ipc: int) -> str:
    """A recipe name (lowercase letters, digits, '-' and '_'): ``cifar10-convnet_d3-ipc10``."""
    from .data import dataset_key

    return re.sub(r"[^a-z0-9_]+", "-", f"{dataset_key(spec.dataset)}-{spec.teacher_arch}-ipc{ipc}".lower()).strip("-_")


def load_sweep(path: str | Path) -> dict:
    """A ``sweep.json`` of any slc: one written before held-out selection has no ``select_on`` (it chose on test)
    and no held-out scores (its cells get ``holdout_mean`` None)."""
    from .report.inputs import load_input

    found = load_input(path)
    if found.kind != "slc-sweep/1":
        raise RecipeError(f"{path} holds {found.kind}, not a sweep", "pass the sweep.json slc sweep wrote")
    data = dict(found.data)
    data.setdefault("select_on", "test")
    data["cells"] = [{"holdout_mean": None, "holdout_std": None, **c} for c in data["cells"]]
    return data


def _criterion(on: str, holdout: dict) -> str:
    """How the best epoch was chosen, in words, with the slice's size and seed."""
    if on == "test":
        return "test accuracy (the paper's way: the test set also chooses)"
    sizes = ", ".join(f"{n} images at IPC {i}" for i, n in holdout["size"].items())
    return f"a held-out slice of the training split (fraction {holdout['fraction']:g} of the smallest class, seed {holdout['seed']}: {sizes}), never the test set"


def _mean_std(mean: float, std: float | None) -> str:
    return "n/a" if math.isnan(mean) else f"{mean:.1f} ± {'n/a' if std is None else f'{std:.1f}'}"


def _picks(best: dict[int, Cell], ipcs: list[int], both: bool) -> str:
    def one(c: Cell) -> str:
        return f"held-out {c.holdout_mean:.1f} %, test {c.mean:.1f} %" if both else f"{c.mean:.1f} %"

    return ", ".join(f"IPC {i}: {format_epoch(best[i].epoch)} ({one(best[i])})" for i in ipcs)


def _json_float(x: float) -> float | None:
    """NaN (not measured) as JSON null."""
    return None if isinstance(x, float) and math.isnan(x) else x


def spec_json(spec: SweepSpec) -> dict:
    out = asdict(spec)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
