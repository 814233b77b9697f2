"""slc diff: the same data is a match however it is packed; every kind of difference is found and measured."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from cli.main import main as slc
from sl_compiler.artifact import load, write_artifact
from sl_compiler.artifact.diff import diff_artifacts, fp16_ulps
from sl_compiler.data import load_dataset
from test_artifact import _inputs

TINY = "synthetic:classes=4,size=16,train=12,test=6"


@pytest.fixture(scope="module")
def tiny():
    return load_dataset(TINY, split="train")


@pytest.fixture
def a(tmp_path, tiny) -> Path:
    return write_artifact(tmp_path / "a", **_inputs(tiny))


def test_float16_ulps_count_the_steps_between_values():
    x = torch.tensor([1.0, 0.0, -0.0, 0.5, -(2.0**-24)], dtype=torch.float16)
    up = torch.tensor([1.0009765625, -0.0, 0.0, 0.5, 2.0**-24], dtype=torch.float16)  # 1 + 2**-10 is the next float16 after 1
    assert fp16_ulps(x, up).tolist() == [1, 0, 0, 0, 2]  # the smallest subnormals either side of zero are 2 steps apart
    assert fp16_ulps(torch.tensor([0.25], dtype=torch.float16), torch.tensor([0.5], dtype=torch.float16)).item() == 1024  # one binade


def test_a_byte_identical_rebuild_matches(tmp_path, tiny, a, capsys):
    b = write_artifact(tmp_path / "b", **_inputs(tiny))
    report = diff_artifacts(a, b)
    assert report.match and report.content_hash_equal and report.differing == []
    assert slc(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "match: the content hashes are equal" in out and "= images" in out


def test_the_same_data_in_other_shards_and_under_another_name_matches(tmp_path, tiny, a):
    inputs = _inputs(tiny)
    inputs.update(name="renamed", version="2.0.0", provenance={"by": "someone"})
    b = write_artifact(tmp_path / "b", **inputs, shard_samples=3)
    report = diff_artifacts(a, b)
    assert not report.content_hash_equal and report.match
    assert "packed into shards" in report.verdict()
    meta = next(s for s in report.sections if s.name == "metadata")
    assert not meta.same and not meta.counted and "name" in meta.summary and "provenance" in meta.summary


def _nudge(probs: torch.Tensor, sample: int, view: int, cls: int, steps: int) -> torch.Tensor:
    """probs as float16, with one value moved ``steps`` float16 ulps up."""
    h = probs.half().clone()
    bits = h.view(torch.int16)
    bits[sample, view, cls] += steps
    return h


def test_labels_a_few_ulps_apart_are_measured_per_view_and_tolerated_on_request(tmp_path, tiny, a, capsys):
    inputs = _inputs(tiny)
    original = inputs["labels"]["probs"]
    inputs["labels"]["probs"] = _nudge(original, sample=3, view=1, cls=2, steps=3)
    b = write_artifact(tmp_path / "b", **inputs)
    report = diff_artifacts(a, b)
    assert not report.match and report.differing == ["labels"]
    per_view = report.to_dict()["sections"]["labels"]["per_view"]
    old, new = original.half()[3, 1, 2], inputs["labels"]["probs"][3, 1, 2]
    assert per_view[0] == {"view": 0, "samples_differ": 0, "max_abs": 0.0, "max_ulps": 0, "indices_differ": 0}
    assert per_view[1]["samples_differ"] == 1 and per_view[1]["max_ulps"] == 3
    assert per_view[1]["max_abs"] == abs(float(new) - float(old))  # exact: the difference of two float16 values
    assert diff_artifacts(a, b, tolerance_ulps=3).match and not diff_artifacts(a, b, tolerance_ulps=2).match
    assert slc(["diff", str(a), str(b)]) == 1
    assert "max 3 float16 ulps" in capsys.readouterr().out
    assert slc(["diff", str(a), str(b), "--tolerance-ulps", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["match"] is True


def test_another_selection_and_other_images_are_found(tmp_path, tiny, a):
    inputs = _inputs(tiny)
    idx = torch.cat([c[2:4] for c in tiny.class_indices()])  # other images of the same classes
    inputs.update(images=tiny.images(idx), source_ids=[str(i) for i in idx.tolist()])
    inputs["selection"]["source_indices"] = idx.tolist()
    report = diff_artifacts(a, write_artifact(tmp_path / "b", **inputs))
    sections = report.to_dict()["sections"]
    assert set(report.differing) == {"selection", "images"}
    assert sections["selection"]["sources_differ"] == 8 and sections["images"]["bytes_differ"] == 8
    assert sections["images"]["max_abs_pixel_difference"] > 0


def test_bytes_that_differ_with_equal_pixels_and_one_changed_pixel(tmp_path, tiny, a):
    base = _inputs(tiny)

    def png(x: torch.Tensor, level: int) -> tuple[bytes, str]:
        buf = io.BytesIO()
        Image.fromarray(x.permute(1, 2, 0).numpy()).save(buf, format="PNG", compress_level=level)
        return buf.getvalue(), "png"

    inputs = _inputs(tiny)
    inputs["images"] = [png(x, 1) for x in base["images"]]  # the same pixels, compressed otherwise
    report = diff_artifacts(a, write_artifact(tmp_path / "b", **inputs))
    images = report.to_dict()["sections"]["images"]
    assert report.differing == ["images"] and images["bytes_differ"] == 8 and images["pixels_differ"] == 0
    assert "decoded pixels are equal" in images["summary"]
    changed = base["images"].clone()
    v = int(changed[5, 1, 7, 3])
    changed[5, 1, 7, 3] = v + 7 if v < 128 else v - 7
    inputs["images"] = changed
    images = diff_artifacts(a, write_artifact(tmp_path / "c", **inputs)).to_dict()["sections"]["images"]
    assert (images["bytes_differ"], images["pixels_differ"], images["max_abs_pixel_difference"]) == (1, 1, 7)


def test_recipe_teachers_schema_and_views_are_compared(tmp_path, tiny, a):
    inputs = _inputs(tiny)
    inputs["recipe"]["topk"] = 3
    inputs["teachers"][0]["sha256"] = "1" * 64
    report = diff_artifacts(a, write_artifact(tmp_path / "b", **inputs))
    sections = report.to_dict()["sections"]
    assert set(report.differing) == {"recipe", "teachers"}
    assert sections["recipe"]["keys"] == {"topk": [None, 3]}
    assert "sha256 000000000000 vs convnet_d3@1#0 sha256 111111111111" in sections["teachers"]["summary"]
    inputs = _inputs(tiny)
    inputs["label_schema"]["temperature"] = 4.0
    inputs["labels"]["views"]["crop"][0, 0, 0] += 1
    report = diff_artifacts(a, write_artifact(tmp_path / "c", **inputs))
    sections = report.to_dict()["sections"]
    assert set(report.differing) == {"labels", "views"}
    assert sections["labels"]["schema_differs"] == {"temperature": [2.0, 4.0]}
    assert sections["views"]["samples_differ"] == {"crop": 1}
    topk = write_artifact(tmp_path / "d", **_inputs(tiny, kind="topk"))
    assert "different label schemas" in diff_artifacts(a, topk).to_dict()["sections"]["labels"]["summary"]


def test_bad_input_exits_2(tmp_path, a, capsys):
    assert slc(["diff", str(a), str(tmp_path / "missing")]) == 2
    assert "no artifact at" in capsys.readouterr().err
    (a / "data" / "train-000000.tar").write_bytes(b"not a tar" * 100)
    assert slc(["diff", str(a), str(a)]) == 2  # unreadable: trouble, not a difference
    assert "not a readable tar" in capsys.readouterr().err


def test_hub_references_are_resolved_by_the_hub_module(tmp_path, tiny, a, monkeypatch, capsys):
    from sl_compiler import hub

    monkeypatch.setattr(hub, "pull", lambda spec: a)
    assert slc(["diff", str(write_artifact(tmp_path / "b", **_inputs(tiny))), "hf://me/tiny@v1.0.0"]) == 0


@pytest.fixture(scope="module")
def two_teachers(tmp_path_factory):
    """A store with two differently initialised convnet_d3 checkpoints of one trajectory (epochs 1 and 2)."""
    from sl_compiler.experts import ExpertStore
    from sl_compiler.models import create_model

    store = ExpertStore(tmp_path_factory.mktemp("experts"))
    info = load_dataset(TINY).info()
    for epoch in (1, 2):
        torch.manual_seed(epoch)
        store.add_checkpoint(create_model("convnet_d3", 4, 3, 16).state_dict(), dataset_info=info, arch="convnet_d3", epoch=epoch, seed=0)
    return store.root


def test_selection_and_images_do_not_depend_on_the_teachers_floats(tmp_path, two_teachers):
    """Random selection reads only the classes and the seed; images are the source's. Only labels come from float kernels."""
    from sl_compiler.compile import compile_artifact
    from sl_compiler.recipe import Recipe

    def build(teacher: str, out: str) -> Path:
        recipe = Recipe(dataset=TINY, ipc=2, teacher=teacher, name="tiny", seed=5)
        return compile_artifact(recipe, experts=two_teachers, device="cpu", out=tmp_path / out)

    a, b = build("convnet_d3@1", "a"), build("convnet_d3@2", "b")
    report = diff_artifacts(a, b)
    sections = report.to_dict()["sections"]
    assert sections["selection"]["same"] and sections["images"]["same"] and sections["dataset"]["same"]
    assert set(report.differing) == {"labels", "recipe", "teachers"}
    assert load(a).manifest["selection"]["source_indices"] == load(b).manifest["selection"]["source_indices"]


def test_random_selection_draws_exact_dyadic_uniforms_and_only_compares_them():
    """Why random selection is the same on every CPU kind: its float64 uniforms are integers from the seeded
    Mersenne Twister scaled by 2**-53 (exact, no rounding to differ), and it only sorts them and compares ranks."""
    from sl_compiler.seeding import generator
    from sl_compiler.select import random_per_class

    u = torch.rand(10_000, generator=generator("select", "random", 3), dtype=torch.float64)
    assert torch.equal(u * 2**53, torch.floor(u * 2**53))
    targets = torch.arange(10).repeat_interleave(1000)
    picked = random_per_class(targets, [str(c) for c in range(10)], 5, 3)
    ranks = {}  # the same picks by an independent rule: in each class, the 5 images with the smallest u (ties by index)
    for i in sorted(range(10_000), key=lambda i: (int(targets[i]), float(u[i]), i)):
        ranks.setdefault(int(targets[i]), []).append(i)
    assert picked.tolist() == [i for c in range(10) for i in sorted(ranks[c][:5])]


COMPILE_UNDER = """
from sl_compiler.compile import compile_artifact
from sl_compiler.recipe import Recipe
recipe = Recipe(dataset={spec!r}, ipc=3, teacher="convnet_d3@1", views=4, augment="cutmix+rrc", name="k", seed=2)
compile_artifact(recipe, experts={experts!r}, device="cpu", out={out!r})
"""


def test_another_float_kernel_path_leaves_selection_images_and_views_identical(tmp_path, tiny):
    """What README's reproducibility text promises for another CPU kind, with the same expert checkpoint.

    ATEN_CPU_CAPABILITY=default makes this process use torch's portable kernels instead of the
    CPU's vector ones, as a CPU without them would: the teacher's float arithmetic changes, the
    rest must not. (On a CPU without vector kernels both runs are the same, and so is every byte.)
    """
    import os
    import subprocess
    import sys

    from sl_compiler.experts import ExpertStore
    from sl_compiler.models import create_model

    root = tmp_path / "data"
    for split, d in (("train", tiny), ("test", load_dataset(TINY, split="test"))):
        for i in range(len(d)):
            folder = root / split / d.classes[int(d.targets[i])]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(d.pixels[i].permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    spec = f"imagefolder:{root}"
    store = ExpertStore(tmp_path / "experts")
    torch.manual_seed(0)
    store.add_checkpoint(create_model("convnet_d3", 4, 3, 16).state_dict(), dataset_info=load_dataset(spec).info(), arch="convnet_d3", epoch=1, seed=0)
    native = tmp_path / "native"
    exec(COMPILE_UNDER.format(spec=spec, experts=str(store.root), out=str(native)), {})  # this process's own kernels
    portable = tmp_path / "portable"
    env = {**os.environ, "SLC_CACHE": str(tmp_path / "cache-portable"), "SLC_PROGRESS": "0", "ATEN_CPU_CAPABILITY": "default"}
    code = COMPILE_UNDER.format(spec=spec, experts=str(store.root), out=str(portable))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    report = diff_artifacts(native, portable)
    sections = report.to_dict()["sections"]
    for name in ("dataset", "selection", "images", "views", "recipe", "teachers"):
        assert sections[name]["same"], (name, sections[name]["summary"])
    assert set(report.differing) <= {"labels"}
    assert max(v["max_abs"] for v in sections["labels"]["per_view"]) < 1e-2  # float16 rounding of nearly equal float32 logits


def test_a_malformed_sample_is_bad_input_not_a_traceback(tmp_path, tiny, a, capsys):
    from test_artifact import _rewrite_shard

    b = write_artifact(tmp_path / "b", **_inputs(tiny))
    _rewrite_shard(b, 0, lambda ms: [m for m in ms if m[0] != "000002.json"])
    assert slc(["diff", str(a), str(b)]) == 2
    assert "sample 000002 lacks a readable image, .cls or .json" in capsys.readouterr().err
