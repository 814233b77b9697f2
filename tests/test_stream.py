"""The streaming loader: same pixels and order as a direct decode, whatever the workers; errors stay one line."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from sl_compiler.data import load_dataset, stream
from sl_compiler.data.decode import decode_image
from sl_compiler.data.stream import chunks
from sl_compiler.errors import DataError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "slc-cache"))


def _write_folder(root, classes=("ant", "bee", "cat"), per_class=5, size=20):
    for k, cls in enumerate(classes):
        (root / "train" / cls).mkdir(parents=True)
        (root / "test" / cls).mkdir(parents=True)
        for i in range(per_class):
            arr = np.random.default_rng(100 * k + i).integers(0, 256, (size + i, size + 2 * i, 3), dtype=np.uint8)
            for split in ("train", "test"):
                buf = io.BytesIO()
                Image.fromarray(arr).save(buf, format="JPEG", quality=90)
                (root / split / cls / f"{i:03d}.jpg").write_bytes(buf.getvalue())


@pytest.fixture
def lazy(tmp_path):
    _write_folder(tmp_path / "root")
    return load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train", resolution=16, in_memory=False)


def test_chunks_cut_in_order():
    assert chunks(range(7), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunks(torch.tensor([5, 1, 4]), 2) == [[5, 1], [4]]


@pytest.mark.parametrize("workers", [0, 2])
def test_lazy_split_streams_the_direct_decode_in_order(lazy, workers):
    assert lazy.pixels is None and len(lazy) == 15
    order = [14, 3, 7, 0, 9, 2, 11]
    got = list(stream(lazy, order, batch_size=3, workers=workers))
    assert [len(b.indices) for b in got] == [3, 3, 1]
    assert torch.cat([b.indices for b in got]).tolist() == order
    expected = torch.stack([decode_image(lazy.sources.read(i), lazy.shape, lazy.source_id(i)) for i in order])
    assert torch.equal(torch.cat([b.pixels for b in got]), expected)
    assert torch.equal(torch.cat([b.targets for b in got]), lazy.targets[order])


def test_in_memory_split_is_sliced_without_workers(tiny_spec):
    images = load_dataset(tiny_spec, split="train")
    s = stream(images, batch_size=5, workers=4)
    assert s.workers == 0  # nothing to decode
    got = list(s)
    assert torch.equal(torch.cat([b.pixels for b in got]), images.pixels)


def test_images_of_a_lazy_split_go_through_the_stream(lazy):
    idx = list(range(len(lazy)))[::-1]
    assert torch.equal(lazy.images(idx), torch.stack([decode_image(lazy.sources.read(i), lazy.shape) for i in idx]))


def test_explicit_batches_and_a_custom_decode(lazy):
    calls = []

    def decode(data, index):
        calls.append(index)
        return torch.full(lazy.shape, index, dtype=torch.uint8)

    got = list(stream(lazy, batches=[[4, 2], [8]], decode=decode, workers=0))
    assert calls == [4, 2, 8] and [b.pixels[:, 0, 0, 0].tolist() for b in got] == [[4, 2], [8]]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_file_is_one_line_naming_it_or_skipped(lazy, workers):
    bad = 5
    path = lazy.meta["path"]
    (__import__("pathlib").Path(path).parent / lazy.source_id(bad)).write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=f"cannot decode image {lazy.source_id(bad)}") as info:
        list(stream(lazy, batch_size=4, workers=workers))
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    s = stream(lazy, batch_size=4, workers=workers, skip_bad=True)
    got = list(s)
    assert bad not in torch.cat([b.indices for b in got]).tolist() and sum(len(b.indices) for b in got) == 14
    assert [(i, sid) for i, sid, _ in s.skipped] == [(bad, lazy.source_id(bad))]


def test_negative_workers_is_an_error(lazy):
    with pytest.raises(DataError, match="--workers -1"):
        stream(lazy, workers=-1)


# ---------------------------------------------------------------- every layout, through worker processes


@pytest.fixture(scope="module")
def fake_roots(tmp_path_factory):
    from sl_compiler.data.fake import LAYOUTS, FakeSpec, write_fake

    root = tmp_path_factory.mktemp("layouts")
    spec = FakeSpec(classes=3, per_class=3, val_per_class=2, min_size=20, max_size=44, seed=2)
    return {layout: write_fake(root / layout, layout, spec) for layout in LAYOUTS}


@pytest.mark.parametrize("layout", ["imagefolder", "imagefolder-tar", "ilsvrc-tars", "flat-val-devkit", "kaggle", "wds", "parquet", "tinyimagenet", "tinyimagenet-classval"])
def test_two_workers_stream_every_layout_as_the_direct_decode(fake_roots, layout, tmp_path, monkeypatch):
    """Readers (folders, tars, the tar of tars, parquet row groups) work in forked workers, in order."""
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))
    name = "tinyimagenet" if layout.startswith("tinyimagenet") else "imagenet"
    for split in ("train", "test"):
        images = load_dataset(name, fake_roots[layout], split, resolution=24, in_memory=False)
        assert images.resize == (27 if name == "imagenet" else 24)  # ImageNet keeps its crop fraction: 24 / 0.875
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(1)).tolist()
        got = list(stream(images, order, batch_size=2, workers=2))
        assert torch.cat([b.indices for b in got]).tolist() == order
        expected = torch.stack([decode_image(images.encoded(i)[0], images.shape, images.source_id(i), images.resize) for i in order])
        assert torch.equal(torch.cat([b.pixels for b in got]), expected)
        assert torch.equal(torch.cat([b.targets for b in got]), images.targets[order])
        assert torch.equal(images.images(order), expected)
