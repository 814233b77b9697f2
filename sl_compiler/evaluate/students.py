"""Many students as one: parameters stacked on a leading dim, run with torch.func.vmap.

A small student leaves a GPU idle; K students stacked into one model keep it busy. A group of
one skips vmap and calls the module directly on its slice, so the one-at-a-time path is the same
arithmetic without the batching. Each student's initial weights come from its own seed only.

``compile=True`` runs the training loss (forward and loss; AOTAutograd compiles the backward)
through ``torch.compile``: the step's shapes are fixed, so it compiles once per batch shape.
"""

from __future__ import annotations

import copy

import torch
from torch.func import functional_call, stack_module_state, vmap

from ..device import autocast, prepare_batch
from ..models import create_model
from ..seeding import derive_seed
from .losses import student_loss

COMPILE_BACKEND = "inductor"  # torch.compile's default; tests swap in "aot_eager" (same capture, no C++ build)


def init_student(model: str, num_classes: int, shape: tuple[int, int, int], seed: int) -> torch.nn.Module:
    """The student for ``seed``, built on the CPU from its own RNG stream: identical on every device."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "student-init"))
        return create_model(model, num_classes=num_classes, channels=shape[0], resolution=shape[1])


class StudentGroup:
    """K students of one architecture; ``params`` are leaf tensors (K, ...) that the optimizer updates."""

    def __init__(self, model: str, num_classes: int, shape: tuple[int, int, int], seeds: list[int], device: torch.device, compile: bool = False):
        modules = [init_student(model, num_classes, shape, s) for s in seeds]
        self.size, self.device, self.num_classes = len(modules), device, num_classes
        params, buffers = stack_module_state(modules)
        self.params = {n: p.detach().to(device).requires_grad_() for n, p in params.items()}
        self.buffers = {n: b.to(device) for n, b in buffers.items()}
        self.module = copy.deepcopy(modules[0]).to("meta")
        self._loss = torch.compile(self._loss_eager, dynamic=False, backend=COMPILE_BACKEND) if compile else self._loss_eager

    def _call(self, params, buffers, x):
        return functional_call(self.module, (params, buffers), (x,))

    def _forward(self, params, buffers, x, shared: bool):
        with autocast(self.device):
            if self.size == 1:
                one = x if shared else x[0]
                p1 = {n: p[0] for n, p in params.items()}
                b1 = {n: b[0] for n, b in buffers.items()}
                return self._call(p1, b1, prepare_batch(one, self.device)).unsqueeze(0)
            return vmap(self._call, in_dims=(0, 0, None if shared else 0))(params, buffers, x)

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """Logits (K, B, classes) for per-student inputs (K, B, C, H, W), or one shared batch (B, C, H, W)."""
        return self._forward(self.params, self.buffers, x, shared)

    def _loss_eager(self, params, buffers, x, y, kind: str, temperature: float):
        return student_loss(kind, self._forward(params, buffers, x, False), y, temperature).sum()

    def loss(self, x: torch.Tensor, y: torch.Tensor, kind: str, temperature: float) -> torch.Tensor:
        """The summed loss of all students on their own inputs ``x`` (K, B, C, H, W) and targets ``y`` (K, B, classes)."""
        return self._loss(self.params, self.buffers, x, y, kind, temperature)

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

    @torch.no_grad()
    def hits(self, x: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
        """Correct predictions per student and true class (K, classes) on one normalised batch shared by all, ``chunk`` images per forward."""
        hits = torch.zeros(self.size, self.num_classes, dtype=torch.long, device=self.device)
        for i in range(0, len(x), chunk):
            right = self.forward(x[i : i + chunk], shared=True).argmax(-1) == y[i : i + chunk]  # (K, b)
            hits.index_add_(1, y[i : i + chunk], right.long())
        return hits

    def state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Each student's weights as a plain state_dict (CPU), e.g. to compare paths or save."""
        return [{n: t[k].detach().cpu() for n, t in {**self.params, **self.buffers}.items()} for k in range(self.size)]


@torch.no_grad()
def class_hits(groups: list[StudentGroup], data, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct predictions of every student of ``groups`` (in order) per true class (K, classes),
    and the images per class (classes,), on an :class:`~.data.EvalSet` in one pass over it (CPU tensors).

    Each batch is decoded (or sliced) once and run through every group, so a file-backed test
    split is read once per cell however many students were trained one at a time.
    """
    device, classes = groups[0].device, groups[0].num_classes
    for g in groups:
        g.train(False)
    hits = [torch.zeros(g.size, classes, dtype=torch.long, device=device) for g in groups]
    counts = torch.zeros(classes, dtype=torch.long, device=device)
    for x, y in data.batches(batch_size, device):
        for g, h in zip(groups, hits):
            h += g.hits(x, y, max(1, batch_size // g.size))
        counts.index_add_(0, y, torch.ones_like(y))  # no host sync (bincount sizes its output on the host)
    for g in groups:
        g.train(True)
    return torch.cat(hits).cpu(), counts.cpu()


def score(groups: list[StudentGroup], data, batch_size: int) -> list[float]:
    """Accuracy of every student of ``groups`` (in order) on an :class:`~.data.EvalSet`, in one pass over it."""
    hits, counts = class_hits(groups, data, batch_size)
    return accuracy(hits, counts)


def accuracy(hits: torch.Tensor, counts: torch.Tensor) -> list[float]:
    """Each student's accuracy from its per-class hits (K, classes) and the images per class."""
    return (hits.sum(1).double() / max(int(counts.sum()), 1)).tolist()
