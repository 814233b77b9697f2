"""Dataset locations: named once (slc data add, SLC_DATA_<NAME>, SLC_DATA), found by every command and library call."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from sl_compiler.data import load_dataset, locations
from sl_compiler.data.fake import FakeSpec, write_fake
from sl_compiler.data.registry import lookup
from sl_compiler.errors import DataError
from sl_compiler.tomlfile import tomllib

IMAGENET = lookup("imagenet")[0]


@pytest.fixture
def config(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "xdg" / "slc" / "datasets.toml"


@pytest.fixture
def roots(tmp_path) -> dict[str, Path]:
    """Five fake ImageNets told apart by their number of classes."""
    return {w: write_fake(tmp_path / w, "imagefolder", FakeSpec(classes=k, per_class=1, val_per_class=1, min_size=16, max_size=20)) for k, w in enumerate(["flag", "specific", "shared", "file", "system"], 2)}


def test_config_path_follows_xdg_and_defaults_to_dot_config(config, monkeypatch, tmp_path):
    assert locations.config_path() == config
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert locations.config_path() == tmp_path / "home" / ".config" / "slc" / "datasets.toml"


def test_add_list_remove(config, roots, monkeypatch):
    monkeypatch.chdir(roots["file"].parent)
    name, path = locations.add_location("ImageNet", "file")  # names normalise, paths are stored absolute
    assert (name, path) == ("imagenet", roots["file"].resolve())
    locations.add_location("fashion-mnist", roots["shared"])
    assert tomllib.loads(config.read_text()) == {"datasets": {"fashion_mnist": str(roots["shared"].resolve()), "imagenet": str(roots["file"].resolve())}}
    rows = {r["name"]: r for r in locations.summary()}
    assert rows["imagenet"]["exists"] and rows["imagenet"]["origin"] == str(config) and rows["imagenet"]["layout"] == "ImageNet (train: class folders; val: class folders)"
    assert rows["fashion_mnist"]["layout"] is None and rows["cifar10"]["path"] is None
    assert locations.remove_location("imagenet") == str(roots["file"].resolve())
    assert list(tomllib.loads(config.read_text())["datasets"]) == ["fashion_mnist"]
    with pytest.raises(DataError, match="no location is recorded for 'imagenet'.*recorded: fashion_mnist"):
        locations.remove_location("imagenet")
    with pytest.raises(DataError, match="'imagefolder' is not a dataset with a location"):
        locations.add_location("imagefolder", roots["file"])
    with pytest.raises(DataError, match="does not exist"):
        locations.add_location("cifar10", roots["file"] / "nope")


def test_the_config_is_written_atomically(config, roots, monkeypatch):
    locations.add_location("imagenet", roots["file"])
    before = config.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        locations.add_location("cifar10", roots["flag"])
    assert config.read_bytes() == before and sorted(p.name for p in config.parent.iterdir()) == ["datasets.toml"]


def test_precedence_flag_then_env_then_config_then_system(config, roots, monkeypatch):
    entry = dataclasses.replace(IMAGENET, default_root=str(roots["system"]))
    where = lambda root=None: (locations.locate(entry, root).path, locations.locate(entry, root).origin)  # noqa: E731
    assert where() == (roots["system"], "system default")
    locations.add_location("imagenet", roots["file"])
    assert where() == (roots["file"].resolve(), str(config))
    monkeypatch.setenv("SLC_DATA", f"cifar10=/x, imagenet={roots['shared']}")
    assert where() == (roots["shared"], "SLC_DATA")
    monkeypatch.setenv("SLC_DATA_IMAGENET", str(roots["specific"]))
    assert where() == (roots["specific"], "SLC_DATA_IMAGENET")
    assert where(roots["flag"]) == (roots["flag"], "--data-root")


def test_every_loader_call_finds_the_location(config, roots, monkeypatch):
    classes = lambda: load_dataset("imagenet", split="test", resolution=16).num_classes  # noqa: E731
    locations.add_location("imagenet", roots["file"])
    assert classes() == 5
    monkeypatch.setenv("SLC_DATA", f"imagenet={roots['shared']}")
    assert classes() == 4
    monkeypatch.setenv("SLC_DATA_IMAGENET", str(roots["specific"]))
    assert classes() == 3
    assert load_dataset("imagenet", roots["flag"], "test", resolution=16).num_classes == 2


def test_errors_name_every_way_to_give_a_location(config, monkeypatch, tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("cifar10")
    message = str(info.value)
    for way in ("needs --data-root", "--data-root PATH", "slc data add cifar10 PATH", "SLC_DATA_CIFAR10=PATH", "SLC_DATA=cifar10=PATH"):
        assert way in message
    monkeypatch.setenv("SLC_DATA_CIFAR10", str(tmp_path / "gone"))
    with pytest.raises(DataError, match=r"data root .*gone \(from SLC_DATA_CIFAR10\) does not exist"):
        load_dataset("cifar10")
    monkeypatch.setenv("SLC_DATA", "cifar10")
    monkeypatch.delenv("SLC_DATA_CIFAR10")
    with pytest.raises(DataError, match="SLC_DATA='cifar10': 'cifar10' is not name=PATH"):
        load_dataset("cifar10")
    monkeypatch.delenv("SLC_DATA")
    config.parent.mkdir(parents=True)
    config.write_text("[datasets\n")
    with pytest.raises(DataError, match="is not valid TOML"):
        load_dataset("cifar10")


def test_cli_data_add_list_remove(config, roots, capsys):
    from cli.main import main

    assert main(["data", "add", "imagenet", str(roots["file"])]) == 0
    assert "imagenet -> " in capsys.readouterr().out
    assert main(["data", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["imagenet"]["path"] == str(roots["file"].resolve()) and rows["imagenet"]["exists"]
    assert main(["data", "list"]) == 0
    assert "ImageNet (train: class folders; val: class folders)" in capsys.readouterr().out
    assert main(["data", "remove", "imagenet"]) == 0
    assert main(["data", "remove", "imagenet"]) == 2
    assert main(["data", "add", "nosuch", str(roots["file"])]) == 2
    assert "error: 'nosuch' is not a dataset with a location" in capsys.readouterr().err


def test_evaluate_finds_the_test_split_with_no_flags(config, tmp_path, capsys):
    """The README's `slc evaluate ARTIFACT` after `slc data add`: compile and evaluate name no root."""
    from cli.main import main
    from sl_compiler.compile import compile_artifact
    from sl_compiler.experts import ExpertStore
    from sl_compiler.models import create_model
    from sl_compiler.recipe import Recipe

    root = write_fake(tmp_path / "c10", "imagefolder", FakeSpec(classes=10, per_class=2, val_per_class=1, min_size=32, max_size=32))
    assert main(["data", "add", "cifar10", str(root)]) == 0
    train = load_dataset("cifar10", split="train")
    store = ExpertStore(tmp_path / "experts")
    store.add_checkpoint(create_model("convnet_d3", 10, 3, 32).state_dict(), dataset_info=train.info(), arch="convnet_d3", epoch=1, seed=0)
    art = compile_artifact(Recipe(dataset="cifar10", ipc=1, teacher="convnet_d3@1#0"), experts=store.root, device="cpu", out=tmp_path / "art")
    argv = ["evaluate", str(art), "--epochs", "1", "--seeds", "0", "--regime", "sl", "--baselines", "none", "--batch-size", "8", "--sequential", "--device", "cpu", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["artifacts"][0]["dataset"] == "cifar10"
    assert main(["data", "remove", "cifar10"]) == 0
    capsys.readouterr()
    assert main(argv) == 2
    assert "slc data add cifar10 PATH" in capsys.readouterr().err


@pytest.mark.parametrize("layout,found", [
    ("ilsvrc-tars", "ImageNet (train: ILSVRC2012_img_train.tar; val: ILSVRC2012_img_val.tar + devkit)"),
    ("flat-val-devkit", "ImageNet (train: class folders; val: flat val/ + devkit)"),
    ("kaggle", "ImageNet (train: Kaggle CLS-LOC; val: Kaggle CLS-LOC + LOC_val_solution.csv)"),
    ("wds", "WebDataset shards (train: 1, validation: 1)"),
    ("parquet", "parquet shards (train: 1, test: 1, validation: 1)"),
])
def test_list_names_the_layout_found(config, tmp_path, layout, found):
    root = write_fake(tmp_path / layout, layout, FakeSpec(classes=2, per_class=1, val_per_class=1, min_size=16, max_size=20))
    locations.add_location("imagenet", root)
    assert {r["name"]: r for r in locations.summary()}["imagenet"]["layout"] == found
