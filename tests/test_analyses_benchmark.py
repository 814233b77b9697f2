"""benchmarks/analyses_cifar10.py end to end on a tiny synthetic stand-in: every analysis, the claims, the files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = "synthetic:classes=4,size=16,train=12,test=6"


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = script("analyses_cifar10")


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "slc-cache"))


def test_settings_cover_every_analysis():
    for settings in (bench.CPU, bench.QUICK):
        assert settings["dataset"] == "cifar10" and len(settings["expert_seeds"]) >= 2
        assert set(settings) >= {"swap", "zeroshot", "scaling", "temperature", "entropy", "classes"}
        assert len(settings["scaling"]["ipcs"]) >= 3  # the fit needs three IPCs of hard labels
        assert max(settings["swap"]["indices"]) <= 9 and max(settings["zeroshot"]["classes"]) <= 9


def test_benchmark_end_to_end_on_tiny_data(tmp_path, capsys):
    from sl_compiler.experts.train import train_trajectories

    store = tmp_path / "experts"
    train_trajectories(TINY, "convnet_d3", [0, 1], epochs=1, every=1, batch_size=16, store=store, device="cpu")
    settings = tmp_path / "tiny.json"
    settings.write_text(json.dumps({
        "mode": "test", "dataset": TINY, "data_root": None, "protocol": None, "student_epochs": 1, "eval_seeds": [0], "epoch": 1.0,
        "swap": {"ipcs": [1], "indices": [1]}, "zeroshot": {"ipcs": [1], "classes": [0]}, "scaling": {"ipcs": [1, 2], "ks": [4]},
        "temperature": {"ipcs": [1], "epochs": [1.0], "temperatures": [2.0]}, "entropy": {"ipcs": [1]}, "classes": {"ipcs": [1]},
    }))
    argv = ["--settings", str(settings), "--out", str(tmp_path / "w"), "--experts", str(store), "--results", str(tmp_path / "r"), "--device", "cpu"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "- swapping the top label hurts most: " in out and "wrote " in out
    result = json.loads((tmp_path / "r" / "analyses_cifar10.json").read_text())
    assert set(result["analyses"]) == {"swap", "zeroshot", "scaling", "temperature", "entropy", "classes"}
    assert [c["held"] for c in result["claims"]][-1] is None  # BPTT: not measured without --bptt
    assert all(isinstance(c["held"], (bool, type(None))) for c in result["claims"])
    for name in result["analyses"]:
        assert (tmp_path / "r" / f"analyses_cifar10-{name}.png").read_bytes()[:4] == b"\x89PNG"
    entropy = {c["epoch"]: c for c in result["analyses"]["entropy"]["cells"]}
    assert entropy[1.0]["student"] is not None and entropy[0.0]["student"] is None  # the ablations' control cell, read from the shared cache
    first = (tmp_path / "r" / "analyses_cifar10.json").read_text()
    bptt = next((tmp_path / "w" / "work" / "artifacts").iterdir())  # a compiled artifact stands in for learned labels
    assert bench.main([*argv, "--bptt", str(bptt)]) == 0
    again = json.loads((tmp_path / "r" / "analyses_cifar10.json").read_text())
    assert "jsd" in again["analyses"] and isinstance(again["claims"][-1]["held"], bool)
    assert {k: v for k, v in json.loads(first)["analyses"].items()} == {k: v for k, v in again["analyses"].items() if k != "jsd"}
