"""ImageNet's layouts on fake ImageNets: devkits, Kaggle's files, the tar of tars, and their bad inputs."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from sl_compiler.data import files, load_dataset, matfile, stream
from sl_compiler.data.fake import FakeSpec, class_ids, ground_truth, val_order, wnids, words, write_fake
from sl_compiler.errors import DataError

SPEC = FakeSpec(classes=4, per_class=3, val_per_class=2, min_size=20, max_size=40, seed=5)
DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))


def make(tmp_path, layout, spec=SPEC) -> Path:
    return write_fake(tmp_path / layout, layout, spec)


def labels(root, split="test", **kw):
    s = load_dataset("imagenet", root, split, in_memory=False, **kw)
    return s, [(Path(s.source_id(i).split(":")[-1]).name, s.classes[int(t)]) for i, t in enumerate(s.targets)]


def truth(spec=SPEC) -> list[tuple[str, str]]:
    return sorted((f"ILSVRC2012_val_{n:08d}.JPEG", wnids(spec.classes)[k]) for n, (k, _) in enumerate(val_order(spec), 1))


def rewrite_tar(path: Path, change) -> None:
    """Rewrite ``path`` with ``change(name, data) -> data | None`` applied to each member (None drops it)."""
    with tarfile.open(path) as tf:
        members = [(m.name, tf.extractfile(m).read()) for m in tf if m.isreg()]
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            data = change(name, data)
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


# ---------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("layout", ["ilsvrc-tars", "flat-val-devkit", "kaggle"])
def test_flat_val_sets_are_labelled_by_their_ground_truth(tmp_path, layout):
    root = make(tmp_path, layout)
    s, got = labels(root)
    assert sorted(got) == truth() and s.classes == wnids(4)
    assert s.meta["class_names"] == words(4)  # the devkit's words or Kaggle's mapping
    assert "devkit" in s.meta["layout"] or "LOC_val_solution" in s.meta["layout"] or "ground_truth" in s.meta["layout"]


def test_ground_truth_ids_are_not_wnid_order(tmp_path):
    """The devkit's class ids are a permutation: reading the ground truth as sorted-wnid indices would mislabel."""
    assert class_ids(SPEC) != sorted(class_ids(SPEC))
    root = make(tmp_path, "flat-val-devkit")
    _, got = labels(root)
    naive = [(f"ILSVRC2012_val_{n:08d}.JPEG", wnids(4)[int(line) - 1]) for n, line in enumerate(ground_truth(SPEC).decode().split(), 1)]
    assert sorted(got) == truth() != sorted(naive)


@pytest.mark.parametrize("form", ["folder", "tar.gz", "loose", "map_clsloc"])
def test_devkit_forms(tmp_path, form):
    root = make(tmp_path, "flat-val-devkit")
    data = root / "ILSVRC2012_devkit_t12" / "data"
    if form == "tar.gz":
        with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tf:
            tf.add(root / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")
        shutil.rmtree(root / "ILSVRC2012_devkit_t12")
    elif form == "loose":
        for f in data.iterdir():
            shutil.move(f, root / f.name)
        shutil.rmtree(root / "ILSVRC2012_devkit_t12")
    elif form == "map_clsloc":  # ILSVRC2015's mapping instead of meta.mat (ids are the same)
        ids = class_ids(SPEC)
        (data / "meta.mat").unlink()
        (data / "map_clsloc.txt").write_text("".join(f"{w} {ids[k]} {words(4)[k].replace(' ', '_')}\n" for k, w in enumerate(wnids(4))))
    _, got = labels(root)
    assert sorted(got) == truth()


def test_classes_without_a_training_split_come_from_the_devkit(tmp_path):
    root = make(tmp_path, "flat-val-devkit")
    shutil.rmtree(root / "train")
    s, got = labels(root)
    assert s.classes == wnids(4) and sorted(got) == truth()  # the leaf synsets; the two ancestors are not classes
    with pytest.raises(DataError, match="no ImageNet training split"):
        load_dataset("imagenet", root, "train")


def test_val_comes_before_an_unlabelled_test_which_is_skipped_with_a_note(tmp_path):
    root = make(tmp_path, "flat-val-devkit")
    assert (root / "test").is_dir()
    assert load_dataset("imagenet", root, "test").meta["path"] == str(root / "val")
    shutil.rmtree(root / "val")
    with pytest.raises(DataError, match=r"no labelled ImageNet val split .*test/ holds images without class folders"):
        load_dataset("imagenet", root, "test")
    # a test/ in class folders is labelled: used, when there is no val
    folder = make(tmp_path, "imagefolder")
    os.rename(folder / "val", folder / "test")
    assert len(load_dataset("imagenet", folder, "test")) == 8
    # the ImageFolder reader skips an unlabelled test/ for val/ and says so
    generic = make(tmp_path / "g", "imagefolder")
    shutil.copytree(root / "test", generic / "test")
    s = load_dataset(f"imagefolder:{generic}", split="test", resolution=16)
    assert s.meta["path"].endswith("val") and "unlabelled" in s.meta["skipped"][0]


def test_the_tar_of_tars_is_read_in_place_at_outer_offsets(tmp_path):
    root = make(tmp_path, "ilsvrc-tars")
    before = sorted(p.name for p in root.iterdir())
    train = load_dataset("imagenet", root, "train", in_memory=False)
    assert len(train) == 12 and train.source_id(0).startswith(f"{wnids(4)[0]}.tar/")
    index = files.scan_nested_tar(root / "ILSVRC2012_img_train.tar")
    outer = (root / "ILSVRC2012_img_train.tar").read_bytes()
    with tarfile.open(root / "ILSVRC2012_img_train.tar") as tf:
        inner = {m.name: tf.extractfile(m).read() for m in tf}
    for name, offset, size in zip(index.names, index.offsets, index.sizes):
        tar_name, member = name.split("/")
        with tarfile.open(fileobj=io.BytesIO(inner[tar_name])) as t:
            assert outer[offset : offset + size] == t.extractfile(member).read()
    assert sorted(p.name for p in root.iterdir()) == before  # nothing extracted


def test_listings_are_cached(tmp_path, monkeypatch):
    root = make(tmp_path, "ilsvrc-tars")
    first = load_dataset("imagenet", root, "train", in_memory=False)
    monkeypatch.setattr(files, "_scan", lambda *a, **k: pytest.fail("rescanned a tar although its index is cached"))
    again = load_dataset("imagenet", root, "train", in_memory=False)
    assert list(again.sources.ids) == list(first.sources.ids)
    folder = make(tmp_path, "imagefolder")
    one = load_dataset("imagenet", folder, "train", in_memory=False)
    from sl_compiler.data import imagefolder

    monkeypatch.setattr(imagefolder, "walk_images", lambda *a, **k: pytest.fail("relisted an unchanged folder"))
    assert list(load_dataset("imagenet", folder, "train", in_memory=False).sources.ids) == list(one.sources.ids)
    monkeypatch.undo()
    (folder / "train" / wnids(4)[0] / "new.JPEG").write_bytes((folder / "train" / wnids(4)[0] / f"{wnids(4)[0]}_0000.JPEG").read_bytes())
    assert len(load_dataset("imagenet", folder, "train", in_memory=False)) == 13  # a new file changes its folder's mtime


# ---------------------------------------------------------------------------------- bad input


def test_a_val_image_missing_from_the_ground_truth_is_named(tmp_path):
    root = make(tmp_path, "flat-val-devkit")
    extra = root / "val" / "ILSVRC2012_val_00000009.JPEG"
    shutil.copy(root / "val" / "ILSVRC2012_val_00000001.JPEG", extra)
    with pytest.raises(DataError, match=r"val image val/ILSVRC2012_val_00000009.JPEG is missing from the ground-truth file .*\(8 lines\)"):
        load_dataset("imagenet", root, "test")
    extra.rename(root / "val" / "holiday.jpg")
    with pytest.raises(DataError, match="val image val/holiday.jpg is not named ILSVRC2012_val_NNNNNNNN.JPEG"):
        load_dataset("imagenet", root, "test")


def test_a_ground_truth_class_beyond_the_class_folders_is_named(tmp_path):
    root = make(tmp_path, "flat-val-devkit")
    gone = wnids(4)[2]
    shutil.rmtree(root / "train" / gone)
    first = next(n for n, (k, _) in enumerate(val_order(SPEC), 1) if k == 2)
    with pytest.raises(DataError, match=f"val image val/ILSVRC2012_val_{first:08d}.JPEG is labelled {gone} .*not among the 3 training classes"):
        load_dataset("imagenet", root, "test")


def test_ground_truth_and_devkit_errors(tmp_path):
    root = make(tmp_path, "flat-val-devkit")
    data = root / "ILSVRC2012_devkit_t12" / "data"
    gt = data / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text(gt.read_text().replace(f"{class_ids(SPEC)[0]}\n", "999\n", 1))
    with pytest.raises(DataError, match="names class id 999, which the devkit's synsets do not define"):
        load_dataset("imagenet", root, "test")
    gt.write_text("12\nabc\n")
    with pytest.raises(DataError, match=r"ILSVRC2012_validation_ground_truth.txt:2 holds 'abc'"):
        load_dataset("imagenet", root, "test")
    (data / "meta.mat").write_bytes(b"not a mat file" * 20)
    with pytest.raises(DataError, match="meta.mat is not a MAT-file 5"):
        load_dataset("imagenet", root, "test")
    shutil.rmtree(root / "ILSVRC2012_devkit_t12")
    with pytest.raises(DataError, match="holds val images without class folders, and no labels for them; add the devkit"):
        load_dataset("imagenet", root, "test")


def test_kaggle_errors(tmp_path):
    root = make(tmp_path, "kaggle")
    csv = root / "LOC_val_solution.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:-1]) + "\n")
    missing = lines[-1].split(",")[0]
    with pytest.raises(DataError, match=f"val image ILSVRC/Data/CLS-LOC/val/{missing}.JPEG is missing from .*LOC_val_solution.csv"):
        load_dataset("imagenet", root, "test")
    csv.write_text(lines[0] + "\nILSVRC2012_val_00000001,boxes only\n")
    with pytest.raises(DataError, match=r"LOC_val_solution.csv:2: expected 'ImageId,wnid"):
        load_dataset("imagenet", root, "test")


@pytest.mark.parametrize("workers", [0, 2])
def test_a_truncated_jpeg_inside_the_tar_of_tars_is_named_or_skipped(tmp_path, workers):
    root = make(tmp_path, "ilsvrc-tars")
    victim = f"{wnids(4)[1]}_0001.JPEG"

    def truncate_inner(name, data):
        if name != f"{wnids(4)[1]}.tar":
            return data
        buf = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=buf, mode="w") as dst:
            for m in src:
                content = src.extractfile(m).read()
                content = content[: len(content) // 2] if m.name == victim else content
                info = tarfile.TarInfo(m.name)
                info.size = len(content)
                dst.addfile(info, io.BytesIO(content))
        return buf.getvalue()

    rewrite_tar(root / "ILSVRC2012_img_train.tar", truncate_inner)
    train = load_dataset("imagenet", root, "train", in_memory=False)
    bad = [i for i in range(len(train)) if train.source_id(i).endswith(victim)]
    assert len(bad) == 1
    with pytest.raises(DataError, match=f"(?i)cannot decode image {wnids(4)[1]}.tar/{victim}: .*truncated") as info:
        list(stream(train, batch_size=4, workers=workers))
    assert "\n" not in str(info.value)
    s = stream(train, batch_size=4, workers=workers, skip_bad=True)
    assert sum(len(b.indices) for b in s) == 11 and [x[0] for x in s.skipped] == bad
    with pytest.raises(DataError, match="cannot decode image"):  # decoding into memory is as strict
        load_dataset("imagenet", root, "train", resolution=16, in_memory=True)


def test_a_truncated_tar_is_named(tmp_path):
    root = make(tmp_path, "ilsvrc-tars")
    tar = root / "ILSVRC2012_img_val.tar"
    reader = files.TarReader([tar], np.zeros(1, dtype=np.int32), np.array([tar.stat().st_size - 100]), np.array([1000]))
    with pytest.raises(DataError, match="ILSVRC2012_img_val.tar is truncated"):
        reader.read(0)
    os.truncate(tar, tar.stat().st_size // 2)  # its size changed: the cached index is not used
    with pytest.raises(DataError, match="ILSVRC2012_img_val.tar"):
        load_dataset("imagenet", root, "test", in_memory=True)


# ---------------------------------------------------------------------------------- meta.mat


@pytest.mark.parametrize("name", ["meta-scipy-compressed.mat", "meta-scipy-plain.mat"])
def test_matfile_reads_what_scipy_writes(name):
    """Fixtures written by scipy.io.savemat (compressed and not) in the devkit's shape (see tests/data/README.md)."""
    synsets = matfile.read((DATA / name).read_bytes(), name)["synsets"]
    assert [int(np.asarray(s["ILSVRC2012_ID"]).item()) for s in synsets] == [1, 2, 3, 4, 5]
    assert [s["WNID"] for s in synsets] == ["n00440760", "n01440761", "n02440762", "n03440763", "n04440764"]
    assert synsets[1]["words"] == "tench, Tinca tinca 1 é"
    assert [int(np.asarray(s["num_children"]).item()) for s in synsets] == [0, 0, 0, 2, 2]
    assert np.asarray(synsets[4]["children"]).tolist() == [[1, 2]] and np.asarray(synsets[0]["children"]).size == 0


def test_matfile_round_trip_and_refusals():
    variables = {"synsets": [{"ILSVRC2012_ID": 7, "WNID": "n01234567", "words": "x, y", "children": [], "num_train_images": 1300.5}], "note": "hello"}
    for compress in (True, False):
        back = matfile.read(matfile.write(variables, compress=compress))
        s = back["synsets"][0]
        assert back["note"] == "hello" and s["WNID"] == "n01234567" and int(s["ILSVRC2012_ID"].item()) == 7 and float(s["num_train_images"].item()) == 1300.5
    with pytest.raises(DataError, match="too short"):
        matfile.read(b"MATLAB")
    with pytest.raises(DataError, match="runs past the end"):
        matfile.read(matfile.write(variables, compress=False)[:-16])
