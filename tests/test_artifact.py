"""The artifact, format 1: writer, reader, verify, card and inspect against docs/artifact-format.md."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from cli.main import main as slc
from sl_compiler.artifact import FORMAT, dense_from_topk, inspect_artifact, load, verify, write_artifact
from sl_compiler.artifact import format as fmt
from sl_compiler.artifact import manifest as mf
from sl_compiler.artifact import writer as writer_module
from sl_compiler.artifact.card import render_card
from sl_compiler.data import decode_image, load_dataset
from sl_compiler.errors import ArtifactError, VerifyError

SPEC = Path(__file__).resolve().parents[1] / "docs" / "artifact-format.md"


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("synthetic:classes=4,size=16,train=12,test=6", split="train")


def _inputs(tiny, *, n_per_class=2, views=2, kind="dense", seed=0):
    """Arguments for write_artifact: n_per_class images of each class, V soft-label views and view parameters."""
    idx = torch.cat([c[:n_per_class] for c in tiny.class_indices()])
    n, c = len(idx), tiny.num_classes
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, views, c, generator=g), -1)
    if kind == "dense":
        labels = {"probs": probs}
    elif kind == "topk":
        v, i = probs.topk(2, -1)
        labels = {"topk_values": v, "topk_indices": i}
    else:
        labels = None
    if labels is not None:
        labels["views"] = {
            "crop": torch.randint(0, 16, (n, views, 4), generator=g, dtype=torch.int16),
            "flip": torch.randint(0, 2, (n, views), generator=g, dtype=torch.uint8),
        }
    return dict(
        name="tiny",
        version="1.0.0",
        dataset=tiny.info(),
        images=tiny.images(idx),
        targets=tiny.targets[idx],
        source_ids=[str(i) for i in idx.tolist()],
        labels=labels,
        label_schema={"temperature": 2.0, "teacher": "convnet_d3@1#0"},
        recipe={"dataset": tiny.name, "ipc": n_per_class, "teacher": "convnet_d3@1#0", "topk": None},
        teachers=[{"reference": "convnet_d3@1#0", "arch": "convnet_d3", "epoch": 1, "seed": 0, "sha256": "0" * 64, "test_accuracy": 62.5}],
        selection={"strategy": "random", "seed": 0, "source_indices": idx.tolist()},
    )


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(art: Path) -> dict:
    return json.loads((art / "manifest.json").read_text())


def _reseal(art: Path, manifest: dict, content_hash: bool = True) -> None:
    """Write ``manifest`` with every checksum a writer would compute (card, manifest_sha256, and the content hash unless told not to).

    What an editor who knows the format would produce: only verify's deeper checks can catch what was changed.
    """
    manifest = {k: v for k, v in manifest.items() if k not in ("card", "manifest_sha256")}
    if content_hash:
        manifest["content_hash"] = fmt.content_hash(manifest)
    exts = set()
    for shard in manifest.get("shards", []):
        with tarfile.open(art / shard["path"]) as tar:
            exts |= {n.split(".", 1)[1] for n in tar.getnames() if n.split(".", 1)[1] in fmt.IMAGE_EXTS}
    card = render_card(manifest, sorted(exts)).encode()
    (art / "README.md").write_bytes(card)
    manifest["card"] = mf.card_record(card)
    manifest["manifest_sha256"] = mf.manifest_sha256(manifest)
    (art / "manifest.json").write_bytes(fmt.dumps_manifest(manifest))


def _rewrite_shard(art: Path, shard: int, edit) -> None:
    """Rebuild shard ``shard`` with ``edit(list of (name, bytes)) -> list`` and re-seal the manifest.

    The result is self-consistent at the byte level (sizes, sha256, content hash), so only the
    deeper checks of verify can catch what ``edit`` broke.
    """
    manifest = _manifest(art)
    rel = manifest["shards"][shard]["path"]
    with tarfile.open(art / rel) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(art / rel, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in edit(members):
            fmt.add_member(tar, name, data)
    data = (art / rel).read_bytes()
    manifest["shards"][shard].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    manifest["bytes"]["shards"] = sum(s["bytes"] for s in manifest["shards"])
    _reseal(art, manifest)


def _jpeg(seed: int, size=(20, 24)) -> bytes:
    g = torch.Generator().manual_seed(seed)
    arr = torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# ---------------------------------------------------------------- the spec and the code agree


def _spec_table_keys(heading: str) -> list[str]:
    """First-column keys (`key`) of the markdown table after ``heading`` in the spec."""
    text = SPEC.read_text()
    section = text[text.index(heading) :]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    keys = []
    for row in rows[2:]:  # after the header and the --- row
        keys += re.findall(r"`([a-z0-9_]+)`", row.split("|")[1])
    return keys


def test_spec_names_the_format_and_manifest_keys_the_code_uses():
    text = SPEC.read_text()
    assert f'"format": "{FORMAT}"' in text
    assert set(_spec_table_keys("| key | type | meaning |")) == set(mf.MANIFEST_TYPES) | set(mf.INTEGRITY_TYPES) | set(mf.OPTIONAL_TYPES) | set(mf.IMPORT_TYPES)
    label_keys = set(_spec_table_keys("`labels`:")) - {"temperature"}
    assert label_keys == set(mf.LABEL_TYPES)
    for ext in fmt.IMAGE_EXTS:
        assert f"`{ext}`" in text
    for rule in fmt.FILL_RULES:
        assert f'`"{rule}"`' in text


def test_spec_views_table_matches_the_compilers_view_parameters(tmp_path, tiny):
    from sl_compiler.label.views import PARAM_DTYPES, sample_views

    text = SPEC.read_text()
    rows = re.findall(r"^\| `view\.([a-z_]+)` \| ([a-z0-9]+) \|", text, flags=re.M)
    assert dict(rows) == {k: fmt.DTYPE_NAMES[v] for k, v in PARAM_DTYPES.items()}
    inputs = _inputs(tiny, views=3)
    keys = [fmt.sample_key(i, 6) for i in range(8)]
    inputs["labels"]["views"] = sample_views(keys, 3, "cutmix+rrc", 0, (3, 16, 16))
    art = load(write_artifact(tmp_path / "a", **inputs))
    assert set(art.views) == set(PARAM_DTYPES)
    assert all(torch.equal(art.views[k], v) for k, v in inputs["labels"]["views"].items())
    verify(art.path)


def test_written_manifest_matches_the_spec_schema(tmp_path, tiny):
    art = write_artifact(tmp_path / "a", **_inputs(tiny))
    manifest = json.loads((art / "manifest.json").read_text())
    assert set(manifest) == set(mf.MANIFEST_TYPES) | set(mf.INTEGRITY_TYPES) | set(mf.OPTIONAL_TYPES)
    assert (art / "manifest.json").read_text() == json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    card = (art / "README.md").read_bytes()
    assert manifest["card"] == {"bytes": len(card), "sha256": hashlib.sha256(card).hexdigest()}
    rest = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    assert manifest["manifest_sha256"] == hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert sorted(p.relative_to(art).as_posix() for p in art.rglob("*")) == ["README.md", "data", "data/train-000000.tar", "grid.png", "manifest.json"]
    lab = manifest["labels"]
    assert (lab["kind"], lab["views"], lab["num_classes"], lab["dtype"], lab["k"], lab["temperature"]) == ("dense", 2, 4, "float16", None, 2.0)
    assert lab["view_params"] == {"crop": {"dtype": "int16", "shape": [2, 4]}, "flip": {"dtype": "uint8", "shape": [2]}}
    assert manifest["ipc"] == 2 and manifest["counts"] == {"samples": 8, "per_class": [2, 2, 2, 2]}
    with tarfile.open(art / "data/train-000000.tar") as tar:
        names = tar.getnames()
        first = {n.split(".", 1)[1]: tar.extractfile(n).read() for n in names[:4]}
    assert names[:4] == ["000000.cls", "000000.json", "000000.png", "000000.safetensors"]
    assert names == sorted(names) and len(names) == 32
    assert first["cls"] == b"0"
    assert json.loads(first["json"]) == {"class": 0, "label": "class_0", "source": manifest["selection"]["source_indices"][0].__str__()}
    tensors = load_tensors(first["safetensors"])
    assert {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()} == {
        "probs": (torch.float16, (2, 4)),
        "view.crop": (torch.int16, (2, 4)),
        "view.flip": (torch.uint8, (2,)),
    }
    header_len = int.from_bytes(first["safetensors"][:8], "little")
    assert "__metadata__" not in json.loads(first["safetensors"][8 : 8 + header_len])


# ---------------------------------------------------------------- reproducibility and atomicity


def test_rebuilds_are_byte_identical(tmp_path, tiny):
    a = write_artifact(tmp_path / "a", **_inputs(tiny, kind="topk"), shard_samples=3)
    b = write_artifact(tmp_path / "b", **_inputs(tiny, kind="topk"), shard_samples=3)
    fa, fb = _files(a), _files(b)
    assert list(fa) == list(fb) and len(fa) == 6  # manifest, card, grid, 3 shards
    assert fa == fb
    c = write_artifact(tmp_path / "c", **_inputs(tiny, kind="topk", seed=1), shard_samples=3)
    assert _files(c)["data/train-000000.tar"] != fa["data/train-000000.tar"]


def test_tar_members_are_reproducible_and_cannot_escape(tmp_path, tiny):
    art = write_artifact(tmp_path / "a", **_inputs(tiny))
    with tarfile.open(art / "data/train-000000.tar") as tar:
        for m in tar:
            assert m.isreg() and "/" not in m.name and ".." not in m.name
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, 0, "", "", 0o644)


@pytest.mark.parametrize("evil", ["../escape.cls", "/etc/evil.cls", "000000.cls/../../x.cls"])
def test_a_member_that_would_escape_is_refused(tmp_path, tiny, evil):
    art = write_artifact(tmp_path / "a", **_inputs(tiny))
    _rewrite_shard(art, 0, lambda ms: [*ms, (evil, b"0")])
    with pytest.raises(VerifyError, match="unsafe or unexpected member") as exc:
        verify(art)
    assert exc.value.path == "data/train-000000.tar"
    with pytest.raises(ArtifactError, match="unsafe"):
        load(art)
    assert not (tmp_path / "escape.cls").exists()


def test_a_failure_midway_leaves_no_artifact_and_a_rerun_succeeds(tmp_path, tiny, monkeypatch):
    real = writer_module._encode_image

    def crash(item, i, shape):
        if i == 5:
            raise RuntimeError("disk on fire")
        return real(item, i, shape)

    monkeypatch.setattr(writer_module, "_encode_image", crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_artifact(tmp_path / "a", **_inputs(tiny))
    assert list(tmp_path.iterdir()) == []  # neither the artifact nor its temp folder
    monkeypatch.setattr(writer_module, "_encode_image", real)
    verify(write_artifact(tmp_path / "a", **_inputs(tiny)))


def test_a_failed_forced_rewrite_keeps_the_old_artifact(tmp_path, tiny, monkeypatch):
    art = write_artifact(tmp_path / "a", **_inputs(tiny))
    before = _files(art)
    monkeypatch.setattr(writer_module, "render_card", lambda m, exts: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_artifact(tmp_path / "a", **_inputs(tiny, seed=3), force=True)
    assert _files(art) == before and [p.name for p in tmp_path.iterdir()] == ["a"]


KILLED_WRITER = """
import os, signal, sys, torch
sys.path.insert(0, {tests!r})
from test_artifact import _inputs
from sl_compiler.data import load_dataset
from sl_compiler.artifact import writer
real = writer._encode_image
def die(item, i, shape):
    if i == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(item, i, shape)
writer._encode_image = die
tiny = load_dataset("synthetic:classes=4,size=16,train=12,test=6", split="train")
writer.write_artifact({out!r}, **_inputs(tiny), shard_samples=2)
"""


def test_a_killed_writer_leaves_no_artifact(tmp_path, tiny):
    out = tmp_path / "a"
    code = KILLED_WRITER.format(tests=str(Path(__file__).parent), out=str(out))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env={"SLC_PROGRESS": "0", "PATH": ""})
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert not out.exists()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers[0] == ".a.lock" and len(leftovers) == 2 and leftovers[1].startswith(".a.tmp-")  # hidden, never mistaken for an artifact
    assert list((tmp_path / leftovers[1] / "data").iterdir())  # with its partial shards
    with pytest.raises(ArtifactError, match="no artifact"):
        load(out)
    verify(write_artifact(out, **_inputs(tiny)))
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # the next write removed the dead writer's folder and the lock


def test_existing_output_is_refused_without_force(tmp_path, tiny):
    art = write_artifact(tmp_path / "a", **_inputs(tiny))
    before = load(art).content_hash
    with pytest.raises(ArtifactError, match="already exists.*--force"):
        write_artifact(art, **_inputs(tiny, seed=1))
    assert load(art).content_hash == before
    assert write_artifact(art, **_inputs(tiny, seed=1), force=True) == art
    assert load(art).content_hash != before
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # the old copy is gone
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("precious")
    with pytest.raises(ArtifactError, match="not an slc artifact"):
        write_artifact(tmp_path / "notes", **_inputs(tiny), force=True)
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "precious"


# ---------------------------------------------------------------- round trips


def test_dense_round_trip(tmp_path, tiny):
    inputs = _inputs(tiny)
    art = load(write_artifact(tmp_path / "a", **inputs))
    assert art.label_kind == "dense" and art.num_views == 2 and len(art) == 8
    assert art.keys == [f"{i:06d}" for i in range(8)]
    assert torch.equal(art.targets, inputs["targets"])
    assert torch.equal(art.images, inputs["images"])
    assert torch.equal(art.dense_labels(), inputs["labels"]["probs"].half().float())
    assert all(torch.equal(art.views[k], v) for k, v in inputs["labels"]["views"].items())
    assert art.source_ids == inputs["source_ids"]
    assert (art.classes, art.num_classes, art.ipc) == (tiny.classes, 4, 2)
    assert art.mean == pytest.approx(tiny.mean, abs=1e-6) and art.std == pytest.approx(tiny.std, abs=1e-6)


def test_top_k_round_trip_fills_the_rest_uniformly(tmp_path, tiny):
    inputs = _inputs(tiny, kind="topk")
    art = load(write_artifact(tmp_path / "a", **inputs))
    assert art.manifest["labels"]["k"] == 2 and art.manifest["labels"]["fill"] == "uniform"
    assert art.labels["topk_indices"].dtype == torch.int16
    dense = art.dense_labels()
    v = inputs["labels"]["topk_values"].half().float()
    i = inputs["labels"]["topk_indices"]
    assert torch.equal(dense.gather(-1, i), v)  # stored probabilities are kept exactly
    rest = (1 - v.sum(-1, keepdim=True)) / 2  # the other C - k = 2 classes share what is left
    others = dense.scatter(-1, i, -1.0)
    assert torch.allclose(others[others >= 0].view(8, 2, 2), rest.expand(8, 2, 2))
    assert torch.allclose(dense.sum(-1), torch.ones(8, 2))


def test_fill_rules_on_a_hand_made_row():
    values, indices = torch.tensor([[0.5, 0.3]]), torch.tensor([[2, 0]])
    assert torch.allclose(dense_from_topk(values, indices, 4, "uniform"), torch.tensor([[0.3, 0.1, 0.5, 0.1]]))
    assert torch.allclose(dense_from_topk(values, indices, 4, "renormalize"), torch.tensor([[0.375, 0.0, 0.625, 0.0]]))
    with pytest.raises(ArtifactError, match="fill"):
        dense_from_topk(values, indices, 4, "guess")


def test_renormalize_fill_is_recorded_and_applied(tmp_path, tiny):
    inputs = _inputs(tiny, kind="topk")
    inputs["label_schema"]["fill"] = "renormalize"
    art = load(write_artifact(tmp_path / "a", **inputs))
    dense = art.dense_labels()
    assert art.manifest["labels"]["fill"] == "renormalize"
    assert int((dense > 0).sum(-1).max()) == 2 and torch.allclose(dense.sum(-1), torch.ones(8, 2))


def test_hard_labels_store_no_safetensors(tmp_path, tiny):
    art = load(write_artifact(tmp_path / "a", **_inputs(tiny, kind="hard")))
    assert art.label_kind == "hard" and art.views is None and art.manifest["bytes"]["labels"] == 0
    assert all("safetensors" not in art.sample_bytes(i) for i in range(len(art)))
    assert torch.equal(art.dense_labels(), torch.nn.functional.one_hot(art.targets, 4).float().unsqueeze(1))
    verify(art.path)


def test_jpeg_source_bytes_are_kept_byte_for_byte(tmp_path, tiny):
    inputs = _inputs(tiny, kind="hard")
    jpegs = [(_jpeg(i), "JPG" if i % 2 else ".jpeg") for i in range(8)]
    inputs["images"] = jpegs
    art = load(write_artifact(tmp_path / "a", **inputs))
    for i, (data, ext) in enumerate(jpegs):
        assert art.encoded(i) == (data, ext.lower().lstrip("."))
        assert torch.equal(art.images[i], decode_image(data, (3, 16, 16)))  # resized as the loaders resize
    verify(art.path)


@pytest.mark.parametrize("channels", [1, 3])
def test_raw_pixels_are_stored_as_png_that_decodes_to_the_same_pixels(tmp_path, channels):
    data = load_dataset(f"synthetic:classes=2,size=8,channels={channels},train=3,test=1")
    art = load(
        write_artifact(
            tmp_path / "a",
            name="px",
            version="0.1.0-rc.1+b7",
            dataset=data.info(),
            images=data.pixels,
            targets=data.targets,
            source_ids=[str(i) for i in range(6)],
            labels=None,
        )
    )
    assert all(art.encoded(i)[1] == "png" for i in range(6))
    assert Image.open(io.BytesIO(art.encoded(0)[0])).mode == ("L" if channels == 1 else "RGB")
    assert torch.equal(art.images, data.pixels)


def test_torch_dataset_and_wds_stream_agree(tmp_path, tiny):
    art = load(write_artifact(tmp_path / "a", **_inputs(tiny, kind="topk"), shard_samples=3))
    ds = art.torch_dataset()
    streamed = list(art.wds_stream())
    assert len(ds) == len(streamed) == 8
    for (img, probs, target), (img2, probs2, target2) in zip(ds, streamed):
        assert img.dtype == torch.uint8 and probs.shape == (2, 4)
        assert torch.equal(img, img2) and torch.equal(probs, probs2) and int(target) == int(target2)


def test_shards_split_by_count_and_by_size(tmp_path, tiny):
    by_count = json.loads((write_artifact(tmp_path / "a", **_inputs(tiny), shard_samples=3) / "manifest.json").read_text())
    assert [s["samples"] for s in by_count["shards"]] == [3, 3, 2]
    by_size = json.loads((write_artifact(tmp_path / "b", **_inputs(tiny), shard_bytes=6 * 512 * 4) / "manifest.json").read_text())
    assert len(by_size["shards"]) > 1 and sum(s["samples"] for s in by_size["shards"]) == 8
    assert [s["path"] for s in by_size["shards"]] == [f"data/train-{i:06d}.tar" for i in range(len(by_size["shards"]))]
    assert by_count["content_hash"] != by_size["content_hash"]  # the shard hashes are part of it
    one_each = write_artifact(tmp_path / "c", **_inputs(tiny), shard_bytes=1)  # a shard holds at least one sample
    assert len(load(one_each).manifest["shards"]) == 8
    verify(one_each)


def test_the_reader_refuses_hub_references_and_names_the_hub_function(tmp_path, tiny, monkeypatch):
    art = write_artifact(tmp_path / "a", **_inputs(tiny))
    with pytest.raises(ArtifactError, match=r"Hub reference.*sl_compiler\.hub\.open_artifact"):
        load("hf://me/tiny@v1.0.0")
    with pytest.raises(VerifyError, match=r"sl_compiler\.hub\.open_artifact"):
        verify("hf://me/tiny@v1.0.0")
    from sl_compiler import hub

    seen = []
    monkeypatch.setattr(hub, "pull", lambda spec: seen.append(spec) or art)
    assert hub.open_artifact("hf://me/tiny@v1.0.0").content_hash == load(art).content_hash
    assert hub.local_artifact("hf://me/tiny@v1.0.0") == art and hub.local_artifact(str(art)) == art
    assert seen == ["hf://me/tiny@v1.0.0"] * 2


def test_no_module_of_the_artifact_package_imports_the_hub_even_inside_a_function():
    """hf:// is resolved above the reader (sl_compiler.hub imports artifact, never the reverse), so the packages form no cycle."""
    import ast

    package = Path(fmt.__file__).parent
    found = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [("." * node.level) + (node.module or "")] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names if n.split(".")[-1] in ("hub", "huggingface_hub") or n.startswith(("sl_compiler.hub", "..hub", "huggingface_hub"))]
    assert found == []


def test_the_artifact_package_does_not_import_the_hub():
    code = "import sys, sl_compiler.artifact as a; a.load, a.verify, a.inspect_artifact; print(sorted(m for m in sys.modules if m in ('sl_compiler.hub', 'huggingface_hub')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- content hash


def test_content_hash_follows_the_content_not_the_name(tmp_path, tiny):
    base = load(write_artifact(tmp_path / "a", **_inputs(tiny))).content_hash
    renamed = _inputs(tiny)
    renamed.update(name="other", version="2.0.0", recipe={"note": "different words"}, provenance={"by": "someone"}, license="cc-by-4.0")
    assert load(write_artifact(tmp_path / "b", **renamed)).content_hash == base
    assert load(write_artifact(tmp_path / "c", **_inputs(tiny, seed=1))).content_hash != base
    schema = _inputs(tiny)
    schema["label_schema"]["temperature"] = 4.0
    assert load(write_artifact(tmp_path / "d", **schema)).content_hash != base
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["content_hash"] == fmt.content_hash(manifest) == base


# ---------------------------------------------------------------- verify


def test_verify_passes_a_fresh_artifact(tmp_path, tiny):
    report = verify(write_artifact(tmp_path / "a", **_inputs(tiny, kind="topk"), shard_samples=5))
    assert (report.samples, report.shards, report.label_kind) == (8, 2, "topk")
    assert report.summary().startswith("ok: tiny 1.0.0: 8 samples in 2 shard(s)")


def test_verify_names_a_shard_with_a_flipped_byte(tmp_path, tiny):
    art = write_artifact(tmp_path / "a", **_inputs(tiny), shard_samples=3)
    shard = art / "data/train-000001.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(VerifyError, match="train-000001.tar: sha256 does not match") as exc:
        verify(art)
    assert exc.value.path == "data/train-000001.tar"


def test_verify_names_a_missing_shard_and_an_unlisted_file(tmp_path, tiny):
    art = write_artifact(tmp_path / "a", **_inputs(tiny), shard_samples=3)
    (art / "data/train-000002.tar").rename(art / "data/train-000009.tar")
    with pytest.raises(VerifyError, match="train-000009.tar: not listed"):
        verify(art)
    (art / "data/train-000009.tar").unlink()
    with pytest.raises(VerifyError, match="train-000002.tar: missing") as exc:
        verify(art)
    assert exc.value.path == "data/train-000002.tar"
    with pytest.raises(ArtifactError, match="train-000002.tar is missing"):
        load(art)


def _set_probs(members, key, probs):
    out = []
    for name, data in members:
        if name == f"{key}.safetensors":
            t = load_tensors(data)
            t["probs"] = probs
            data = save_tensors(t)
        out.append((name, data))
    return out


@pytest.mark.parametrize(
    "probs, problem",
    [
        (torch.tensor([[float("nan"), 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float16), "not probabilities"),
        (torch.tensor([[0.9, 0.9, 0, 0], [1, 0, 0, 0]], dtype=torch.float16), "not probabilities"),
        (torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.float32), "float32 \\[2, 4\\], the schema wants float16"),
        (torch.tensor([[1, 0, 0], [1, 0, 0]], dtype=torch.float16), "the schema wants float16 \\[2, 4\\]"),
    ],
)
def test_verify_names_the_sample_with_bad_labels(tmp_path, tiny, probs, problem):
    art = write_artifact(tmp_path / "a", **_inputs(tiny), shard_samples=3)
    _rewrite_shard(art, 1, lambda ms: _set_probs(ms, "000004", probs))
    with pytest.raises(VerifyError, match=f"train-000001.tar: sample 000004.*{problem}") as exc:
        verify(art)
    assert exc.value.path == "data/train-000001.tar"
    if probs.shape[1] != 4:
        with pytest.raises(ArtifactError, match="disagree in their label tensors"):
            load(art)


def test_verify_catches_bad_top_k_indices(tmp_path, tiny):
    art = write_artifact(tmp_path / "a", **_inputs(tiny, kind="topk"))

    def edit(members):
        out = []
        for name, data in members:
            if name == "000006.safetensors":
                t = load_tensors(data)
                t["topk_indices"][1, 1] = 4  # == C: out of range
                data = save_tensors(t)
            out.append((name, data))
        return out

    _rewrite_shard(art, 0, edit)
    with pytest.raises(VerifyError, match="sample 000006.*top-k index"):
        verify(art)


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda ms: [m for m in ms if m[0] != "000003.json"], "sample 000003 has members"),
        (lambda ms: [(n, b"3" if n == "000002.cls" else d) for n, d in ms], "sample 000002: class 3"),
        (lambda ms: [m for m in ms if not m[0].startswith("000001.")], "sample key 000002 where 000001"),
        (lambda ms: [(n, b"not a png" if n == "000005.png" else d) for n, d in ms], "sample 000005: 000005.png is not a readable PNG"),
    ],
)
def test_verify_names_the_broken_sample(tmp_path, tiny, edit, problem):
    art = write_artifact(tmp_path / "a", **_inputs(tiny))
    _rewrite_shard(art, 0, edit)
    with pytest.raises(VerifyError, match=f"train-000000.tar: {problem}"):
        verify(art)


def test_verify_catches_a_tampered_manifest(tmp_path, tiny):
    art = write_artifact(tmp_path / "a", **_inputs(tiny, kind="topk"))
    manifest = _manifest(art)
    manifest["labels"]["fill"] = "renormalize"  # changes how every reader fills the labels
    _reseal(art, manifest, content_hash=False)  # every checksum but the content hash
    with pytest.raises(VerifyError, match="manifest.json: content_hash") as exc:
        verify(art)
    assert exc.value.path == "manifest.json"
    manifest = _manifest(art)
    del manifest["shards"]
    manifest["manifest_sha256"] = mf.manifest_sha256(manifest)
    (art / "manifest.json").write_bytes(fmt.dumps_manifest(manifest))
    with pytest.raises(VerifyError, match="missing shards"):
        verify(art)
    manifest["format"] = "slc-artifact/9"
    manifest["manifest_sha256"] = mf.manifest_sha256(manifest)
    (art / "manifest.json").write_bytes(fmt.dumps_manifest(manifest))
    with pytest.raises(VerifyError, match="unknown format"):
        load(art)
    with pytest.raises(VerifyError, match="unknown format"):
        verify(art)


def test_verify_cli_prints_ok_or_the_error_and_exits_1(tmp_path, tiny, capsys):
    art = write_artifact(tmp_path / "a", **_inputs(tiny))
    assert slc(["verify", str(art)]) == 0
    assert capsys.readouterr().out.startswith("ok: tiny 1.0.0: 8 samples")
    (art / "data/train-000000.tar").unlink()
    assert slc(["verify", str(art)]) == 1
    assert "error: data/train-000000.tar: missing" in capsys.readouterr().err
    assert slc(["verify", str(tmp_path / "nothing")]) == 1


# ---------------------------------------------------------------- writer input checks


def _broken(tiny, **changes):
    inputs = _inputs(tiny)
    for path, value in changes.items():
        target = inputs
        *parents, last = path.split("__")
        for p in parents:
            target = target[p]
        target[last] = value
    return inputs


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"name": "Tiny Set"}, "bad artifact name"),
        ({"version": "1.0"}, "bad artifact version"),
        ({"labels__probs": torch.randn(8, 2, 4)}, "not probabilities.*softmax"),
        ({"labels__probs": torch.full((8, 2, 4), float("nan"))}, "not probabilities"),
        ({"labels__probs": torch.softmax(torch.randn(8, 2, 5), -1)}, "5 classes"),
        ({"labels__probs": torch.softmax(torch.randn(7, 2, 4), -1)}, "shape"),
        ({"labels__views__crop": torch.zeros(8, 3, 4, dtype=torch.int16)}, "view parameter 'crop'"),
        ({"labels__views__bad.name": torch.zeros(8, 2)}, "bad view parameter name"),
        ({"targets": torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])}, "targets outside"),
        ({"source_ids": ["0"]}, "source ids"),
        ({"images": torch.zeros(8, 3, 16, 16)}, "uint8"),
        ({"images": [(b"", "jpg")] * 8}, "unsupported encoded image"),
        ({"images": [(b"x", "exe")] * 8}, "unsupported encoded image"),
        ({"label_schema__views": 3}, "label_schema says views=3"),
        ({"recipe__when": object()}, "not plain JSON"),
    ],
)
def test_bad_input_is_an_artifact_error_and_writes_nothing(tmp_path, tiny, changes, message):
    with pytest.raises(ArtifactError, match=message):
        write_artifact(tmp_path / "a", **_broken(tiny, **changes))
    assert list(tmp_path.iterdir()) == []


def test_bad_top_k_input_is_refused(tmp_path, tiny):
    inputs = _inputs(tiny, kind="topk")
    inputs["labels"]["topk_indices"] = torch.zeros(8, 2, 2, dtype=torch.int64)  # repeated index
    with pytest.raises(ArtifactError, match="repeated"):
        write_artifact(tmp_path / "a", **inputs)


# ---------------------------------------------------------------- card


def test_card_front_matter_is_hub_yaml(tmp_path, tiny):
    inputs = _inputs(tiny, kind="topk")
    art = write_artifact(tmp_path / "a", **inputs, license="cc-by-4.0")
    text = (art / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "cc-by-4.0"
    assert meta["task_categories"] == ["image-classification"]
    assert meta["tags"] == ["dataset-distillation", "soft-labels", "slc"]
    assert meta["size_categories"] == ["n<1K"]
    assert meta["pretty_name"].startswith("tiny 1.0.0")
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.tar"}]}]
    manifest = json.loads((art / "manifest.json").read_text())
    body = text.split("---\n", 2)[2]
    for needle in ('teacher = "convnet_d3@1#0"', "`convnet_d3@1#0`", manifest["content_hash"], manifest["shards"][0]["sha256"],
                   "A Label is Worth a Thousand Images", "Hard Truths about Soft Labels", 'load_dataset("OWNER/NAME", split="train")', "uniform"):
        assert needle in body
    # the class names as a ClassLabel, and every column datasets' WebDataset loader yields (else it drops them)
    info = meta["dataset_info"]
    assert info["features"][0] == {"name": "cls", "dtype": {"class_label": {"names": {str(i): c for i, c in enumerate(tiny.classes)}}}}
    assert [f["name"] for f in info["features"]] == ["cls", "json", "png", "safetensors", "__key__", "__url__"]
    assert info["features"][2]["dtype"] == "image" and info["features"][3]["dtype"] == "binary"
    assert info["features"][1]["struct"] == [{"name": "class", "dtype": "int64"}, {"name": "label", "dtype": "string"}, {"name": "source", "dtype": "string"}]
    assert info["download_size"] == manifest["bytes"]["shards"]
    # no inline list of sources; the first loading example needs no torch
    assert all(f'"{i}"' not in body.split("Selection:")[1].split("\n")[0] for i in manifest["selection"]["source_indices"])
    first_example = body.split("```python")[1].split("```")[0]
    assert "torch" not in first_example and "safetensors.numpy" in first_example
    no_license = write_artifact(tmp_path / "b", **_inputs(tiny, kind="hard"), license=None)
    meta = yaml.safe_load((no_license / "README.md").read_text().split("---\n")[1])
    assert meta["license"] == "other" and "safetensors" not in [f["name"] for f in meta["dataset_info"]["features"]]


def test_datasets_loads_the_card_with_class_names_and_no_torch(tmp_path, tiny):
    """The card's loading example, run with the real `datasets` library (a dev dependency, not an slc one)."""
    art = write_artifact(tmp_path / "tiny-1.0.0", **_inputs(tiny, kind="topk"), shard_samples=3)
    code = (
        "import sys\nfrom datasets import load_dataset\nfrom safetensors.numpy import load\n"
        f"ds = load_dataset({str(art)!r}, split='train')\ns = ds[3]\n"
        "print(ds.features['cls'].names, len(ds), s['cls'], s['json']['source'], sorted(load(s['safetensors'])), 'torch' in sys.modules)"
    )
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert out == f"{tiny.classes} 8 1 {_inputs(tiny)['source_ids'][3]} ['topk_indices', 'topk_values', 'view.crop', 'view.flip'] False"


# ---------------------------------------------------------------- inspect


def _hand_made(tmp_path, tiny):
    """Four images, one per class, with labels whose entropy and agreement are known by hand."""
    idx = torch.stack([c[0] for c in tiny.class_indices()])
    probs = torch.tensor([[1.0, 0, 0, 0], [0.125, 0.625, 0.125, 0.125], [0.75, 0, 0.25, 0], [0, 0, 0, 1.0]])
    return write_artifact(
        tmp_path / "hand",
        name="hand",
        version="1.0.0",
        dataset=tiny.info(),
        images=tiny.images(idx),
        targets=tiny.targets[idx],
        source_ids=[str(i) for i in idx.tolist()],
        labels={"probs": probs},
        label_schema={"temperature": 1.5},
        teachers=[{"reference": "convnet_d3@0.25#0", "arch": "convnet_d3", "epoch": 0.25, "seed": 0, "test_accuracy": 40.0}],
    )


def test_inspect_figures_on_a_hand_made_label_set(tmp_path, tiny):
    info = inspect_artifact(_hand_made(tmp_path, tiny))
    h = [0.0, -(0.625 * math.log(0.625) + 3 * 0.125 * math.log(0.125)), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), 0.0]
    assert info["mean_entropy_nats"] == pytest.approx(sum(h) / 4, abs=1e-6)  # these values are exact in fp16
    assert info["mean_entropy_normalized"] == pytest.approx(sum(h) / 4 / math.log(4), abs=1e-6)
    assert info["top1_agreement"] == 0.75  # sample 2 (class 2) puts most mass on class 0
    assert (info["samples"], info["classes"], info["ipc"], info["views"]) == (4, 4, 1, 1)
    assert info["labels"]["kind"] == "dense" and info["labels"]["temperature"] == 1.5
    assert info["teachers"] == [{"reference": "convnet_d3@0.25#0", "epoch": 0.25, "test_accuracy": 40.0}]
    b = info["bytes"]
    total = sum(p.stat().st_size for p in Path(info["path"]).rglob("*") if p.is_file())
    assert b["total"] == total and b["images"] + b["labels"] + b["other"] == total
    art = load(info["path"])
    assert b["images"] == sum(len(art.encoded(i)[0]) for i in range(4))
    assert b["labels"] == sum(len(art.sample_bytes(i)["safetensors"]) for i in range(4))
    # per class (one image each): entropy and whether the label's top class is the true one
    assert [r["class"] for r in info["per_class"]] == tiny.classes == info["class_names"]
    assert [r["images"] for r in info["per_class"]] == [1, 1, 1, 1]
    assert [r["top1_agreement"] for r in info["per_class"]] == [1.0, 1.0, 0.0, 1.0]
    assert [r["mean_entropy_nats"] for r in info["per_class"]] == pytest.approx(h, abs=1e-6)
    assert info["selection"] == {}  # the hand-made set records no selection
    # "other" explained: tar headers and padding, .cls and .json members, manifest and card
    with tarfile.open(Path(info["path"]) / "data/train-000000.tar") as tar:
        sizes = {m.name: m.size for m in tar}
    shard = (Path(info["path"]) / "data/train-000000.tar").stat().st_size
    op, lp = b["other_parts"], b["labels_parts"]
    assert op["tar_headers_and_padding"] == shard - sum(sizes.values())
    assert op["cls_members"] == sum(v for k, v in sizes.items() if k.endswith(".cls")) == 4
    assert op["json_members"] == sum(v for k, v in sizes.items() if k.endswith(".json"))
    assert (op["manifest"], op["card"]) == ((Path(info["path"]) / "manifest.json").stat().st_size, (Path(info["path"]) / "README.md").stat().st_size)
    assert sum(op.values()) == b["other"] and sum(lp.values()) == b["labels"]
    assert lp["label_values"] == 4 * 4 * 2 and lp["view_params"] == 0  # 4 samples x 4 classes x fp16


def test_inspect_cli_table_and_json(tmp_path, tiny, capsys):
    art = _hand_made(tmp_path, tiny)
    assert slc(["inspect", str(art), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(inspect_artifact(art)))
    assert slc(["inspect", str(art)]) == 0
    table = capsys.readouterr().out
    for needle in ("hand 1.0.0", "top-1 agrees with class  75.0%", "convnet_d3@0.25#0 (epoch 0.25, test accuracy 40.0%)", "T=1.5", "content hash",
                   "class_0, class_1, class_2, class_3", "| class_2 | 1 | 0.5623 | 0.0% |", "tar headers and padding", "selection                not recorded"):
        assert needle in table
    assert slc(["inspect", str(tmp_path / "missing")]) == 2
