"""Expert trajectories: checkpoints, resume == uninterrupted, the store, recipes, imports, CLI."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from cli.main import cli, main
from sl_compiler.augment.basic import crop_flip, random_crop, random_flip
from sl_compiler.augment.resized_crop import RandomResizedCrop, ResizeCenterCrop, crop_boxes, flips, resized_crop_batch, uniforms
from sl_compiler.data import load_dataset, normalize
from sl_compiler.errors import DataError, ExpertError, RecipeError
from sl_compiler.experts import ExpertStore, resolve
from sl_compiler.experts import train as train_module
from sl_compiler.experts.external import import_checkpoint, resolve_preprocess
from sl_compiler.experts.recipe import RECIPES, ExpertRecipe, default_recipe_path
from sl_compiler.experts.store import RESUME, sha256_file, trajectory_lock
from sl_compiler.experts.train import balanced_subset, checkpoint_schedule, train_trajectories
from sl_compiler.label.views import replay
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
    assert default_recipe_path("imagenet", "resnet18").name == "imagenet-resnet18.toml"
    # no recipe for this dataset: the architecture's default, for any dataset
    assert default_recipe_path("cifar10", "resnet50").name == "default-resnet50.toml"
    assert default_recipe_path(f"imagefolder:{tmp_path}", "convnet_d3").name == "default-convnet_d3.toml"
    with pytest.raises(RecipeError, match="no expert recipe for mystery_net.*default-mystery_net.toml.*--recipe"):
        default_recipe_path("cifar10", "mystery_net")
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = 0.1\nlearning_rate = 0.2\n")
    with pytest.raises(RecipeError, match="unknown key.*learning_rate"):
        ExpertRecipe.from_toml(bad)
    with pytest.raises(RecipeError, match="milestones"):
        ExpertRecipe(milestones=(1.5,))
    with pytest.raises(RecipeError, match="crop_scale"):
        ExpertRecipe(crop_scale=(0.5, 0.1))
    bad.write_text("crop_ratio = ['wide', 'tall']\n")
    with pytest.raises(RecipeError, match="bad value"):
        ExpertRecipe.from_toml(bad)


def test_every_shipped_expert_recipe_loads_and_names_its_source():
    files = sorted(RECIPES.glob("*.toml"))
    assert {f"default-{a}.toml" for a in ("convnet_d3", "convnet_d4", "resnet18", "resnet50")} <= {f.name for f in files}
    for path in files:
        assert ExpertRecipe.from_toml(path).source, path
    # the paper's Table 7: lr 5e-4 experts for IPC 1-10, 0.1 for IPC 50+, both torchvision's recipe otherwise
    for arch in ("resnet18", "resnet50"):
        small, large = (ExpertRecipe.from_toml(RECIPES / f"imagenet-{arch}{tail}.toml") for tail in ("-lr5e-4", ""))
        assert (small.lr, large.lr) == (0.0005, 0.1)
        for r in (small, large):
            assert (r.momentum, r.weight_decay, r.batch_size, r.epochs, r.augment) == (0.9, 1e-4, 256, 90, "random_resized_crop")
            assert r.lr_at(30 * 100 - 1, 90 * 100) == r.lr and r.lr_at(30 * 100, 90 * 100) == pytest.approx(r.lr / 10) and r.lr_at(60 * 100, 90 * 100) == pytest.approx(r.lr / 100)
            assert r.crop_scale == (0.08, 1.0) and r.crop_ratio == pytest.approx((3 / 4, 4 / 3))
            assert "Table 7" in r.source


def test_a_trajectory_recorded_before_a_recipe_field_existed_still_resumes(tmp_path):
    """crop_scale and crop_ratio are newer than some trajectories: a missing key means its default."""
    (short,) = _train(tmp_path, epochs=1)
    index = short.trajectory.path / "trajectory.json"
    raw = json.loads(index.read_text())
    for key in ("crop_scale", "crop_ratio"):
        del raw["recipe"][key]
    index.write_text(json.dumps(raw))
    (grown,) = _train(tmp_path)
    assert grown.status == "resumed"
    raw = json.loads(index.read_text())
    raw["recipe"]["crop_scale"] = [0.5, 1.0]
    index.write_text(json.dumps(raw))
    with pytest.raises(ExpertError, match=r"crop_scale \[0.5, 1.0\] vs \[0.08, 1.0\]"):
        _train(tmp_path)


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



def test_a_pickle_that_needs_code_gets_slcs_own_message(tmp_path, capsys):
    model = create_model("convnet_d3", 4, 3, 8)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": model.state_dict(), "config": ExpertRecipe()}, unsafe)  # a pickled object: never unpickled
    with pytest.raises(ExpertError) as info:
        import_checkpoint(unsafe, dataset=TINY, arch="convnet_d3", epoch=1, seed=0, store=tmp_path / "store", device="cpu")
    problem, fix = info.value.problem, info.value.fix
    assert "is a pickle that holds a sl_compiler.experts.recipe.ExpertRecipe object" in problem and "never unpickles code" in problem
    assert "weights_only=False" in fix and "safetensors.torch.save_file(model.state_dict()" in fix
    assert main(["experts", "add", str(unsafe), "--dataset", TINY, "--model", "convnet_d3", "--epoch", "1", "--experts", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Weights only load failed" not in err
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ExpertError, match="cannot read checkpoint .*garbage.pth"):
        import_checkpoint(garbage, dataset=TINY, arch="convnet_d3", epoch=1, seed=0, store=tmp_path / "store", device="cpu")
    assert not (tmp_path / "store").exists()  # nothing written


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
    assert rows[0]["preprocess"]["crop"] == [8, 8] and rows[0]["preprocess"]["resize"] == 8
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


# ---------------------------------------------------------------------------------------------
# Files streamed from disk: a tiny lazy ImageFolder of JPEGs of varied sizes

RRC = ExpertRecipe(lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=4, epochs=2, milestones=(0.5,), augment="random_resized_crop")
SIZES = [(16, 24), (33, 21), (40, 40), (26, 45), (48, 19), (21, 30)]  # (width, height); the first sets the resolution: 16 px


def _jpeg_folder(root, train=4, test=2, classes=3):
    """root/{train,test}/c<k>/<i>.jpg: smooth class-coloured images of varied sizes (the first train image 16 px short)."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    count = 0
    for split, per_class in (("train", train), ("test", test)):
        for k in range(classes):
            (root / split / f"c{k}").mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                w, h = SIZES[count % len(SIZES)]
                count += 1
                colour = torch.zeros(3, 1, 1)
                colour[k % 3] = 160
                ramp = torch.linspace(0, 80, w).view(1, 1, w) + torch.linspace(0, 40, h).view(1, h, 1)
                pixels = (colour + ramp + torch.rand(3, h, w, generator=g) * 30).clamp(0, 255).to(torch.uint8)
                Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(root / split / f"c{k}" / f"{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _jpeg_folder(tmp_path_factory.mktemp("jpegs"))


def _train_folder(folder, store, recipe=RRC, **kw):
    kw.setdefault("every", 0.5)
    kw.setdefault("in_memory", False)
    return train_trajectories(f"imagefolder:{folder}", "convnet_d3", [0], recipe=recipe, store=store, device="cpu", **kw)


def _torchvision_rrc_box(u, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision's RandomResizedCrop.get_params, transcribed one image at a time, fed slc's uniforms."""
    area = height * width
    for t in range(10):
        a, r, i, j = (float(v) for v in u[4 * t : 4 * t + 4])
        target = area * (scale[0] + a * (scale[1] - scale[0]))
        aspect = math.exp(math.log(ratio[0]) + r * (math.log(ratio[1]) - math.log(ratio[0])))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return [math.floor(i * (height - h + 1)), math.floor(j * (width - w + 1)), h, w]
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return [(height - h) // 2, (width - w) // 2, h, w]


def test_crop_boxes_follow_torchvisions_algorithm_including_its_fallback():
    g = torch.Generator().manual_seed(1)
    n = 3000
    heights = torch.randint(1, 400, (n,), generator=g)
    widths = torch.randint(1, 400, (n,), generator=g)
    heights[:200], widths[:200] = 7, 900  # far wider than 4:3: every try fails, the fallback crops the centre
    widths[200:400], heights[200:400] = 3, 500  # far taller
    u = uniforms(3, 2, torch.arange(n))
    boxes = crop_boxes(u, heights, widths)
    expected = [_torchvision_rrc_box(u[k], int(heights[k]), int(widths[k])) for k in range(n)]
    assert boxes.tolist() == expected
    assert boxes[0].tolist() == [0, 445, 7, 9]  # 7 x round(7 * 4/3), centred in 900
    top, left, h, w = boxes.unbind(1)
    assert bool(((top >= 0) & (left >= 0) & (top + h <= heights) & (left + w <= widths) & (h > 0) & (w > 0)).all())


def test_crop_randomness_is_counter_based_per_seed_epoch_and_index():
    a = uniforms(0, 1, torch.tensor([5, 9, 2**40 + 5]))
    b = uniforms(0, 1, torch.tensor([2**40 + 5, 5]))
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0])  # a row depends on its index only, not on the batch
    assert not torch.equal(a[0], a[2])  # the index's high bits count
    assert not torch.equal(uniforms(0, 2, [5])[0], a[0]) and not torch.equal(uniforms(1, 1, [5])[0], a[0])
    u = uniforms(0, 0, torch.arange(20000))
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01
    assert abs(float(flips(u).double().mean()) - 0.5) < 0.02


def test_decoders_match_torchvisions_transforms_pixel_for_pixel(folder):
    import numpy as np
    import torchvision.transforms as T
    import torchvision.transforms.functional as TF
    from PIL import Image

    files = sorted((folder / "train").rglob("*.jpg"))
    rrc = RandomResizedCrop(seed=4, epoch=3, size=16)
    center = ResizeCenterCrop(resize=24, crop=16)
    for index, path in enumerate(files):
        data = path.read_bytes()
        img = Image.open(path).convert("RGB")
        u = uniforms(4, 3, [index])
        top, left, h, w = crop_boxes(u, [img.height], [img.width])[0].tolist()
        ref = TF.resized_crop(img, top, left, h, w, [16, 16], T.InterpolationMode.BILINEAR)
        if bool(flips(u)[0]):
            ref = TF.hflip(ref)
        assert torch.equal(rrc(data, index), torch.from_numpy(np.array(ref)).permute(2, 0, 1))
        ref = T.Compose([T.Resize(24, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(16)])(img)
        assert torch.equal(center(data, index), torch.from_numpy(np.array(ref)).permute(2, 0, 1))
    with pytest.raises(DataError, match="cannot decode image train/bad.jpg"):
        RandomResizedCrop(0, 0, 16, name=lambda i: "train/bad.jpg")(b"\xff\xd8 truncated", 0)


def test_resident_random_resized_crop_uses_the_same_boxes():
    """A split held only as tensors (no files) gets the same crop draw, applied on the device."""
    x = torch.rand(6, 3, 20, 30)
    idx = torch.tensor([4, 0, 17, 3, 8, 2])
    out = resized_crop_batch(x, 1, 2, idx)
    u = uniforms(1, 2, idx)
    params = {"crop": crop_boxes(u, [20] * 6, [30] * 6).to(torch.int16), "flip": flips(u).to(torch.uint8)}
    assert torch.equal(out, replay(x, torch.arange(6), params)) and out.shape == x.shape
    assert torch.equal(resized_crop_batch(x[1:2], 1, 2, idx[1:2]), out[1:2])  # per image, not per batch


def test_streamed_training_crops_each_original_image(folder, monkeypatch):
    """Batch i of epoch e: the epoch's permutation cut by the batch size, each image cropped from its file."""
    images = load_dataset(f"imagefolder:{folder}", split="train", in_memory=False)
    assert images.pixels is None and images.shape == (3, 16, 16)
    split = train_module.Split(images, torch.device("cpu"), workers=0)
    (x, y), *_ = train_module.training_batches(split, RRC, 7, 1, 1, 3, train_module.Ranks())
    order = train_module.epoch_order(len(images), 7, 1)[4:8]
    decode = RandomResizedCrop(7, 1, 16)
    expected = torch.stack([decode(images.sources.read(int(i)), int(i)) for i in order])
    assert torch.equal(x, normalize(expected, images.mean, images.std)) and torch.equal(y, images.targets[order])
    # the crop is of the original file, not of the decoded centre crop
    centre = images.decode_batch(order.tolist())[0]
    assert not torch.equal(expected, centre)
    assert torch.equal(train_module.Ranks(1, 2).share(order), order[1::2])


def test_streamed_run_resumes_bit_exactly_and_workers_do_not_change_it(folder, tmp_path, monkeypatch):
    from sl_compiler.data import base

    def never(*args, **kwargs):
        raise AssertionError("a whole split was decoded")

    monkeypatch.setattr(base.ImageSet, "images", never)  # streaming reads batches, never a whole split
    (plain,) = _train_folder(folder, tmp_path / "plain", epochs=1, workers=0)
    real_step = train_module.training_step
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # after the checkpoint at epoch 0.5 (step 2), inside the first epoch
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "training_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train_folder(folder, tmp_path / "workers", epochs=1, workers=2)
    partial = ExpertStore(tmp_path / "workers").trajectory(f"imagefolder:{folder}", "convnet_d3", 0)
    assert partial.epochs() == [0, 0.5] and not partial.complete
    monkeypatch.setattr(train_module, "training_step", real_step)
    (resumed,) = _train_folder(folder, tmp_path / "workers", epochs=1, workers=2)
    assert resumed.status == "resumed"
    a, b = plain.trajectory, resumed.trajectory
    assert [c.sha256 for c in a.checkpoints] == [c.sha256 for c in b.checkpoints] and len(a.checkpoints) == 3
    assert [c.test_accuracy for c in a.checkpoints] == [c.test_accuracy for c in b.checkpoints]
    assert a.checkpoints[0].sha256 != a.checkpoints[-1].sha256
    raw = json.loads((a.path / "trajectory.json").read_text())
    assert raw["data"] == "streamed: each image cropped from its original file in decode worker processes" and (raw["world_size"], raw["global_batch"], raw["precision"]) == (1, 4, "fp32")
    assert raw["recipe"]["augment"] == "random_resized_crop" and raw["recipe_file"] is None


def test_a_split_in_memory_and_the_same_files_streamed_give_one_trajectory(folder, tmp_path):
    """Held (uint8, normalised per batch) or streamed from its files, a split gives the same batches: so the same weights."""
    import dataclasses

    cpu = torch.device("cpu")
    held = load_dataset(f"imagefolder:{folder}", split="train", in_memory=True)
    files = dataclasses.replace(held, pixels=None)  # the same files and normalisation, nothing decoded
    results = [
        train_module.train_one(ExpertStore(tmp_path / name), train_module.Split(images, cpu, workers=0), None, "convnet_d3", 0, RECIPE, 0.5, cpu, stop=0.5)
        for name, images in (("held", held), ("files", files))
    ]
    a, b = (r.trajectory for r in results)
    assert [c.sha256 for c in a.checkpoints] == [c.sha256 for c in b.checkpoints] and a.checkpoints[0].sha256 != a.checkpoints[-1].sha256
    assert (a.extra["data"], b.extra["data"]) == ("held in memory as uint8 on cpu", "streamed: decoded by worker processes")
    assert train_module.Split(held, cpu).pixels.dtype == torch.uint8


def test_val_subset_is_balanced_fixed_and_recorded(tmp_path):
    test = load_dataset(TINY, split="test")  # 4 classes x 4
    idx = balanced_subset(test, 6)
    assert torch.equal(idx, balanced_subset(test, 6)) and torch.equal(idx, idx.sort().values)
    assert sorted(torch.bincount(test.targets[idx], minlength=4).tolist()) == [1, 1, 2, 2]
    assert not torch.equal(balanced_subset(test, 7)[:6], idx) or len(balanced_subset(test, 7)) == 7
    with pytest.raises(ExpertError, match="--val-subset 16 must be between 1 and 15: the test split holds 16 images"):
        balanced_subset(test, 16)
    (result,) = _train(tmp_path, epochs=0.5, val_subset=6)
    t = result.trajectory
    subset = t.extra["test_set"]["subset"]
    assert subset["size"] == 6 and subset["seed"] == 0 and len(subset["indices_sha256"]) == 64
    model = train_module.initial_model("convnet_d3", test, 0)
    model.load_state_dict(t.load_state(t.checkpoints[-1]))
    split = train_module.Split(test, torch.device("cpu"))
    assert t.checkpoints[-1].test_accuracy == train_module.evaluate_accuracy(model, split, idx)
    assert all(round(c.test_accuracy * 6 / 100, 6) == round(c.test_accuracy * 6 / 100) for c in t.checkpoints)
    with pytest.raises(ExpertError, match="other settings.*test_set"):
        _train(tmp_path, epochs=1)  # resuming with another test pass would mix accuracies


def test_a_run_tests_at_its_training_batch_size(tmp_path, monkeypatch):
    """The test pass's memory follows the training batch, never the test split's size."""
    read = train_module.Split.read
    sizes = []

    def spy(self, batches, decode=None):
        if self.images.split == "test":
            sizes.extend(len(b) for b in batches)
        return read(self, batches, decode)

    monkeypatch.setattr(train_module.Split, "read", spy)
    _train(tmp_path, epochs=0.5)  # RECIPE: batch 4; the test split holds 16 images
    assert sizes and set(sizes) == {4} and sum(sizes) == 2 * 16  # two checkpoints, each the whole split


def test_no_wait_fails_at_once_while_another_process_holds_the_trajectory(tmp_path, capsys):
    store = ExpertStore(tmp_path)
    folder = store.folder(TINY, "convnet_d3", 0)
    with trajectory_lock(folder):
        with pytest.raises(ExpertError, match=rf"being written by another process \(pid {os.getpid()}\).*drop --no-wait"):
            _train(tmp_path, epochs=0.5, wait=False)
        assert main(["experts", "train", "--dataset", TINY, "--batch-size", "4", "--epochs", "0.5", "--every", "0.5", "--no-wait", "--experts", str(tmp_path), "--device", "cpu"]) == 2
        assert "being written by another process" in capsys.readouterr().err
        assert not (folder / "trajectory.json").exists()
    (done,) = _train(tmp_path, epochs=0.5, wait=False)  # released
    assert done.status == "trained"


RACER = """
import pathlib, sys, time
from sl_compiler.experts import train
real = train.initial_model
def paused(*args, **kwargs):  # holds the trajectory's lock here, before its first checkpoint
    pathlib.Path(sys.argv[1]).touch()
    while not pathlib.Path(sys.argv[2]).exists():
        time.sleep(0.05)
    return real(*args, **kwargs)
train.initial_model = paused
from cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def test_two_runs_with_other_settings_into_one_store_never_both_succeed(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "SLC_PROGRESS": "0"}
    store = tmp_path / "store"
    args = ["experts", "train", "--dataset", TINY, "--batch-size", "4", "--epochs", "0.5", "--every", "0.5", "--experts", str(store), "--device", "cpu"]
    paused, go = tmp_path / "paused", tmp_path / "go"
    with open(tmp_path / "a.out", "w") as a_out, open(tmp_path / "b.err", "w") as b_err:
        first = subprocess.Popen([sys.executable, "-c", RACER, str(paused), str(go), *args, "--lr", "0.05"], env=env, stdout=a_out, stderr=subprocess.STDOUT)
        second = None
        try:
            _poll(lambda: paused.exists() or first.poll() is not None)
            assert first.poll() is None, (tmp_path / "a.out").read_text()
            second = subprocess.Popen([sys.executable, "-m", "cli.main", *args, "--lr", "0.1"], env=env, stdout=subprocess.PIPE, stderr=b_err, text=True)
            _poll(lambda: "waiting for pid" in (tmp_path / "b.err").read_text() or second.poll() is not None)
            assert second.poll() is None, "the second run did not wait for the first"
            assert f"waiting for pid {first.pid}" in (tmp_path / "b.err").read_text()
            go.touch()
            assert first.wait(120) == 0
            out, _ = second.communicate(timeout=120)
        finally:
            for p in (first, second):
                if p is not None and p.poll() is None:
                    p.kill()
    assert ": trained, 2 checkpoints" in (tmp_path / "a.out").read_text()
    assert second.returncode == 2 and "trained" not in out
    assert re.search(r"finished trajectory .* other settings \(lr 0.05 vs 0.1\)", (tmp_path / "b.err").read_text())
    t = ExpertStore(store).trajectory(TINY, "convnet_d3", 0)
    assert t.recipe["lr"] == 0.05 and t.complete and all(sha256_file(t.file(c)) == c.sha256 for c in t.checkpoints)


def _poll(done, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_cli_train_on_any_imagefolder_without_a_recipe_uses_the_architectures_default(folder, tmp_path):
    runner = CliRunner()
    out = runner.invoke(cli, ["experts", "train", "--dataset", f"imagefolder:{folder}", "--model", "convnet_d3", "--epochs", "1", "--experts", str(tmp_path), "--device", "cpu", "--workers", "0"])
    assert out.exit_code == 0, out.output
    assert "recipe: recipes/experts/default-convnet_d3.toml" in out.output and ": trained, 2 checkpoints" in out.output
    (t,) = ExpertStore(tmp_path).trajectories()
    assert t.extra["recipe_file"] == "recipes/experts/default-convnet_d3.toml"
    assert t.recipe == ExpertRecipe.from_toml(RECIPES / "default-convnet_d3.toml").to_dict()


def test_add_streams_the_test_split_at_the_checkpoints_preprocess(folder, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from sl_compiler.data import base
    from sl_compiler.experts import external

    torch.manual_seed(3)
    model = create_model("convnet_d3", 3, 3, 16)
    path = tmp_path / "weights.safetensors"
    save_file(model.state_dict(), str(path))
    decoders = []
    monkeypatch.setattr(external, "ResizeCenterCrop", lambda *a, **k: decoders.append(ResizeCenterCrop(*a, **k)) or decoders[-1])
    monkeypatch.setattr(base.ImageSet, "images", lambda *a, **k: pytest.fail("the test split was decoded whole"))
    dataset = f"imagefolder:{folder}"
    runner = CliRunner()
    out = runner.invoke(cli, ["experts", "add", str(path), "--dataset", dataset, "--model", "convnet_d3", "--epoch", "2", "--resize", "24", "--crop", "16", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--experts", str(tmp_path / "store"), "--device", "cpu", "--workers", "0"])
    assert out.exit_code == 0, out.output
    assert "preprocess: resize 24, crop 16, mean [0.5, 0.5, 0.5], std [0.25, 0.25, 0.25]" in out.output
    assert [(d.resize, d.crop) for d in decoders] == [(24, 16)]
    # the same accuracy as torchvision's Resize(24) + CenterCrop(16) and that normalisation
    import numpy as np
    import torchvision.transforms as T
    from PIL import Image

    test = load_dataset(dataset, split="test", in_memory=False)
    tv = T.Compose([T.Resize(24, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(16)])
    pixels = torch.stack([torch.from_numpy(np.array(tv(Image.open(folder / i).convert("RGB")))).permute(2, 0, 1) for i in test.sources.ids])
    with torch.no_grad():
        predicted = model.eval()(normalize(pixels, (0.5,) * 3, (0.25,) * 3)).argmax(1)
    expected = 100.0 * int((predicted == test.targets).sum()) / len(test)
    (teacher,) = resolve("convnet_d3@2", tmp_path / "store", load_dataset(dataset, split="train").info() | {"fingerprint": None})
    assert f"test {expected:.2f}%" in out.output and teacher.test_accuracy == expected
    steps = {"resize": 24, "crop": [16, 16], "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.25] * 3}
    assert teacher.preprocess == steps and teacher.manifest_entry()["preprocess"] == steps
    assert (teacher.mean, teacher.std) == ((0.5,) * 3, (0.25,) * 3)
    raw = json.loads((teacher.checkpoint.parent / "trajectory.json").read_text())
    assert raw["dataset"]["preprocess"] == steps and raw["imported"]["2"]["preprocess"] == steps
    # every checkpoint of a trajectory takes one preprocess
    with pytest.raises(ExpertError, match="takes inputs preprocessed as"):
        import_checkpoint(path, dataset=dataset, arch="convnet_d3", epoch=3, seed=0, store=tmp_path / "store", device="cpu", crop=16, resize=20, workers=0)
    with pytest.raises(ExpertError, match="crops 16 px after resizing to 12"):
        import_checkpoint(path, dataset=dataset, arch="convnet_d3", epoch=4, seed=1, store=tmp_path / "store", device="cpu", crop=16, resize=12)


def test_torchvision_preprocess_preset():
    base = {"resize": 32, "crop": [32, 32], "interpolation": "bilinear", "mean": [0.1] * 3, "std": [0.2] * 3}
    steps = resolve_preprocess(base, "torchvision")
    assert steps == {"resize": 256, "crop": [224, 224], "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert resolve_preprocess(base, "torchvision", resize=232)["resize"] == 232  # e.g. torchvision's V2 ResNet-50 weights
    assert main(["experts", "add", "x.pth", "--dataset", TINY, "--model", "convnet_d3", "--epoch", "1", "--preprocess", "caffe"]) == 2


def test_the_preprocess_fallback_of_old_records_fits_a_non_square_crop():
    from sl_compiler.data.preprocess import Preprocess, check_resize
    from sl_compiler.experts.store import preprocess_of

    info = {"resolution": [24, 32], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}  # recorded before datasets recorded their preprocess
    fallback = preprocess_of(info)
    assert fallback["crop"] == [24, 32] and check_resize(fallback["resize"], (24, 32)) == fallback["resize"]
    assert fallback["resize"] == Preprocess.from_info(info).resize  # the store and the decoder read old records alike
