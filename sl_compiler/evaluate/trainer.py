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
import time

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

__all__ = ["EvalSet", "StudentTrainer", "evaluate_students", "make_augment", "select_lr", "train_group", "train_students"]


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


def train_students(
    data: TrainingSet,
    protocol: Protocol,
    seeds: list[int],
    lrs: list[float],
    device: torch.device,
    evals: dict[str, EvalSet],
    batched: bool,
    desc: str = "students",
    compile: bool = False,
) -> dict[str, list[float]]:
    """Accuracy of each student (seed k, lr k) per eval set: all in one group, or one after another.

    One at a time, the trained students are kept and scored together in one pass per eval set,
    so a streamed test split is read once per cell.
    """
    groups = trained_groups(data, protocol, seeds, lrs, device, batched, desc, compile)
    return {name: score(groups, e, protocol.eval_batch_size) for name, e in evals.items()}


def trained_groups(data: TrainingSet, protocol: Protocol, seeds: list[int], lrs: list[float], device: torch.device, batched: bool, desc: str, compile: bool) -> list[StudentGroup]:
    """Students (seed k, lr k) trained all in one group, or one group each."""
    plans = [(seeds, lrs)] if batched else [([s], [lr]) for s, lr in zip(seeds, lrs)]
    return [StudentTrainer(data, protocol, s, lr, device, compile).run(desc) for s, lr in plans]


def select_lr(data: TrainingSet, protocol: Protocol, holdout: EvalSet, device: torch.device, batched: bool, desc: str = "lr selection", compile: bool = False) -> tuple[float, dict[str, float]]:
    """Train one student per lr candidate (first seed) and pick the best on the held-out slice.

    Takes the held-out slice of the training split only: the test set is not an argument.
    Ties go to the smaller lr.
    """
    grid = sorted(protocol.lr_grid)
    seed = protocol.seeds[0]
    acc = train_students(data, protocol, [seed] * len(grid), grid, device, {"holdout": holdout}, batched, desc, compile)["holdout"]
    best = max(range(len(grid)), key=lambda i: (acc[i], -grid[i]))
    return grid[best], {repr(lr): a for lr, a in zip(grid, acc)}


def evaluate_students(
    data: TrainingSet,
    protocol: Protocol,
    test: EvalSet,
    holdout_fn,
    device: torch.device,
    batched: bool,
    desc: str,
    compile: bool = False,
) -> dict:
    """One cell of a table: choose the lr if needed (``holdout_fn()`` builds the held-out slice), train all seeds, test.

    Returns the seeds, per-seed final-epoch test accuracies (fractions), their mean and
    (population) std (None for one seed: a spread of one run is not measured), the lr used, the
    selection record, the per-class accuracy (:func:`~.tables.per_class_cell`) and the wall time.
    """
    start = time.perf_counter()
    lr, selection = protocol.lr, None
    if lr is None:
        lr, selection = select_lr(data, protocol, holdout_fn(), device, batched, f"{desc} lr", compile)
    seeds = list(protocol.seeds)
    hits, counts = class_hits(trained_groups(data, protocol, seeds, [lr] * len(seeds), device, batched, desc, compile), test, protocol.eval_batch_size)
    acc = accuracy(hits, counts)
    t = torch.tensor(acc, dtype=torch.float64)
    return {
        "seeds": seeds,
        "accuracy": acc,
        "mean": float(t.mean()),
        "std": float(t.std(unbiased=False)) if len(acc) > 1 else None,
        "lr": lr,
        "lr_selection": selection,
        "per_class": per_class_cell(hits, counts),
        "wall_s": round(time.perf_counter() - start, 3),
    }
