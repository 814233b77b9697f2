"""Teacher references: parsing, formatting, resolving in a store, and every error they can raise."""

from __future__ import annotations

import json

import pytest
import torch

from sl_compiler.data import load_dataset
from sl_compiler.errors import ExpertError
from sl_compiler.experts import ExpertStore, Member, format_epoch, format_reference, parse_reference, resolve
from sl_compiler.models import create_model

TINY = "synthetic:classes=4,size=16,train=12,test=6"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("convnet_d3@20", [Member("convnet_d3", 20.0, (0,))]),
        ("convnet_d3@2.5", [Member("convnet_d3", 2.5, (0,))]),
        ("convnet_d3@0.25#3", [Member("convnet_d3", 0.25, (3,))]),
        ("convnet_d3@20#0-9", [Member("convnet_d3", 20.0, tuple(range(10)))]),
        ("convnet_d3@20#0,3,7", [Member("convnet_d3", 20.0, (0, 3, 7))]),
        ("convnet_d3@20#0-1+resnet18@43", [Member("convnet_d3", 20.0, (0, 1)), Member("resnet18", 43.0, (0,))]),
        (" convnet_d3@1 + convnet_d3@2 ", [Member("convnet_d3", 1.0, (0,)), Member("convnet_d3", 2.0, (0,))]),
    ],
)
def test_parse_reference(text, expected):
    assert parse_reference(text) == expected


def test_format_reference_round_trips_and_writes_seeds():
    members = parse_reference("convnet_d3@20#0-9+resnet18@2.5")
    text = format_reference(members)
    assert text == "convnet_d3@20#0-9+resnet18@2.5#0"
    assert parse_reference(text) == members


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "empty teacher reference"),
        ("convnet_d3", "bad teacher reference 'convnet_d3'"),
        ("convnet_d3@", "bad teacher reference"),
        ("@20", "bad teacher reference"),
        ("convnet_d3@x", "bad teacher reference"),
        ("convnet_d3@-1", "bad teacher reference"),
        ("convnet_d3@20+", "bad teacher reference ''"),
        ("convnet_d3@20#a", "bad teacher reference"),
        ("convnet_d3@20#3-1", "bad seeds '3-1'"),
        ("convnet_d3@20#1,1", "bad seeds"),
        ("convnet_d3@20#0-1+convnet_d3@20#1", "names the same checkpoint twice"),
    ],
)
def test_parse_reference_errors(text, says):
    with pytest.raises(ExpertError, match="ARCH@EPOCH|#0-9|each arch@epoch#seed once") as info:
        parse_reference(text)
    assert says in str(info.value)


def test_format_epoch():
    assert [format_epoch(e) for e in (0, 0.25, 1.0, 43, 2.5, 1 / 3)] == ["0", "0.25", "1", "43", "2.5", "0.333333"]


@pytest.fixture(scope="module")
def tiny_info():
    return load_dataset(TINY, split="train").info()


def _state(arch: str, seed: int) -> dict:
    torch.manual_seed(seed)
    return create_model(arch, 4, 3, 16).state_dict()


@pytest.fixture
def store(tmp_path, tiny_info) -> ExpertStore:
    """convnet_d3 seeds 0-1 with epochs 0, 0.25, 0.5, 1, 2; convnet_d4 seed 0 at epoch 1."""
    store = ExpertStore(tmp_path / "experts")
    for seed in (0, 1):
        for epoch in (0, 0.25, 0.5, 1, 2):
            store.add_checkpoint(_state("convnet_d3", seed * 10 + int(epoch * 4)), dataset_info=tiny_info, arch="convnet_d3", epoch=epoch, seed=seed, test_accuracy=25.0 + epoch)
    store.add_checkpoint(_state("convnet_d4", 99), dataset_info=tiny_info, arch="convnet_d4", epoch=1, seed=0)
    return store


def test_resolve_single_ensemble_and_fractional(store, tiny_info):
    (teacher,) = resolve("convnet_d3@0.5", store, tiny_info)
    assert (teacher.arch, teacher.epoch, teacher.seed, teacher.num_classes, teacher.shape) == ("convnet_d3", 0.5, 0, 4, (3, 16, 16))
    assert teacher.test_accuracy == 25.5
    assert teacher.checkpoint.name == "epoch-0.5.safetensors"
    teachers = resolve("convnet_d3@2#0-1+convnet_d4@1", store, tiny_info)
    assert [t.reference for t in teachers] == ["convnet_d3@2#0", "convnet_d3@2#1", "convnet_d4@1#0"]
    # epochs match within 1e-6
    assert resolve("convnet_d3@0.2500001", store.root, tiny_info)[0].epoch == 0.25


def test_teacher_load_gives_the_stored_weights_in_eval_mode(store, tiny_info):
    (teacher,) = resolve("convnet_d3@1#1", store, tiny_info)
    model = teacher.load("cpu")
    assert not model.training
    expected = _state("convnet_d3", 14)
    got = model.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    entry = teacher.manifest_entry()
    assert entry["reference"] == "convnet_d3@1#1" and entry["sha256"] == teacher.sha256
    assert entry["checkpoint"] == f"{tiny_info['name']}/convnet_d3/seed-1/epoch-1.safetensors"
    json.dumps(entry)


def test_corrupt_checkpoint_is_an_error_naming_the_file(store, tiny_info):
    (teacher,) = resolve("convnet_d3@1", store, tiny_info)
    data = bytearray(teacher.checkpoint.read_bytes())
    data[-1] ^= 0xFF
    teacher.checkpoint.write_bytes(bytes(data))
    with pytest.raises(ExpertError, match="epoch-1.safetensors is corrupt.*retrain"):
        teacher.load("cpu")


def test_unknown_epoch_lists_the_store_epochs(store, tiny_info):
    with pytest.raises(ExpertError) as info:
        resolve("convnet_d3@7", store, tiny_info)
    assert f"no checkpoint convnet_d3@7 for {tiny_info['name']} seed 0; the store has epochs 0, 0.25, 0.5, 1, 2" in str(info.value)


def test_unknown_seed_lists_seeds(store, tiny_info):
    with pytest.raises(ExpertError, match=r"no convnet_d3 seed 5 .* the store has seeds 0,1"):
        resolve("convnet_d3@1#5", store, tiny_info)


def test_unknown_arch_lists_archs_and_seeds(store, tiny_info):
    with pytest.raises(ExpertError, match=r"no resnet18 experts .* the store has convnet_d3 \(seeds 0,1\); convnet_d4 \(seeds 0\)"):
        resolve("resnet18@1", store, tiny_info)


def test_unknown_dataset_lists_datasets(store, tiny_info, tmp_path):
    other = load_dataset("synthetic:classes=3,size=16,train=4,test=2").info()
    with pytest.raises(ExpertError, match=rf"no experts for synthetic:classes=3.*it holds {tiny_info['name']}"):
        resolve("convnet_d3@1", store, other)
    with pytest.raises(ExpertError, match="it is empty"):
        resolve("convnet_d3@1", tmp_path / "nowhere", tiny_info)


def test_dataset_mismatch_is_an_error(store, tiny_info):
    changed = dict(tiny_info, fingerprint="0" * 64)
    with pytest.raises(ExpertError, match="trained on other data.*fingerprint"):
        resolve("convnet_d3@1", store, changed)
    fewer = dict(tiny_info, num_classes=3, classes=tiny_info["classes"][:3])
    with pytest.raises(ExpertError, match="3 classes vs 4"):
        resolve("convnet_d3@1", store, fewer)
    # no fingerprint on one side: name and classes suffice
    assert resolve("convnet_d3@1", store, dict(tiny_info, fingerprint=None))


def test_teachers_carry_their_preprocess_with_a_fallback_for_old_trajectories(store, tiny_info):
    # written before datasets recorded a preprocess: the shorter side resized to the resolution, centre-cropped
    old = {k: v for k, v in tiny_info.items() if k != "preprocess"}
    store.add_checkpoint(_state("convnet_d3", 8), dataset_info=old, arch="convnet_d3", epoch=1, seed=5)
    (teacher,) = resolve("convnet_d3@1#5", store, tiny_info)
    fallback = {"resize": 16, "crop": [16, 16], "interpolation": "bilinear", "mean": tiny_info["mean"], "std": tiny_info["std"]}
    assert teacher.preprocess == fallback == tiny_info["preprocess"]  # today's record says the same
    assert teacher.manifest_entry()["preprocess"] == fallback
    recorded = {"resize": 18, "crop": [16, 16], "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}
    store.add_checkpoint(_state("convnet_d3", 7), dataset_info={**tiny_info, "preprocess": recorded}, arch="convnet_d3", epoch=1, seed=4)
    (teacher,) = resolve("convnet_d3@1#4", store, tiny_info)
    assert teacher.preprocess == recorded and (teacher.mean, teacher.std) == ((0.5,) * 3, (0.2,) * 3)
    assert json.loads(json.dumps(teacher.manifest_entry()))["preprocess"] == recorded
