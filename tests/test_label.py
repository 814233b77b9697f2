"""Labelling: teacher logits (single, ensemble, non-finite), soft labels, augmented views and replay."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sl_compiler.artifact import dense_from_topk
from sl_compiler.data import load_dataset, normalize
from sl_compiler.errors import ExpertError, RecipeError
from sl_compiler.experts import resolve
from sl_compiler.experts.recipe import ExpertRecipe
from sl_compiler.experts.train import train_trajectories
from lazyset import add_teachers, lazy, write_folder
from sl_compiler.label import PRECISION, AugmentedViews, gather, replay, sample_views, soft_labels, teacher_labels, teacher_logits
from sl_compiler.label.views import PARAM_DTYPES

SHAPE = (3, 16, 16)

TINY = "synthetic:classes=4,size=16,train=12,test=6"  # tests/conftest.py TINY


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("experts")
    train_trajectories(TINY, "convnet_d3", [0, 1], recipe=ExpertRecipe(epochs=1, batch_size=16), store=root, device="cpu")
    data = load_dataset(TINY, split="train")
    return data, resolve("convnet_d3@1#0-1", root, data.info())


def keys(n):
    return [f"{i:06d}" for i in range(n)]


# ---- teacher logits ----------------------------------------------------------------------------


def test_ensemble_averages_member_logits(setup):
    data, teachers = setup
    images = data.pixels[:20]
    one = [teacher_logits([t], images, data.mean, data.std, "cpu") for t in teachers]
    both = teacher_logits(teachers, images, data.mean, data.std, "cpu")
    assert both.shape == (20, 4) and both.dtype == torch.float32
    torch.testing.assert_close(both, (one[0] + one[1]) / 2)
    with torch.no_grad():
        direct = teachers[0].load("cpu")(normalize(images, data.mean, data.std))
    torch.testing.assert_close(one[0], direct, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def lazy_setup(tmp_path_factory):
    root = write_folder(tmp_path_factory.mktemp("folder") / "root", per_class=5)  # 15 images: batches of 7 leave one
    data = lazy(root)
    store = add_teachers(tmp_path_factory.mktemp("lazy-experts"), data, seeds=(0, 1))
    return data, resolve("convnet_d3@0#0-1", store, data.info())


@pytest.mark.parametrize("workers", [0, 2])
def test_logits_do_not_depend_on_batch_size_workers_or_source_kind(lazy_setup, workers):
    data, teachers = lazy_setup
    assert data.pixels is None
    pixels = data.images()
    reference = teacher_logits(teachers, pixels, data.mean, data.std, "cpu", batch_size=len(pixels))
    for batch_size in (3, 7):  # 7 leaves a batch of one, which CPU kernels would round differently
        streamed = teacher_logits(teachers, data, data.mean, data.std, "cpu", batch_size=batch_size, workers=workers)
        assert streamed.dtype == torch.float32 and streamed.shape == (15, 3)
        assert streamed.numpy().tobytes() == reference.numpy().tobytes()


def test_an_ensemble_decodes_each_image_once_and_loads_each_teacher_once(lazy_setup, monkeypatch):
    data, teachers = lazy_setup
    decoded, loads = [], []
    real_decode = type(data).decode_batch
    monkeypatch.setattr(type(data), "decode_batch", lambda self, idx, skip_bad=False: (decoded.extend(idx), real_decode(self, idx, skip_bad))[1])

    class Counted:
        def __init__(self, teacher):
            self.teacher, self.reference = teacher, teacher.reference

        def load(self, device):
            loads.append(self.reference)
            return self.teacher.load(device)

    both = teacher_logits([Counted(t) for t in teachers], data, data.mean, data.std, "cpu", batch_size=4, workers=0)
    assert sorted(decoded) == list(range(15))  # one decode pass for both teachers
    assert loads == [t.reference for t in teachers]
    one = [teacher_logits([t], data.images(), data.mean, data.std, "cpu") for t in teachers]
    torch.testing.assert_close(both, (one[0] + one[1]) / 2, rtol=0, atol=1e-6)


class Probe(nn.Module):
    """A teacher that records the precision it runs at: autocast state, TF32 flags, its output dtype."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3 * 16 * 16, 4)
        self.seen = []

    def forward(self, x):
        out = self.linear(x.flatten(1))
        self.seen.append(
            {
                "autocast": torch.is_autocast_enabled(x.device.type),
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                "dtype": out.dtype,
            }
        )
        return out


class ProbeTeacher:
    reference = "probe@1#0"

    def __init__(self):
        self.model = Probe()

    def load(self, device):
        return self.model.eval()


def test_teachers_label_in_fp32_with_autocast_and_tf32_off(setup):
    data, _ = setup
    teacher = ProbeTeacher()
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's autocast must not reach the teacher
            teacher_logits([teacher], data.pixels[:6], data.mean, data.std, "cpu", batch_size=4)
            teacher_labels([teacher], data.pixels[:6], data.mean, data.std, "cpu", batch_size=4)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32  # restored after
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert len(teacher.model.seen) == 4
    assert all(s == {"autocast": False, "tf32_matmul": False, "tf32_cudnn": False, "dtype": torch.float32} for s in teacher.model.seen)
    assert PRECISION == "float32"


@pytest.mark.parametrize("topk", [None, 2])
def test_stored_labels_are_the_soft_labels_of_the_logits_whatever_the_batch(setup, topk):
    data, teachers = setup
    images = data.pixels[:7]
    params = sample_views(keys(7), 3, "cutmix+rrc", seed=0, shape=data.shape)
    views = AugmentedViews(images, params)
    logits = teacher_logits(teachers, views, data.mean, data.std, "cpu", batch_size=21)
    expected = soft_labels(logits.view(7, 3, -1), 2.0, topk)
    for batch_size in (3, 7, 4):  # 4 leaves a batch of one
        got = teacher_labels(teachers, views, data.mean, data.std, "cpu", batch_size=batch_size, views=3, temperature=2.0, topk=topk)
        assert set(got) == set(expected)
        for name, value in got.items():
            assert value.shape == expected[name].shape
            assert value.dtype == (torch.int16 if name == "topk_indices" else torch.float16)
            assert torch.equal(value, expected[name].to(value.dtype))


class NaNTeacher:
    """A teacher whose weights are NaN, as a diverged checkpoint would be."""

    reference = "broken@1#0"

    def load(self, device):
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
        nn.init.constant_(model[1].weight, float("nan"))
        return model.eval()


def test_non_finite_logits_name_the_teacher(setup):
    data, teachers = setup
    with pytest.raises(ExpertError, match="teacher broken@1#0 gives non-finite"):
        teacher_logits([teachers[0], NaNTeacher()], data.pixels[:6], data.mean, data.std, "cpu")


# ---- soft labels -------------------------------------------------------------------------------


def test_soft_labels_are_distributions_with_temperature_applied_before_softmax():
    logits = torch.randn(6, 3, 10, generator=torch.Generator().manual_seed(0)) * 4
    for t in (0.5, 1.0, 4.0):
        probs = soft_labels(logits, t)["probs"]
        assert probs.shape == (6, 3, 10)
        torch.testing.assert_close(probs.sum(-1), torch.ones(6, 3))
        torch.testing.assert_close(probs, torch.softmax(logits / t, -1))
    entropy = [-(p * p.log()).sum(-1).mean() for p in (soft_labels(logits, t)["probs"] for t in (0.5, 1.0, 4.0))]
    assert entropy[0] < entropy[1] < entropy[2]


def test_topk_stores_the_largest_probabilities_and_reconstructs():
    logits = torch.randn(8, 2, 10, generator=torch.Generator().manual_seed(1))
    dense = soft_labels(logits, 2.0)["probs"]
    top = soft_labels(logits, 2.0, topk=3)
    assert set(top) == {"topk_values", "topk_indices"} and top["topk_values"].shape == (8, 2, 3)
    torch.testing.assert_close(top["topk_values"], dense.sort(-1, descending=True).values[..., :3])
    torch.testing.assert_close(dense.gather(-1, top["topk_indices"]), top["topk_values"])
    rebuilt = dense_from_topk(top["topk_values"], top["topk_indices"], 10)
    torch.testing.assert_close(rebuilt.sum(-1), torch.ones(8, 2))
    torch.testing.assert_close(rebuilt.gather(-1, top["topk_indices"]), top["topk_values"])
    full = soft_labels(logits, 2.0, topk=10)
    torch.testing.assert_close(dense_from_topk(full["topk_values"], full["topk_indices"], 10), dense)
    with pytest.raises(RecipeError, match="--topk 11 is more than the 10 classes"):
        soft_labels(logits, 1.0, topk=11)


# ---- views -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rrc", "cutmix", "cutmix+rrc"])
def test_view_parameters_have_documented_names_dtypes_and_valid_ranges(kind):
    n, v = 12, 30
    params = sample_views(keys(n), v, kind, seed=0, shape=SHAPE)
    expected = ({"crop", "flip"} if "rrc" in kind else set()) | ({"partner", "cut"} if "cutmix" in kind else set())
    assert set(params) == expected
    for name, p in params.items():
        assert p.dtype == PARAM_DTYPES[name] and p.shape[:2] == (n, v)
    if "crop" in params:
        top, left, h, w = params["crop"].long().unbind(-1)
        assert bool(((h >= 1) & (w >= 1) & (top >= 0) & (left >= 0) & (top + h <= 16) & (left + w <= 16)).all())
        assert 0 < params["flip"].float().mean() < 1
    if "cut" in params:
        top, left, h, w = params["cut"].long().unbind(-1)
        assert bool(((h >= 0) & (w >= 0) & (top >= 0) & (left >= 0) & (top + h <= 16) & (left + w <= 16)).all())
        partner = params["partner"].long()
        assert bool(((partner >= 0) & (partner < n) & (partner != torch.arange(n).view(n, 1))).all())


def test_views_are_seeded_per_key_and_view_not_per_batch():
    a = sample_views(keys(10), 5, "cutmix+rrc", seed=3, shape=SHAPE)
    b = sample_views(keys(10), 9, "cutmix+rrc", seed=3, shape=SHAPE)
    for name in a:  # the first 5 views do not change when more are drawn
        assert torch.equal(a[name], b[name][:, :5])
    c = sample_views(keys(10)[4:], 5, "rrc", seed=3, shape=SHAPE)  # a key's crops do not depend on the other keys
    assert torch.equal(c["crop"], a["crop"][4:]) and torch.equal(c["flip"], a["flip"][4:])
    d = sample_views(keys(10), 5, "cutmix+rrc", seed=4, shape=SHAPE)
    assert not torch.equal(d["crop"], a["crop"])


def test_replay_identity_flip_crop_and_cut():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, *SHAPE), generator=g, dtype=torch.uint8)
    idx = torch.tensor([0, 1, 2, 0])
    full = torch.tensor([[0, 0, 16, 16]] * 4, dtype=torch.int16)
    flip = torch.tensor([0, 1, 0, 1], dtype=torch.uint8)
    out = replay(images, idx, {"crop": full, "flip": flip})
    assert out.dtype == torch.uint8
    assert torch.equal(out[0], images[0]) and torch.equal(out[2], images[2])
    assert torch.equal(out[1], images[1].flip(-1)) and torch.equal(out[3], images[0].flip(-1))
    # an 8x8 crop at (4, 4) scaled 2x samples source rows/cols 3.75 + j/2: bilinear upsampling of the image
    crop = torch.tensor([[4, 4, 8, 8]], dtype=torch.int16)
    up = replay(images.float(), torch.tensor([1]), {"crop": crop, "flip": torch.zeros(1, dtype=torch.uint8)})
    assert up.dtype == torch.float32
    expected = F.interpolate(images[1:2, :, 3:13, 3:13].float(), scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(up, expected[:, :, 2:18, 2:18], rtol=1e-4, atol=1e-3)
    cut = {"cut": torch.tensor([[2, 3, 5, 4], [0, 0, 0, 0]], dtype=torch.int16), "partner": torch.tensor([2, 0], dtype=torch.int32)}
    mixed = replay(images, torch.tensor([0, 1]), cut)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[2:7, 3:7] = True
    assert torch.equal(mixed[0][:, mask], images[2][:, mask]) and torch.equal(mixed[0][:, ~mask], images[0][:, ~mask])
    assert torch.equal(mixed[1], images[1])  # an empty box pastes nothing
    other = replay(images[[1, 0]], torch.tensor([1]), {k: v[:1] for k, v in cut.items()}, partner_index=torch.tensor([0]))
    assert torch.equal(other[0][:, mask], images[1][:, mask])  # partner_index overrides params["partner"]


def test_augmented_views_slice_like_replaying_each_view():
    images = torch.randint(0, 256, (6, *SHAPE), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    params = sample_views(keys(6), 4, "cutmix+rrc", seed=0, shape=SHAPE)
    views = AugmentedViews(images, params)
    assert len(views) == 24
    whole = views[0:24]
    assert torch.equal(torch.cat([views[0:5], views[5:17], views[17:100]]), whole)
    j = torch.tensor([0, 7, 23])
    rows = gather(params, j // 4, j % 4)
    assert torch.equal(replay(images, j // 4, rows), whole[j])
