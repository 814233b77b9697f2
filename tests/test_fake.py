"""The fake ImageNet generator: every layout, the same images and labels in each, byte-identical per seed."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import pytest
import torch

from sl_compiler.data import load_dataset
from sl_compiler.data import fake as fake_mod
from sl_compiler.data.fake import LAYOUTS, FakeSpec, Images, write_fake
from sl_compiler.errors import DataError

SPEC = FakeSpec(classes=4, per_class=3, val_per_class=2, min_size=20, max_size=40, seed=3)


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def expected(spec: FakeSpec, split: int) -> Counter:
    img = Images(spec)
    per = spec.per_class if split == 0 else spec.val_per_class
    return Counter((k, hashlib.sha256(img.jpeg(k, i, split)).hexdigest()) for k in range(spec.classes) for i in range(per))


def loaded(images) -> Counter:
    return Counter((int(images.targets[i]), hashlib.sha256(images.encoded(i)[0]).hexdigest()) for i in range(len(images)))


@pytest.fixture(scope="module")
def fakes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fakes")
    return {layout: write_fake(root / layout, layout, SPEC) for layout in LAYOUTS}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_holds_the_same_images_with_the_right_labels(fakes, layout, tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))
    name = "tinyimagenet" if layout.startswith("tinyimagenet") else "imagenet"
    train, test = (load_dataset(name, fakes[layout], split, in_memory=False) for split in ("train", "test"))
    # the labels come through each layout's own route (class folders, ground truth + meta.mat, CSV, .cls, parquet)
    assert loaded(train) == expected(SPEC, 0) and loaded(test) == expected(SPEC, 1)
    if layout != "parquet":  # the Hub's parquet names classes by their words
        assert train.classes == fake_mod.wnids(4) == test.classes
    assert train.shape == test.shape == ((3, 224, 224) if name == "imagenet" else (3, 64, 64))


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    for layout in LAYOUTS:
        a, b = write_fake(tmp_path / f"a-{layout}", layout, SPEC), write_fake(tmp_path / f"b-{layout}", layout, SPEC)
        assert tree_digest(a) == tree_digest(b), layout
    other = write_fake(tmp_path / "other", "imagefolder", FakeSpec(**{**SPEC.__dict__, "seed": 4}))
    assert set(tree_digest(other).values()).isdisjoint(v for k, v in tree_digest(tmp_path / "a-imagefolder").items() if k.endswith(".JPEG"))


def test_sizes_vary_within_bounds_and_classes_are_learnable(tmp_path):
    spec = FakeSpec(classes=6, per_class=6, val_per_class=4, min_size=24, max_size=60, seed=0)
    root = write_fake(tmp_path / "f", "imagefolder", spec)
    from PIL import Image

    sizes = {Image.open(p).size for p in root.rglob("*.JPEG")}
    assert len(sizes) > 20 and all(24 <= s <= 60 for wh in sizes for s in wh) and any(w != h for w, h in sizes)
    train = load_dataset(f"imagefolder:{root}", split="train", resolution=24)
    test = load_dataset(f"imagefolder:{root}", split="test", resolution=24)
    # nearest class mean of the mean colour: far above chance (1/6) on held-out images
    colour = lambda s: s.pixels.float().mean((2, 3))  # noqa: E731
    centres = torch.stack([colour(train)[train.targets == k].mean(0) for k in range(6)])
    guess = torch.cdist(colour(test), centres).argmin(1)
    assert (guess == test.targets).float().mean() >= 0.9


def test_out_is_refused_unless_forced_and_never_half_written(tmp_path, monkeypatch):
    out = write_fake(tmp_path / "f", "imagefolder", SPEC)
    with pytest.raises(DataError, match="already exists"):
        write_fake(out, "imagefolder", SPEC)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fake_mod.Images, "jpeg", boom)
    with pytest.raises(KeyboardInterrupt):
        write_fake(tmp_path / "g", "wds", SPEC)
    assert sorted(os.listdir(tmp_path)) == ["f"]  # no g, no temporary folder
    with pytest.raises(KeyboardInterrupt):
        write_fake(out, "kaggle", SPEC, force=True)
    assert (out / "train").is_dir()  # the old one is kept when the new one fails


@pytest.mark.parametrize("bad", [dict(classes=0), dict(min_size=50, max_size=40), dict(val_per_class=0)])
def test_bad_specs_are_clear_errors(tmp_path, bad):
    with pytest.raises(DataError):
        write_fake(tmp_path / "x", "imagefolder", FakeSpec(**{**SPEC.__dict__, **bad}))
    with pytest.raises(DataError, match="unknown fake layout"):
        write_fake(tmp_path / "x", "zip", SPEC)
    assert not (tmp_path / "x").exists()


def test_cli_fake(tmp_path):
    from cli.main import main

    out = tmp_path / "cli"
    assert main(["data", "fake", "--layout", "ilsvrc-tars", "--classes", "3", "--per-class", "2", "--val-per-class", "1", "--min-size", "16", "--max-size", "24", "--seed", "3", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["FAKE.json", "ILSVRC2012_devkit_t12.tar.gz", "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"]
    assert main(["data", "fake", "--layout", "ilsvrc-tars", "--out", str(out)]) == 2


def test_imagenet_as_folders_tars_or_kaggle_is_one_dataset(fakes, tmp_path, monkeypatch):
    """Same images, order and fingerprint: an expert trained on one copy labels the others."""
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))
    sets = [load_dataset("imagenet", fakes[layout], "train", in_memory=False) for layout in ("imagefolder", "ilsvrc-tars", "kaggle", "flat-val-devkit", "imagefolder-tar")]
    assert len({s.fingerprint() for s in sets}) == 1
    first = sets[0]
    for s in sets[1:]:
        assert torch.equal(s.targets, first.targets) and [s.encoded(i)[0] for i in range(len(s))] == [first.encoded(i)[0] for i in range(len(first))]
