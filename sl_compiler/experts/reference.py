"""Teacher references: ``ARCH@EPOCH[#SEEDS]``, members joined by ``+``, resolved in an expert store.

``convnet_d3@20`` is seed 0's checkpoint at epoch 20 (seeds default to 0, not to every seed the
store holds, so that a reference means the same thing as the store grows); ``convnet_d3@2.5#0-9``
is ten experts at epoch 2.5; ``convnet_d3@20#0,3+resnet18@43`` joins members into one ensemble,
whose logits are averaged before the softmax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn as nn

from ..data import dataset_key
from ..device import prepare_model, resolve_device
from ..errors import ExpertError
from ..models import create_model
from ..seeding import format_seeds, parse_seeds
from .store import ExpertStore, check_same_dataset, format_epoch, read_state

_MEMBER = re.compile(r"(?P<arch>[A-Za-z][A-Za-z0-9_]*)@(?P<epoch>\d+(?:\.\d+)?|\.\d+)(?:#(?P<seeds>[0-9,\- ]+))?")
SYNTAX = "write ARCH@EPOCH[#SEEDS], e.g. convnet_d3@20, convnet_d3@2.5#0-9 or convnet_d3@20+resnet18@43"


@dataclass(frozen=True)
class Member:
    """One ``ARCH@EPOCH#SEEDS`` term of a reference."""

    arch: str
    epoch: float
    seeds: tuple[int, ...] = (0,)

    def __str__(self) -> str:
        return f"{self.arch}@{format_epoch(self.epoch)}#{format_seeds(list(self.seeds))}"


def parse_reference(text: str) -> list[Member]:
    """``"convnet_d3@20#0-9+resnet18@2.5"`` -> [Member(convnet_d3, 20.0, 0..9), Member(resnet18, 2.5, (0,))]."""
    if not isinstance(text, str) or not text.strip():
        raise ExpertError("empty teacher reference", SYNTAX)
    members = []
    for term in text.split("+"):
        term = term.strip()
        match = _MEMBER.fullmatch(term)
        if match is None:
            raise ExpertError(f"bad teacher reference {term!r} in {text!r}", SYNTAX)
        try:
            seeds = tuple(parse_seeds(match["seeds"])) if match["seeds"] else (0,)
        except Exception:
            raise ExpertError(f"bad seeds {match['seeds']!r} in teacher reference {text!r}", "write seeds as #3, #0-9 or #0,3,7") from None
        members.append(Member(match["arch"], float(match["epoch"]), seeds))
    picked = [(m.arch, format_epoch(m.epoch), s) for m in members for s in m.seeds]
    if len(set(picked)) != len(picked):
        raise ExpertError(f"teacher reference {text!r} names the same checkpoint twice", "list each arch@epoch#seed once")
    return members


def format_reference(members: list[Member]) -> str:
    """The canonical spelling, seeds always written: parse_reference(format_reference(m)) == m."""
    return "+".join(str(m) for m in members)


@dataclass(frozen=True)
class Teacher:
    """One expert checkpoint, ready to label: what it is, where it is, how to load it and how to feed it.

    ``preprocess`` is the input transform its checkpoints were tested with (resize, crop,
    interpolation, mean, std: ``store.preprocess_of``); ``mean``/``std`` repeat its normalisation.
    """

    arch: str
    epoch: float
    seed: int
    dataset: str
    num_classes: int
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    checkpoint: Path
    sha256: str
    test_accuracy: float | None
    preprocess: dict = field(default_factory=dict)
    zca: dict | None = None  # the ZCA record of a teacher trained on whitened inputs (sl_compiler.data.zca)

    @property
    def reference(self) -> str:
        return f"{self.arch}@{format_epoch(self.epoch)}#{self.seed}"

    def load(self, device="cpu") -> nn.Module:
        """The model in eval mode on ``device``, its weights verified against the recorded sha256."""
        device = resolve_device(device)
        state = read_state(self.checkpoint, self.sha256)
        model = create_model(self.arch, self.num_classes, self.shape[0], self.shape[1])
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ExpertError(f"checkpoint {self.checkpoint} does not fit {self.arch}: {str(exc).splitlines()[0]}", "retrain the trajectory or re-add the checkpoint with slc experts add") from None
        return prepare_model(model, device).eval().requires_grad_(False)

    def manifest_entry(self) -> dict:
        """What an artifact manifest records about this teacher."""
        return {
            "reference": self.reference,
            "arch": self.arch,
            "epoch": self.epoch,
            "seed": self.seed,
            "dataset": self.dataset,
            "checkpoint": "/".join(self.checkpoint.parts[-4:]),
            "sha256": self.sha256,
            "test_accuracy": self.test_accuracy,
            "preprocess": dict(self.preprocess),
            **({"zca": dict(self.zca)} if self.zca else {}),
        }


def resolve(ref: str | list[Member], store: ExpertStore | str | Path, dataset_info: dict) -> list[Teacher]:
    """Every teacher of ``ref`` (one per member and seed, in order) for the dataset ``dataset_info``.

    ``dataset_info`` is ``ImageSet.info()`` of the training split being labelled; each expert must
    have been trained on the same dataset (name, class count, and fingerprint when both have one).
    """
    members = parse_reference(ref) if isinstance(ref, str) else list(ref)
    store = store if isinstance(store, ExpertStore) else ExpertStore(store)
    key = dataset_key(dataset_info["name"])
    teachers = []
    for member in members:
        for seed in member.seeds:
            trajectory = store.trajectory(key, member.arch, seed)
            check_same_dataset(trajectory, dataset_info)
            checkpoint = trajectory.checkpoint_at(member.epoch)
            if checkpoint is None:
                epochs = ", ".join(format_epoch(e) for e in trajectory.epochs()) or "none"
                raise ExpertError(
                    f"no checkpoint {member.arch}@{format_epoch(member.epoch)} for {key} seed {seed}; the store has epochs {epochs}",
                    "pick one of those epochs or train further with slc experts train",
                )
            preprocess = trajectory.preprocess
            teachers.append(
                Teacher(
                    arch=member.arch,
                    epoch=checkpoint.epoch,
                    seed=seed,
                    dataset=key,
                    num_classes=trajectory.num_classes,
                    shape=trajectory.shape,
                    mean=tuple(preprocess["mean"]),
                    std=tuple(preprocess["std"]),
                    checkpoint=trajectory.file(checkpoint),
                    sha256=checkpoint.sha256,
                    test_accuracy=checkpoint.test_accuracy,
                    preprocess=preprocess,
                    zca=trajectory.zca,
                )
            )
    return teachers
