"""Expert training recipes: recipes/experts/*.toml, one flat table per file.

A recipe is everything that shapes a trajectory besides the data, the architecture and the seed.
The learning rate is a pure function of the global step (a step schedule whose milestones are
fractions of the run), so a resumed run sees exactly the rates an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..errors import RecipeError
from ..resources import recipes_dir
from ..tomlfile import read_toml

RECIPES = recipes_dir("experts")
# crop_flip: augment.basic; dsa: augment.dsa (the paper's buffer.py trains experts with DSA);
# random_resized_crop: torchvision's ImageNet recipe, recorded for reference but needs a streaming
# loader slc does not have (train those experts with torchvision and import them: slc experts add)
AUGMENTS = ("crop_flip", "flip", "dsa", "none", "random_resized_crop")


@dataclass(frozen=True)
class ExpertRecipe:
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    batch_size: int = 256
    epochs: float = 50
    milestones: tuple[float, ...] = (0.5,)  # fractions of the run where the rate is multiplied by gamma
    gamma: float = 0.1
    augment: str = "crop_flip"
    crop_padding: int = 4
    label_smoothing: float = 0.0
    source: str = ""  # where the numbers come from

    def __post_init__(self):
        checks = [
            (self.lr > 0, "lr must be positive"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.epochs > 0, "epochs must be positive"),
            (all(0 < m < 1 for m in self.milestones), "milestones are fractions of the run, each in (0, 1)"),
            (list(self.milestones) == sorted(self.milestones), "milestones must be increasing"),
            (0 < self.gamma <= 1, "gamma must be in (0, 1]"),
            (self.augment in AUGMENTS, f"augment must be one of {', '.join(AUGMENTS)}"),
            (self.crop_padding >= 0, "crop_padding must be >= 0"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (not self.nesterov or self.momentum > 0, "nesterov needs momentum > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise RecipeError(f"bad expert recipe: {message}", "fix the recipe file or the flag")

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate of global step ``step`` in a run of ``total_steps`` steps."""
        passed = sum(step >= round(m * total_steps) for m in self.milestones)
        return self.lr * self.gamma**passed

    def with_overrides(self, **overrides) -> "ExpertRecipe":
        """A copy with the given fields replaced; ``None`` values are ignored (flags not given)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        return out

    @classmethod
    def from_dict(cls, raw: dict, where: str = "recipe") -> "ExpertRecipe":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - fields)
        if unknown:
            raise RecipeError(f"unknown key(s) {', '.join(unknown)} in {where}", f"use only: {', '.join(sorted(fields))}")
        raw = dict(raw)
        if "milestones" in raw:
            raw["milestones"] = tuple(float(m) for m in raw["milestones"])
        try:
            return cls(**raw)
        except TypeError as exc:
            raise RecipeError(f"bad value in {where}: {exc}", "fix the recipe file") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> "ExpertRecipe":
        raw = read_toml(path, "recipe", f"use one of: {', '.join(available_recipes())}")
        return cls.from_dict(raw, where=str(path))


def available_recipes() -> list[str]:
    return sorted(str(p.relative_to(RECIPES.parents[1])) for p in RECIPES.glob("*.toml"))


def default_recipe_path(dataset: str, arch: str) -> Path:
    """recipes/experts/<dataset>-<arch>.toml; synthetic.toml for synthetic data; else an error."""
    if dataset.startswith("synthetic"):
        return RECIPES / "synthetic.toml"
    path = RECIPES / f"{dataset}-{arch}.toml"
    if not path.is_file():
        raise RecipeError(f"no expert recipe for {arch} on {dataset}", f"pass --recipe FILE (shipped: {', '.join(available_recipes())})")
    return path
