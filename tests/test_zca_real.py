"""ZCA on the shared CIFAR-10 (``pytest -m real``): the streamed fit of 50,000 images, its statistics and its cache."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from sl_compiler.data import load_dataset
from sl_compiler.data import zca as Z

pytestmark = pytest.mark.real

CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
MEAN = (0.4914, 0.4822, 0.4465)  # the per-channel training mean the distillation codebases use


def test_zca_fit_on_cifar10(tmp_path, monkeypatch, capsys):
    if not CIFAR10.is_dir():
        pytest.skip(f"no shared CIFAR-10 at {CIFAR10}")
    monkeypatch.setenv("SLC_CACHE", str(tmp_path))
    train = load_dataset("cifar10", CIFAR10, "train")
    start = time.perf_counter()
    zca = Z.zca_for(train)
    fitted = time.perf_counter() - start
    assert zca.mean.shape == (3072,) and zca.transform.shape == (3072, 3072)
    per_channel = zca.mean.view(3, -1).mean(1)
    assert torch.allclose(per_channel, torch.tensor(MEAN), atol=1e-3)  # the JPEG copy's means agree to 1e-3
    assert (zca.transform - zca.transform.T).abs().max() <= 1e-5 * zca.transform.abs().max()
    s = zca.eigenvalues
    assert bool((s >= 0).all()) and float(s.max()) > 0.1  # the first components carry most of the variance
    # the whitened training images have covariance U diag(S / (S + eps)) U^T: its trace is sum S / (S + eps)
    x = train.pixels[:: 10].reshape(-1, 3072).double() / 255  # every tenth image: a 5,000-image estimate
    w = (x - zca.mean.double()) @ zca.transform.double()
    trace = float(w.var(0).sum())
    expected = float((s / (s + zca.eps)).sum())
    assert abs(trace - expected) <= 0.05 * expected
    start = time.perf_counter()
    again = Z.zca_for(train)
    cached = time.perf_counter() - start
    assert again.sha256 == zca.sha256 and cached < fitted
    with capsys.disabled():
        print(f"\nZCA fit of CIFAR-10 train (50,000 x 3,072, float64): {fitted:.1f} s; from the cache: {cached:.2f} s; trace of the whitened covariance {trace:.1f} (expected {expected:.1f})")
