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


# ---- the epoch chosen on a held-out slice, not the test set -------------------------------------


def fake_scores(by_epoch):
    """An evaluate_scores that trains nothing: (test, held-out) accuracies per teacher epoch."""

    def scores(artifact, protocol, device, data_root=None, holdout=False):
        test, held = by_epoch[float(artifact.manifest["teachers"][0]["epoch"])]
        return sweep_mod.Scores([test], [held] if holdout else None, 4 if holdout else None)

    return scores


def test_default_chooses_on_holdout_and_test_on_request(store, tmp_path, monkeypatch, capsys):
    # the two criteria disagree on purpose: epoch 0 wins on test, epoch 1 on the held-out slice
    monkeypatch.setattr(sweep_mod, "evaluate_scores", fake_scores({0.0: (40.0, 10.0), 1.0: (20.0, 30.0)}))
    r = run_sweep(spec(store), tmp_path / "default")
    assert r.best()[1].epoch == 1.0 and r.best("test")[1].epoch == 0.0
    data = json.loads((tmp_path / "default" / "sweep.json").read_text())
    assert data["select_on"] == "holdout" and data["spec"]["select_on"] == "holdout"
    assert data["best"]["1"]["epoch"] == 1.0 and data["best"]["1"]["mean"] == 20.0 and data["best"]["1"]["holdout_mean"] == 30.0
    assert data["best_by"]["holdout"]["1"]["epoch"] == 1.0 and data["best_by"]["test"]["1"]["epoch"] == 0.0  # both ways, for the fidelity benchmark
    assert data["holdout"] == {"fraction": 0.1, "seed": 0, "size": {"1": 4}}
    assert [c["holdout_mean"] for c in data["cells"]] == [10.0, 30.0]
    assert run_sweep(spec(store, select_on="test"), tmp_path / "paper").best()[1].epoch == 0.0

    args = ["sweep", "--dataset", TINY, "--teacher-arch", "convnet_d3", "--experts", store, "--ipc", "1", "--epochs", "0,1",
            "--eval-seeds", "0", "--student-epochs", "2", "--device", "cpu"]
    assert slc([*args, "--out", str(tmp_path / "cli-default")]) == 0
    assert "Best expert epoch per IPC (on held-out): IPC 1: 1 (held-out 30.0 %, test 20.0 %)" in capsys.readouterr().out
    assert slc([*args, "--out", str(tmp_path / "cli-test"), "--select-on", "test"]) == 0
    out = capsys.readouterr().out
    assert "Best expert epoch per IPC (on test): IPC 1: 0 (held-out 10.0 %, test 40.0 %)" in out
    assert "On held-out it would be: IPC 1: 1" in out


def test_held_out_slice_is_disjoint_from_every_selected_image(store, tmp_path, monkeypatch):
    """The slice each cell's students are scored on holds none of the images they trained on, and is
    the same for every epoch of an IPC (the selection does not depend on the teacher)."""
    from sl_compiler.artifact import load
    from sl_compiler.evaluate import run as run_mod

    drawn, current = [], {}
    real_holdout, real_scores = run_mod.holdout_indices, sweep_mod.evaluate_scores

    def holdout_spy(*args, **kwargs):
        drawn.append((current["artifact"], real_holdout(*args, **kwargs)))
        return drawn[-1][1]

    def scores_spy(artifact, *args, **kwargs):
        current["artifact"] = artifact
        return real_scores(artifact, *args, **kwargs)

    monkeypatch.setattr(run_mod, "holdout_indices", holdout_spy)
    monkeypatch.setattr(sweep_mod, "evaluate_scores", scores_spy)
    r = run_sweep(spec(store, ipcs=(1, 2), epochs=(0.0, 1.0)), tmp_path / "s")
    assert len(drawn) == 4  # one slice per cell, drawn by slc evaluate's own rule
    by_ipc: dict[int, set] = {}
    for artifact, held in drawn:
        own = set(artifact.manifest["selection"]["source_indices"])
        assert len(own) == artifact.ipc * 4 and held.numel() > 0
        assert not own & set(held.tolist()), f"IPC {artifact.ipc}: held-out images {sorted(own & set(held.tolist()))} are also training images"
        assert by_ipc.setdefault(artifact.ipc, set(held.tolist())) == set(held.tolist())  # every epoch of an IPC: one slice
    for c in r.cells:
        assert c.holdout_size == len(by_ipc[c.ipc]) and len(c.holdout_accuracies) == 1
        assert set(load(c.artifact).manifest["selection"]["source_indices"]) == set(sweep_mod.selection(sweep_mod.train_split(r.spec), r.spec, c.ipc).tolist())


def test_old_sweep_json_and_cached_results_still_load(store, tmp_path, evaluations):
    from sl_compiler.report.inputs import load_input

    out = tmp_path / "s"
    new = run_sweep(spec(store), out)
    assert len(evaluations) == 2 and new.has_holdout
    # what slc 0.1.0 wrote: no kind (or slc-sweep/1), no select_on, no held-out fields; cache records of test accuracies alone
    data = json.loads((out / "sweep.json").read_text())
    for key in ("kind", "select_on", "holdout", "best_by"):
        data.pop(key)
    for c in data["cells"]:
        for key in ("holdout_mean", "holdout_std", "holdout_accuracies", "holdout_size"):
            c.pop(key)
    for b in data["best"].values():
        b.pop("holdout_mean")
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    loaded = sweep_mod.load_sweep(old)
    assert loaded["select_on"] == "test" and all(c["holdout_mean"] is None for c in loaded["cells"])
    assert load_input(old).kind == "slc-sweep/1" and load_input(out / "sweep.json").kind == "slc-sweep/1"
    for path in (out / "cache").glob("*.json"):
        record = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in record.items() if not k.startswith("holdout")}))

    paper = run_sweep(spec(store, select_on="test"), out)
    assert paper.counts == {"cached": 2, "computed": 0} and len(evaluations) == 2  # old records serve the paper's way as they are
    assert not paper.has_holdout and "| expert epoch | IPC 1 |" in paper.to_markdown()
    assert json.loads((out / "sweep.json").read_text())["cells"][0]["holdout_mean"] is None
    again = run_sweep(spec(store), out)
    assert again.counts == {"cached": 0, "computed": 2} and len(evaluations) == 4  # held-out scores are missing: measured once
    assert [c.accuracies for c in again.cells] == [c.accuracies for c in new.cells] and again.has_holdout
    assert run_sweep(spec(store), out).counts == {"cached": 2, "computed": 0}


def test_no_room_for_a_held_out_slice(store, tmp_path, capsys):
    # TINY has 12 training images per class: IPC 12 leaves none to hold out
    with pytest.raises(RecipeError, match="no training images are left for a held-out slice at IPC 12") as info:
        run_sweep(spec(store, ipcs=(12,)), tmp_path / "s")
    assert "--select-on test" in info.value.fix and not (tmp_path / "s").exists()  # refused before anything is compiled
    paper = run_sweep(spec(store, ipcs=(12,), epochs=(1.0,), select_on="test"), tmp_path / "paper")  # the paper's way needs no slice
    assert not paper.has_holdout and paper.best()[12].epoch == 1.0
    assert "best_by" in paper.to_json() and set(paper.to_json()["best_by"]) == {"test"}
    args = ["sweep", "--dataset", TINY, "--teacher-arch", "convnet_d3", "--experts", store, "--ipc", "12", "--out", str(tmp_path / "c"), "--device", "cpu"]
    assert slc(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no training images are left for a held-out slice at IPC 12") and "--select-on test" in err


def test_unknown_select_on_is_refused(store, tmp_path, capsys):
    with pytest.raises(RecipeError, match="unknown --select-on value 'val'"):
        spec(store, select_on="val")
    args = ["sweep", "--dataset", TINY, "--teacher-arch", "convnet_d3", "--experts", store, "--ipc", "1", "--out", str(tmp_path / "s"), "--select-on", "val"]
    assert slc(args) == 2
    err = capsys.readouterr().err
    assert "Invalid value for '--select-on'" in err and "'holdout', 'test'" in err
