"""slc verify covers the whole folder: every byte of the manifest and the card, every field's value, every file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sl_compiler.artifact import format as fmt
from sl_compiler.artifact import manifest as mf
from sl_compiler.artifact import verify, write_artifact
from sl_compiler.data import load_dataset
from sl_compiler.errors import VerifyError
from test_artifact import _inputs, _manifest, _reseal


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("synthetic:classes=4,size=16,train=12,test=6", split="train")


@pytest.fixture
def art(tmp_path, tiny) -> Path:
    inputs = _inputs(tiny, n_per_class=1, views=2, kind="topk")
    inputs["selection"]["source_ids"] = inputs["source_ids"]
    inputs["provenance"] = {"torch": "2.14.1", "device": "cpu"}
    return write_artifact(tmp_path / "a", **inputs, license="cc-by-4.0")


def _flips(data: bytes):
    """Every position, each with one flipped bit (bits 0..6 in turn, so the byte stays ASCII where it was)."""
    for pos in range(len(data)):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << (pos % 7)
        yield pos, bytes(flipped)


@pytest.mark.parametrize("name", ["manifest.json", "README.md"])
def test_every_flipped_byte_of_the_manifest_and_the_card_fails(art, name):
    verify(art)
    file = art / name
    original = file.read_bytes()
    passed = []
    for pos, data in _flips(original):
        file.write_bytes(data)
        try:
            verify(art)
        except VerifyError as exc:
            assert exc.path in (name, "manifest.json"), (pos, exc)
        else:
            passed.append((pos, original[max(0, pos - 20) : pos + 20]))
    file.write_bytes(original)
    verify(art)
    assert len(original) > 1500 and passed == []


def test_a_reformatted_manifest_with_the_same_meaning_fails(art):
    manifest = _manifest(art)
    for text in (json.dumps(manifest, sort_keys=True, indent=4) + "\n", json.dumps(dict(reversed(manifest.items())), indent=2, ensure_ascii=False) + "\n", fmt.dumps_manifest(manifest).decode()[:-1]):
        (art / "manifest.json").write_text(text)
        with pytest.raises(VerifyError, match="not in canonical form"):
            verify(art)
    raw = fmt.dumps_manifest(manifest).decode().replace('"format":', '"format": "x",\n  "format":', 1)  # a repeated key
    (art / "manifest.json").write_text(raw)
    with pytest.raises(VerifyError, match="repeated key"):
        verify(art)


def _edited(art: Path, edit, content_hash: bool = True) -> None:
    manifest = _manifest(art)
    edit(manifest)
    _reseal(art, manifest, content_hash)


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda m: m["selection"]["source_indices"].reverse(), "selection.source_indices\\[0\\]"),
        (lambda m: m["selection"].pop("source_ids") and m["selection"]["source_indices"].__setitem__(1, 99), "selection.source_indices\\[1\\] is 99"),
        (lambda m: m["selection"]["source_indices"].__setitem__(1, m["selection"]["source_indices"][0]), "repeats an index"),
        (lambda m: m["selection"]["source_ids"].__setitem__(2, "elsewhere"), "selection.source_ids\\[2\\] is 'elsewhere'"),
        (lambda m: m["selection"]["source_indices"].pop(), "source_indices is not 4"),
        (lambda m: m["teachers"][0].update(sha256="0" * 63 + "g"), "teachers\\[0\\].sha256"),
        (lambda m: m["teachers"][0].update(sha256="A" * 64), "teachers\\[0\\].sha256"),
        (lambda m: m["teachers"][0].update(test_accuracy=620.5), "test_accuracy is not a percentage"),
        (lambda m: m["teachers"][0].update(epoch=-1), "epoch"),
        (lambda m: m.update(name="Tiny Set"), "name 'Tiny Set'"),
        (lambda m: m.update(version="1.0"), "version '1.0'"),
        (lambda m: m["recipe"].update(version="2.0.0"), "recipe.version"),
        (lambda m: m.update(ipc=2), "ipc 2 does not match the per-class counts"),
        (lambda m: m["recipe"].update(ipc=3), "recipe.ipc"),
        (lambda m: m.update(license="cc by 4.0"), "license"),
        (lambda m: m["dataset"].update(std=[0.2, 0.0, 0.2]), "std must be positive"),
        (lambda m: m["dataset"]["classes"].__setitem__(0, ""), "non-empty strings"),
        (lambda m: m["labels"].update(temperature=-2.0), "temperature"),
        (lambda m: m["labels"].update(index_dtype="int32"), "index_dtype"),
        (lambda m: m["counts"].update(samples=5), "sums to 4"),
        (lambda m: m["shards"][0].update(bytes=m["shards"][0]["bytes"] + 1), "multiple of 512"),
    ],
)
def test_manifest_fields_outside_the_content_hash_are_checked(art, edit, problem):
    _edited(art, edit)
    with pytest.raises(VerifyError, match=problem) as exc:
        verify(art)
    assert exc.value.path == "manifest.json"


def test_the_json_of_each_sample_must_name_its_class(art):
    from test_artifact import _rewrite_shard

    _rewrite_shard(art, 0, lambda ms: [(n, b'{"class":0,"label":"class_3","source":"0"}' if n == "000000.json" else d) for n, d in ms])
    with pytest.raises(VerifyError, match="sample 000000: its .json"):
        verify(art)


def test_a_deleted_card_fails(art):
    (art / "README.md").unlink()
    with pytest.raises(VerifyError, match="README.md: missing") as exc:
        verify(art)
    assert exc.value.path == "README.md"


@pytest.mark.parametrize("extra", ["notes.txt", ".hidden", "data2"])
def test_extra_files_at_the_root_fail(art, extra):
    (art / extra).write_text("x") if "." in extra else (art / extra).mkdir()
    with pytest.raises(VerifyError, match=f"{extra}: is not part of an artifact"):
        verify(art)


def test_links_where_files_belong_fail(art, tmp_path):
    shard = art / "data" / "train-000000.tar"
    copy = tmp_path / "copy.tar"
    copy.write_bytes(shard.read_bytes())
    shard.unlink()
    shard.symlink_to(copy)  # the same bytes, through a link
    with pytest.raises(VerifyError, match="train-000000.tar: is a symbolic link") as exc:
        verify(art)
    assert exc.value.path == "data/train-000000.tar"
    assert verify(art, allow_links=True).samples == 4  # how the Hub cache stores a snapshot
    shard.unlink()
    os.mkfifo(shard)
    with pytest.raises(VerifyError, match="train-000000.tar: is not a regular file"):
        verify(art, allow_links=True)
    shard.unlink()
    shard.write_bytes(copy.read_bytes())
    verify(art)
    card = art / "README.md"
    (tmp_path / "card").write_bytes(card.read_bytes())
    card.unlink()
    card.symlink_to(tmp_path / "card")
    with pytest.raises(VerifyError, match="README.md: is a symbolic link"):
        verify(art)
    card.unlink()
    card.write_bytes((tmp_path / "card").read_bytes())
    data = art / "data"
    data.rename(tmp_path / "data")
    data.symlink_to(tmp_path / "data")
    with pytest.raises(VerifyError, match="data: missing or not a folder"):
        verify(art)


def _as_written_by_0_1_0(art: Path) -> dict:
    """The artifact as slc 0.1.0 wrote it: no card record, no manifest checksum, no grid."""
    manifest = {k: v for k, v in _manifest(art).items() if k not in mf.INTEGRITY_TYPES and k not in mf.OPTIONAL_TYPES}
    (art / "grid.png").unlink()
    (art / "manifest.json").write_bytes(fmt.dumps_manifest(manifest))
    return manifest


def test_a_0_1_0_artifact_verifies_with_a_note_and_nothing_else_may_lack_the_checksum(art):
    manifest = _as_written_by_0_1_0(art)
    report = verify(art)
    assert report.notes and "0.1.0" in report.notes[0] and "note: written by slc 0.1.0" in report.summary()
    manifest["future_key"] = 1  # a newer writer's key, with the checksum that would cover it stripped
    (art / "manifest.json").write_bytes(fmt.dumps_manifest(manifest))
    with pytest.raises(VerifyError, match="has future_key but no manifest_sha256"):
        verify(art)
    del manifest["future_key"]
    manifest["card"] = mf.card_record((art / "README.md").read_bytes())  # a card record without the manifest checksum
    (art / "manifest.json").write_bytes(fmt.dumps_manifest(manifest))
    with pytest.raises(VerifyError, match="has card but no manifest_sha256"):
        verify(art)


def test_unknown_keys_are_allowed_when_the_checksum_covers_them(art):
    _edited(art, lambda m: m.update(future_key={"a": 1}))
    assert verify(art).notes == []


def test_a_written_artifact_passes_and_the_writer_refuses_what_verify_would(tmp_path, tiny):
    from sl_compiler.errors import ArtifactError

    inputs = _inputs(tiny)
    inputs["teachers"][0]["sha256"] = "not-a-hash"
    with pytest.raises(ArtifactError, match="manifest would be invalid: teachers\\[0\\].sha256"):
        write_artifact(tmp_path / "a", **inputs)
    with pytest.raises(ArtifactError, match="ipc 3 does not match"):
        write_artifact(tmp_path / "a", **_inputs(tiny), ipc=3)
    inputs = _inputs(tiny)
    inputs["selection"]["source_ids"] = list(reversed(inputs["source_ids"]))
    with pytest.raises(ArtifactError, match="source_ids differ"):
        write_artifact(tmp_path / "a", **inputs)
    assert list(tmp_path.iterdir()) == []
