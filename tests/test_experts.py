"""Expert trajectories: checkpoints, resume == uninterrupted, the store, recipes, imports, CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from cli.main import cli, main
from sl_compiler.augment.basic import crop_flip, random_crop, random_flip
from sl_compiler.data import load_dataset
from sl_compiler.errors import ExpertError, RecipeError
from sl_compiler.experts import ExpertStore, resolve
from sl_compiler.experts import train as train_module
from sl_compiler.experts.external import import_checkpoint
from sl_compiler.experts.recipe import ExpertRecipe, default_recipe_path
from sl_compiler.experts.store import RESUME, sha256_file
from sl_compiler.experts.train import checkpoint_schedule, train_trajectories
from sl_compiler.models import create_model

TINY = "synthetic:classes=4,size=8,train=6,test=4"  # 24 train images of 8 px: fast on 2 cores
# 4 per batch -> 6 steps an epoch; momentum so that resuming must restore the optimizer state
RECIPE = ExpertRecipe(lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=4, epochs=2, milestones=(0.5,), augment="crop_flip", crop_padding=2)


def _train(store, seeds=(0,), **kw):
    kw.setdefault("recipe", RECIPE)
    kw.setdefault("every", 0.5)
    return train_trajectories(TINY, "convnet_d3", list(seeds), store=store, device="cpu", **kw)


def _weights(trajectory):
    return {c.epoch: trajectory.load_state(c) for c in trajectory.checkpoints}


def test_trajectory_has_a_checkpoint_every_fraction(tmp_path):
    (result,) = _train(tmp_path, epochs=1, every=0.25)
    t = result.trajectory
    assert result.status == "trained" and t.complete
    assert t.epochs() == [0, 0.25, 0.5, 0.75, 1]
    assert [c.steps for c in t.checkpoints] == [0, 2, 3, 4, 6]  # round(k * 6 / 4)
    files = sorted(p.name for p in t.path.glob("epoch-*.safetensors"))
    assert files == ["epoch-0.25.safetensors", "epoch-0.5.safetensors", "epoch-0.75.safetensors", "epoch-0.safetensors", "epoch-1.safetensors"]
    assert (t.path / RESUME).exists()  # stopped at epoch 1 of the recipe's 2: kept, to extend later
    for c in t.checkpoints:
        assert sha256_file(t.file(c)) == c.sha256
        assert 0 <= c.test_accuracy <= 100
    raw = json.loads((t.path / "trajectory.json").read_text())
    assert raw["dataset"]["fingerprint"] == load_dataset(TINY).fingerprint()
    assert raw["recipe"]["batch_size"] == 4 and raw["arch"] == "convnet_d3" and raw["seed"] == 0
    assert raw["test_set"]["size"] == 16 and raw["torch"] == torch.__version__ and raw["device"] == "cpu"
    # weights move, and epoch 0 is the seed's initialisation
    w = _weights(t)
    assert not torch.equal(w[0]["classifier.weight"], w[1]["classifier.weight"])
    init = train_module.initial_model("convnet_d3", load_dataset(TINY), 0).state_dict()
    assert all(torch.equal(init[k], w[0][k]) for k in init)


def test_resume_after_interrupt_equals_uninterrupted(tmp_path, monkeypatch):
    (full,) = _train(tmp_path / "a", epochs=1)
    real_step = train_module.training_step
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # between the checkpoints at steps 3 and 6
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "training_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "b", epochs=1)
    partial = ExpertStore(tmp_path / "b").trajectory(TINY, "convnet_d3", 0)
    assert not partial.complete and partial.epochs() == [0, 0.5]
    assert (partial.path / RESUME).exists()
    monkeypatch.setattr(train_module, "training_step", real_step)
    (resumed,) = _train(tmp_path / "b", epochs=1)
    assert resumed.status == "resumed" and resumed.trajectory.complete
    a, b = _weights(full.trajectory), _weights(resumed.trajectory)
    assert list(a) == list(b) == [0, 0.5, 1]
    for epoch in a:
        assert a[epoch].keys() == b[epoch].keys()
        assert all(torch.equal(a[epoch][k], b[epoch][k]) for k in a[epoch]), f"epoch {epoch} differs"
    assert [c.sha256 for c in full.trajectory.checkpoints] == [c.sha256 for c in resumed.trajectory.checkpoints]
    assert [c.test_accuracy for c in full.trajectory.checkpoints] == [c.test_accuracy for c in resumed.trajectory.checkpoints]


def test_a_short_run_is_a_prefix_of_the_full_trajectory(tmp_path):
    """--epochs stops early; the learning-rate schedule still follows the recipe's whole run."""
    (full,) = _train(tmp_path / "full")  # RECIPE: 2 epochs, rate x0.1 at epoch 1
    (short,) = _train(tmp_path / "short", epochs=1)
    assert short.trajectory.epochs() == [0, 0.5, 1] and full.trajectory.epochs()[-1] == 2
    by_epoch = {c.epoch: c.sha256 for c in full.trajectory.checkpoints}
    assert [c.sha256 for c in short.trajectory.checkpoints] == [by_epoch[e] for e in (0, 0.5, 1)]


def test_a_longer_run_extends_a_short_one_to_the_same_trajectory(tmp_path):
    (full,) = _train(tmp_path / "full")
    assert not (full.trajectory.path / RESUME).exists()  # the recipe's whole run: nothing left to extend
    _train(tmp_path / "grown", epochs=1)
    (grown,) = _train(tmp_path / "grown")
    assert grown.status == "resumed" and grown.trajectory.complete
    assert [c.sha256 for c in grown.trajectory.checkpoints] == [c.sha256 for c in full.trajectory.checkpoints]
    assert not (grown.trajectory.path / RESUME).exists()
    (again,) = _train(tmp_path / "grown", epochs=1)  # a shorter request is served by the longer trajectory
    assert again.status == "complete"


def test_an_interrupted_extension_is_unfinished_and_resumes(tmp_path, monkeypatch):
    (full,) = _train(tmp_path / "full")
    _train(tmp_path / "grown", epochs=1)
    real_step = train_module.training_step
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # step 11 of 12: past the checkpoint at epoch 1.5
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "training_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "grown")
    partial = ExpertStore(tmp_path / "grown").trajectory(TINY, "convnet_d3", 0)
    assert not partial.complete and partial.epochs() == [0, 0.5, 1, 1.5]
    monkeypatch.setattr(train_module, "training_step", real_step)
    (grown,) = _train(tmp_path / "grown")
    assert grown.status == "resumed" and grown.trajectory.complete
    assert [c.sha256 for c in grown.trajectory.checkpoints] == [c.sha256 for c in full.trajectory.checkpoints]


def test_a_trajectory_without_resume_state_is_not_silently_extended(tmp_path):
    (short,) = _train(tmp_path, epochs=1)
    (short.trajectory.path / RESUME).unlink()
    with pytest.raises(ExpertError, match="ends at epoch 1 and keeps no optimizer state") as info:
        _train(tmp_path)
    assert "--force" in info.value.fix


def test_a_finished_trajectory_with_other_settings_is_an_error(tmp_path):
    _train(tmp_path, epochs=1)
    with pytest.raises(ExpertError, match=r"finished trajectory .* other settings \(lr 0.05 vs 0.1\)"):
        _train(tmp_path, epochs=1, recipe=RECIPE.with_overrides(lr=0.1))


def test_seeds_differ_and_complete_trajectory_is_a_no_op(tmp_path):
    r0, r1 = _train(tmp_path, seeds=(0, 1), epochs=0.5)
    assert r0.trajectory.checkpoints[-1].sha256 != r1.trajectory.checkpoints[-1].sha256
    stamp = (r0.trajectory.path / "epoch-0.5.safetensors").stat().st_mtime_ns
    (again,) = _train(tmp_path, epochs=0.5)
    assert again.status == "complete" and "--force" in again.note
    assert (r0.trajectory.path / "epoch-0.5.safetensors").stat().st_mtime_ns == stamp
    (forced,) = _train(tmp_path, epochs=0.5, force=True)
    assert forced.status == "trained"
    assert forced.trajectory.checkpoints[-1].sha256 == r0.trajectory.checkpoints[-1].sha256  # reproducible


def test_resuming_with_other_settings_is_an_error(tmp_path, monkeypatch):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "training_step", stop)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path)
    monkeypatch.undo()
    with pytest.raises(ExpertError, match=r"unfinished trajectory .* trained with other settings \(lr 0.05 vs 0.1\).*--force"):
        _train(tmp_path, lr=0.1)


def test_checkpoint_schedule_and_its_errors():
    assert checkpoint_schedule(1, 0.5, 5) == [(0, 0), (0.5, 2), (1, 5)]
    assert checkpoint_schedule(2, 1, 3) == [(0, 0), (1, 3), (2, 6)]
    with pytest.raises(ExpertError, match="does not divide an epoch"):
        checkpoint_schedule(1, 0.3, 10)
    with pytest.raises(ExpertError, match="not a multiple of --every"):
        checkpoint_schedule(1.25, 0.5, 10)
    with pytest.raises(ExpertError, match="4 checkpoints in an epoch of 2 steps"):
        checkpoint_schedule(1, 0.25, 2)


def test_recipe_schedule_files_and_errors(tmp_path):
    recipe = ExpertRecipe(lr=0.1, milestones=(0.5, 0.75), gamma=0.1)
    assert [round(recipe.lr_at(s, 100), 6) for s in (0, 49, 50, 74, 75, 99)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert default_recipe_path("cifar10", "convnet_d3").name == "cifar10-convnet_d3.toml"
    assert default_recipe_path("synthetic:classes=4", "resnet18").name == "synthetic.toml"
    for name in ("cifar10-convnet_d3", "cifar100-convnet_d3", "tinyimagenet-convnet_d4", "imagenet-resnet18", "synthetic"):
        loaded = ExpertRecipe.from_toml(default_recipe_path.__globals__["RECIPES"] / f"{name}.toml")
        assert loaded.source
    with pytest.raises(RecipeError, match="no expert recipe for resnet50 on cifar10.*--recipe"):
        default_recipe_path("cifar10", "resnet50")
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = 0.1\nlearning_rate = 0.2\n")
    with pytest.raises(RecipeError, match="unknown key.*learning_rate"):
        ExpertRecipe.from_toml(bad)
    with pytest.raises(RecipeError, match="milestones"):
        ExpertRecipe(milestones=(1.5,))


def test_imagenet_recipe_is_refused_with_a_clear_error(tmp_path):
    recipe = ExpertRecipe.from_toml(default_recipe_path("imagenet", "resnet18")).with_overrides(epochs=1, batch_size=4)
    with pytest.raises(ExpertError, match="streaming loader.*slc experts add"):
        _train(tmp_path, recipe=recipe, every=1)


def test_augment_crop_flip_is_batched_and_seeded():
    x = torch.arange(5 * 2 * 6 * 6, dtype=torch.float32).view(5, 2, 6, 6)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    windows = [[padded[i, :, a : a + 6, b : b + 6] for a in range(5) for b in range(5)] for i in range(5)]
    assert all(any(torch.equal(out[i], w) for w in windows[i]) for i in range(5))
    flipped = random_flip(x, torch.Generator().manual_seed(1), p=1.0)
    assert torch.equal(flipped, x.flip(3))
    assert torch.equal(random_flip(x, torch.Generator().manual_seed(1), p=0.0), x)
    a = crop_flip(x, 2, torch.Generator().manual_seed(3))
    b = crop_flip(x, 2, torch.Generator().manual_seed(3))
    c = crop_flip(x, 2, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_add_external_checkpoint(tmp_path):
    torch.manual_seed(5)
    model = create_model("convnet_d3", 4, 3, 8)
    path = tmp_path / "checkpoint.pth"
    # torchvision's train.py layout, saved from a DistributedDataParallel model
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, path)
    trajectory, point, note = import_checkpoint(path, dataset=TINY, arch="convnet_d3", epoch=3, seed=2, store=tmp_path / "store", device="cpu")
    assert note == "" and 0 <= point.test_accuracy <= 100 and trajectory.recipe is None
    (teacher,) = resolve("convnet_d3@3#2", tmp_path / "store", load_dataset(TINY).info())
    loaded = teacher.load("cpu").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ExpertError, match="already exists.*--force"):
        import_checkpoint(path, dataset=TINY, arch="convnet_d3", epoch=3, seed=2, store=tmp_path / "store", device="cpu")
    with pytest.raises(ExpertError, match="does not fit resnet18"):
        import_checkpoint(path, dataset=TINY, arch="resnet18", epoch=3, seed=2, store=tmp_path / "store", device="cpu")
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": model.state_dict(), "config": ExpertRecipe()}, unsafe)  # a pickled object: refused
    with pytest.raises(ExpertError, match="cannot read checkpoint"):
        import_checkpoint(unsafe, dataset=TINY, arch="convnet_d3", epoch=1, seed=0, store=tmp_path / "store", device="cpu")


def test_cli_train_list_and_add(tmp_path):
    store = str(tmp_path / "store")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text("lr = 0.05\nbatch_size = 8\nepochs = 1\naugment = 'flip'\n")
    runner = CliRunner()
    out = runner.invoke(cli, ["experts", "train", "--dataset", TINY, "--seeds", "0-1", "--every", "0.5", "--recipe", str(recipe), "--experts", store, "--device", "cpu"])
    assert out.exit_code == 0, out.output
    assert "seed 1: trained, 3 checkpoints" in out.output
    table = runner.invoke(cli, ["experts", "list", "--experts", store]).output
    lines = table.splitlines()
    assert lines[0].split() == ["dataset", "arch", "seed", "checkpoints", "complete", "acc@first", "acc@1", "acc@last"]
    assert len(lines) == 4 and lines[2].split()[:6] == [TINY, "convnet_d3", "0", "3", "(0-1)", "yes"]
    rows = json.loads(runner.invoke(cli, ["experts", "list", "--experts", store, "--json"]).output)
    assert [(r["seed"], r["epochs"], r["complete"]) for r in rows] == [(0, [0, 0.5, 1], True), (1, [0, 0.5, 1], True)]
    assert set(rows[0]["test_accuracy"]) == {"0", "0.5", "1"}
    again = runner.invoke(cli, ["experts", "train", "--dataset", TINY, "--every", "0.5", "--recipe", str(recipe), "--experts", store, "--device", "cpu"])
    assert "complete" in again.output and "--force" in again.output
    # errors: one line, exit code 2
    assert main(["experts", "train", "--dataset", TINY, "--every", "0.3", "--recipe", str(recipe), "--experts", store]) == 2
    assert main(["experts", "add", str(tmp_path / "missing.pth"), "--dataset", TINY, "--model", "convnet_d3", "--epoch", "1", "--experts", store]) == 2
    assert "no experts in" in runner.invoke(cli, ["experts", "list", "--experts", str(tmp_path / "empty")]).output


def test_dsa_augmentation_trains_reproducibly(tmp_path):
    recipe = RECIPE.with_overrides(augment="dsa")
    (a,) = _train(tmp_path / "a", recipe=recipe, epochs=0.5)
    (b,) = _train(tmp_path / "b", recipe=recipe, epochs=0.5)
    (c,) = _train(tmp_path / "c", epochs=0.5)  # crop_flip
    assert a.trajectory.checkpoints[-1].sha256 == b.trajectory.checkpoints[-1].sha256 != c.trajectory.checkpoints[-1].sha256


def test_cli_interrupt_keeps_checkpoints_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "training_step", stop)
    store = tmp_path / "store"
    assert main(["experts", "train", "--dataset", TINY, "--batch-size", "4", "--experts", str(store), "--device", "cpu"]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert ExpertStore(store).trajectory(TINY, "convnet_d3", 0).epochs() == [0]
