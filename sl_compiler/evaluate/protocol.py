"""Evaluation protocols: everything that decides a student's accuracy, in one recorded object.

A protocol comes from ``recipes/eval/<dataset>.toml`` (or a named protocol there, or any TOML
given), then CLI overrides. The learning rate is fixed (``lr``), chosen from ``lr_grid`` on a
held-out slice of the training split, never on the test set, or ``lr = "artifact"``: the
learned rate an MTT-family set ships (its ``learned_lr``). ``zca = true`` whitens every input
(students', teachers', test images) with kornia's ZCA fitted on the training split
(:mod:`sl_compiler.data.zca`), as no-distillation's and MTT's CIFAR runs do.

The default protocol of an artifact is chosen by the dataset name its manifest records, a value
from a file anyone may have written: it only ever selects a file when it maps to a known
dataset key (``[a-z0-9_]+``) that has a protocol in recipes/eval; anything else (``../x``, an
absolute path, odd characters) gets the built-in defaults and never becomes a path.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..augment.pipeline import parse as parse_augment
from ..data import dataset_key
from ..errors import RecipeError, SlcError
from ..resources import recipes_dir
from ..tomlfile import read_toml

RECIPES = recipes_dir("eval")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "quarters", "cosine", "constant")
ARTIFACT_LR = "artifact"  # lr = "artifact": the learned lr the artifact records (MTT's syn_lr)
LOSSES = ("ce", "kl")
REGIMES = ("sl", "slkd", "hl")
BASELINES = ("random-hl", "random-sl")


@dataclass(frozen=True)
class Protocol:
    name: str = "custom"
    model: str = "convnet_d3"
    epochs: int = 300
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float | str | None = 0.01  # a rate, None (choose from lr_grid) or "artifact"
    lr_grid: tuple[float, ...] = ()
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"  # step: x0.1 at half the epochs (DC/DSA/MTT); quarters: x0.3 every quarter (no-distillation); cosine; constant
    augment: str = "dsa"  # a pipeline of dsa, rrc, crop, flip, cutmix joined by + (sl_compiler.augment.pipeline), or none
    augment_views: bool = True  # also augment replayed stored views (false: train on exactly the labelled views)
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    dsa_mode: str = "single"
    loss: str = "ce"
    temperature: float = 1.0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    regimes: tuple[str, ...] = ("sl",)
    baselines: tuple[str, ...] = ("random-hl", "random-sl")
    holdout_fraction: float = 0.1  # of each class of the training split, for lr selection
    baseline_seed: int = 0  # random selection of the baselines' images
    full_data_accuracy: float | None = None  # real-hard accuracy (fraction) for DD-Ranking's HLR
    eval_batch_size: int = 1024
    zca: bool = False  # whiten inputs with kornia's ZCA fitted on the training split (MTT, no-distillation)
    zca_eps: float = 0.1
    notes: str = field(default="", compare=False)

    def __post_init__(self):
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r}", f"use one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"schedule {self.schedule!r}", f"use one of {', '.join(SCHEDULES)}"),
            (self.loss in LOSSES, f"loss {self.loss!r}", f"use one of {', '.join(LOSSES)}"),
            (set(self.regimes) <= set(REGIMES) and self.regimes, f"regimes {','.join(self.regimes)!r}", f"use some of {', '.join(REGIMES)}"),
            (set(self.baselines) <= set(BASELINES), f"baselines {','.join(self.baselines)!r}", f"use some of {', '.join(BASELINES)} or none"),
            (self.epochs >= 1 and self.batch_size >= 1, f"epochs {self.epochs} / batch size {self.batch_size}", "use positive integers"),
            (self.lr is not None or self.lr_grid, "no learning rate", "give lr or lr_grid"),
            (self.lr in (None, ARTIFACT_LR) or (isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool)), f"lr {self.lr!r}", f'give a number or "{ARTIFACT_LR}" (the learned lr the artifact records)'),
            (all(v > 0 for v in (*self.lr_grid, self.fixed_lr or 1.0, self.temperature, self.zca_eps)), "learning rates, temperature and zca_eps must be positive", "fix the values"),
            (0 < self.holdout_fraction < 1, f"holdout_fraction {self.holdout_fraction}", "use a fraction in (0, 1)"),
            (len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds), f"seeds {self.seeds}", "give distinct seeds, e.g. 0-4"),
        ]
        for ok, problem, fix in checks:
            if not ok:
                raise RecipeError(f"bad evaluation protocol: {problem}", fix)
        try:
            parse_augment(self.augment)
        except RecipeError as exc:
            raise RecipeError(f"bad evaluation protocol: {exc.problem}", exc.fix) from None

    @property
    def fixed_lr(self) -> float | None:
        """The protocol's own number, when it gives one (not a grid, not the artifact's)."""
        return None if self.lr in (None, ARTIFACT_LR) else float(self.lr)

    @classmethod
    def from_toml(cls, path: str | Path) -> "Protocol":
        path = Path(path)
        data = read_toml(path, "protocol", f"use one of {', '.join(available())} or a TOML file")
        data.setdefault("name", path.stem)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> "Protocol":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecipeError(f"unknown protocol key(s) {', '.join(unknown)}", f"use only: {', '.join(sorted(known))}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)

    def override(self, **changes) -> "Protocol":
        """A copy with the given (non-None) fields replaced; a given lr clears the grid and vice versa."""
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items() if v is not None}
        if "lr" in changes:
            changes.setdefault("lr_grid", ())
        elif changes.get("lr_grid"):
            changes["lr"] = None
        return replace(self, **changes) if changes else self

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def available() -> list[str]:
    """The named protocols in recipes/eval (per dataset, e.g. ``cifar10``, and others, e.g. ``imagenet-sre2l``)."""
    return sorted(p.stem for p in RECIPES.glob("*.toml"))


def load_protocol(spec: str | Path) -> Protocol:
    """A protocol by name (``imagenet-sre2l``: recipes/eval/imagenet-sre2l.toml) or by TOML path."""
    if isinstance(spec, str) and spec in available():
        return Protocol.from_toml(RECIPES / f"{spec}.toml")
    return Protocol.from_toml(spec)


KEY_RE = re.compile(r"[a-z0-9_]+")


def protocol_key(dataset: str) -> str | None:
    """The registry key of a dataset name (``CIFAR-10`` -> ``cifar10``, ``synthetic:...`` -> ``synthetic``), or None.

    None for anything that is not a known dataset: this is the only way a manifest's dataset
    name reaches a file name.
    """
    from ..data.registry import lookup

    try:
        dataset_key(str(dataset))  # a spec with bad options is not a dataset
        entry = lookup(str(dataset))[0]
    except (SlcError, ValueError, TypeError):
        return None
    if entry.kind == "path":  # imagefolder:PATH and the like have no protocol of their own
        return None
    return entry.name if KEY_RE.fullmatch(entry.name) else None


def default_protocol(dataset: str) -> Protocol:
    """``recipes/eval/<dataset key>.toml`` (synthetic sets share ``synthetic.toml``), else the built-in defaults."""
    key = protocol_key(dataset)
    if key is not None and key in available():
        return Protocol.from_toml(RECIPES / f"{key}.toml")
    return Protocol(name="default")
