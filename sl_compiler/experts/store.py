"""The expert store: trajectories of checkpoints on disk, one folder per (dataset, arch, seed).

Layout: ``<store>/<dataset_key>/<arch>/seed-<s>/trajectory.json`` plus one
``epoch-<E>.safetensors`` state_dict per checkpoint and, while training is unfinished,
``resume.safetensors`` (optimizer momentum and step). Every file is written to a temporary name
and renamed into place, so a crash leaves the last complete state, never a half-written file.

One process at a time writes a trajectory: training and imports hold ``fcntl.flock`` on the
folder's ``.lock`` file for the whole run (:func:`trajectory_lock`), so two runs into one store
never both report success with one result silently lost; the second waits, or fails at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from ..data import dataset_key
from ..errors import ExpertError
from ..seeding import format_seeds

FORMAT = 1
EPOCH_TOLERANCE = 1e-6
INDEX = "trajectory.json"
RESUME = "resume.safetensors"
LOCK = ".lock"
ENV = "SLC_EXPERTS"


def format_epoch(epoch: float) -> str:
    """0.25 -> "0.25", 1.0 -> "1", 43 -> "43": the spelling in file names, references and tables."""
    text = f"{round(float(epoch), 6):.6f}".rstrip("0").rstrip(".")
    return text or "0"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def state_bytes(state: dict[str, torch.Tensor], metadata: dict | None = None) -> bytes:
    """A state_dict as safetensors bytes (CPU, contiguous); ``metadata`` goes in one JSON key."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    meta = {"slc": json.dumps(metadata, sort_keys=True)} if metadata else None
    return save_safetensors_bytes(tensors, metadata=meta)


def read_state(path: Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors state_dict, checking its sha256 against the store's record when given."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ExpertError(f"checkpoint {path} is missing", "retrain the trajectory or re-add the checkpoint with slc experts add") from None
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise ExpertError(f"checkpoint {path} is corrupt (sha256 differs from trajectory.json)", "retrain the trajectory or re-add the checkpoint with slc experts add")
    try:
        return load_safetensors_bytes(data)
    except Exception as exc:
        raise ExpertError(f"checkpoint {path} is not a readable safetensors file: {exc}", "retrain the trajectory or re-add the checkpoint with slc experts add") from None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def trajectory_lock(folder: Path, wait: bool = True, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the trajectory folder's lock for the body; another holder makes this wait (``wait``) or raise.

    ``flock`` locks belong to an open file, so the kernel drops them when the holder exits or is
    killed: a crashed run never leaves a stale lock. The holder's pid is written into the file,
    for the message another process shows. ``log`` (default: stderr) tells that a run is waiting.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            if not wait:
                raise ExpertError(
                    f"trajectory {folder} is being written by another process (pid {holder})",
                    "wait for that run to finish (drop --no-wait to wait for it), or train into another --experts store",
                ) from None
            (log or _stderr)(f"waiting for pid {holder}, which is writing trajectory {folder} ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def clear_folder(folder: Path) -> None:
    """Delete a trajectory's files but keep its lock file (deleting it would let a second process lock a new one)."""
    for entry in folder.iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def preprocess_of(info: dict) -> dict:
    """The input transform recorded in dataset info: its ``preprocess``, else one built from resolution, mean and std.

    Trajectories written before datasets recorded their preprocess decoded by resizing the shorter
    side to the crop's longer side and cropping the centre (as ``Preprocess.from_info`` reads them);
    that is what the fallback says.
    """
    if info.get("preprocess"):
        return dict(info["preprocess"])
    h, w = info["resolution"]
    return {"resize": int(max(h, w)), "crop": [int(h), int(w)], "interpolation": "bilinear", "mean": list(info["mean"]), "std": list(info["std"])}


@dataclass
class Checkpoint:
    epoch: float
    file: str
    sha256: str
    test_accuracy: float | None = None
    steps: int | None = None

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "file": self.file, "sha256": self.sha256, "test_accuracy": self.test_accuracy, "steps": self.steps}


@dataclass
class Trajectory:
    """One expert run: its folder, what it was trained on and how, and its checkpoints by epoch."""

    path: Path
    dataset: dict  # ImageSet.info() of the training split
    arch: str
    seed: int
    recipe: dict | None = None  # None for trajectories made of imported checkpoints
    checkpoints: list[Checkpoint] = field(default_factory=list)
    complete: bool = False
    extra: dict = field(default_factory=dict)  # run details: device, torch version, steps per epoch, test set

    @property
    def dataset_key(self) -> str:
        return dataset_key(self.dataset["name"])

    @property
    def num_classes(self) -> int:
        return int(self.dataset.get("num_classes") or len(self.dataset["classes"]))

    @property
    def shape(self) -> tuple[int, int, int]:
        h, w = self.dataset["resolution"]
        return (int(self.dataset["channels"]), int(h), int(w))

    @property
    def preprocess(self) -> dict:
        """How the experts' inputs are made: resize, crop, interpolation, mean, std (see :func:`preprocess_of`)."""
        return preprocess_of(self.dataset)

    @property
    def zca(self) -> dict | None:
        """The ZCA record (``sl_compiler.data.zca``) of a trajectory trained on whitened inputs, else None."""
        return self.extra.get("zca")

    def epochs(self) -> list[float]:
        return [c.epoch for c in self.checkpoints]

    def checkpoint_at(self, epoch: float) -> Checkpoint | None:
        for c in self.checkpoints:
            if abs(c.epoch - float(epoch)) <= EPOCH_TOLERANCE:
                return c
        return None

    def file(self, checkpoint: Checkpoint) -> Path:
        return self.path / checkpoint.file

    def load_state(self, checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
        """The checkpoint's state_dict, verified against its recorded sha256."""
        return read_state(self.file(checkpoint), checkpoint.sha256)

    def put_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Add or replace the checkpoint at its epoch, keeping epochs sorted."""
        self.checkpoints = [c for c in self.checkpoints if abs(c.epoch - checkpoint.epoch) > EPOCH_TOLERANCE]
        self.checkpoints.append(checkpoint)
        self.checkpoints.sort(key=lambda c: c.epoch)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "dataset": self.dataset,
            "arch": self.arch,
            "seed": self.seed,
            "recipe": self.recipe,
            "checkpoints": [c.to_dict() for c in self.checkpoints],
            "complete": self.complete,
            **self.extra,
        }

    def save(self) -> None:
        atomic_write(self.path / INDEX, (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> "Trajectory":
        path = Path(path)
        try:
            raw = json.loads((path / INDEX).read_text())
            return cls(
                path=path,
                dataset=raw.pop("dataset"),
                arch=raw.pop("arch"),
                seed=int(raw.pop("seed")),
                recipe=raw.pop("recipe"),
                checkpoints=[Checkpoint(**c) for c in raw.pop("checkpoints")],
                complete=bool(raw.pop("complete")),
                extra={k: v for k, v in raw.items() if k != "format"},
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ExpertError(f"unreadable trajectory index {path / INDEX}: {exc}", "delete that folder or retrain it with --force") from None


class ExpertStore:
    """A folder of trajectories; see the module docstring for the layout."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"ExpertStore({str(self.root)!r})"

    def folder(self, dataset: str, arch: str, seed: int) -> Path:
        return self.root / dataset_key(dataset) / arch / f"seed-{int(seed)}"

    def trajectories(self) -> list[Trajectory]:
        """Every trajectory in the store, sorted by dataset, arch and seed."""
        if not self.root.is_dir():
            return []
        found = [Trajectory.load(p.parent) for p in self.root.glob(f"*/*/seed-*/{INDEX}")]
        return sorted(found, key=lambda t: (t.dataset_key, t.arch, t.seed))

    def find(self, dataset: str, arch: str, seed: int) -> Trajectory | None:
        folder = self.folder(dataset, arch, seed)
        return Trajectory.load(folder) if (folder / INDEX).is_file() else None

    def trajectory(self, dataset: str, arch: str, seed: int) -> Trajectory:
        """The trajectory for (dataset, arch, seed); an error that lists what the store holds if absent."""
        found = self.find(dataset, arch, seed)
        if found is not None:
            return found
        key = dataset_key(dataset)
        held = self.trajectories()
        if not any(t.dataset_key == key for t in held):
            datasets = sorted({t.dataset_key for t in held})
            holds = f"it holds {', '.join(datasets)}" if datasets else "it is empty"
            raise ExpertError(f"no experts for {key} in store {self.root} ({holds})", f"train some with slc experts train --dataset {key}, or point --experts at another store")
        archs = {t.arch for t in held if t.dataset_key == key}
        if arch not in archs:
            summary = "; ".join(f"{a} (seeds {format_seeds([t.seed for t in held if t.dataset_key == key and t.arch == a])})" for a in sorted(archs))
            raise ExpertError(f"no {arch} experts for {key} in store {self.root}; the store has {summary}", f"use one of those or train {arch} with slc experts train")
        seeds = [t.seed for t in held if t.dataset_key == key and t.arch == arch]
        raise ExpertError(f"no {arch} seed {seed} for {key} in store {self.root}; the store has seeds {format_seeds(seeds)}", "use one of those seeds or train it with slc experts train --seeds")

    def add_checkpoint(
        self,
        state: dict[str, torch.Tensor],
        *,
        dataset_info: dict,
        arch: str,
        epoch: float,
        seed: int,
        test_accuracy: float | None = None,
        source: dict | None = None,
        force: bool = False,
        wait: bool = True,
    ) -> tuple[Trajectory, Checkpoint]:
        """Store an external state_dict as the point ``epoch`` of trajectory (dataset, arch, seed).

        The state_dict must already be checked against the architecture (``experts.external``
        does); a trajectory trained by slc that already has this epoch is only replaced with
        ``force``. ``dataset_info["preprocess"]`` is the checkpoint's input transform; every
        checkpoint of a trajectory shares one.
        """
        if epoch < 0:
            raise ExpertError(f"epoch {epoch} is negative", "give the epoch the checkpoint was saved at, e.g. --epoch 43")
        folder = self.folder(dataset_info["name"], arch, seed)
        with trajectory_lock(folder, wait=wait):
            return self._add_locked(folder, state, dataset_info, arch, float(epoch), int(seed), test_accuracy, source, force)

    def _add_locked(self, folder, state, dataset_info, arch, epoch, seed, test_accuracy, source, force) -> tuple[Trajectory, Checkpoint]:
        trajectory = self.find(dataset_info["name"], arch, seed)
        if trajectory is None:
            trajectory = Trajectory(folder, dataset_info, arch, seed, recipe=None, complete=True)
        else:
            check_same_dataset(trajectory, dataset_info)
            if trajectory.checkpoint_at(epoch) is not None and not force:
                raise ExpertError(f"{arch}@{format_epoch(epoch)} seed {seed} for {trajectory.dataset_key} already exists", "pass --force to replace it")
            mine, theirs = trajectory.preprocess, preprocess_of(dataset_info)
            if mine != theirs and trajectory.checkpoints:
                raise ExpertError(
                    f"trajectory {trajectory.path} takes inputs preprocessed as {mine}, this checkpoint as {theirs}",
                    "add it with the trajectory's preprocess, or as another --seed",
                )
        name = f"epoch-{format_epoch(epoch)}.safetensors"
        data = state_bytes(state, {"arch": arch, "epoch": epoch, "seed": seed, "source": source})
        atomic_write(trajectory.path / name, data)
        checkpoint = Checkpoint(epoch=epoch, file=name, sha256=sha256_bytes(data), test_accuracy=test_accuracy)
        trajectory.put_checkpoint(checkpoint)
        if source is not None:
            trajectory.extra.setdefault("imported", {})[format_epoch(epoch)] = source
        trajectory.save()
        return trajectory, checkpoint


def check_same_dataset(trajectory: Trajectory, dataset_info: dict) -> None:
    """Raise unless ``dataset_info`` describes the data the trajectory was trained on."""
    mine, theirs = trajectory.dataset, dataset_info
    problems = []
    if dataset_key(theirs["name"]) != trajectory.dataset_key:
        problems.append(f"dataset {dataset_key(theirs['name'])} vs {trajectory.dataset_key}")
    n_theirs = theirs.get("num_classes") or len(theirs.get("classes") or [])
    if n_theirs and int(n_theirs) != trajectory.num_classes:
        problems.append(f"{n_theirs} classes vs {trajectory.num_classes}")
    if mine.get("fingerprint") and theirs.get("fingerprint") and mine["fingerprint"] != theirs["fingerprint"]:
        problems.append(f"fingerprint {theirs['fingerprint'][:12]} vs {mine['fingerprint'][:12]}")
    if problems:
        raise ExpertError(
            f"expert {trajectory.arch} seed {trajectory.seed} in {trajectory.path} was trained on other data ({'; '.join(problems)})",
            "label the dataset the expert was trained on, or train an expert on this one",
        )


def default_store(path: str | Path | None = None) -> ExpertStore:
    """The store at ``path``, else ``$SLC_EXPERTS``, else ``./experts``."""
    return ExpertStore(path or os.environ.get(ENV) or "experts")
