"""Train students on a stored set, K at a time in one batched group (or one at a time), and test them.

Every random choice of student k comes from its own seed through counter-based draws
(:mod:`sl_compiler.augment.rng`): its epoch order and stored-view choice from (seed, epoch), its
augmentation from (seed, epoch, step). K students' batches are gathered, normalised and augmented
as one (K*B) batch in one call per operation, and each student gets exactly the images it would
get alone: batched and sequential runs differ only in the float rounding of the forward pass.

A step never waits for the device: no ``.item()``, ``.tolist()``, ``bool(tensor)`` or host copy
inside it; losses and hits stay on the device until a cell is done (tests/test_evaluate.py
audits this).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..augment.pipeline import Augment
from ..augment.rng import Draws, epoch_order, epoch_views, student_keys
from ..progress import bar
from .data import EvalSet
from .optim import StackedOptimizer, schedule_factor
from .protocol import Protocol
from .regimes import TrainingSet
from .students import StudentGroup, accuracy, class_hits, score
from .tables import per_class_cell

__all__ = ["EvalSet", "GroupScore", "StudentTrainer", "cell_result", "choose_lr", "lr_groups", "make_augment", "seed_groups", "train_group", "train_groups"]


def make_augment(protocol: Protocol) -> Augment:
    """The protocol's augmentation pipeline (DSA, CutMix, RRC + flip + CutMix, ... or none)."""
    return Augment(protocol.augment, protocol.dsa_strategy, protocol.dsa_mode)


class StudentTrainer:
    """One group of students (seed k, lr k) on one :class:`TrainingSet`: ``run()`` trains it to the end."""

    def __init__(self, data: TrainingSet, protocol: Protocol, seeds: list[int], lrs: list[float], device: torch.device, compile: bool = False):
        self.data, self.protocol, self.device = data, protocol, device
        self.group = StudentGroup(protocol.model, data.num_classes, data.shape, seeds, device, compile=compile)
        self.opt = StackedOptimizer(list(self.group.params.values()), torch.tensor(lrs, dtype=torch.float32), protocol.optimizer, protocol.momentum, protocol.weight_decay)
        self.augment = make_augment(protocol)
        self.apply_augment = bool(self.augment.stages) and not (data.replays_views and not protocol.augment_views)
        self.loss_kind = "ce" if data.regime == "hl" else protocol.loss
        self.host_keys = student_keys(seeds)
        self.keys = torch.tensor(self.host_keys, dtype=torch.int64, device=device)
        self.n = len(data)
        self.batch = min(protocol.batch_size, self.n)
        self.steps_per_epoch = math.ceil(self.n / self.batch)
        self.total_steps = protocol.epochs * self.steps_per_epoch
        self._order = self._view = self._host = None

    def start_epoch(self, epoch: int) -> None:
        """Each student's order (and view choice) for ``epoch``: one (K, N) draw, on the device (and the host if a store is there)."""
        v = self.data.num_views
        self._order = epoch_order(self.keys, epoch, self.n)
        self._view = epoch_views(self.keys, epoch, self.n, v) if v > 1 else None
        if self.data.needs_host:
            cpu = torch.tensor(self.host_keys, dtype=torch.int64)
            self._host = (epoch_order(cpu, epoch, self.n), epoch_views(cpu, epoch, self.n, v) if v > 1 else None)

    def step(self, epoch: int, step: int) -> None:
        """One optimisation step of every student: gather, normalise, augment, forward, backward, update."""
        k, span = self.group.size, slice(step * self.batch, (step + 1) * self.batch)
        idx = self._order[:, span]
        view = None if self._view is None else self._view[:, span]
        host = None if self._host is None else (self._host[0][:, span], None if self._host[1] is None else self._host[1][:, span])
        x, y = self.data.batch(idx, view, host)
        if self.apply_augment:
            rng = Draws(self.keys, ("augment", epoch, step), len(x), self.augment.slots, host_keys=self.host_keys)
            x, y = self.augment(x, y, rng)
        x = x.reshape(k, -1, *x.shape[1:])
        y = self.data.teacher_targets(x) if self.data.regime == "slkd" else y.reshape(k, -1, y.shape[-1])
        loss = self.group.loss(x, y, self.loss_kind, self.protocol.temperature)
        grads = torch.autograd.grad(loss, list(self.group.params.values()))
        at = epoch * self.steps_per_epoch + step
        self.opt.step(grads, schedule_factor(self.protocol.schedule, at, self.total_steps, self.steps_per_epoch, self.protocol.epochs))

    def run(self, desc: str = "students") -> StudentGroup:
        self.group.train(True)
        with bar(self.protocol.epochs * self.n * self.group.size, desc=desc) as progress:
            for epoch in range(self.protocol.epochs):
                self.start_epoch(epoch)
                for step in range(self.steps_per_epoch):
                    self.step(epoch, step)
                    progress.update(min(self.batch, self.n - step * self.batch) * self.group.size)
        return self.group


def train_group(
    data: TrainingSet,
    protocol: Protocol,
    seeds: list[int],
    lrs: list[float],
    device: torch.device,
    evals: dict[str, EvalSet],
    desc: str = "students",
    compile: bool = False,
) -> tuple[dict[str, list[float]], StudentGroup]:
    """Train one group of students (seed k, lr k) together; returns accuracy per eval set and the group."""
    group = StudentTrainer(data, protocol, seeds, lrs, device, compile).run(desc)
    return {name: score([group], e, protocol.eval_batch_size) for name, e in evals.items()}, group


def lr_groups(protocol: Protocol, batched: bool) -> list[tuple[list[int], list[float]]]:
    """The student groups that choose a cell's lr: one student per candidate (first seed), all in one group or one each."""
    grid = sorted(protocol.lr_grid)
    seed = protocol.seeds[0]
    return [([seed] * len(grid), grid)] if batched else [([seed], [lr]) for lr in grid]


def seed_groups(protocol: Protocol, lr: float, batched: bool) -> list[tuple[list[int], list[float]]]:
    """The student groups a cell reports: every seed at ``lr``, all in one group or one each."""
    seeds = list(protocol.seeds)
    return [(seeds, [lr] * len(seeds))] if batched else [([s], [lr]) for s in seeds]


class GroupScore(NamedTuple):
    """One group's result on an eval set: each student's accuracy, its correct answers per true class, and the images per class."""

    accuracy: list[float]
    hits: list[list[int]]
    counts: list[int]
    holdout: list[float] | None = None  # each student's accuracy on the held-out slice, when asked


def train_groups(
    data: TrainingSet,
    protocol: Protocol,
    groups: list[tuple[list[int], list[float]]],
    device: torch.device,
    evalset: EvalSet,
    desc: str = "students",
    compile: bool = False,
    holdout: EvalSet | None = None,
) -> list[GroupScore]:
    """Train ``groups`` (seeds, lrs) one after another and score them together on ``evalset``: one pass over it.

    ``holdout`` also scores the same students on the held-out slice (``slc sweep`` chooses the
    expert epoch there, not on the test set). A student's accuracy depends only on its own group,
    so any split of a cell's groups (over the ranks of a distributed run) gives the same numbers.
    """
    trained = [StudentTrainer(data, protocol, seeds, lrs, device, compile).run(desc) for seeds, lrs in groups]
    if not trained:
        return []
    hits, counts = class_hits(trained, evalset, protocol.eval_batch_size)
    flat, rows, counts = accuracy(hits, counts), hits.tolist(), counts.tolist()
    held = score(trained, holdout, protocol.eval_batch_size) if holdout is not None else None
    out, at = [], 0
    for g in trained:
        out.append(GroupScore(flat[at : at + g.size], rows[at : at + g.size], counts, None if held is None else held[at : at + g.size]))
        at += g.size
    return out


def choose_lr(protocol: Protocol, accuracies: list[float]) -> tuple[float, dict[str, float]]:
    """The candidate (of ``sorted(lr_grid)``) with the best accuracy on the held-out slice, ties to the smaller lr; and the record.

    The accuracies come from :func:`lr_groups` scored on the held-out slice of the training split,
    never on the test set."""
    grid = sorted(protocol.lr_grid)
    best = max(range(len(grid)), key=lambda i: (accuracies[i], -grid[i]))
    return grid[best], {repr(lr): a for lr, a in zip(grid, accuracies)}


def cell_result(protocol: Protocol, lr: float, selection: dict | None, accuracies: list[float], wall_s: float, hits: list[list[int]] | None = None, counts: list[int] | None = None) -> dict:
    """One cell of a table: the seeds, per-seed final-epoch test accuracies (fractions), their mean and
    (population) std (None for one seed: a spread of one run is not measured), the lr used, the
    selection record, the per-class accuracy from each seed's ``hits`` per class and the test
    ``counts`` (:func:`~.tables.per_class_cell`, when given) and the wall time."""
    t = torch.tensor(accuracies, dtype=torch.float64)
    return {
        "seeds": list(protocol.seeds),
        "accuracy": accuracies,
        "mean": float(t.mean()),
        "std": float(t.std(unbiased=False)) if len(accuracies) > 1 else None,
        "lr": lr,
        "lr_selection": selection,
        **({"per_class": per_class_cell(hits, counts)} if counts is not None else {}),
        "wall_s": round(wall_s, 3),
    }
