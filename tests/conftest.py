"""Shared fixtures: tiny synthetic data, quiet progress bars, CPU threads kept small."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("SLC_PROGRESS", "0")

# a tiny dataset every module can use: 4 classes of 16 px, 12 train and 6 test images per class
TINY = "synthetic:classes=4,size=16,train=12,test=6"


@pytest.fixture
def tiny_spec() -> str:
    return TINY


def pytest_configure(config):
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def no_user_dataset_locations(tmp_path_factory, monkeypatch):
    """Tests never see the developer's `slc data add` config or SLC_DATA* variables."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    for name in [n for n in os.environ if n == "SLC_DATA" or n.startswith("SLC_DATA_")]:
        monkeypatch.delenv(name)
