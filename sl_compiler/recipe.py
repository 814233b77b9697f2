"""Recipe: everything one compile needs, in one canonical, serialisable object.

A recipe comes from CLI flags or a TOML file (``recipes/compile/*.toml``) and is recorded whole in
the artifact's manifest, so that an artifact says exactly how it was made. Canonical: written out
and read back it is identical (``Recipe.from_toml(path) == recipe`` after ``recipe.write(path)``);
unknown keys and wrong types are errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

import tomli_w

from .artifact.format import NAME_RE, SEMVER_RE
from .errors import RecipeError
from .tomlfile import read_toml

SELECT_STRATEGIES = ("random", "ce-quantile")
AUGMENTS = ("none", "cutmix", "rrc", "cutmix+rrc")
QUANTILES = 10  # ce-quantile cuts each class into deciles (the paper's Appendix B)
SPLITS = ("train", "test")
LABELERS = ("teacher", "bptt")
# labels learned by truncated BPTT (docs/bptt.md): the recipe records every setting, defaults filled in
BPTT_DEFAULTS = {
    "bptt_model": "convnet_d3",  # the student unrolled in the inner loop
    "bptt_steps": 50,  # T: inner SGD steps per outer step
    "bptt_window": 20,  # M: the last M inner steps keep their graph (truncation)
    "bptt_lr": 0.01,  # inner SGD learning rate
    "bptt_label_lr": 0.01,  # Adam learning rate of the label logits
    "bptt_outer_steps": 500,
    "bptt_batch": 256,  # real training images per outer loss
    "bptt_syn_batch": 256,  # distilled images per inner step (all of them when fewer)
    "bptt_clip": 1.0,  # max L2 norm of the label-logit gradient
}


@dataclass(frozen=True)
class Recipe:
    """One compile. ``None`` fields are optional and left out of the TOML and the dict."""

    dataset: str
    ipc: int
    teacher: str | None = None  # required, except with labeler "bptt", which needs no expert
    data_root: str | None = None
    split: str = "train"
    select: str = "random"
    quantile: int | None = None  # ce-quantile only: decile 0 (easiest) .. 9 (hardest)
    temperature: float = 1.0
    topk: int | None = None  # store the k largest probabilities; None stores dense rows
    views: int = 0  # augmented views per image; 0 labels the plain image once
    augment: str = "none"
    seed: int = 0  # selection draws, and augmented views per (seed, sample key, view index)
    name: str | None = None  # default: derived from dataset, ipc and teacher (artifact_name)
    version: str = "1.0.0"
    labeler: str | None = None  # None: teacher soft labels; "bptt": labels learned by truncated BPTT
    bptt_model: str | None = None  # the bptt_* keys: labeler "bptt" only (BPTT_DEFAULTS)
    bptt_steps: int | None = None
    bptt_window: int | None = None
    bptt_lr: float | None = None
    bptt_label_lr: float | None = None
    bptt_outer_steps: int | None = None
    bptt_batch: int | None = None
    bptt_syn_batch: int | None = None
    bptt_clip: float | None = None

    def __post_init__(self):
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        if self.labeler == "teacher":  # the default, left out so that teacher recipes keep their bytes
            object.__setattr__(self, "labeler", None)
        if self.labeler is not None:
            self._check_bptt()
        elif self.teacher is None:
            raise RecipeError("no teacher given", "pass --teacher ARCH@EPOCH[#SEEDS], or --labeler bptt to learn labels without one")
        else:
            given = [k for k in BPTT_DEFAULTS if getattr(self, k) is not None]
            if given:
                raise RecipeError(f"{', '.join(given)} apply only to --labeler bptt", "drop them, or pass --labeler bptt")
        object.__setattr__(self, "temperature", float(self.temperature))  # 2 and 2.0 write the same bytes
        if self.ipc < 1:
            raise RecipeError(f"ipc must be at least 1, got {self.ipc}", "pass --ipc 1 or more")
        if self.split not in SPLITS:
            raise RecipeError(f"unknown split {self.split!r}", f"use one of {', '.join(SPLITS)}")
        if self.select not in SELECT_STRATEGIES:
            raise RecipeError(f"unknown selection strategy {self.select!r}", f"use --select {' or '.join(SELECT_STRATEGIES)}")
        if self.select == "ce-quantile":
            if self.quantile is None or not 0 <= self.quantile < QUANTILES:
                raise RecipeError(
                    f"ce-quantile needs a quantile in 0..{QUANTILES - 1}, got {self.quantile}",
                    "pass --quantile Q (0 = lowest cross-entropy decile, 9 = highest)",
                )
        elif self.quantile is not None:
            raise RecipeError("--quantile applies only to --select ce-quantile", "drop --quantile or add --select ce-quantile")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise RecipeError(f"temperature must be a positive number, got {self.temperature}", "pass --temperature T with T > 0")
        if self.topk is not None and self.topk < 1:
            raise RecipeError(f"topk must be at least 1, got {self.topk}", "pass --topk K with K >= 1, or leave it out for dense labels")
        if self.augment not in AUGMENTS:
            raise RecipeError(f"unknown augmentation {self.augment!r}", f"use --augment {'|'.join(AUGMENTS[1:])}")
        if self.views < 0:
            raise RecipeError(f"views must be 0 or more, got {self.views}", "pass --views V with V >= 1 together with --augment")
        if (self.views > 0) != (self.augment != "none"):
            raise RecipeError(
                f"--views {self.views} with --augment {self.augment}: views and augmentation go together",
                "pass both --views V (V >= 1) and --augment cutmix|rrc|cutmix+rrc, or neither",
            )
        if self.seed < 0:
            raise RecipeError("seeds must be non-negative", "pass --seed S with S >= 0")
        from .experts.reference import parse_reference

        if self.teacher is not None:
            parse_reference(self.teacher)  # a bad reference fails here, before any work (ExpertError)
        if not SEMVER_RE.match(self.version):
            raise RecipeError(f"bad version {self.version!r}", "use a semantic version such as 1.0.0")
        if self.name is not None and not NAME_RE.match(self.name):
            raise RecipeError(f"bad name {self.name!r}", "use lowercase letters, digits, '-' and '_'")

    def _check_bptt(self) -> None:
        """Labeler "bptt": a known name, no teacher-only keys, every setting in range; defaults filled in."""
        if self.labeler not in LABELERS:
            raise RecipeError(f"unknown labeler {self.labeler!r}", f"use --labeler {' or '.join(LABELERS)}")
        teacher_only = [
            flag
            for flag, given in (
                ("--teacher", self.teacher is not None),
                ("--temperature", self.temperature != 1.0),
                ("--views/--augment", self.views != 0 or self.augment != "none"),
                ("--select ce-quantile", self.select != "random"),
            )
            if given
        ]
        if teacher_only:
            raise RecipeError(f"--labeler bptt learns labels without a teacher, so {', '.join(teacher_only)} cannot apply", f"drop {', '.join(teacher_only)}, or leave out --labeler bptt")
        for key, default in BPTT_DEFAULTS.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, float(default) if isinstance(default, float) else default)
            elif isinstance(default, float):
                object.__setattr__(self, key, float(getattr(self, key)))  # 1 and 1.0 write the same bytes
        flag = lambda key: "--" + key.replace("_", "-")  # noqa: E731
        for key in ("bptt_steps", "bptt_window", "bptt_outer_steps", "bptt_batch", "bptt_syn_batch"):
            if getattr(self, key) < 1:
                raise RecipeError(f"{key} must be at least 1, got {getattr(self, key)}", f"pass {flag(key)} 1 or more")
        if self.bptt_window > self.bptt_steps:
            raise RecipeError(
                f"bptt_window {self.bptt_window} is more than bptt_steps {self.bptt_steps}: the window keeps the last M of T inner steps",
                f"pass --bptt-window {self.bptt_steps} or less, or raise --bptt-steps",
            )
        for key in ("bptt_lr", "bptt_label_lr", "bptt_clip"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise RecipeError(f"{key} must be a positive number, got {value}", f"pass {flag(key)} X with X > 0")

    @property
    def artifact_name(self) -> str:
        """``name``, or one derived from dataset, ipc and teacher: ``cifar10-ipc10-convnet_d3-20-s0-9`` (``cifar10-ipc10-bptt``)."""
        if self.name is not None:
            return self.name
        raw = f"{self.dataset}-ipc{self.ipc}-{self.teacher or self.labeler}".lower()
        return re.sub(r"[^a-z0-9_]+", "-", raw).strip("-_")

    @property
    def num_views(self) -> int:
        """Label rows per image: the augmented views, or 1 for the plain image."""
        return self.views or 1

    def to_dict(self) -> dict:
        """The canonical dict (None fields left out), as the manifest and the TOML hold it."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: dict, source: str = "recipe") -> "Recipe":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecipeError(f"{source}: unknown key(s) {', '.join(unknown)}", f"use only: {', '.join(sorted(known))}")
        required = ("dataset", "ipc") if data.get("labeler") not in (None, "teacher") else ("dataset", "ipc", "teacher")
        missing = [k for k in required if data.get(k) is None]
        if missing:
            raise RecipeError(f"{source}: missing {', '.join(missing)}", "set them in the recipe or pass --" + " --".join(missing))
        return cls(**data)

    def replace(self, **changes) -> "Recipe":
        """A copy with ``changes`` applied (None values are ignored, so CLI flags left out keep the recipe's value)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_toml())
        return path

    @classmethod
    def from_toml(cls, path: str | Path) -> "Recipe":
        return cls.from_dict(read_toml(path, "recipe", "check the --recipe path"), source=str(path))


def _check_type(name: str, value, annotation: str) -> None:
    """Strict types so that a recipe round-trips: ``ipc = "10"`` or ``ipc = true`` are errors."""
    if value is None:
        if "None" not in annotation:
            raise RecipeError(f"recipe key {name!r} is required", f"set {name}")
        return
    if annotation.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation.startswith("float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        kind = annotation.split(" ")[0]
        raise RecipeError(f"recipe key {name!r} must be {kind}, got {value!r}", f"write {name} as a {kind}")
