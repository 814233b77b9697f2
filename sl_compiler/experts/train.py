"""Train expert trajectories: checkpoints every epoch or fraction of one, resumable bit for bit.

Data. Global step s trains on batch i = s mod steps_per_epoch of epoch e = s // steps_per_epoch:
the permutation ``generator(seed, "perm", e)`` of the training split cut by the batch size. A
split held in memory stays uint8 (on the device when it fits, as in airbench) and each batch is
normalised and augmented there, its random numbers from ``generator(seed, "augment", e, i)``. A
split of files (ImageNet) streams through ``sl_compiler.data.stream`` with those explicit index
batches, decoded by worker processes into a bounded prefetch window (pinned memory on CUDA).
``random_resized_crop`` crops the *original* image in the decode worker, its box hashed from
(seed, epoch, index) (``augment.resized_crop``). Nothing about a batch depends on the number of
workers or on where a run was resumed, and an in-memory split and the same files streamed give
the same trajectory (except random_resized_crop, which needs the originals).

State. The learning rate is a pure function of the global step, so a run's state is weights
(BatchNorm buffers included) + optimizer momentum + step, which ``resume.safetensors`` keeps next
to the last checkpoint; a resumed run ends with the same weights as an uninterrupted one (bitwise
on the CPU). A run stopped early with ``--epochs`` keeps that file too, so that a later, longer
``--epochs`` extends the trajectory instead of retraining it.

Ranks. Under torchrun (``sl_compiler.dist``) the model is wrapped in DistributedDataParallel and
every step trains on the same global batch as a single process: each rank takes its share by
index (:class:`Ranks`), its loss is its share's summed loss over the global batch's size times
the world size, so that DDP's average of the gradients is the global batch's gradient; a tensor
augmentation draws its numbers for the global batch's layout and applies the rank's rows, and a
random resized crop is hashed from the image's index, so every image is augmented as in one
process. BatchNorm becomes SyncBatchNorm (statistics of the global batch); on the CPU, where
torch has no SyncBatchNorm, a BatchNorm model under torchrun is an error rather than a
trajectory that depends on the world size. Rank 0 decides what to train (it alone reads and
locks the store), writes checkpoints and the trajectory; the test pass is shared out by batch and
its counts summed. The trajectory records the world size and global batch; a run resumed at
another world size trains on, and records the change (the same global batches: equal up to float
rounding, not bit for bit).

Concurrency. A run holds the trajectory's lock (``store.trajectory_lock``) from the check of what
the store holds to its last checkpoint: a second run waits (or fails with ``wait=False``) and then
sees the first one's result.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import __version__, dist, progress
from ..augment.basic import crop_flip, random_flip
from ..augment.dsa import DSA
from ..augment.resized_crop import RandomResizedCrop, resized_crop_batch
from ..data import ImageSet, load_dataset, stream
from ..data.zca import Inputs, zca_for
from ..device import autocast, describe, prepare_batch, prepare_model
from ..dist import Team
from ..errors import DataError, ExpertError
from ..models import create_model
from ..seeding import derive_seed, generator
from .recipe import ExpertRecipe, choose_recipe
from .store import RESUME, Checkpoint, ExpertStore, Trajectory, atomic_write, clear_folder, format_epoch, read_state, sha256_bytes, state_bytes, trajectory_lock

EVAL_BATCH = 256  # test images per forward pass outside training (experts add); a training run tests at its batch size
DEVICE_SHARE = 0.5  # an in-memory split moves to a GPU when its uint8 pixels take at most this share of free memory
VAL_SEED = 0  # the fixed test subset (--val-subset) is the same for every expert seed, so accuracies compare


@dataclass
class TrainResult:
    trajectory: Trajectory
    status: str  # "trained", "resumed" or "complete" (nothing to do)
    note: str = ""


@dataclass(frozen=True)
class Ranks:
    """Which share of each global batch this process trains on: every ``world_size``-th index from ``rank``."""

    rank: int = 0
    world_size: int = 1

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        return batch[self.rank :: self.world_size]

    def rows(self, total: int) -> torch.Tensor | None:
        """Where this rank's share sits in a global batch of ``total`` images (None for a single process)."""
        return None if self.world_size == 1 else self.share(torch.arange(total))


class Split:
    """One split as training and evaluation read it: batches of dataset indices -> uint8 pixels and targets on ``device``.

    Pixels held in memory stay uint8 and move to the device once, when they fit there; a split of
    files is streamed (``workers`` decoding processes, default the core count). ``inputs`` turns a
    batch into the model's input: normalised (the default) or ZCA-whitened.
    """

    def __init__(self, images: ImageSet, device: torch.device, workers: int | None = None, inputs: Inputs | None = None):
        self.images, self.device, self.workers = images, device, workers
        self.inputs = inputs or Inputs(tuple(images.mean), tuple(images.std))
        self.pixels = self.targets = None
        if images.pixels is not None:
            fits = device.type != "cuda" or images.pixels.numel() <= DEVICE_SHARE * torch.cuda.mem_get_info(device)[0]
            self.pixels = images.pixels.to(device) if fits else images.pixels
            self.targets = images.targets.to(self.pixels.device)

    def describe(self, decoded: bool = False) -> str:
        """How batches are read (``decoded``: by a stream decoder), for the trajectory record."""
        if decoded:
            return "streamed: each image cropped from its original file in decode worker processes"
        if self.pixels is None:
            return "streamed: decoded by worker processes"
        return f"held in memory as uint8 on {self.pixels.device.type}"

    def read(self, batches: list[torch.Tensor], decode=None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(indices on the CPU, uint8 pixels, int64 targets)`` on the device for each index batch, in order.

        ``decode`` (a stream decoder, e.g. a random resized crop of the original file) always
        streams from the source files, even when decoded pixels are held.
        """
        if not batches:
            return
        if decode is None and self.pixels is not None:
            flat = torch.cat(batches).to(self.pixels.device, non_blocking=True)  # one transfer per call, not per step
            for idx, on_device in zip(batches, flat.split([len(b) for b in batches])):
                yield idx, self.pixels[on_device].to(self.device, non_blocking=True), self.targets[on_device].to(self.device, non_blocking=True)
            return
        if self.images.sources is None:
            raise DataError(f"{self.images.name}/{self.images.split} has no source files to decode", "hold the split in memory or use an augmentation that works on tensors")
        decoded = iter(stream(self.images, batches=[b.tolist() for b in batches if len(b)], workers=self.workers, decode=decode))
        c, h, w = self.images.shape
        for asked in batches:
            if not len(asked):  # a rank's empty share of a short last batch: nothing to decode
                yield asked, torch.empty((0, c, h, w), dtype=torch.uint8, device=self.device), torch.empty(0, dtype=torch.int64, device=self.device)
                continue
            b = next(decoded)
            yield b.indices, b.pixels.to(self.device, non_blocking=True), b.targets.to(self.device, non_blocking=True)


def balanced_subset(images: ImageSet, n: int, seed: int = VAL_SEED) -> torch.Tensor:
    """``n`` indices of ``images``, as equal per class as the class sizes allow, drawn with ``generator("val-subset", seed, n)``.

    Each class gets ``n // C`` (the first ``n % C`` classes of a seeded class order one more),
    the first of a seeded permutation of its images; sorted, so the pass reads the split in order.
    """
    if not 0 < n < len(images):
        raise ExpertError(f"--val-subset {n} must be between 1 and {len(images) - 1}: the test split holds {len(images)} images", "give a smaller subset, or drop --val-subset to test on the whole split")
    g = generator("val-subset", seed, n)
    c = images.num_classes
    quota = torch.full((c,), n // c, dtype=torch.int64)
    quota[torch.randperm(c, generator=g)[: n % c]] += 1
    picked = [members[torch.randperm(len(members), generator=g)[: int(k)]] for members, k in zip(images.class_indices(), quota)]
    return torch.sort(torch.cat(picked)).values


@dataclass
class ValPass:
    """The test pass run at every checkpoint: the whole split, or a fixed subset of it, ``batch_size`` images at a time."""

    split: Split
    indices: torch.Tensor | None = None
    batch_size: int = EVAL_BATCH

    def accuracy(self, model: nn.Module, team: Team = dist.SOLO) -> float:
        return evaluate_accuracy(model, self.split, self.indices, batch_size=self.batch_size, team=team)

    def record(self) -> dict:
        images = self.split.images
        out = {"size": len(images), "fingerprint": images.fingerprint()}
        if self.indices is not None:
            out["subset"] = {
                "size": len(self.indices),
                "seed": VAL_SEED,
                "rule": "per class n // C images (the first n % C classes of generator('val-subset', seed, n)'s class order one more), the first of a permutation from the same generator",
                "indices_sha256": hashlib.sha256(self.indices.numpy().astype("<i8").tobytes()).hexdigest(),
            }
        return out


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, split: Split, indices: torch.Tensor | None = None, *, decode=None, mean=None, std=None, batch_size: int = EVAL_BATCH, team: Team = dist.SOLO) -> float:
    """Top-1 accuracy in percent of ``model`` on ``split`` (or its ``indices``), normalised per batch.

    ``decode``, ``mean`` and ``std`` replace the split's own decoding and normalisation (an
    imported checkpoint's preprocess). Under torchrun (``team``) each rank tests its share of
    the batches and the correct counts are summed: every rank gets the whole split's accuracy.
    """
    images, device = split.images, split.device
    inputs = split.inputs if mean is None else Inputs(tuple(mean), tuple(std))
    idx = torch.arange(len(images)) if indices is None else indices
    batches = team.share(list(idx.split(batch_size)))
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with progress.bar(sum(len(b) for b in batches), f"test {images.name}", leave=False) as bar:
        for _, pixels, targets in split.read(batches, decode):
            with autocast(device):
                logits = model(prepare_batch(inputs(pixels), device))
            correct += (logits.argmax(1) == targets).sum()
            bar.update(len(targets))
    model.train(was_training)
    return 100.0 * team.sum(int(correct)) / max(1, len(idx))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's permutation of the training set (CPU), from ``generator(seed, "perm", epoch)``."""
    return torch.randperm(n, generator=generator(seed, "perm", epoch))


def augment_batch(x: torch.Tensor, indices: torch.Tensor, recipe: ExpertRecipe, seed: int, epoch: int, step: int, decoded: bool, layout: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
    """The recipe's augmentation of normalised batch ``step`` of ``epoch`` (dataset ``indices``), on x's device.

    ``decoded``: the decode workers already applied it (random_resized_crop on the originals).
    ``layout`` ``(rows, total)``: ``x`` is one rank's share, rows ``rows`` of a global batch of
    ``total``. A tensor augmentation draws per batch position, so the share is placed in a batch
    of the global size (the other rows zero), augmented there and taken back: each image gets the
    numbers it gets in a single process (every operation is per image).
    """
    kind = recipe.augment
    if kind == "none" or decoded:
        return x
    if layout is not None and kind != "random_resized_crop":
        rows, total = layout
        full = x.new_zeros((total, *x.shape[1:]))
        full[rows.to(x.device)] = x
        return augment_batch(full, indices, recipe, seed, epoch, step, decoded)[rows.to(x.device)]
    if kind == "dsa":
        return DSA()(x, generator(seed, "augment", epoch, step, device=x.device))
    if kind == "random_resized_crop":
        return resized_crop_batch(x, seed, epoch, indices, recipe.crop_scale, recipe.crop_ratio)
    g = generator(seed, "augment", epoch, step)
    if kind == "flip":
        return random_flip(x, g)
    return crop_flip(x, recipe.crop_padding, g)


def crops_originals(images: ImageSet, recipe: ExpertRecipe) -> bool:
    """Whether the recipe's random resized crops are cut from the source files (always, when the split has them)."""
    return recipe.augment == "random_resized_crop" and images.sources is not None


def training_batches(split: Split, recipe: ExpertRecipe, seed: int, epoch: int, first: int, last: int, ranks: Ranks) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches ``first..last-1`` of ``epoch``: (normalised augmented float, targets) on the device, this rank's share."""
    images = split.images
    order = epoch_order(len(images), seed, epoch)
    whole = [order[i * recipe.batch_size : (i + 1) * recipe.batch_size] for i in range(first, last)]
    batches = [ranks.share(b) for b in whole]
    decode = None
    if crops_originals(images, recipe):
        decode = RandomResizedCrop(seed, epoch, images.shape[1], images.shape[0], recipe.crop_scale, recipe.crop_ratio, name=images.source_id)
    for step, b, (idx, pixels, targets) in zip(range(first, last), whole, split.read(batches, decode)):
        x = split.inputs(pixels)  # normalised or whitened, then augmented (DSA acts on whitened images, as in MTT)
        rows = ranks.rows(len(b))
        yield augment_batch(x, idx, recipe, seed, epoch, step, decode is not None, None if rows is None else (rows, len(b))), targets


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, lr: float, label_smoothing: float = 0.0, loss_scale: float | None = None) -> torch.Tensor:
    """One SGD step at rate ``lr`` (bf16 autocast and channels_last on CUDA); returns the loss as a tensor (no host sync).

    ``loss_scale`` (one rank of a DistributedDataParallel run): the loss is the share's summed
    loss times it, world size / global batch size, so that DDP's mean of the ranks' gradients is
    the gradient of the global batch's mean loss. Without it, the batch's mean loss.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    device = x.device
    with autocast(device):
        logits = model(prepare_batch(x, device))
    if loss_scale is None:
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    else:
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing, reduction="sum") * loss_scale
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def make_optimizer(model: nn.Module, recipe: ExpertRecipe) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)


def initial_model(arch: str, images: ImageSet, seed: int) -> nn.Module:
    """The seed's initialisation, drawn on the CPU from ``derive_seed(seed, "init")`` (device-independent)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return create_model(arch, images.num_classes, images.shape[0], images.shape[1])


def checkpoint_schedule(epochs: float, every: float, steps_per_epoch: int) -> list[tuple[float, int]]:
    """(epoch, global step) of every checkpoint, epoch 0 included."""
    if not 0 < every <= 1 or abs(1 / every - round(1 / every)) > 1e-6:
        raise ExpertError(f"--every {every} does not divide an epoch", "use 1, 0.5, 0.25, 0.2, 0.1 ...")
    count = epochs / every
    if abs(count - round(count)) > 1e-6:
        raise ExpertError(f"--epochs {format_epoch(epochs)} is not a multiple of --every {format_epoch(every)}", "make the epochs a whole number of checkpoint intervals")
    per_epoch = round(1 / every)
    if per_epoch > steps_per_epoch:
        raise ExpertError(f"--every {format_epoch(every)} asks for {per_epoch} checkpoints in an epoch of {steps_per_epoch} steps", "use a coarser --every or a smaller --batch-size")
    points = []
    for k in range(round(count) + 1):
        whole, part = divmod(k, per_epoch)
        points.append((round(k * every, 6), whole * steps_per_epoch + round(part * steps_per_epoch / per_epoch)))
    return points


def images_in(start: int, stop: int, n: int, batch_size: int) -> int:
    """Training images in global steps ``start..stop-1`` (an epoch's last batch may be short)."""
    steps_per_epoch = math.ceil(n / batch_size)
    i = torch.arange(start, stop) % steps_per_epoch
    return int(torch.clamp(n - i * batch_size, max=batch_size).sum())


def _save_resume(trajectory: Trajectory, optimizer: torch.optim.Optimizer, names: dict, step: int) -> None:
    """Write the step and the optimizer's momentum buffers (the rest of a run's state is the checkpoint)."""
    state = {"step": torch.tensor([step], dtype=torch.int64)}
    state.update({f"momentum.{names[p]}": s["momentum_buffer"] for p, s in optimizer.state.items() if s.get("momentum_buffer") is not None})
    atomic_write(trajectory.path / RESUME, state_bytes(state))


def _read_resume(trajectory: Trajectory) -> tuple[int, dict[str, torch.Tensor]]:
    """The step the resume file belongs to, and its momentum buffers by parameter name."""
    state = read_state(trajectory.path / RESUME)
    return int(state["step"][0]), {k.removeprefix("momentum."): t for k, t in state.items() if k.startswith("momentum.")}


def _restore_momentum(optimizer: torch.optim.Optimizer, params: dict, momentum: dict[str, torch.Tensor]) -> None:
    for name, tensor in momentum.items():
        param = params[name]
        optimizer.state[param]["momentum_buffer"] = tensor.to(param.device)


@dataclass
class RunConfig:
    """What a run records beside its recipe; ``compared`` keys must match to resume or extend a trajectory."""

    every: float
    steps_per_epoch: int
    test_set: dict | None
    details: dict = field(default_factory=dict)

    compared = ("every", "steps_per_epoch", "test_set")

    def to_dict(self) -> dict:
        return {"every": self.every, "steps_per_epoch": self.steps_per_epoch, "test_set": self.test_set, **self.details}


def _differences(trajectory: Trajectory, recipe: dict, config: RunConfig, fingerprint: str) -> list[str]:
    defaults = ExpertRecipe.defaults()  # a key recorded before it existed meant its default
    diffs = [f"{k} {trajectory.recipe.get(k, defaults.get(k))} vs {v}" for k, v in recipe.items() if trajectory.recipe.get(k, defaults.get(k)) != v]
    mine = config.to_dict()
    diffs += [f"{k} {trajectory.extra.get(k)} vs {mine[k]}" for k in RunConfig.compared if k in trajectory.extra and trajectory.extra[k] != mine[k]]
    if trajectory.dataset.get("fingerprint") != fingerprint:
        diffs.append("the training data's fingerprint")
    return diffs


def _existing(store: ExpertStore, info: dict, arch: str, seed: int, recipe: ExpertRecipe, config: RunConfig, force: bool) -> Trajectory | None:
    """The trajectory already in the store (None after --force); a trained one must match the run.

    A finished trajectory trained with other settings is an error too, not a silent reuse: its
    checkpoints would be labelled with a recipe they were not trained with.
    """
    trajectory = store.find(info["name"], arch, seed)
    if trajectory is not None and force:
        clear_folder(trajectory.path)
        return None
    if trajectory is not None and trajectory.recipe is not None:
        diffs = _differences(trajectory, recipe.to_dict(), config, info["fingerprint"])
        if diffs:
            state = "finished" if trajectory.complete else "unfinished"
            raise ExpertError(
                f"{state} trajectory {trajectory.path} was trained with other settings ({'; '.join(diffs)})",
                "rerun with the original flags to resume or extend it, use another --experts store, or pass --force to start over",
            )
    return trajectory


def train_one(
    store: ExpertStore,
    train: Split,
    val: ValPass | None,
    arch: str,
    seed: int,
    recipe: ExpertRecipe,
    every: float,
    device: torch.device,
    force: bool = False,
    stop: float | None = None,
    *,
    wait: bool = True,
    ranks: Ranks = Ranks(),
    recipe_file: str | None = None,
    log: Callable[[str], None] | None = None,
    team: Team = dist.SOLO,
) -> TrainResult:
    """Train (or resume) trajectory (train, arch, seed) in ``store`` to epoch ``stop`` (default ``recipe.epochs``), holding its lock.

    Under torchrun (``team``, ``ranks``) rank 0 alone holds the lock and reads and writes the
    store; every rank returns rank 0's result.
    """
    info = train.images.info()
    with team.together():
        lock = trajectory_lock(store.folder(info["name"], arch, seed), wait=wait, log=log) if team.main else contextlib.nullcontext()
        with lock:
            result = _train_locked(store, train, val, arch, seed, recipe, every, device, force, stop, ranks, recipe_file, info, team)
        return team.broadcast(result)


@dataclass
class _Start:
    """Where a run starts, decided by rank 0 from the store: nothing to do (``done``), or the step and the optimizer state to train from."""

    status: str
    step: int = 0
    trajectory: Trajectory | None = None
    note: str = ""
    momentum: dict = field(default_factory=dict)
    done: TrainResult | None = None


def _start(store, info, arch, seed, recipe: ExpertRecipe, config: RunConfig, force, stop, total_steps, model, device, ranks: Ranks, recipe_file, data: str, steps_per_epoch, train: Split) -> _Start:
    """Rank 0: what the store holds for this trajectory, and the weights (into ``model``) and momentum to resume from."""
    trajectory = _existing(store, info, arch, seed, recipe, config, force)
    if trajectory is not None and trajectory.complete:
        trained_to = max((c.steps for c in trajectory.checkpoints if c.steps is not None), default=None)
        if trained_to is None or trained_to >= total_steps:
            return _Start("complete", done=TrainResult(trajectory, "complete", "already complete; pass --force to retrain it"))
        if not (trajectory.path / RESUME).is_file():
            raise ExpertError(
                f"trajectory {trajectory.path} ends at epoch {format_epoch(trajectory.epochs()[-1])} and keeps no optimizer state to extend it from",
                f"pass --force to retrain it to epoch {format_epoch(stop or recipe.epochs)}",
            )
    start = _Start("trained")
    if trajectory is None:
        trajectory = Trajectory(store.folder(info["name"], arch, seed), info, arch, seed, recipe.to_dict())
        config.details.update(
            randomness="model init from derive_seed(seed, 'init'); order from generator(seed, 'perm', epoch); tensor augmentation from generator(seed, 'augment', epoch, step) over the global batch; random_resized_crop boxes hashed from (seed, epoch, index)",
            data=data,
            world_size=ranks.world_size,
            global_batch=recipe.batch_size,
            precision="bf16 autocast" if device.type == "cuda" else "fp32",
            memory_format="channels_last" if device.type == "cuda" else "contiguous",
            recipe_file=recipe_file,
            **({"zca": train.inputs.record()} if train.inputs.zca is not None else {}),
            device=describe(device),
            torch=torch.__version__,
            slc=__version__,
        )
        trajectory.extra.update(config.to_dict())
    elif (trajectory.path / RESUME).is_file():
        start.step, start.momentum = _read_resume(trajectory)
        at = next((c for c in trajectory.checkpoints if c.steps == start.step), None)
        if at is None:
            raise ExpertError(f"{trajectory.path / RESUME} points at step {start.step}, which no checkpoint has", "pass --force to retrain this trajectory")
        model.load_state_dict(trajectory.load_state(at))
        start.status = "resumed"
        trajectory.complete = False  # an extension interrupted midway is unfinished again
        began = trajectory.extra.get("world_size", 1)
        last = (trajectory.extra.get("world_size_changes") or [{"world_size": began}])[-1]["world_size"]
        if last != ranks.world_size:
            trajectory.extra.setdefault("world_size_changes", []).append({"step": start.step, "epoch": round(start.step / steps_per_epoch, 6), "world_size": ranks.world_size})
            start.note = (
                f"resumed at epoch {format_epoch(round(start.step / steps_per_epoch, 6))} on {ranks.world_size} rank{'s' if ranks.world_size != 1 else ''} after {last}: "
                "the same global batches, so the same trajectory up to float rounding (recorded in world_size_changes)"
            )
    # checkpoints past the resume point are retrained (and come out identical); imported ones stay
    trajectory.checkpoints = [c for c in trajectory.checkpoints if c.steps is None or c.steps <= start.step]
    start.trajectory = trajectory
    return start


def _train_locked(store, train: Split, val: ValPass | None, arch, seed, recipe: ExpertRecipe, every, device, force, stop, ranks: Ranks, recipe_file, info, team: Team) -> TrainResult:
    n = len(train.images)
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    schedule = checkpoint_schedule(stop or recipe.epochs, every, steps_per_epoch)
    total_steps, full_steps = schedule[-1][1], round(recipe.epochs * steps_per_epoch)
    config = RunConfig(every, steps_per_epoch, val.record() if val is not None else None)

    model = prepare_model(initial_model(arch, train.images, seed), device)
    if team.distributed:
        model = _distributable(model, arch, device)
    model.train()
    optimizer = make_optimizer(model, recipe)
    names = {p: name for name, p in model.named_parameters()}
    data = train.describe(crops_originals(train.images, recipe))
    start = team.on_main(_start, store, info, arch, seed, recipe, config, force, stop, total_steps, model, device, ranks, recipe_file, data, steps_per_epoch, train)
    if start.done is not None:
        return start.done
    _restore_momentum(optimizer, {name: p for p, name in names.items()}, start.momentum)
    step, status, trajectory = start.step, start.status, start.trajectory
    net = model
    if team.distributed:  # rank 0's weights (a resumed run's) are sent to every rank here
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def save(epoch: float, at_step: int) -> None:
        accuracy = val.accuracy(model, team) if val is not None else None
        if not team.main:
            return
        data = state_bytes(model.state_dict(), {"arch": arch, "epoch": epoch, "seed": seed, "steps": at_step})
        name = f"epoch-{format_epoch(epoch)}.safetensors"
        atomic_write(trajectory.path / name, data)
        trajectory.put_checkpoint(Checkpoint(epoch=epoch, file=name, sha256=sha256_bytes(data), test_accuracy=accuracy, steps=at_step))
        trajectory.save()
        _save_resume(trajectory, optimizer, names, at_step)

    pending = [(e, s) for e, s in schedule if s > step or (s == 0 and trajectory.checkpoint_at(0) is None)]
    if pending and pending[0][1] == 0:
        save(*pending.pop(0))
    with team.apart(), progress.bar(total=images_in(step, total_steps, n, recipe.batch_size), desc=f"{arch} seed {seed}", unit="img") as bar:
        while step < total_steps:
            epoch, first = divmod(step, steps_per_epoch)
            last = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
            for x, y in training_batches(train, recipe, seed, epoch, first, last, ranks):
                size = min(recipe.batch_size, n - (step % steps_per_epoch) * recipe.batch_size)  # this global batch's images
                training_step(net, optimizer, x, y, recipe.lr_at(step, full_steps), recipe.label_smoothing, ranks.world_size / size if team.distributed else None)
                bar.update(size)
                step += 1
                if pending and pending[0][1] == step:
                    save(*pending.pop(0))
                    accuracy = trajectory.checkpoints[-1].test_accuracy if team.main else None
                    if accuracy is not None:
                        bar.set_postfix_str(f"epoch {format_epoch(trajectory.checkpoints[-1].epoch)}: test {accuracy:.1f}%")
    if team.main:
        trajectory.complete = True
        trajectory.save()
        if total_steps >= full_steps:
            (trajectory.path / RESUME).unlink(missing_ok=True)  # a stopped-early run keeps it, to be extended later
    return TrainResult(trajectory, status, start.note) if team.main else None


def _distributable(model: nn.Module, arch: str, device: torch.device) -> nn.Module:
    """``model`` for DistributedDataParallel: BatchNorm computed over the global batch (SyncBatchNorm, GPUs only)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    if device.type != "cuda":
        raise ExpertError(
            f"{arch} has BatchNorm layers, and under torchrun on the CPU their statistics would be each rank's share of the batch (torch's SyncBatchNorm needs GPUs), so the trajectory would depend on the world size",
            "train it in one process on the CPU, on GPUs under torchrun, or pick a model without BatchNorm (convnet_d3)",
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def load_splits(dataset: str, data_root: str | Path | None, **options) -> tuple[ImageSet, ImageSet | None, str]:
    """The train split and, when the dataset has one, the test split (else None and a note); ``options`` go to the loader."""
    train = load_dataset(dataset, data_root, "train", **options)
    try:
        return train, load_dataset(dataset, data_root, "test", **options), ""
    except DataError as exc:
        return train, None, f"no test split ({exc}); test accuracy not recorded"


def train_trajectories(
    dataset: str,
    arch: str,
    seeds: list[int],
    *,
    data_root: str | Path | None = None,
    recipe: str | Path | ExpertRecipe | None = None,
    epochs: float | None = None,
    every: float = 1.0,
    lr: float | None = None,
    batch_size: int | None = None,
    store: ExpertStore | str | Path = "experts",
    device: str | torch.device = "auto",
    force: bool = False,
    workers: int | None = None,
    in_memory: bool | None = None,
    val_subset: int | None = None,
    wait: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[TrainResult]:
    """Train one trajectory per seed of ``arch`` on ``dataset`` up to epoch ``epochs`` (default the recipe's).

    ``recipe`` defaults to ``recipes/experts/<dataset>-<arch>.toml``, else ``default-<arch>.toml``;
    ``lr`` and ``batch_size`` override it. ``workers`` decode file-backed splits (default: the core
    count); ``in_memory=False`` streams a split of files even when it would fit in memory.
    ``val_subset`` tests each checkpoint on that many test images (balanced per class, fixed)
    instead of the whole split. ``wait=False`` fails at once when another process holds a
    trajectory. ``log`` receives one-line notes (the recipe file used, waiting for a lock).
    """
    team = dist.team()
    device = dist.device(device)
    workers = dist.workers(workers)
    store = store if isinstance(store, ExpertStore) else ExpertStore(store)
    recipe, recipe_file = choose_recipe(dataset, arch, recipe)
    recipe = recipe.with_overrides(lr=lr, batch_size=batch_size)  # --epochs says where to stop, not the schedule's length
    if log and recipe_file:
        log(f"recipe: {recipe_file}")
    train, test, note = load_splits(dataset, data_root, in_memory=in_memory)
    create_model(arch, train.num_classes, train.shape[0], train.shape[1])  # an unknown arch fails before any work
    if val_subset is not None and test is None:
        raise ExpertError(f"--val-subset {val_subset} given but {dataset} has no test split", "drop --val-subset")
    inputs = Inputs(tuple(train.mean), tuple(train.std), zca_for(train, recipe.zca_eps, workers) if recipe.zca else None)
    train_split = Split(train, device, workers, inputs)
    val = None
    if test is not None:
        # tested at the training batch size: the memory a run needs is set by its batch, never by the test split's size
        val = ValPass(Split(test, device, workers, inputs), balanced_subset(test, val_subset) if val_subset is not None else None, recipe.batch_size)
    results = []
    for seed in seeds:
        result = train_one(store, train_split, val, arch, seed, recipe, every, device, force, stop=epochs, wait=wait, ranks=Ranks(team.rank, team.size), recipe_file=recipe_file, log=log, team=team)
        if note and not result.note:
            result.note = note
        results.append(result)
    return results
