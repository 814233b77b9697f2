"""The shipped recipes are found from a checkout and from a wheel's data files."""

from __future__ import annotations

import sys

from sl_compiler import resources
from sl_compiler.evaluate.protocol import RECIPES as EVAL_RECIPES
from sl_compiler.experts.recipe import RECIPES as EXPERT_RECIPES


def test_a_checkout_reads_its_own_recipes():
    assert EVAL_RECIPES == resources.SOURCE_RECIPES / "eval" and (EVAL_RECIPES / "cifar10.toml").is_file()
    assert EXPERT_RECIPES == resources.SOURCE_RECIPES / "experts" and (EXPERT_RECIPES / "cifar10-convnet_d3.toml").is_file()


def test_an_installed_wheel_reads_the_data_files(tmp_path, monkeypatch):
    installed = tmp_path / "prefix" / "share" / "slc" / "recipes" / "eval"
    installed.mkdir(parents=True)
    monkeypatch.setattr(resources, "SOURCE_RECIPES", tmp_path / "site-packages" / "recipes")  # a wheel has no checkout
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    assert resources.recipes_dir("eval") == installed
    # neither: the checkout's path, so that errors name where a user would look
    assert resources.recipes_dir("experts") == tmp_path / "site-packages" / "recipes" / "experts"


def test_every_shipped_recipe_folder_is_in_the_wheel_data_files():
    from sl_compiler.tomlfile import tomllib

    pyproject = tomllib.loads((resources.SOURCE_RECIPES.parent / "pyproject.toml").read_text())
    data_files = pyproject["tool"]["setuptools"]["data-files"]
    shipped = {p.name for p in resources.SOURCE_RECIPES.iterdir() if p.is_dir()}
    assert {key.rsplit("/", 1)[-1] for key in data_files} == shipped
    assert all(data_files[f"share/slc/recipes/{name}"] == [f"recipes/{name}/*.toml"] for name in shipped)
