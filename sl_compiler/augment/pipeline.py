"""A student's augmentation as a named pipeline: ``dsa``, ``rrc+flip+cutmix``, ``crop+flip``, ``none``.

Stages run left to right on a batch of normalised float images and their probability targets
(CutMix mixes both). One :class:`~sl_compiler.augment.rng.Draws` per step serves the whole
pipeline: each stage takes a fixed window of slots (:attr:`Augment.slots`), so a stage's numbers
never depend on what ran before it.
"""

from __future__ import annotations

import torch

from ..errors import RecipeError
from . import dsa as dsa_mod
from . import rrc as rrc_mod
from .cutmix import SLOTS as CUTMIX_SLOTS
from .cutmix import cutmix

STAGES = ("dsa", "rrc", "crop", "flip", "cutmix")


def parse(spec: str) -> tuple[str, ...]:
    """``"rrc+flip+cutmix"`` -> ("rrc", "flip", "cutmix"); ``"none"`` -> (); unknown or repeated stages are errors."""
    stages = tuple(s.strip() for s in str(spec).lower().split("+") if s.strip())
    if stages == ("none",):
        return ()
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages or len(set(stages)) != len(stages):
        raise RecipeError(f"augment {spec!r}", f"use none or stages from {', '.join(STAGES)} joined by + (each once), e.g. dsa or rrc+flip+cutmix")
    return stages


class Augment:
    """``augment(x, y, rng) -> (x, y)`` for a pipeline spec; ``y`` may be None (a teacher labels afterwards)."""

    def __init__(self, spec: str = "dsa", dsa_strategy: str = dsa_mod.DEFAULT_STRATEGY, dsa_mode: str = "single"):
        self.stages = parse(spec)
        self.spec = "+".join(self.stages) or "none"
        self.dsa = dsa_mod.DSA(dsa_strategy, dsa_mode) if "dsa" in self.stages else None
        self._params = dsa_mod.DSAParams()

    def _slots(self, stage: str) -> int:
        return {"dsa": self.dsa.slots if self.dsa else 0, "rrc": rrc_mod.SLOTS, "crop": 2, "flip": 1, "cutmix": CUTMIX_SLOTS}[stage]

    @property
    def slots(self) -> int:
        return sum(self._slots(s) for s in self.stages)

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None, rng) -> tuple[torch.Tensor, torch.Tensor | None]:
        for stage in self.stages:
            window = rng.reserve(self._slots(stage))
            if stage == "dsa":
                x = self.dsa(x, window)
            elif stage == "rrc":
                x = rrc_mod.random_resized_crop(x, window)
            elif stage == "crop":
                x = dsa_mod.crop(x, self._params, window)
            elif stage == "flip":
                x = dsa_mod.flip(x, self._params, window)
            else:
                x, y = cutmix(x, y, window)
        return x, y

    def describe(self) -> dict:
        out: dict = {"spec": self.spec}
        if self.dsa:
            out["dsa"] = self.dsa.describe()
        if "rrc" in self.stages:
            out["rrc"] = {"scale": list(rrc_mod.SCALE), "ratio": [round(r, 6) for r in rrc_mod.RATIO]}
        return out
