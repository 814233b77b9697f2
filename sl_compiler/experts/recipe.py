"""Expert training recipes: recipes/experts/*.toml, one flat table per file.

A recipe is everything that shapes a trajectory besides the data, the architecture and the seed.
The learning rate is a pure function of the global step (a step schedule whose milestones are
fractions of the run), so a resumed run sees exactly the rates an uninterrupted one does.
Without ``--recipe``, ``recipes/experts/<dataset>-<arch>.toml`` is used when it exists, else
``default-<arch>.toml``, a recipe for that architecture on any dataset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..augment.resized_crop import RATIO, SCALE
from ..data import dataset_key
from ..errors import RecipeError
from ..resources import recipes_dir
from ..tomlfile import read_toml

RECIPES = recipes_dir("experts")
TUPLES = ("milestones", "crop_scale", "crop_ratio")
# crop_flip: augment.basic; dsa: augment.dsa (the paper's buffer.py trains experts with DSA);
# random_resized_crop: torchvision's ImageNet recipe (augment.resized_crop: RandomResizedCrop of the
# original image in the decode workers, then a horizontal flip)
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
    crop_scale: tuple[float, float] = SCALE  # random_resized_crop: area fraction of the crop
    crop_ratio: tuple[float, float] = RATIO  # random_resized_crop: aspect ratio range of the crop
    zca: bool = False  # train on zca(pixels / 255), fitted on the training split (sl_compiler.data.zca)
    zca_eps: float = 0.1  # kornia's eps, as MTT and no-distillation use it
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
            (self.zca_eps > 0, "zca_eps must be positive"),
            (not self.zca or self.augment != "random_resized_crop", "zca whitens tensors; random_resized_crop crops the original files before them: use dsa, crop_flip, flip or none"),
            (len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1, "crop_scale is [low, high] with 0 < low <= high <= 1"),
            (len(self.crop_ratio) == 2 and 0 < self.crop_ratio[0] <= self.crop_ratio[1], "crop_ratio is [low, high] with 0 < low <= high"),
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
        for key in TUPLES:
            out[key] = list(out[key])
        return out

    @classmethod
    def defaults(cls) -> dict:
        """Every field's default, as ``to_dict`` writes it (what a recipe recorded before a field existed meant)."""
        return cls().to_dict()

    @classmethod
    def from_dict(cls, raw: dict, where: str = "recipe") -> "ExpertRecipe":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - fields)
        if unknown:
            raise RecipeError(f"unknown key(s) {', '.join(unknown)} in {where}", f"use only: {', '.join(sorted(fields))}")
        raw = dict(raw)
        try:
            for key in TUPLES:
                if key in raw:
                    raw[key] = tuple(float(v) for v in raw[key])
            return cls(**raw)
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"bad value in {where}: {exc}", "fix the recipe file") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> "ExpertRecipe":
        raw = read_toml(path, "recipe", f"use one of: {', '.join(available_recipes())}")
        return cls.from_dict(raw, where=str(path))


def available_recipes() -> list[str]:
    return sorted(str(p.relative_to(RECIPES.parents[1])) for p in RECIPES.glob("*.toml"))


def default_recipe_path(dataset: str, arch: str) -> Path:
    """recipes/experts/<dataset>-<arch>.toml, else default-<arch>.toml; synthetic.toml for synthetic data."""
    key = dataset_key(dataset)
    if key.startswith("synthetic"):
        return RECIPES / "synthetic.toml"
    for name in (f"{key}-{arch}.toml", f"default-{arch}.toml"):
        if (RECIPES / name).is_file():
            return RECIPES / name
    raise RecipeError(f"no expert recipe for {arch} (neither {key}-{arch}.toml nor default-{arch}.toml in {RECIPES})", f"pass --recipe FILE (shipped: {', '.join(available_recipes())})")


def shown_path(path: str | Path) -> str:
    """A recipe file as a user would type it: ``recipes/experts/x.toml`` for a shipped one, else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(RECIPES.resolve().parents[1]))
    except ValueError:
        return str(path)


def choose_recipe(dataset: str, arch: str, recipe: str | Path | ExpertRecipe | None) -> tuple[ExpertRecipe, str | None]:
    """The recipe to train with and the file it came from (None for one built in code)."""
    if isinstance(recipe, ExpertRecipe):
        return recipe, None
    path = Path(recipe) if recipe is not None else default_recipe_path(dataset, arch)
    return ExpertRecipe.from_toml(path), shown_path(path)
