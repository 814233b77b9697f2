"""Parquet shards as the Hub publishes them: a dataset source read by row group, and `slc import parquet`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from sl_compiler.data import load_dataset, stream
from sl_compiler.errors import DataError, ImporterError

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))


def png(seed: int, size=(12, 12), mode="RGB") -> bytes:
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write(path: Path, images: list[bytes], labels: list | None, names: list[str] | None = None, struct=True, row_group=3, extra: dict | None = None) -> Path:
    cols = {"image": pa.array([{"bytes": b, "path": f"{i}.png"} for i, b in enumerate(images)], type=IMAGE) if struct else pa.array(images, pa.binary())}
    if labels is not None:
        cols["label"] = pa.array(labels, pa.int64())
    cols.update(extra or {})
    table = pa.table(cols)
    if names:
        table = table.replace_schema_metadata({b"huggingface": json.dumps({"info": {"features": {"image": {"_type": "Image"}, "label": {"names": names, "_type": "ClassLabel"}}}}).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group)
    return path


def hub_folder(root: Path, n_train=8, names=("cat", "dog")) -> Path:
    write(root / "data" / "train-00000-of-00002.parquet", [png(i) for i in range(5)], [i % 2 for i in range(5)], list(names))
    write(root / "data" / "train-00001-of-00002.parquet", [png(i) for i in range(5, n_train)], [i % 2 for i in range(5, n_train)], list(names))
    write(root / "data" / "test-00000-of-00001.parquet", [png(100 + i) for i in range(3)], [-1] * 3, list(names))
    write(root / "data" / "validation-00000-of-00001.parquet", [png(200 + i) for i in range(4)], [1, 0, 1, 0], list(names))
    return root


def test_hub_layout_labels_class_names_and_the_unlabelled_test_is_skipped(tmp_path):
    root = hub_folder(tmp_path / "hub")
    train = load_dataset(f"parquet:{root}", split="train", in_memory=False)
    assert len(train) == 8 and train.classes == ["cat", "dog"] and train.targets.tolist() == [i % 2 for i in range(8)]
    assert [train.encoded(i)[0] for i in range(8)] == [png(i) for i in range(8)] and train.encoded(0)[1] == "png"
    assert train.source_id(6) == "data/train-00001-of-00002.parquet/1"
    test = load_dataset(f"parquet:{root}", split="test", in_memory=False)
    assert test.targets.tolist() == [1, 0, 1, 0] and test.meta["files"] == ["validation-00000-of-00001.parquet"]
    assert "test parquet shards carry no labels" in test.meta["skipped"][0]
    assert torch.equal(test.images([3, 0]), torch.stack([torch.from_numpy(np.array(Image.open(io.BytesIO(png(203 - 3 * k))))).permute(2, 0, 1) for k in range(2)]))


def test_other_forms_binary_column_split_folders_classes_txt(tmp_path):
    root = tmp_path / "plain"
    write(root / "train" / "0000.parquet", [png(i) for i in range(4)], [0, 1, 2, 1], struct=False)
    write(root / "test" / "0000.parquet", [png(9)], [2], struct=False)
    s = load_dataset(f"parquet:{root}", split="test")
    assert s.classes == ["0", "1", "2"] and s.targets.tolist() == [2]
    (root / "classes.txt").write_text("n01440764 tench\nn01443537 goldfish\nn01484850 great white shark\n")
    assert load_dataset(f"parquet:{root}", split="train").classes == ["n01440764", "n01443537", "n01484850"]


def test_registered_datasets_auto_detect_parquet_shards(tmp_path):
    root = hub_folder(tmp_path / "c")
    train = load_dataset("imagenet", root, "train", resolution=8, in_memory=False)
    assert train.name == "imagenet" and train.meta["loader"] == "parquet" and train.mean == (0.485, 0.456, 0.406) and train.resize == 9
    with pytest.raises(DataError, match="mnist/train: a 1-channel normalisation for 3-channel images"):
        load_dataset("mnist", root, "train")  # MNIST's parquet is grey
    grey = tmp_path / "mnist"
    write(grey / "train-0.parquet", [png(i, mode="L") for i in range(3)], [0, 1, 2])
    assert load_dataset("mnist", grey, "train").shape == (1, 12, 12)


def test_reads_go_by_row_group_and_keep_one(tmp_path, monkeypatch):
    root = hub_folder(tmp_path / "hub")
    train = load_dataset(f"parquet:{root}", split="train", in_memory=False)
    reads = []
    original = pq.ParquetFile.read_row_group

    def counting(self, i, *a, **k):
        reads.append(i)
        return original(self, i, *a, **k)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    reader = train.sources.read.__self__
    reader._reset()  # forget the group the shape probe read
    list(stream(train, batch_size=8, workers=0))
    assert reads == [0, 1, 0]  # file 0: groups of 3 and 2 rows, file 1: one of 3; each read once, in order
    assert len(reader._values) == 3  # one row group resident, never the split


def test_a_forked_reader_opens_its_own_file(tmp_path):
    import os

    train = load_dataset(f"parquet:{hub_folder(tmp_path / 'hub')}", split="train", in_memory=False)
    reader = train.sources.read.__self__
    expected = [reader.read(i) for i in (0, 7)]
    parent = reader._files[0]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ok = [reader.read(i) for i in (0, 7)] == expected and reader._files.get(0) is not parent
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1" and reader._files[0] is parent


def test_bad_parquet_inputs(tmp_path):
    root = tmp_path / "bad"
    write(root / "train-0.parquet", [png(0), png(1)], [0, -1])
    with pytest.raises(DataError, match=r"row train-0.parquet/1 of .* has label -1"):
        load_dataset(f"parquet:{root}")
    write(root / "train-0.parquet", [png(0)], [0], extra={"note": pa.array(["x"])})
    pq.write_table(pa.table({"text": pa.array(["a"]), "label": pa.array([0])}), root / "train-0.parquet")
    with pytest.raises(DataError, match=r"no image column .* among \['text', 'label'\]"):
        load_dataset(f"parquet:{root}")
    (root / "train-0.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="cannot read .*train-0.parquet as parquet"):
        load_dataset(f"parquet:{root}")
    write(root / "train-0.parquet", [png(0), png(1)[:-30]], [0, 1])
    images = load_dataset(f"parquet:{root}", in_memory=False, resolution=12)
    with pytest.raises(DataError, match=r"(?i)cannot decode image train-0.parquet/1: .*truncated"):
        list(stream(images, workers=0))


# ------------------------------------------------------------------------------ slc import parquet


def distilled(path: Path, soft: list[list[float]] | None, labels: list[int] | None, sizes=None) -> Path:
    n = len(soft if soft is not None else labels)
    images = [png(i, (sizes[i] if sizes else (32, 32))) for i in range(n)]
    extra = {"soft_label": pa.array(soft, pa.list_(pa.float32()))} if soft is not None else {}
    return write(path, images, labels, row_group=2, extra=extra)


def test_import_soft_probabilities_keeps_the_source_bytes(tmp_path):
    from sl_compiler.artifact import load
    from sl_compiler.importers import import_parquet

    probs = torch.softmax(torch.randn(20, 10, generator=torch.Generator().manual_seed(0)), 1)
    labels = [i // 2 for i in range(20)]
    src = distilled(tmp_path / "set.parquet", probs.tolist(), labels)
    art = load(import_parquet(src, dataset="cifar10", out=tmp_path / "art"))
    assert art.encoded(3) == (png(3, (32, 32)), "png") and art.targets.tolist() == labels and art.ipc == 2
    assert torch.allclose(art.dense_labels()[:, 0], probs, atol=1e-3)  # stored as fp16
    prov = art.manifest["provenance"]
    assert prov["labels_given"] == "probabilities" and prov["columns"] == {"image": "image", "label": "label", "soft": "soft_label"}
    assert art.source_ids[0] == "set.parquet#0"


def test_import_logits_with_temperature_and_hard_only(tmp_path):
    from sl_compiler.artifact import load
    from sl_compiler.importers import import_parquet

    logits = torch.randn(10, 10, generator=torch.Generator().manual_seed(1)) * 3
    src = distilled(tmp_path / "l.parquet", logits.tolist(), None)
    art = load(import_parquet(src, dataset="cifar10", temperature=2.0, out=tmp_path / "a"))
    assert torch.allclose(art.dense_labels()[:, 0], torch.softmax(logits / 2, 1), atol=1e-3)
    assert art.targets.tolist() == logits.argmax(1).tolist() and art.manifest["labels"]["temperature"] == 2.0
    hard = load(import_parquet(distilled(tmp_path / "h.parquet", None, list(range(10))), dataset="cifar10", out=tmp_path / "b"))
    assert hard.label_kind == "hard" and hard.targets.tolist() == list(range(10))


def test_import_refuses_before_writing(tmp_path):
    from sl_compiler.importers import import_parquet

    out = tmp_path / "never"
    mixed = distilled(tmp_path / "m.parquet", None, [0, 1, 2], sizes=[(32, 32), (32, 32), (30, 32)])
    with pytest.raises(ImporterError, match=r"m.parquet row 2: the image is 3x32x30, the set's 3x32x32"):
        import_parquet(mixed, dataset="cifar10", out=out)
    wide = distilled(tmp_path / "w.parquet", [[0.5, 0.5]] * 3, None)
    with pytest.raises(ImporterError, match="labels have 2 classes but the dataset has 10"):
        import_parquet(wide, dataset="cifar10", out=out)
    probs = distilled(tmp_path / "p.parquet", [[-1.0] + [0.0] * 9] * 2, None)
    with pytest.raises(ImporterError, match="is not probabilities"):
        import_parquet(probs, dataset="cifar10", soft_kind="probs", out=out)
    truncated = tmp_path / "t.parquet"
    write(truncated, [png(0, (32, 32)), png(1, (32, 32))[:60]], [0, 1])
    with pytest.raises(ImporterError, match=r"t.parquet row 1: cannot decode the image"):
        import_parquet(truncated, dataset="cifar10", out=out)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if not p.name.endswith(".parquet")]


def test_cli_import_parquet(tmp_path, capsys):
    from cli.main import main

    src = distilled(tmp_path / "d.parquet", None, list(range(10)))
    assert main(["import", "parquet", str(src), "--dataset", "cifar10", "--out", str(tmp_path / "art")]) == 0
    assert "imported parquet-cifar10-ipc1 1.0.0: 10 images, hard labels" in capsys.readouterr().out
    assert main(["import", "parquet", str(tmp_path / "nope"), "--dataset", "cifar10"]) == 2


def test_import_for_imagenet_takes_its_classes_from_the_recorded_location(tmp_path):
    from sl_compiler.artifact import load
    from sl_compiler.data.fake import FakeSpec, wnids, write_fake
    from sl_compiler.data.locations import add_location
    from sl_compiler.importers import import_parquet

    src = write(tmp_path / "in.parquet", [png(i, (224, 224)) for i in range(4)], [0, 1, 2, 3])
    with pytest.raises(ImporterError, match="needs --data-root"):
        import_parquet(src, dataset="imagenet", out=tmp_path / "a")
    add_location("imagenet", write_fake(tmp_path / "in1k", "imagefolder", FakeSpec(classes=4, per_class=1, val_per_class=1, min_size=16, max_size=20)))
    art = load(import_parquet(src, dataset="imagenet", out=tmp_path / "a"))
    assert art.classes == wnids(4) and art.shape == (3, 224, 224) and art.manifest["dataset"]["name"] == "imagenet"
