"""sl_compiler.augment: counter-based draws, batched per-student augmentation, RandomResizedCrop, pipelines."""

from __future__ import annotations

import math

import pytest
import torch

from sl_compiler.augment import DSA, Augment, Draws, TorchRandom, cutmix, random_resized_crop
from sl_compiler.augment import rrc as rrc_mod
from sl_compiler.augment.pipeline import parse
from sl_compiler.augment.rng import epoch_order, epoch_views, hash32, student_keys
from sl_compiler.errors import RecipeError

K, B = 3, 5


def _keys(seeds=(0, 1, 2)):
    host = student_keys(list(seeds))
    return torch.tensor(host, dtype=torch.int64), host


def _draws(seeds, counter=("augment", 0, 0), per=B, slots=40):
    keys, host = _keys(seeds)
    return Draws(keys, counter, len(seeds) * per, slots, host_keys=host)


def test_hash_is_the_same_on_ints_and_tensors():
    values = [0, 1, 2**31 - 1, 2**32 - 1, 123456789]
    as_tensor = hash32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert as_tensor == [hash32(v) for v in values]
    assert all(0 <= h < 2**32 for h in as_tensor) and len(set(as_tensor)) == len(values)


def test_draws_per_student_do_not_depend_on_the_batch():
    together = _draws((0, 1, 2))
    u, i, perm = together.uniform(K * B, 3), together.integers(K * B, 2, 7), together.permutation(K * B)
    for k, seed in enumerate((0, 1, 2)):
        alone = _draws((seed,))
        rows = slice(k * B, (k + 1) * B)
        assert torch.equal(alone.uniform(B, 3), u[rows])  # exact: integer hashes, no float arithmetic between them
        assert torch.equal(alone.integers(B, 2, 7), i[rows])
        assert torch.equal(alone.permutation(B) + k * B, perm[rows])
    assert sorted(perm[:B].tolist()) == list(range(B))  # a permutation within the student's own block
    assert ((u >= 0) & (u < 1)).all() and ((i >= 0) & (i < 7)).all()
    assert not torch.equal(u[:B], u[B : 2 * B])  # students draw differently
    assert not torch.equal(_draws((0, 1, 2), ("augment", 0, 1)).uniform(K * B, 3), u)  # and steps too


def test_draws_host_copy_of_student_choices_matches_the_device():
    d = _draws((4, 5, 6, 7), per=2)
    d.uniform(8, 2)
    values, host = d.student_integers(6)
    assert values.tolist() == host and all(0 <= v < 6 for v in host)


def test_reserve_keeps_later_slots_in_place():
    a, b = _draws((0,)), _draws((0,))
    a.reserve(4)
    b.uniform(B, 4)  # consumed instead of reserved: same position afterwards
    assert torch.equal(a.uniform(B, 2), b.uniform(B, 2))
    with pytest.raises(ValueError, match="reserved"):
        _draws((0,)).reserve(2).uniform(B, 3)


def test_uniform_draws_look_uniform():
    u = _draws((0,), per=20000, slots=1).uniform(20000, 1)
    # mean of 20000 U(0,1): sd sqrt(1/12/20000) = 0.002; 5 sd
    assert abs(float(u.mean()) - 0.5) < 0.01
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert (counts - 2000).abs().max() < 5 * math.sqrt(2000)


def test_epoch_orders_and_views_per_student():
    keys, _ = _keys((0, 1))
    order = epoch_order(keys, 0, 50)
    assert all(sorted(r) == list(range(50)) for r in order.tolist())
    assert torch.equal(epoch_order(keys[1:], 0, 50)[0], order[1])  # a student's order alone
    assert not torch.equal(order, epoch_order(keys, 1, 50))
    views = epoch_views(keys, 0, 50, 4)
    assert views.shape == (2, 50) and views.min() >= 0 and views.max() < 4


@pytest.mark.parametrize("spec", ["dsa", "rrc+flip+cutmix", "crop+flip", "cutmix"])
def test_batched_augmentation_equals_each_student_alone(spec):
    torch.manual_seed(0)
    x = torch.randn(K * B, 3, 12, 12)
    y = torch.softmax(torch.randn(K * B, 4), -1)
    aug = Augment(spec)
    bx, by = aug(x, y, _draws((0, 1, 2), slots=aug.slots))
    for k, seed in enumerate((0, 1, 2)):
        rows = slice(k * B, (k + 1) * B)
        ax, ay = aug(x[rows], y[rows], _draws((seed,), slots=aug.slots))
        # per-row operations on the same numbers: equal up to the float rounding of a different batch layout
        assert torch.allclose(ax, bx[rows], atol=1e-6, rtol=0), f"student {k}"
        assert torch.allclose(ay, by[rows], atol=1e-6, rtol=0)
    assert not torch.equal(bx, x)


def test_dsa_students_pick_their_own_family():
    # flip-only vs crop-only rows are told apart by which pixels moved; with 40 students both appear
    x = torch.arange(40 * 1 * 1 * 8, dtype=torch.float32).view(40, 1, 1, 8) + 1
    dsa = DSA("crop_flip")
    keys, host = _keys(range(40))
    d = Draws(keys, ("augment", 0, 0), 40, dsa.slots, host_keys=host)
    out = dsa(x, d)
    flipped = (out == x.flip(3)).all(-1).flatten()
    picks, _ = Draws(keys, ("augment", 0, 0), 40, dsa.slots, host_keys=host).student_integers(2)
    assert 0 < int((picks == 1).sum()) < 40
    # a row that picked flip is x or its mirror; one that picked crop is a shift of x with zeros
    assert (flipped | (out == x).all(-1).flatten())[picks == 1].all()
    assert ((out == 0).any(-1).flatten() | (out == x).all(-1).flatten())[picks == 0].all()


def test_generator_path_still_works_for_expert_training():
    x = torch.randn(6, 3, 16, 16)
    a = DSA()(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, DSA()(x, torch.Generator().manual_seed(3))) and a.shape == x.shape
    assert torch.equal(cutmix(x, None, torch.Generator().manual_seed(1))[0], cutmix(x, None, TorchRandom(torch.Generator().manual_seed(1), x.device))[0])


def test_random_resized_crop_boxes_follow_torchvision():
    n, h, w = 4000, 32, 32
    boxes = rrc_mod.crop_boxes(_draws((0,), per=n, slots=rrc_mod.SLOTS), n, h, w)
    top, left, ch, cw = boxes.unbind(1)
    assert ((ch >= 1) & (cw >= 1) & (top >= 0) & (left >= 0) & (top + ch <= h) & (left + cw <= w)).all()
    area = ch * cw / (h * w)
    ratio = cw / ch
    # rounding to whole pixels moves area and ratio a little past the sampled ranges
    assert area.min() >= 0.08 * 0.7 and area.max() <= 1.0 and ratio.min() > 0.6 and ratio.max() < 1.7
    assert abs(float(area.mean()) - 0.54) < 0.05  # U(0.08, 1) has mean 0.54; rejections of big boxes pull it down a little
    full = torch.tensor([[0.0, 0.0, h, w]])
    x = torch.rand(1, 3, h, w)
    assert torch.allclose(rrc_mod.resize_boxes(x, full), x, atol=1e-6)  # the whole image resized to itself
    mirrored = rrc_mod.resize_boxes(x, full, flip=torch.tensor([1]))
    assert torch.allclose(mirrored, x.flip(3), atol=1e-6)


def test_random_resized_crop_falls_back_to_a_centre_crop():
    class Never:  # attempts whose area fraction is 1 and ratio extreme never fit a 32 x 8 image
        def uniform(self, n, k):
            u = torch.ones(n, k) * 0.999
            u[:, -2:] = 0.5
            return u

    boxes = rrc_mod.crop_boxes(Never(), 2, 32, 8)
    # torchvision: in_ratio 0.25 < 3/4, so w = 8, h = round(8 / (3/4)) = 11, centred
    assert boxes[0].tolist() == [10.0, 0.0, 11.0, 8.0]


def test_random_resized_crop_keeps_shape_and_is_seeded():
    x = torch.rand(2 * B, 3, 16, 16)
    a = random_resized_crop(x, _draws((0, 1), slots=rrc_mod.SLOTS))
    assert a.shape == x.shape and torch.equal(a, random_resized_crop(x, _draws((0, 1), slots=rrc_mod.SLOTS)))
    assert not torch.equal(a, x)


def test_pipeline_specs():
    assert parse("rrc+flip+cutmix") == ("rrc", "flip", "cutmix") and parse("none") == () and parse("DSA") == ("dsa",)
    for bad in ("blur", "dsa+dsa", "", "+"):
        with pytest.raises(RecipeError, match="augment"):
            parse(bad)
    assert Augment("rrc+flip+cutmix").slots == rrc_mod.SLOTS + 1 + 4
    assert Augment("none")(torch.ones(2, 1, 2, 2), None, None)[0].sum() == 8
