"""slc sweep --predict: the ranking rule's properties, exact rank statistics, no student trained, errors."""

from __future__ import annotations

import json
import math

import pytest

from cli.main import main as slc
from sl_compiler import predict as predict_mod
from sl_compiler import sweep as sweep_mod
from sl_compiler.predict import compare, predict, progress, rank_epochs, spearman, target_fraction
from sl_compiler.sweep import SweepSpec, run_sweep

TINY = "synthetic:classes=4,size=16,train=12,test=6"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two tiny expert trajectories (seeds 0 and 1) with checkpoints at epochs 0, 1 and 2."""
    from sl_compiler.experts.train import train_trajectories

    root = tmp_path_factory.mktemp("experts")
    train_trajectories(TINY, "convnet_d3", [0, 1], epochs=2, every=1, batch_size=16, store=root, device="cpu")
    return str(root)


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "slc-cache"))


@pytest.fixture
def no_students(monkeypatch):
    """Any student training is an error: --predict must train none."""

    def refuse(*args, **kwargs):
        raise AssertionError("a student was trained")

    from sl_compiler.evaluate import trainer

    monkeypatch.setattr(trainer.StudentTrainer, "__init__", refuse)
    monkeypatch.setattr(sweep_mod, "evaluate_scores", refuse)


def spec(store, **changes) -> SweepSpec:
    base = dict(dataset=TINY, teacher_arch="convnet_d3", ipcs=(1, 2), epochs=None, eval_seeds=(0,), student_epochs=2, experts=store, device="cpu")
    return SweepSpec(**{**base, **changes})


FITS = {0.0: 10.0, 0.5: 22.0, 1.0: 40.0, 2.0: 58.0, 4.0: 71.0, 8.0: 80.0, 16.0: 86.0, 32.0: 88.0}  # a growing fit, 10 classes


def test_rule_picks_the_earliest_epoch_reaching_the_target_later_for_larger_ipc():
    p = progress(FITS, 10)
    assert p[0.0] == 0.0 and p[32.0] == 1.0  # chance-corrected, relative to the best swept epoch
    picked = []
    for ipc in (1, 2, 5, 10, 20, 50, 100, 1000):
        ranked = rank_epochs(p, ipc)
        assert sorted(ranked) == sorted(FITS)  # a ranking of every epoch
        reached = [e for e in sorted(p) if p[e] >= target_fraction(ipc)]
        assert ranked[0] == reached[0]  # the earliest epoch whose progress reaches X(ipc)
        assert ranked[: len(reached)] == reached  # those that reach it, earliest first
        rest = ranked[len(reached):]
        assert [p[e] for e in rest] == sorted((p[e] for e in rest), reverse=True)  # then the rest, nearest the target first
        picked.append(ranked[0])
    assert picked == sorted(picked) and picked[0] < picked[-1]  # more images per class, a later (more trained) teacher
    assert [target_fraction(i) for i in (1, 10, 100)] == sorted(target_fraction(i) for i in (1, 10, 100)) and target_fraction(1) == 0.5
    assert progress({0.0: 25.0, 1.0: 25.0}, 4) == {0.0: 0.0, 1.0: 0.0}  # no epoch beats chance: no progress, and no division by zero
    assert rank_epochs({0.0: 0.0, 1.0: 0.0}, 1) == [0.0, 1.0]  # then the earlier epoch first
    dipping = progress({0.0: 10.0, 1.0: 80.0, 2.0: 75.0, 3.0: 90.0}, 10)  # the fit falls back after epoch 1
    assert rank_epochs(dipping, 1) == [1.0, 2.0, 3.0, 0.0] and rank_epochs(dipping, 100)[0] == 3.0


def test_spearman_and_accuracy_lost_on_a_hand_built_example():
    # predicted order 2, 3, 1, 0; measured 10, 30, 25, 40 %: d^2 = 0 + 1 + 4 + 1, rho = 1 - 6 * 6 / (4 * 15)
    c = compare([2.0, 3.0, 1.0, 0.0], {0.0: 10.0, 1.0: 30.0, 2.0: 25.0, 3.0: 40.0})
    assert c == {"spearman": pytest.approx(0.4, abs=1e-12), "lost": 15.0, "predicted": 2.0, "measured_best": 3.0, "epochs": 4}
    # ties take their average rank: ranks (2, 1, 3) against (1.5, 1.5, 3) give sqrt(3) / 2
    assert spearman([2, 1, 3], [1.5, 1.5, 3]) == pytest.approx(math.sqrt(3) / 2, abs=1e-12)
    tied = compare([2.0, 0.0, 1.0], {0.0: 10.0, 1.0: 10.0, 2.0: 20.0})
    assert tied["spearman"] == pytest.approx(math.sqrt(3) / 2, abs=1e-12) and tied["lost"] == 0.0
    assert compare([0.0, 1.0], {0.0: 5.0, 1.0: 9.0}) == {"spearman": -1.0, "lost": 4.0, "predicted": 0.0, "measured_best": 1.0, "epochs": 2}
    assert compare([0.0, 1.0, 5.0], {1.0: 3.0, 2.0: 4.0}) is None  # under 2 shared epochs: nothing to correlate
    assert spearman([1, 2, 3], [7, 7, 7]) is None  # a constant side has no order


def test_predict_trains_no_student_and_compares_with_a_finished_sweep(store, tmp_path, monkeypatch, no_students):
    drawn = []
    real = predict_mod.held_out_slice
    monkeypatch.setattr(predict_mod, "held_out_slice", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    out = tmp_path / "s"
    result = predict(spec(store), out)
    assert sorted(result.stats) == [1, 2] and all(sorted(by) == [0.0, 1.0, 2.0] for by in result.stats.values())
    for ipc, by in result.stats.items():
        p = {e: s["progress"] for e, s in by.items()}
        assert result.ranked[ipc] == rank_epochs(p, ipc)  # the documented rule, on the measured statistics
        assert all(0.0 <= s["entropy"] <= 1.0 + 1e-6 and 0.0 <= s["jsd"] <= 1.0 and 0.0 <= s["fit"] <= 100.0 for s in by.values())
    # the one slice the teachers are scored on holds none of any IPC's selected images
    from sl_compiler.artifact import load

    [held] = drawn
    for path in (out / "artifacts").iterdir():
        assert not set(load(path).manifest["selection"]["source_indices"]) & set(held.tolist())
    data = json.loads((out / "predict.json").read_text())
    assert data["kind"] == "slc-sweep-predict/1" and data["holdout"] == {"fraction": 0.1, "seed": 0, "size": len(held)}
    assert data["ipc"]["1"]["predicted_epoch"] == result.ranked[1][0] and data["ipc"]["1"]["comparison"] is None
    assert (out / "predict.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "No finished sweep" in (out / "predict.md").read_text()

    # a finished sweep (its students faked: none is trained here) whose held-out order is the predicted order reversed
    measured = {ipc: {e: 10.0 + 10 * i for i, e in enumerate(result.ranked[ipc])} for ipc in (1, 2)}  # predicted best measured worst
    monkeypatch.setattr(sweep_mod, "evaluate_scores", lambda art, *a, **k: sweep_mod.Scores(
        [50.0], [measured[art.ipc][float(art.manifest["teachers"][0]["epoch"])]], 4))
    run_sweep(spec(store), out)
    again = predict(spec(store), out)
    for ipc in (1, 2):
        assert again.comparison[ipc]["holdout"] == {"spearman": pytest.approx(-1.0), "lost": 20.0, "predicted": result.ranked[ipc][0],
                                                     "measured_best": result.ranked[ipc][-1], "epochs": 3}
        assert again.comparison[ipc]["test"]["spearman"] is None and again.comparison[ipc]["test"]["lost"] == 0.0  # test is flat
    assert "| 1 | held-out | -1.00 |" in (out / "predict.md").read_text()
    before = (out / "predict.json").read_bytes()
    predict(spec(store), out)
    assert (out / "predict.json").read_bytes() == before  # same inputs, same bytes
    other = predict(spec(store, seeds=(0, 1)), out)
    assert not other.comparison and any("another seeds" in n for n in other.notes)


def test_cli_predict_and_its_errors(store, tmp_path, capsys, no_students):
    base = ["sweep", "--dataset", TINY, "--teacher-arch", "convnet_d3", "--experts", store, "--device", "cpu", "--predict"]
    assert slc([*base, "--ipc", "1", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "| expert epoch | rank | fit (%) | progress | entropy | jsd |" in out and "no student trained" in out
    # 12 training images per class: IPC 12 leaves none to hold out
    assert slc([*base, "--ipc", "1,12", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no training images are left for a held-out slice at IPC 12") and "--predict needs the slice" in err and "\n" not in err.split("fix:")[0].strip()
    assert slc([*base, "--ipc", "1", "--out", str(tmp_path / "u"), "--write-recipes", str(tmp_path / "r")]) == 2
    assert "--write-recipes needs measured students" in capsys.readouterr().err



def test_fit_of_whitened_teachers_is_measured_on_whitened_inputs(tmp_path, monkeypatch, no_students):
    """A ZCA expert is scored on zca(pixels / 255), as compile labels with it: its fit is compile's own ensemble's accuracy on the slice."""
    from sl_compiler.data.zca import zca_for
    from sl_compiler.experts import default_store, resolve
    from sl_compiler.experts.recipe import ExpertRecipe
    from sl_compiler.experts.train import train_trajectories
    from sl_compiler.label import teacher_logits

    root = str(tmp_path / "experts")
    data = "synthetic:classes=4,size=16,train=40,test=6"
    train_trajectories(data, "convnet_d3", [0], recipe=ExpertRecipe(zca=True, augment="none"), epochs=1, every=1, batch_size=16, store=root, device="cpu")
    drawn = []
    real = predict_mod.held_out_slice
    monkeypatch.setattr(predict_mod, "held_out_slice", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    result = predict(spec(root, dataset=data, ipcs=(1,), seeds=(0,)), tmp_path / "s")
    train, [held] = sweep_mod.train_split(spec(root, dataset=data)), drawn
    for epoch in (0.0, 1.0):
        teachers = resolve(f"convnet_d3@{epoch:g}#0", default_store(root), train.info())
        logits = teacher_logits(teachers, train.pixels[held], (0.0,) * 3, (1.0,) * 3, "cpu", zca=zca_for(train, 0.1))
        expected = 100.0 * float((logits.argmax(1) == train.targets[held]).double().mean())
        assert len(held) == 16 and result.stats[1][epoch]["fit"] == pytest.approx(expected, abs=1e-9)
