"""Train expert trajectories: checkpoints every epoch or fraction of one, resumable bit for bit.

Training runs on tensors resident on the device (as in airbench): the split is normalised once,
each epoch's order comes from ``generator(seed, "perm", epoch)``, each batch's augmentation from
``generator(seed, "augment", epoch, step)``, and the learning rate is a pure function of the global
step. A run's state is therefore only weights + optimizer momentum + step, which
``resume.safetensors`` keeps next to the last checkpoint; a resumed run ends with the same weights
as an uninterrupted one (bitwise on the CPU). A run stopped early with ``--epochs`` keeps that file
too, so a later, longer ``--epochs`` extends the trajectory instead of retraining it.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import __version__, progress
from ..augment.basic import crop_flip, random_flip
from ..augment.dsa import DSA
from ..data import ImageSet, load_dataset, normalize
from ..device import autocast, describe, prepare_batch, prepare_model, resolve_device
from ..errors import DataError, ExpertError
from ..models import create_model
from ..seeding import derive_seed, generator
from .recipe import ExpertRecipe, default_recipe_path
from .store import RESUME, Checkpoint, ExpertStore, Trajectory, atomic_write, format_epoch, read_state, sha256_bytes, state_bytes

# decoding a file-backed split into memory is fine up to this many bytes of uint8 pixels
MAX_RESIDENT_BYTES = 4 << 30
EVAL_BATCH = 512


@dataclass
class TrainResult:
    trajectory: Trajectory
    status: str  # "trained", "resumed" or "complete" (nothing to do)
    note: str = ""


def resident_tensors(images: ImageSet, device: torch.device, desc: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as normalised float32 (N, C, H, W) and int64 targets on ``device``."""
    if images.pixels is not None:
        pixels = images.pixels
    else:
        need = len(images) * math.prod(images.shape)
        if need > MAX_RESIDENT_BYTES:
            raise ExpertError(
                f"{images.name}/{images.split} needs {need / 2**30:.0f} GiB decoded; slc trains experts only on splits that fit in memory",
                "train this expert with torchvision's references/classification/train.py and import its checkpoints with slc experts add",
            )
        pixels = torch.empty((len(images), *images.shape), dtype=torch.uint8)
        chunk = 1024
        with progress.bar(len(images), desc or f"decode {images.split}") as bar:
            for start in range(0, len(images), chunk):
                idx = torch.arange(start, min(start + chunk, len(images)))
                pixels[idx] = images.images(idx)
                bar.update(len(idx))
    x = normalize(pixels.to(device), images.mean, images.std)
    return x, images.targets.to(device)


def augment_batch(x: torch.Tensor, recipe: ExpertRecipe, seed: int, epoch: int, step: int) -> torch.Tensor:
    """The recipe's augmentation of batch ``step`` of ``epoch``, from its own derived generator."""
    if recipe.augment == "none":
        return x
    if recipe.augment == "dsa":
        return DSA()(x, generator(seed, "augment", epoch, step, device=x.device))
    g = generator(seed, "augment", epoch, step)
    if recipe.augment == "flip":
        return random_flip(x, g)
    if recipe.augment == "crop_flip":
        return crop_flip(x, recipe.crop_padding, g)
    raise ExpertError(
        f"augment {recipe.augment!r} (torchvision's ImageNet recipe) needs a streaming loader that slc does not have",
        "train this expert with torchvision's references/classification/train.py and import it with slc experts add",
    )


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, lr: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """One SGD step at rate ``lr``; returns the loss as a tensor (no host sync)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    device = x.device
    with autocast(device):
        logits = model(prepare_batch(x, device))
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The epoch's permutation of the training set, from ``generator(seed, "perm", epoch)``."""
    return torch.randperm(n, generator=generator(seed, "perm", epoch)).to(device)


def expert_step(model, optimizer, x_all, y_all, order, recipe: ExpertRecipe, seed: int, step: int, steps_per_epoch: int) -> int:
    """Global step ``step`` of a trajectory: its batch of ``order``, augmented, one SGD step; returns the batch size.

    The learning rate follows the recipe's whole run (``recipe.epochs``) however far this call
    trains, so a run stopped at epoch 0.5 is exactly the first half-epoch of the full trajectory.
    """
    epoch, i = divmod(step, steps_per_epoch)
    idx = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
    x = augment_batch(x_all[idx], recipe, seed, epoch, i)
    lr = recipe.lr_at(step, round(recipe.epochs * steps_per_epoch))
    training_step(model, optimizer, x, y_all[idx], lr, recipe.label_smoothing)
    return len(idx)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH) -> float:
    """Top-1 accuracy in percent of ``model`` on normalised images ``x``, evaluated in batches."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, len(x), batch_size):
        with autocast(x.device):
            logits = model(prepare_batch(x[start : start + batch_size], x.device))
        correct += (logits.argmax(1) == y[start : start + batch_size]).sum()
    model.train(was_training)
    return 100.0 * int(correct) / max(1, len(x))


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


def _save_resume(trajectory: Trajectory, optimizer: torch.optim.Optimizer, names: dict, step: int) -> None:
    """Write the step and the optimizer's momentum buffers (the rest of a run's state is the checkpoint)."""
    state = {"step": torch.tensor([step], dtype=torch.int64)}
    state.update({f"momentum.{names[p]}": s["momentum_buffer"] for p, s in optimizer.state.items() if s.get("momentum_buffer") is not None})
    atomic_write(trajectory.path / RESUME, state_bytes(state))


def _load_resume(trajectory: Trajectory, optimizer: torch.optim.Optimizer, params: dict) -> int:
    """Restore momentum buffers; returns the step the resume file belongs to."""
    state = read_state(trajectory.path / RESUME)
    for key, tensor in state.items():
        if key.startswith("momentum."):
            param = params[key.removeprefix("momentum.")]
            optimizer.state[param]["momentum_buffer"] = tensor.to(param.device)
    return int(state["step"][0])


def _run_config(every: float, steps_per_epoch: int, test: ImageSet | None) -> dict:
    return {
        "every": every,
        "steps_per_epoch": steps_per_epoch,
        "randomness": "model init from derive_seed(seed, 'init'); order from generator(seed, 'perm', epoch); augmentation from generator(seed, 'augment', epoch, step)",
        "test_set": None if test is None else {"size": len(test), "fingerprint": test.fingerprint()},
    }


def _differences(trajectory: Trajectory, recipe: dict, config: dict, fingerprint: str) -> list[str]:
    diffs = [f"{k} {trajectory.recipe.get(k)} vs {v}" for k, v in recipe.items() if trajectory.recipe.get(k) != v]
    diffs += [f"{k} {trajectory.extra.get(k)} vs {config[k]}" for k in ("every", "steps_per_epoch") if trajectory.extra.get(k) != config[k]]
    if trajectory.dataset.get("fingerprint") != fingerprint:
        diffs.append("the training data's fingerprint")
    return diffs


def _existing(store: ExpertStore, info: dict, arch: str, seed: int, recipe: ExpertRecipe, config: dict, force: bool) -> Trajectory | None:
    """The trajectory already in the store (None after --force); a trained one must match the run.

    A finished trajectory trained with other settings is an error too, not a silent reuse: its
    checkpoints would be labelled with a recipe they were not trained with.
    """
    trajectory = store.find(info["name"], arch, seed)
    if trajectory is not None and force:
        shutil.rmtree(trajectory.path)
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
    train: ImageSet,
    test: ImageSet | None,
    data: tuple[torch.Tensor, torch.Tensor],
    test_data: tuple[torch.Tensor, torch.Tensor] | None,
    arch: str,
    seed: int,
    recipe: ExpertRecipe,
    every: float,
    device: torch.device,
    force: bool = False,
    stop: float | None = None,
) -> TrainResult:
    """Train (or resume) trajectory (train, arch, seed) in ``store`` to epoch ``stop`` (default ``recipe.epochs``)."""
    x_all, y_all = data
    n = len(y_all)
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    schedule = checkpoint_schedule(stop or recipe.epochs, every, steps_per_epoch)
    total_steps = schedule[-1][1]
    config = _run_config(every, steps_per_epoch, test)
    info = train.info()

    trajectory = _existing(store, info, arch, seed, recipe, config, force)
    if trajectory is not None and trajectory.complete:
        trained_to = max((c.steps for c in trajectory.checkpoints if c.steps is not None), default=None)
        if trained_to is None or trained_to >= total_steps:
            return TrainResult(trajectory, "complete", "already complete; pass --force to retrain it")
        if not (trajectory.path / RESUME).is_file():
            raise ExpertError(
                f"trajectory {trajectory.path} ends at epoch {format_epoch(trajectory.epochs()[-1])} and keeps no optimizer state to extend it from",
                f"pass --force to retrain it to epoch {format_epoch(stop or recipe.epochs)}",
            )

    model = prepare_model(initial_model(arch, train, seed), device)
    model.train()
    optimizer = make_optimizer(model, recipe)
    names = {p: name for name, p in model.named_parameters()}
    step, status = 0, "trained"
    if trajectory is None:
        trajectory = Trajectory(store.folder(info["name"], arch, seed), info, arch, seed, recipe.to_dict())
        trajectory.extra.update(config, device=describe(device), torch=torch.__version__, slc=__version__)
    elif (trajectory.path / RESUME).is_file():
        step = _load_resume(trajectory, optimizer, {name: p for p, name in names.items()})
        at = next((c for c in trajectory.checkpoints if c.steps == step), None)
        if at is None:
            raise ExpertError(f"{trajectory.path / RESUME} points at step {step}, which no checkpoint has", "pass --force to retrain this trajectory")
        model.load_state_dict(trajectory.load_state(at))
        status = "resumed"
        trajectory.complete = False  # an extension interrupted midway is unfinished again
    # checkpoints past the resume point are retrained (and come out identical); imported ones stay
    trajectory.checkpoints = [c for c in trajectory.checkpoints if c.steps is None or c.steps <= step]

    def save(epoch: float, at_step: int) -> None:
        data_bytes = state_bytes(model.state_dict(), {"arch": arch, "epoch": epoch, "seed": seed, "steps": at_step})
        name = f"epoch-{format_epoch(epoch)}.safetensors"
        atomic_write(trajectory.path / name, data_bytes)
        accuracy = evaluate_accuracy(model, *test_data) if test_data is not None else None
        trajectory.put_checkpoint(Checkpoint(epoch=epoch, file=name, sha256=sha256_bytes(data_bytes), test_accuracy=accuracy, steps=at_step))
        trajectory.save()
        _save_resume(trajectory, optimizer, names, at_step)

    pending = [(e, s) for e, s in schedule if s > step or (s == 0 and trajectory.checkpoint_at(0) is None)]
    if pending and pending[0][1] == 0:
        save(*pending.pop(0))
    order = None
    desc = f"{arch} seed {seed}"
    images_left = sum(min(recipe.batch_size, n - (s % steps_per_epoch) * recipe.batch_size) for s in range(step, total_steps))
    with progress.bar(total=images_left, desc=desc, unit="img") as bar:
        while step < total_steps:
            epoch, i = divmod(step, steps_per_epoch)
            if order is None or i == 0:
                order = epoch_order(n, seed, epoch, device)
            bar.update(expert_step(model, optimizer, x_all, y_all, order, recipe, seed, step, steps_per_epoch))
            step += 1
            if pending and pending[0][1] == step:
                save(*pending.pop(0))
                last = trajectory.checkpoints[-1]
                if last.test_accuracy is not None:
                    bar.set_postfix_str(f"epoch {format_epoch(last.epoch)}: test {last.test_accuracy:.1f}%")
    trajectory.complete = True
    trajectory.save()
    if total_steps >= round(recipe.epochs * steps_per_epoch):
        (trajectory.path / RESUME).unlink(missing_ok=True)  # a stopped-early run keeps it, to be extended later
    return TrainResult(trajectory, status)


def load_splits(dataset: str, data_root: str | Path | None) -> tuple[ImageSet, ImageSet | None, str]:
    """The train split and, when the dataset has one, the test split (else None and a note)."""
    train = load_dataset(dataset, data_root, "train")
    try:
        return train, load_dataset(dataset, data_root, "test"), ""
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
) -> list[TrainResult]:
    """Train one trajectory per seed of ``arch`` on ``dataset`` up to epoch ``epochs`` (default the recipe's); ``lr`` and ``batch_size`` override the recipe."""
    device = resolve_device(device)
    store = store if isinstance(store, ExpertStore) else ExpertStore(store)
    train, test, note = load_splits(dataset, data_root)
    if recipe is None:
        recipe = default_recipe_path(train.name, arch)
    if not isinstance(recipe, ExpertRecipe):
        recipe = ExpertRecipe.from_toml(recipe)
    recipe = recipe.with_overrides(lr=lr, batch_size=batch_size)  # --epochs says where to stop, not the schedule's length
    create_model(arch, train.num_classes, train.shape[0], train.shape[1])  # an unknown arch fails before any work
    data = resident_tensors(train, device)
    test_data = resident_tensors(test, device) if test is not None else None
    results = []
    for seed in seeds:
        result = train_one(store, train, test, data, test_data, arch, seed, recipe, every, device, force, stop=epochs)
        if note and not result.note:
            result.note = note
        results.append(result)
    return results
