"""Loaders on real data: the shared JPEG CIFAR-10 tars and Debian's Fashion-MNIST (``pytest -m real``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from sl_compiler.data import encoded, load_dataset
from sl_compiler.data.decode import decode_image

pytestmark = pytest.mark.real

CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
FASHION = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slc-cache")


def test_cifar10_from_the_shared_tars(cache, monkeypatch, capsys):
    if not CIFAR10.is_dir():
        pytest.skip(f"no shared CIFAR-10 at {CIFAR10}")
    monkeypatch.setenv("SLC_CACHE", str(cache))
    start = time.perf_counter()
    train = load_dataset("cifar10", CIFAR10, "train")
    first = time.perf_counter() - start
    assert len(train) == 50_000 and train.classes == CIFAR10_CLASSES and train.shape == (3, 32, 32)
    assert torch.bincount(train.targets).tolist() == [5000] * 10
    assert train.source_id(0) == "train/airplane/0000.jpg" and train.encoded(0)[1] == "jpg"
    for i in (0, 12_345, 49_999):
        assert torch.equal(train.pixels[i], decode_image(train.encoded(i)[0], train.shape))

    with monkeypatch.context() as patch:
        patch.setattr(encoded, "decode_all", lambda *a, **k: pytest.fail("decoded although cached"))
        start = time.perf_counter()
        again = load_dataset("cifar10", CIFAR10, "train")
        cached = time.perf_counter() - start
        assert torch.equal(again.pixels, train.pixels) and cached < first
        # the same tar as an ImageFolder root, and as a single tar, shares the decoded cache
        for spec in (f"imagefolder:{CIFAR10}", f"imagefolder:{CIFAR10 / 'cifar10-train.tar'}"):
            assert torch.equal(load_dataset(spec, split="train").pixels, train.pixels)

    test = load_dataset("cifar10", CIFAR10, "test")
    assert len(test) == 10_000 and test.classes == CIFAR10_CLASSES
    assert torch.bincount(test.targets).tolist() == [1000] * 10
    with capsys.disabled():
        print(f"\nCIFAR-10 train: first load {first:.1f} s, cached load {cached:.2f} s")


def test_fashion_mnist_from_the_debian_package():
    if not FASHION.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    train, test = load_dataset("fashion_mnist", FASHION, "train"), load_dataset("fashion-mnist", None, "test")
    assert (len(train), len(test)) == (60_000, 10_000) and train.shape == (1, 28, 28)
    assert torch.bincount(train.targets).tolist() == [6000] * 10 and torch.bincount(test.targets).tolist() == [1000] * 10
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert abs(train.pixels.float().mean().item() / 255 - train.mean[0]) < 1e-3


def test_cifar10_found_by_its_location(cache, monkeypatch, tmp_path):
    """`slc data add cifar10 PATH` once; then no --data-root anywhere (the README's commands)."""
    if not CIFAR10.is_dir():
        pytest.skip(f"no shared CIFAR-10 at {CIFAR10}")
    from sl_compiler.data.locations import add_location

    monkeypatch.setenv("SLC_CACHE", str(cache))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    add_location("cifar10", CIFAR10)
    test = load_dataset("cifar10", split="test")
    assert len(test) == 10_000 and test.meta["root"] == str(CIFAR10.resolve()) and test.info()["preprocess"]["resize"] == 32
