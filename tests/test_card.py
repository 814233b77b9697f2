"""The artifact's grid.png and its card: what the grid draws, that verify covers it, the Hub metadata,
and the results section that slc publish --results adds (checked here without a Hub)."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import torch
import yaml

from cli.main import main as slc
from sl_compiler import plot
from sl_compiler.artifact import load, verify, write_artifact
from sl_compiler.artifact import format as fmt
from sl_compiler.artifact import grid as grid_mod
from sl_compiler.artifact.card import RESULTS_MARKER, card_with_results, results_document, size_category
from sl_compiler.data import load_dataset
from sl_compiler.errors import ArtifactError, EvaluateError, VerifyError
from sl_compiler.hub import _card_files
from sl_compiler.label.views import gather, replay, sample_views

TINY = "synthetic:classes=4,size=16,train=12,test=6"


@pytest.fixture(scope="module")
def tiny():
    return load_dataset(TINY, split="train")


def _write(out: Path, tiny, *, ipc=3, views=0, kind="dense", grid=True, seed=0) -> Path:
    """ipc images of each class with seeded soft labels; ``views`` > 0 samples CutMix+RRC views for them."""
    idx = torch.cat([c[:ipc] for c in tiny.class_indices()])
    n, c = len(idx), tiny.num_classes
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, max(views, 1), c, generator=g), -1)
    if kind == "dense":
        labels = {"probs": probs}
    elif kind == "topk":
        v, i = probs.topk(2, -1)
        labels = {"topk_values": v, "topk_indices": i}
    else:
        labels = None
    if views:
        labels["views"] = sample_views([fmt.sample_key(i, 6) for i in range(n)], views, "cutmix+rrc", seed, tiny.shape)
    return write_artifact(
        out, name="tiny", version="1.0.0", dataset=tiny.info(), images=tiny.images(idx), targets=tiny.targets[idx],
        source_ids=[str(i) for i in idx.tolist()], labels=labels, label_schema={"augment": "cutmix+rrc"} if views else None,
        teachers=[{"reference": "convnet_d3@1#0", "arch": "convnet_d3", "epoch": 1, "seed": 0, "sha256": "0" * 64, "test_accuracy": 62.5}] if labels else (),
        selection={"strategy": "random", "seed": 0, "source_indices": idx.tolist()}, grid=grid,
    )


@pytest.fixture
def drawn(monkeypatch):
    """The rows grid_png hands to the drawing, and the title."""
    seen = {}
    real = plot.image_grid_png

    def spy(rows, title):
        seen["rows"], seen["title"] = rows, title
        return real(rows, title)

    monkeypatch.setattr(plot, "image_grid_png", spy)
    return seen


def _scaled(image: torch.Tensor):
    """What a 16 px image becomes in a 96 px tile: each pixel a 6x6 block."""
    f = grid_mod.TILE_PX // image.shape[-1]
    return image.repeat_interleave(f, 1).repeat_interleave(f, 2).permute(1, 2, 0).numpy()


def _top3(p: torch.Tensor, true_class: int, names: list[str]) -> list[tuple[str, bool]]:
    order = sorted(range(len(p)), key=lambda k: -float(p[k]))[:3]
    return [(f"{float(p[k]):.2f} {names[k]}", k == true_class) for k in order]


def _png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,), kind = struct.unpack(">I", data[at : at + 4]), data[at + 4 : at + 8]
        body = data[at + 8 : at + 8 + length]
        assert struct.unpack(">I", data[at + 8 + length : at + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.append(kind)
        at += 12 + length
    return chunks


# ---- what the grid draws ----------------------------------------------------------------------------


def test_grid_rows_are_classes_with_their_first_images_and_top3_labels(tmp_path, tiny, drawn):
    art = load(_write(tmp_path / "a", tiny, ipc=3))
    data = grid_mod.grid_png(grid_mod.source_of_artifact(art), art.manifest, per_class=2)
    assert data == grid_mod.grid_png(grid_mod.source_of_artifact(art), art.manifest, per_class=2)  # deterministic
    probs = art.labels["probs"].float()[:, 0]
    rows = drawn["rows"]
    assert [label for label, _ in rows] == art.classes
    for c, (_, tiles) in enumerate(rows):
        members = [i for i in range(len(art)) if int(art.targets[i]) == c][:2]  # the first two of the class, in sample order
        assert len(tiles) == 2
        for i, (image, caption) in zip(members, tiles):
            assert (image == _scaled(art.images[i])).all()  # the stored pixels, exactly
            assert caption == _top3(probs[i], c, art.classes)
    assert drawn["title"] == "tiny 1.0.0: " + f"{TINY}, 12 images (IPC 3), dense labels"
    assert "images" in art.__dict__  # decoded by the checks above: now the grid takes them from memory, the same pixels
    assert grid_mod.grid_png(grid_mod.source_of_artifact(art), art.manifest, per_class=2) == data


def test_per_view_grid_shows_each_image_then_its_replayed_views_with_their_own_labels(tmp_path, tiny, drawn):
    art = load(_write(tmp_path / "v", tiny, ipc=3, views=3, kind="topk"))
    grid_mod.grid_png(grid_mod.source_of_artifact(art), art.manifest, per_class=2)  # 2 of 3 per class: some CutMix partners are not drawn
    dense = art.dense_labels()  # (N, 3, C), top-k filled by the uniform rule
    for c, (_, tiles) in enumerate(drawn["rows"]):
        members = [i for i in range(len(art)) if int(art.targets[i]) == c][:2]
        assert len(tiles) == len(members) * 3 + len(members) - 1 and tiles[3] is None  # image, view 0, view 1; a gap between images
        for g, i in enumerate(members):
            image, view0, view1 = tiles[4 * g : 4 * g + 3]
            assert (image[0] == _scaled(art.images[i])).all()
            assert image[1] == [("mean of 3 views", False), *_top3(dense[i].mean(0), c, art.classes)]
            for v, (pixels, caption) in enumerate((view0, view1)):
                one = torch.tensor([i])
                expected = replay(art.images, one, gather(art.views, one, torch.tensor([v])))[0]  # the exact view the teacher labelled
                assert (pixels == _scaled(expected)).all()
                assert caption == [(f"view {v}", False), *_top3(dense[i, v], c, art.classes)]
    assert any(not (t[0] == _scaled(art.images[0])).all() for t in drawn["rows"][0][1][1:3])  # views differ from the image


def test_grid_png_holds_no_time_or_software_and_rebuilds_identically(tmp_path, tiny):
    a, b = _write(tmp_path / "a", tiny), _write(tmp_path / "b", tiny)
    data = (a / "grid.png").read_bytes()
    assert data == (b / "grid.png").read_bytes()
    assert set(_png_chunks(data)) <= {b"IHDR", b"pHYs", b"IDAT", b"IEND"}  # no tEXt (Software), no tIME


def test_hard_labels_are_captioned_with_their_class(tmp_path, tiny, drawn):
    art = load(_write(tmp_path / "h", tiny, ipc=1, kind="hard"))
    grid_mod.grid_png(grid_mod.source_of_artifact(art), art.manifest)
    assert [tiles[0][1] for _, tiles in drawn["rows"]] == [[(name, True)] for name in art.classes]


def test_inspect_grid_with_the_defaults_redraws_the_stored_grid(tmp_path, tiny, capsys):
    art = _write(tmp_path / "v", tiny, ipc=2, views=3)
    assert slc(["inspect", str(art), "--grid", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").read_bytes() == (art / "grid.png").read_bytes()  # writer inputs and stored artifact draw the same
    assert slc(["inspect", str(art), "--grid", str(tmp_path / "small.png"), "--per-class", "1", "--views", "0", "--max-classes", "2"]) == 0
    small = (tmp_path / "small.png").read_bytes()
    assert small != (tmp_path / "g.png").read_bytes() and struct.unpack(">II", small[16:24])[1] < struct.unpack(">II", (tmp_path / "g.png").read_bytes()[16:24])[1]
    capsys.readouterr()
    assert slc(["inspect", str(art), "--grid", str(tmp_path / "g.txt")]) == 2
    assert capsys.readouterr().err == f"error: grid file {tmp_path / 'g.txt'} does not end in .png; name the grid FILE.png (it is written as PNG)\n"


def test_a_grid_too_large_to_draw_is_one_clear_error(tmp_path, capsys):
    classes = [f"c{i}" for i in range(300)]
    art = write_artifact(
        tmp_path / "many", name="many", version="1.0.0", dataset={"name": "many", "classes": classes, "mean": [0.5], "std": [0.5]},
        images=torch.zeros(300, 1, 4, 4, dtype=torch.uint8), targets=torch.arange(300), source_ids=[str(i) for i in range(300)], labels=None,
    )
    assert slc(["inspect", str(art), "--grid", str(tmp_path / "all.png"), "--max-classes", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: a grid of 300 rows") and "at most 32768" in err and "--max-classes" in err and not (tmp_path / "all.png").exists()


# ---- verify covers grid.png ------------------------------------------------------------------------


def test_verify_checks_the_grid_like_the_card(tmp_path, tiny):
    art = _write(tmp_path / "a", tiny)
    manifest = json.loads((art / "manifest.json").read_text())
    data = (art / "grid.png").read_bytes()
    assert manifest["grid"] == {"bytes": len(data), "sha256": __import__("hashlib").sha256(data).hexdigest()}
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    (art / "grid.png").write_bytes(bytes(flipped))
    with pytest.raises(VerifyError, match="grid.png: .* the manifest records") as exc:
        verify(art)
    assert exc.value.path == "grid.png"
    (art / "grid.png").unlink()
    with pytest.raises(VerifyError, match="grid.png: missing"):
        verify(art)
    (art / "grid.png").write_bytes(data)
    verify(art)


def test_without_a_grid_there_is_no_grid_file_record_or_picture(tmp_path, tiny):
    art = _write(tmp_path / "plain", tiny, grid=False)
    assert not (art / "grid.png").exists() and "grid" not in json.loads((art / "manifest.json").read_text())
    assert "grid.png" not in (art / "README.md").read_text()
    verify(art)
    shutil.copyfile(_write(tmp_path / "other", tiny) / "grid.png", art / "grid.png")  # a grid the manifest does not record
    with pytest.raises(VerifyError, match="grid.png: is not part of an artifact"):
        verify(art)


# ---- the card ---------------------------------------------------------------------------------------


def _front_matter(art: Path) -> dict:
    return yaml.safe_load((art / "README.md").read_text().split("---\n")[1])


def test_card_shows_the_grid_and_follows_the_hubs_metadata(tmp_path, tiny):
    soft, hard = _write(tmp_path / "s", tiny), _write(tmp_path / "h", tiny, kind="hard")
    body = (soft / "README.md").read_text().split("---\n", 2)[2]
    assert "](grid.png)" in body and RESULTS_MARKER in body and body.index("](grid.png)") < body.index("## How it was made")
    meta = _front_matter(soft)
    assert meta["task_categories"] == ["image-classification"] and meta["task_ids"] == ["multi-class-image-classification"]
    assert meta["annotations_creators"] == ["machine-generated"] and "annotations_creators" not in _front_matter(hard)
    assert meta["size_categories"] == ["n<1K"]
    names = meta["dataset_info"]["features"][0]["dtype"]["class_label"]["names"]
    assert names == {str(i): c for i, c in enumerate(tiny.classes)}


@pytest.mark.parametrize("n,category", [(999, "n<1K"), (1000, "1K<n<10K"), (1_281_167, "1M<n<10M"), (10**7, "10M<n<100M"), (10**12, "n>1T")])
def test_size_categories_are_the_hubs(n, category):
    assert size_category(n) == category


# ---- results on the card (what slc publish --results uploads) ---------------------------------------


def _result(manifest: dict, **row) -> dict:
    """An slc evaluate result for the artifact of ``manifest`` (two seeds, sl and a baseline)."""
    cell = lambda acc: {"seeds": [0, 1], "accuracy": acc, "mean": sum(acc) / 2, "std": abs(acc[0] - acc[1]) / 2, "lr": 0.01}  # noqa: E731
    return {
        "kind": "slc-evaluate/1", "slc_version": "0.1.0", "torch_version": "2", "python_version": "3", "device": "cpu", "wall_s": 12.0,
        "protocol": {"name": "p", "model": "convnet_d3", "epochs": 3, "batch_size": 8, "optimizer": "sgd", "lr": 0.01, "augment": "dsa",
                     "loss": "ce", "seeds": [0, 1], "regimes": ["sl"], "baselines": ["random-hl"]},
        "artifacts": [{
            "path": "/home/someone/artifacts/tiny", "name": manifest["name"], "version": manifest["version"], "content_hash": manifest["content_hash"],
            "dataset": "synthetic", "ipc": 3, "method": "slc", "cells": {"random-hl": cell([0.25, 0.5]), "sl": cell([0.625, 0.75])},
            "metrics": {"ior": None, "hlr": None}, "skipped": {}, "test_set": {"size": 24, "fingerprint": "f" * 64}, **row,
        }],
    }


def _published_copy(art: Path, tmp_path: Path, results: list[dict]) -> Path:
    """The folder slc pull would make from a publish with these results."""
    files = []
    for k, r in enumerate(results):
        files.append(tmp_path / f"r{k}.json")
        files[-1].write_text(json.dumps(r))
    uploads = _card_files(art, json.loads((art / "manifest.json").read_text()), files)
    copy = tmp_path / "published"
    shutil.copytree(art, copy)
    (copy / "README.md").write_bytes(uploads["README.md"])
    (copy / "eval").mkdir()
    (copy / "eval" / "results.json").write_bytes(uploads["eval/results.json"])
    return copy


def test_published_results_are_listed_in_the_card_and_the_copy_verifies(tmp_path, tiny):
    art = _write(tmp_path / "a", tiny)
    manifest = json.loads((art / "manifest.json").read_text())
    card = (art / "README.md").read_bytes()
    copy = _published_copy(art, tmp_path, [_result(manifest)])
    assert (art / "README.md").read_bytes() == card and not (art / "eval").exists()  # the artifact is not changed
    verify(copy)
    text = (copy / "README.md").read_text()
    assert text.replace(text[text.index(RESULTS_MARKER) + len(RESULTS_MARKER) : text.index("\n## How it was made")], "\n").encode() == card
    section = text[text.index("## Evaluation results") : text.index("## How it was made")]
    lines = section.splitlines()
    sl = lines.index("| `sl` (this artifact's stored labels) | 68.75 ± 6.25 | 0, 1 | 62.50, 75.00 | 0.01 |")
    assert lines[sl + 1] == "| `random-hl` (baseline: random real images, hard labels) | 37.50 ± 12.50 | 0, 1 | 25.00, 50.00 | 0.01 |"
    assert "**convnet_d3, 3 epochs** (protocol `p`: batch 8, sgd, lr 0.01, augment dsa, loss ce); evaluated by slc 0.1.0 on cpu in 12 s" in section
    doc = json.loads((copy / "eval" / "results.json").read_text())
    assert doc["artifact"]["content_hash"] == manifest["content_hash"] and "path" not in doc["results"][0]["artifacts"][0]  # no local paths leave
    assert _front_matter(copy) == _front_matter(art)


def test_an_edited_published_number_or_results_file_fails_verify(tmp_path, tiny):
    art = _write(tmp_path / "a", tiny)
    copy = _published_copy(art, tmp_path, [_result(json.loads((art / "manifest.json").read_text()))])
    readme, results = (copy / "README.md").read_text(), (copy / "eval" / "results.json").read_text()
    (copy / "README.md").write_text(readme.replace("68.75", "78.75"))
    with pytest.raises(VerifyError, match="README.md: does not hold the results section") as exc:
        verify(copy)
    assert exc.value.path == "README.md"
    (copy / "README.md").write_text(readme)
    (copy / "eval" / "results.json").write_text(results.replace('"mean": 0.6875', '"mean": 0.7875'))
    with pytest.raises(VerifyError, match="README.md: does not hold the results section"):
        verify(copy)
    (copy / "eval" / "results.json").write_text(results.replace("\n", "\n ", 1))
    with pytest.raises(VerifyError, match="eval/results.json: not in canonical form") as exc:
        verify(copy)
    assert exc.value.path == "eval/results.json"
    (copy / "eval" / "results.json").write_text(results)
    (copy / "eval" / "notes.txt").write_text("x")
    with pytest.raises(VerifyError, match="eval/notes.txt: is not part of an artifact"):
        verify(copy)
    (copy / "eval" / "notes.txt").unlink()
    verify(copy)
    shutil.rmtree(copy / "eval")  # the card's section without its file
    with pytest.raises(VerifyError, match="README.md: .* the manifest records"):
        verify(copy)


def test_results_of_another_artifact_or_another_shape_are_refused_before_upload(tmp_path, tiny):
    art = _write(tmp_path / "a", tiny)
    manifest = json.loads((art / "manifest.json").read_text())
    other = _result({**manifest, "name": "other", "content_hash": "e" * 64})
    with pytest.raises(ArtifactError, match=r"the results evaluated other@1.0.0 \(eeeeeeee\), not tiny@1.0.0"):
        results_document([other], manifest)
    broken = _result(manifest)
    del broken["artifacts"][0]["cells"]["sl"]["mean"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(EvaluateError, match=r"field `artifacts\[0\].cells.sl.mean` is missing"):
        _card_files(art, manifest, [tmp_path / "broken.json"])
    old_card = (art / "README.md").read_bytes().replace(RESULTS_MARKER.encode() + b"\n\n", b"")  # as slc wrote cards before the marker
    with pytest.raises(ArtifactError, match="has no place for results"):
        card_with_results(old_card, results_document([_result(manifest)], manifest), manifest)


def test_republishing_a_pulled_copy_replaces_its_results(tmp_path, tiny):
    art = _write(tmp_path / "a", tiny)
    manifest = json.loads((art / "manifest.json").read_text())
    copy = _published_copy(art, tmp_path, [_result(manifest)])
    again = _result(manifest)
    again["artifacts"][0]["cells"]["sl"]["accuracy"] = [0.5, 0.5]
    again["artifacts"][0]["cells"]["sl"].update(mean=0.5, std=0.0)
    (tmp_path / "again.json").write_text(json.dumps(again))
    uploads = _card_files(copy, manifest, [tmp_path / "again.json"])
    text = uploads["README.md"].decode()
    assert text.count("## Evaluation results") == 1 and "| 50.00 ± 0.00 |" in text and "68.75" not in text
    assert _card_files(copy, manifest, []) == {"eval/results.json": (copy / "eval" / "results.json").read_bytes()}  # kept as they are


def test_a_subset_holding_some_classes_draws_those_with_images(tmp_path, tiny, drawn):
    idx = torch.cat([c[:2] for c in tiny.class_indices()[2:]])  # classes 2 and 3 only
    art = write_artifact(tmp_path / "sub", name="sub", version="1.0.0", dataset=tiny.info(), images=tiny.images(idx), targets=tiny.targets[idx],
                         source_ids=[str(i) for i in idx.tolist()], labels=None)
    verify(art)
    assert [label for label, _ in drawn["rows"]] == ["class_2", "class_3"]
    assert drawn["title"].endswith("hard labels; the first 2 of 4 classes (2 have images)")
