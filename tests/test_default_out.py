"""compile's default --out names the recipe: recipes that differ never share a folder."""

from __future__ import annotations

from pathlib import Path

from sl_compiler.compile import default_out
from sl_compiler.recipe import Recipe

BASE = dict(dataset="synthetic:classes=4,size=16", ipc=2, teacher="convnet_d3@1", name="tiny")


def test_default_out_differs_whenever_the_recipe_does():
    base = Recipe(**BASE)
    out = default_out(base)
    assert out.parent == Path("artifacts") and out.name.startswith("tiny-1.0.0-") and len(out.name) == len("tiny-1.0.0-") + 8
    assert default_out(Recipe(**BASE)) == out  # the same recipe, the same folder
    assert default_out(base.replace(data_root="/data/elsewhere")) == out  # where the data lives is not part of the recipe
    variants = [
        base.replace(seed=1),
        base.replace(temperature=2.0),
        base.replace(topk=2),
        base.replace(views=3, augment="cutmix"),
        base.replace(views=3, augment="rrc"),
        base.replace(select="ce-quantile", quantile=3),
        base.replace(teacher="convnet_d3@2"),
        base.replace(ipc=3),
    ]
    names = {default_out(r).name for r in variants}
    assert len(names) == len(variants) and out.name not in names
    assert all(n.startswith("tiny-1.0.0-") for n in names)
