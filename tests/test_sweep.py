"""slc sweep: the grid, its two caches, the reports and --write-recipes, on a tiny synthetic set."""

from __future__ import annotations

import json
import math

import pytest

from cli.main import main as slc
from sl_compiler import sweep as sweep_mod
from sl_compiler.errors import ExpertError, RecipeError
from sl_compiler.sweep import Cell, SweepResult, SweepSpec, run_sweep

TINY = "synthetic:classes=4,size=16,train=12,test=6"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two tiny expert trajectories (seeds 0 and 1) with checkpoints at epochs 0 and 1."""
    from sl_compiler.experts.train import train_trajectories

    root = tmp_path_factory.mktemp("experts")
    train_trajectories(TINY, "convnet_d3", [0, 1], epochs=1, every=1, batch_size=16, store=root, device="cpu")
    return str(root)


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "slc-cache"))


@pytest.fixture
def evaluations(monkeypatch):
    """Counts the student evaluations the sweep really runs (cache misses)."""
    calls = []
    real = sweep_mod.evaluate_scores

    def counted(artifact, protocol, device, data_root=None, holdout=False):
        calls.append(artifact.content_hash)
        return real(artifact, protocol, device, data_root, holdout)

    monkeypatch.setattr(sweep_mod, "evaluate_scores", counted)
    return calls


def spec(store, **changes) -> SweepSpec:
    base = dict(dataset=TINY, teacher_arch="convnet_d3", ipcs=(1,), epochs=(0.0, 1.0), eval_seeds=(0,), student_epochs=2, experts=store, device="cpu")
    return SweepSpec(**{**base, **changes})


def cell(ipc, epoch, mean, std=1.0, holdout=None):
    """A measured cell; its held-out accuracy is ``holdout`` (default: the test mean), math.nan for not measured."""
    held = mean if holdout is None else holdout
    return Cell(ipc=ipc, epoch=epoch, teacher=f"convnet_d3@{epoch}#0", recipe={}, mean=mean, std=std, accuracies=[mean],
                holdout_mean=held, holdout_std=std, holdout_accuracies=[] if math.isnan(held) else [held], holdout_size=None if math.isnan(held) else 4)


def result(cells, select_on="holdout") -> SweepResult:
    fake = SweepSpec(dataset=TINY, teacher_arch="convnet_d3", ipcs=tuple(sorted({c.ipc for c in cells})), select_on=select_on)
    protocol = {"name": "p", "seeds": [0, 1], "holdout_fraction": 0.1, "baseline_seed": 0}
    return SweepResult(spec=fake, protocol=protocol, protocol_hash="abc", cells=cells)


def test_best_epoch_and_pareto_frontier():
    r = result([cell(1, 0.5, 20.0), cell(1, 1.0, 25.0), cell(1, 2.0, 25.0), cell(10, 0.5, 24.0), cell(10, 2.0, 22.0), cell(50, 1.0, 40.0)])
    best = r.best()
    assert {ipc: c.epoch for ipc, c in best.items()} == {1: 1.0, 10: 0.5, 50: 1.0}  # a tie keeps the earlier epoch
    # IPC 10's best (24 %) does not beat IPC 1's 25 % with more images: it is dominated
    assert [(c.ipc, c.mean) for c in r.pareto()] == [(1, 25.0), (50, 40.0)]


def test_markdown_marks_the_best_and_lists_frontier():
    nan = math.nan
    text = result([cell(1, 0.5, 20.0, holdout=nan), cell(1, 1.0, 25.0, holdout=nan), cell(10, 0.5, 30.0, holdout=nan)], select_on="test").to_markdown()
    assert "| 0.5 | 20.0 ± 1.0 | **30.0 ± 1.0** |" in text  # no held-out scores (an old cache): one column per IPC
    assert "| 1 | **25.0 ± 1.0** |  |" in text  # a missing cell stays empty
    assert "IPC 1: 1 (25.0 %), IPC 10: 0.5 (30.0 %)" in text
    assert "Pareto frontier (IPC, test accuracy): (1, 25.0 %), (10, 30.0 %)" in text
    both = result([cell(1, 0.5, 20.0, holdout=31.0), cell(1, 1.0, 25.0, holdout=30.0), cell(10, 0.5, 30.0)]).to_markdown()
    assert "| expert epoch | IPC 1 held-out | IPC 1 test | IPC 10 held-out | IPC 10 test |" in both
    assert "| 0.5 | **31.0 ± 1.0** | **20.0 ± 1.0** | **30.0 ± 1.0** | **30.0 ± 1.0** |" in both
    assert "held-out slice of the training split (fraction 0.1 of the smallest class, seed 0: 4 images at IPC 1, 4 images at IPC 10)" in both
    assert "On test (the paper's way) it would be: IPC 1: 1 (held-out 30.0 %, test 25.0 %)" in both


def test_one_evaluation_seed_shows_no_spread(tmp_path):
    from sl_compiler.sweep import mean_std

    assert mean_std([40.0]) == (40.0, None) and mean_std([40.0, 42.0]) == (41.0, 1.0)
    r = result([cell(1, 0.5, 20.0, std=None), cell(1, 1.0, 25.0, std=None)])
    text = r.to_markdown()
    assert "| 0.5 | 20.0 ± n/a |" in text and "± 0.0" not in text
    assert r.to_json()["cells"][0]["std"] is None
    assert r.write(tmp_path)["plot"].stat().st_size > 0  # a point without a spread draws without an error bar


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"ipcs": ()}, "bad IPC list"),
        ({"ipcs": (0, 10)}, "bad IPC list"),
        ({"ipcs": (1, 1)}, "repeats"),
        ({"epochs": (-1.0,)}, "bad expert epoch"),
        ({"epochs": (math.nan,)}, "bad expert epoch"),
        ({"seeds": ()}, "no expert seeds"),
        ({"student_epochs": 0}, "student epoch"),
    ],
)
def test_bad_spec_is_a_recipe_error(changes, words):
    with pytest.raises(RecipeError, match=words):
        spec("unused", **changes)


def test_all_epochs_are_the_checkpoints_every_seed_holds(store):
    assert sweep_mod.expert_epochs(spec(store, epochs=None, seeds=(0, 1))) == [0.0, 1.0]
    assert sweep_mod.expert_epochs(spec(store, epochs=(1.0, 0.0))) == [0.0, 1.0]


def test_unknown_epoch_lists_what_the_store_holds(store, tmp_path):
    with pytest.raises(ExpertError, match=r"epoch 7 .* the store has epochs 0, 1"):
        run_sweep(spec(store, epochs=(7.0,)), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written before the grid is known to be valid


def test_sweep_reports_caches_and_extends(store, tmp_path, evaluations):
    out = tmp_path / "sweep"
    first = run_sweep(spec(store), out)
    assert first.counts == {"cached": 0, "computed": 2} and len(evaluations) == 2
    for name in ("sweep.md", "sweep.json", "sweep.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "sweep.json").read_text())
    assert data["kind"] == "slc-sweep/1"  # what slc report reads it by
    assert [(c["ipc"], c["epoch"]) for c in data["cells"]] == [(1, 0.0), (1, 1.0)]
    assert all(len(c["accuracies"]) == 1 and 0 <= c["mean"] <= 100 for c in data["cells"])
    assert data["protocol"]["epochs"] == 2 and data["protocol"]["regimes"] == ["sl"] and data["protocol"]["baselines"] == []
    assert set(data["best"]) == {"1"} and data["pareto"][0]["ipc"] == 1
    cache_files = sorted(p.name for p in (out / "cache").glob("*.json"))
    assert cache_files == sorted(f"{c['content_hash']}-{data['protocol']['hash']}.json" for c in data["cells"])

    before = {name: (out / name).read_bytes() for name in ("sweep.json", "sweep.md", "sweep.png")}
    again = run_sweep(spec(store), out)
    assert again.counts == {"cached": 2, "computed": 0} and len(evaluations) == 2  # no student trained
    assert {name: (out / name).read_bytes() for name in before} == before  # same inputs, same bytes

    extended = run_sweep(spec(store, ipcs=(1, 2)), out)
    assert extended.counts == {"cached": 2, "computed": 2} and len(evaluations) == 4

    other_protocol = run_sweep(spec(store, student_epochs=3, epochs=(1.0,)), out)
    assert other_protocol.counts == {"cached": 0, "computed": 1}  # the cache is keyed by the protocol too


def test_written_recipe_rebuilds_the_winning_artifact(store, tmp_path, evaluations):
    from sl_compiler.artifact import load
    from sl_compiler.compile import compile_artifact
    from sl_compiler.recipe import Recipe

    r = run_sweep(spec(store, seeds=(0, 1), epochs=(1.0,)), tmp_path / "sweep")
    best = r.best()[1]
    assert best.teacher == "convnet_d3@1#0,1"  # several seeds: one ensemble teacher
    assert len(load(best.artifact).manifest["teachers"]) == 2
    [path] = r.write_recipes(tmp_path / "recipes")
    assert path.name == "synthetic-classes-4-size-16-train-12-test-6-convnet_d3-ipc1.toml"
    recipe = Recipe.from_toml(path)
    assert recipe.teacher == best.teacher and recipe.ipc == 1
    rebuilt = compile_artifact(recipe, experts=store, device="cpu", out=tmp_path / "rebuilt")
    assert load(rebuilt).content_hash == best.content_hash


def test_cli_sweep(store, tmp_path, capsys):
    args = ["sweep", "--dataset", TINY, "--teacher-arch", "convnet_d3", "--experts", store, "--ipc", "1", "--epochs", "1",
            "--eval-seeds", "0", "--student-epochs", "2", "--out", str(tmp_path / "s"), "--device", "cpu", "--write-recipes", str(tmp_path / "r")]
    assert slc(args) == 0
    out = capsys.readouterr().out
    assert "| expert epoch | IPC 1 held-out | IPC 1 test |" in out and "0 cells cached, 1 computed" in out
    assert len(list((tmp_path / "r").glob("*.toml"))) == 1
    assert slc(args) == 0
    assert "1 cells cached, 0 computed" in capsys.readouterr().out


def test_cli_bad_input(store, tmp_path, capsys):
    base = ["sweep", "--dataset", TINY, "--teacher-arch", "convnet_d3", "--experts", store, "--out", str(tmp_path / "s")]
    assert slc([*base, "--ipc", "1", "--epochs", "one"]) == 2
    assert "not a list of epochs" in capsys.readouterr().err
    assert slc([*base, "--ipc", "1", "--epochs", "3"]) == 2
    assert "error: no convnet_d3 checkpoint at epoch 3" in capsys.readouterr().err
    assert slc([*base, "--ipc", "1", "--seeds", "5"]) == 2
    assert "seed 5" in capsys.readouterr().err
