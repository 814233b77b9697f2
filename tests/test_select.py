"""Selection: random per class and cross-entropy quantile (with cached scores)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lazyset import add_teachers, corrupt, lazy, write_folder
from sl_compiler.data import load_dataset, normalize
from sl_compiler.errors import DataError, RecipeError
from sl_compiler.experts import resolve
from sl_compiler.experts.recipe import ExpertRecipe
from sl_compiler.experts.train import train_trajectories
from sl_compiler.label import Ensemble, run_teachers
from sl_compiler.select import ce_quantile, ce_scores, parts_dir, per_class_ranks, quantile_per_class, random_per_class, scores_path

CLASSES = [f"c{i}" for i in range(4)]

TINY = "synthetic:classes=4,size=16,train=12,test=6"  # tests/conftest.py TINY


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("experts")
    train_trajectories(TINY, "convnet_d3", [0], recipe=ExpertRecipe(epochs=1, batch_size=16), store=root, device="cpu")
    return root


def test_per_class_ranks_match_a_sort_per_class():
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (50,), generator=g)
    scores = torch.rand(50, generator=g)
    ranks = per_class_ranks(targets, scores)
    for c in range(4):
        idx = torch.nonzero(targets == c).flatten()
        expected = torch.empty(len(idx), dtype=torch.long)
        expected[torch.argsort(scores[idx])] = torch.arange(len(idx))
        assert torch.equal(ranks[idx], expected)


def test_random_per_class_picks_ipc_distinct_images_of_each_class_in_sample_order():
    targets = torch.tensor([3, 0, 1, 2] * 5 + [0, 0, 1])  # uneven classes: 7, 6, 5, 5
    picked = random_per_class(targets, CLASSES, 4, seed=0)
    assert len(picked) == 16 and len(set(picked.tolist())) == 16
    assert torch.bincount(targets[picked], minlength=4).tolist() == [4, 4, 4, 4]
    keys = [(int(targets[i]), int(i)) for i in picked]
    assert keys == sorted(keys)  # grouped by class, ascending dataset index within a class


def test_random_selection_is_seeded():
    targets = torch.arange(4).repeat_interleave(25)
    a = random_per_class(targets, CLASSES, 5, seed=0)
    assert torch.equal(a, random_per_class(targets, CLASSES, 5, seed=0))
    assert not torch.equal(a, random_per_class(targets, CLASSES, 5, seed=1))


def test_ipc_larger_than_the_smallest_class_names_it():
    targets = torch.tensor([0] * 10 + [1] * 10 + [2] * 3 + [3] * 10)
    with pytest.raises(RecipeError, match=r"--ipc 4 is larger than the smallest class \('c2' has 3 images\); pass --ipc 3"):
        random_per_class(targets, CLASSES, 4, seed=0)


def test_quantile_picks_only_from_the_asked_decile():
    targets = torch.arange(4).repeat_interleave(40)
    scores = torch.rand(160, generator=torch.Generator().manual_seed(1))
    ranks = per_class_ranks(targets, scores)
    for q in (0, 5, 9):
        picked = quantile_per_class(scores, targets, CLASSES, 3, q, seed=0)
        assert torch.bincount(targets[picked], minlength=4).tolist() == [3, 3, 3, 3]
        assert bool(((ranks[picked] // 4) == q).all())  # 40 per class: decile q = ranks 4q .. 4q+3
    assert torch.equal(quantile_per_class(scores, targets, CLASSES, 3, 0, seed=0), quantile_per_class(scores, targets, CLASSES, 3, 0, seed=0))
    assert not torch.equal(quantile_per_class(scores, targets, CLASSES, 2, 0, seed=0), quantile_per_class(scores, targets, CLASSES, 2, 0, seed=5))


def test_quantile_too_small_for_ipc_is_an_error():
    targets = torch.arange(4).repeat_interleave(20)
    with pytest.raises(RecipeError, match="larger than decile 9"):
        quantile_per_class(torch.rand(80), targets, CLASSES, 3, 9, seed=0)


def test_ce_scores_are_cross_entropy_and_cached(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))
    data = load_dataset(TINY, split="train")
    teachers = resolve("convnet_d3@1", store, data.info())
    scores = ce_scores(teachers, data, device="cpu", batch_size=7)
    assert scores.values.dtype == torch.float32 and scores.values.shape == (48,) and scores.skipped == []
    model = teachers[0].load("cpu")
    with torch.no_grad():
        expected = F.cross_entropy(model(normalize(data.pixels, data.mean, data.std)), data.targets, reduction="none")
    torch.testing.assert_close(scores.values, expected, rtol=1e-4, atol=1e-4)
    path = scores_path(data.fingerprint(), teachers)
    assert path.is_file() and path.parent == tmp_path / "cache" / "scores" and not parts_dir(path).exists()

    def no_teacher(*args, **kwargs):
        raise AssertionError("cached scores must not run the teacher again")

    monkeypatch.setattr(ce_quantile, "run_teachers", no_teacher)
    assert torch.equal(ce_scores(teachers, data, device="cpu").values, scores.values)

    path.write_bytes(b"not safetensors")  # a damaged cache entry is recomputed
    monkeypatch.setattr(ce_quantile, "run_teachers", run_teachers)
    assert torch.equal(ce_scores(teachers, data, device="cpu", batch_size=7).values, scores.values)


@pytest.fixture
def lazy_set(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))
    data = lazy(write_folder(tmp_path / "root", per_class=5))  # 3 classes x 5
    store = add_teachers(tmp_path / "experts", data, seeds=(0, 1))
    return data, resolve("convnet_d3@0#0-1", store, data.info())


def test_scores_do_not_depend_on_batch_size_workers_or_chunking(lazy_set, monkeypatch):
    """The same batches give the same bits whatever the workers; other batchings agree to float32 rounding.

    A CPU's convolution kernels may sum in another order for another batch size (oneDNN picks its
    blocking by shape), so across batchings only a tolerance holds: a few float32 ulps of logits of
    order 10, carried through log-softmax.
    """
    data, teachers = lazy_set
    runs = {}
    for batch_size, workers, chunk in ((5, 0, 4096), (5, 2, 4096), (3, 0, 4096), (7, 2, 4), (15, 0, 5)):
        monkeypatch.setenv("SLC_CACHE", str(Path(os.environ["SLC_CACHE"]).parent / f"cache-{batch_size}-{workers}-{chunk}"))
        runs[batch_size, workers, chunk] = ce_scores(teachers, data, device="cpu", batch_size=batch_size, workers=workers, chunk=chunk).values
    reference = runs[5, 0, 4096]
    assert runs[5, 2, 4096].numpy().tobytes() == reference.numpy().tobytes()
    for values in runs.values():
        torch.testing.assert_close(values, reference, rtol=1e-5, atol=1e-5)
    assert bool(torch.isfinite(reference).all())


class Dying(Ensemble):
    """An ensemble that is killed (KeyboardInterrupt) at its ``die_at``-th batch, and counts images."""

    def __init__(self, *args, die_at=None):
        super().__init__(*args)
        self.die_at, self.calls, self.images = die_at, 0, 0

    def __call__(self, pixels):
        self.calls += 1
        if self.calls == self.die_at:
            raise KeyboardInterrupt
        self.images += len(pixels)
        return super().__call__(pixels)


def test_a_killed_scoring_run_resumes_from_its_finished_chunks(lazy_set):
    data, teachers = lazy_set
    killed = Dying(teachers, data.mean, data.std, "cpu", die_at=4)  # batches of 3 in chunks of 5: [3, 2], [3, 2], [3, 2]
    with pytest.raises(KeyboardInterrupt):
        ce_scores(killed, data, batch_size=3, workers=0, chunk=5)
    path = scores_path(data.fingerprint(), teachers)
    assert not path.exists() and sorted(p.name for p in parts_dir(path).iterdir()) == ["000000000000-000000000005.safetensors"]
    resumed = Dying(teachers, data.mean, data.std, "cpu")
    scores = ce_scores(resumed, data, batch_size=3, workers=0, chunk=5)
    assert resumed.images == 10  # only the two unfinished chunks were scored again
    assert path.is_file() and not parts_dir(path).exists()
    path.unlink()
    whole = ce_scores(teachers, data, device="cpu", batch_size=3, workers=0, chunk=5)  # the same batches: the same bits
    assert scores.values.numpy().tobytes() == whole.values.numpy().tobytes()


def test_undecodable_images_score_nan_are_recorded_and_never_selected(lazy_set):
    data, teachers = lazy_set
    bad = 6
    sid = corrupt(data, bad)
    with pytest.raises(DataError, match=f"cannot decode image {sid}"):
        ce_scores(teachers, data, device="cpu", batch_size=4, workers=0)
    scores = ce_scores(teachers, data, device="cpu", batch_size=4, workers=0, skip_bad=True)
    assert [(i, s) for i, s, _ in scores.skipped] == [(bad, sid)]
    assert torch.isnan(scores.values).nonzero().flatten().tolist() == [bad]
    assert bool(torch.isfinite(scores.values[torch.arange(15) != bad]).all())
    # ranks 0-4 of a class of 5 fall in deciles 0, 2, 4, 6, 8; the bad one's class has 4 scored images (deciles 0, 2, 5, 7)
    picked = {i for q in (0, 2) for i in quantile_per_class(scores.values, data.targets, data.classes, 1, q, seed=0).tolist()}
    assert bad not in picked and len(picked) == 6
    with pytest.raises(RecipeError, match="larger than decile 8 of class 'bee' \\(0 images\\)"):  # a NaN would rank last, in decile 8
        quantile_per_class(scores.values, data.targets, data.classes, 1, 8, seed=0)
    # cached with the skip, it is reused with skip_bad; without it the file is tried again (here: still bad)
    assert ce_scores(teachers, data, device="cpu", skip_bad=True).skipped == scores.skipped
    with pytest.raises(DataError, match=f"cannot decode image {sid}"):
        ce_scores(teachers, data, device="cpu", workers=0)


def test_random_selection_without_excluded_images_replaces_them_with_the_next_draw():
    targets = torch.arange(4).repeat_interleave(25)
    base = random_per_class(targets, CLASSES, 5, seed=0)
    exclude = torch.zeros(100, dtype=torch.bool)
    exclude[base[[0, 7]]] = True
    picked = random_per_class(targets, CLASSES, 5, seed=0, exclude=exclude)
    assert torch.bincount(targets[picked], minlength=4).tolist() == [5, 5, 5, 5]
    assert not set(picked.tolist()) & set(base[[0, 7]].tolist())
    assert len(set(picked.tolist()) & set(base.tolist())) == 18  # every other pick kept
    exclude[targets == 2] = True
    exclude[torch.nonzero(targets == 2).flatten()[:21]] = False  # 21 left: fine; 4 left: too few
    random_per_class(targets, CLASSES, 5, seed=0, exclude=exclude)
    exclude[torch.nonzero(targets == 2).flatten()[:21]] = True
    with pytest.raises(RecipeError, match="larger than the smallest class"):
        random_per_class(targets, CLASSES, 5, seed=0, exclude=exclude)
