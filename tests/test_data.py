"""Source dataset loaders on tiny files written here in each real format, and their errors."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sl_compiler.data import decode, encoded, load_dataset
from sl_compiler.data.decode import decode_image
from sl_compiler.data.stats import NORMALIZATION, pixel_stats
from sl_compiler.errors import DataError

CLASSES = ["ant", "bee", "cat"]  # written out of order below; loaders sort them


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "data"


def rng_image(seed: int, size: int = 8, mode: str = "RGB") -> np.ndarray:
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_imagefolder(root: Path, per_class: dict[str, int] | None = None, fmt: str = "PNG", test_dir: str = "test") -> dict[str, np.ndarray]:
    """``root/{train,test_dir}/<class>/<i>.png``; returns id -> pixels (H, W, C)."""
    written = {}
    for split, n in (("train", 3), (test_dir, 2)):
        for k, cls in enumerate(reversed(CLASSES)):
            count = (per_class or {}).get(cls, n)
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                arr = rng_image(zlib.crc32(f"{split}/{cls}/{i}".encode()))
                ext = "png" if fmt == "PNG" else "jpg"
                path = root / split / cls / f"{i:04d}.{ext}"
                path.write_bytes(encode(arr, fmt))
                written[f"{split}/{cls}/{i:04d}.{ext}"] = arr
    return written


def make_tar(path: Path, folder: Path, members: list[str]) -> Path:
    with tarfile.open(path, "w") as tf:
        for m in members:
            tf.add(folder / m, arcname=m, recursive=False)
    return path


def tree(folder: Path, top: str) -> list[str]:
    """Every folder and file under ``folder/top``, relative to ``folder``, parents first."""
    out = [top]
    for dirpath, dirnames, filenames in os.walk(folder / top):
        dirnames.sort()
        rel = Path(dirpath).relative_to(folder).as_posix()
        out += [f"{rel}/{d}" for d in dirnames] + [f"{rel}/{f}" for f in sorted(filenames)]
    return out


# ---------------------------------------------------------------- ImageFolder: folders


def test_imagefolder_folder_pixels_labels_classes_sources(tmp_path):
    written = write_imagefolder(tmp_path / "root")
    train = load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train")
    assert train.name == "imagefolder:root" and train.classes == CLASSES
    assert len(train) == 9 and train.shape == (3, 8, 8)
    assert train.targets.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for i in range(len(train)):
        sid = train.source_id(i)
        assert sid.split("/")[1] == CLASSES[int(train.targets[i])]
        assert torch.equal(train.pixels[i], torch.from_numpy(written[sid]).permute(2, 0, 1))
        data, ext = train.encoded(i)
        assert ext == "png" and data == (tmp_path / "root" / sid).read_bytes()
    assert (train.mean, train.std) == pixel_stats(train.pixels)
    assert train.meta["layout"] == "folder" and train.meta["in_memory"]


def test_test_split_takes_classes_shape_and_stats_from_train(tmp_path):
    write_imagefolder(tmp_path / "root")
    train = load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train")
    test = load_dataset(f"imagefolder:{tmp_path / 'root'}", split="val")  # val: an alias of test
    assert test.split == "test" and len(test) == 6 and test.classes == train.classes
    assert (test.mean, test.std) == (train.mean, train.std) != pixel_stats(test.pixels)


def test_val_folder_stands_for_test(tmp_path):
    write_imagefolder(tmp_path / "root", test_dir="val")
    test = load_dataset(f"imagefolder:{tmp_path / 'root'}", split="test")
    assert len(test) == 6 and test.source_id(0).startswith("val/")


def test_pixel_stats_are_exact():
    x = torch.randint(0, 256, (7, 3, 5, 5), dtype=torch.uint8)
    mean, std = pixel_stats(x)
    ref = x.double().div(255).transpose(0, 1).reshape(3, -1)
    assert np.allclose(mean, ref.mean(1).numpy(), atol=1e-6) and np.allclose(std, ref.std(1).numpy(), atol=1e-6)


def test_hidden_and_non_image_files_are_ignored_and_gray_images_give_one_channel(tmp_path):
    root = tmp_path / "root"
    for split, n in (("train", 2), ("test", 1)):
        for k, cls in enumerate(["b", "a"]):
            (root / split / cls / "sub").mkdir(parents=True)
            for i in range(n):
                (root / split / cls / f"{i}.png").write_bytes(encode(rng_image(k * 10 + i, mode="L"), "PNG"))
            (root / split / cls / "sub" / "deep.png").write_bytes(encode(rng_image(50 + k, mode="L"), "PNG"))
            (root / split / cls / "notes.txt").write_text("not an image")
            (root / split / cls / ".DS_Store").write_bytes(b"junk")
        (root / split / ".cache" / "x").mkdir(parents=True)
        (root / split / ".cache" / "x" / "0.png").write_bytes(encode(rng_image(0), "PNG"))
    images = load_dataset(f"imagefolder:{root}", split="train")
    assert images.classes == ["a", "b"] and images.shape == (1, 8, 8)
    assert images.sources.ids == ["train/a/0.png", "train/a/1.png", "train/a/sub/deep.png", "train/b/0.png", "train/b/1.png", "train/b/sub/deep.png"]
    assert torch.equal(images.pixels[2, 0], torch.from_numpy(rng_image(51, mode="L")))


def test_jpeg_fast_path_matches_pil_including_gray_and_resized(tmp_path, monkeypatch):
    monkeypatch.setattr(encoded, "CHUNK", 4)  # several decode tasks on the thread pool
    root = tmp_path / "root"
    write_imagefolder(root, fmt="JPEG")
    # a grayscale JPEG in an RGB set, and one of another size (resized, centre-cropped)
    (root / "train" / "ant" / "0003.jpg").write_bytes(encode(rng_image(1, mode="L"), "JPEG"))
    (root / "train" / "bee" / "0003.jpg").write_bytes(encode(rng_image(2, size=12), "JPEG"))
    assert decode.batch_jpeg_decoder() is not None  # the fast path is what this test checks
    train = load_dataset(f"imagefolder:{root}", split="train")
    assert train.shape == (3, 8, 8) and train.sources.exts[0] == "jpg"
    for i in range(len(train)):
        assert torch.equal(train.pixels[i], decode_image(train.encoded(i)[0], train.shape, train.source_id(i)))


def test_resolution_and_channels_options(tmp_path):
    write_imagefolder(tmp_path / "root")
    images = load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train", resolution=4, channels=1)
    assert images.pixels.shape == (9, 1, 4, 4)
    assert torch.equal(images.pixels[0], decode_image(images.encoded(0)[0], (1, 4, 4)))


# ---------------------------------------------------------------- ImageFolder: tars


def test_tar_forms_load_the_same_dataset_as_the_folder(tmp_path):
    write_imagefolder(tmp_path / "root")
    folder = {s: load_dataset(f"imagefolder:{tmp_path / 'root'}", split=s) for s in ("train", "test")}
    # members out of order: the loader sorts them as it sorts a folder
    one_tar = make_tar(tmp_path / "all.tar", tmp_path / "root", tree(tmp_path / "root", "test")[::-1] + tree(tmp_path / "root", "train")[::-1])
    (tmp_path / "tars").mkdir()  # the shared CIFAR-10 layout: a tar per split, members <split>/<class>/<file>
    make_tar(tmp_path / "tars" / "set-train.tar", tmp_path / "root", tree(tmp_path / "root", "train"))
    make_tar(tmp_path / "tars" / "set-test.tar", tmp_path / "root", tree(tmp_path / "root", "test"))
    for spec in (f"imagefolder:{one_tar}", f"imagefolder:{tmp_path / 'tars'}"):
        for split in ("train", "test"):
            images = load_dataset(spec, split=split)
            assert images.meta["layout"] == "tar"
            assert images.classes == folder[split].classes and images.sources.ids == folder[split].sources.ids
            assert torch.equal(images.targets, folder[split].targets) and torch.equal(images.pixels, folder[split].pixels)
            assert (images.mean, images.std) == (folder[split].mean, folder[split].std)
            assert [images.encoded(i) for i in range(len(images))] == [folder[split].encoded(i) for i in range(len(images))]


def test_split_tar_with_class_members_at_top_level(tmp_path):
    write_imagefolder(tmp_path / "root")
    (tmp_path / "tars").mkdir()
    for split in ("train", "test"):
        make_tar(tmp_path / "tars" / f"data_{split}.tar", tmp_path / "root" / split, [m.partition("/")[2] for m in tree(tmp_path / "root", split)[1:]])
    images = load_dataset(f"imagefolder:{tmp_path / 'tars'}", split="test")
    assert images.classes == CLASSES and len(images) == 6 and images.source_id(0) == "ant/0000.png"


def test_tar_source_survives_pickling(tmp_path):
    """DataLoader workers get the reader by pickle: descriptors must reopen there."""
    write_imagefolder(tmp_path / "root")
    tar = make_tar(tmp_path / "all.tar", tmp_path / "root", tree(tmp_path / "root", "train") + tree(tmp_path / "root", "test"))
    images = load_dataset(f"imagefolder:{tar}", split="train")
    images.encoded(0)  # opens a descriptor
    clone = pickle.loads(pickle.dumps(images.sources))
    assert clone.read(4) == images.encoded(4)[0] == (tmp_path / "root" / images.source_id(4)).read_bytes()


@pytest.mark.parametrize("name", ["../evil.png", "/abs/evil.png", "train/a/../../evil.png"])
def test_unsafe_tar_member_is_refused(tmp_path, name):
    data = encode(rng_image(0), "PNG")
    tar = tmp_path / "bad.tar"
    with tarfile.open(tar, "w") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="unsafe tar member"):
        load_dataset(f"imagefolder:{tar}", split="train")


def test_links_in_a_tar_are_skipped(tmp_path):
    write_imagefolder(tmp_path / "root")
    tar = make_tar(tmp_path / "all.tar", tmp_path / "root", tree(tmp_path / "root", "train") + tree(tmp_path / "root", "test"))
    with tarfile.open(tar, "a") as tf:
        for kind, name in ((tarfile.SYMTYPE, "train/ant/link.png"), (tarfile.LNKTYPE, "train/bee/hard.png")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "/etc/passwd"
            tf.addfile(info)
    images = load_dataset(f"imagefolder:{tar}", split="train")
    assert len(images) == 9 and not any("link" in i or "hard" in i for i in images.sources.ids)


def test_compressed_tar_is_a_clear_error(tmp_path):
    write_imagefolder(tmp_path / "root")
    with tarfile.open(tmp_path / "all.tar", "w:gz") as tf:
        tf.add(tmp_path / "root" / "train", arcname="train")
    with pytest.raises(DataError, match="uncompressed tar"):
        load_dataset(f"imagefolder:{tmp_path / 'all.tar'}", split="train")


# ---------------------------------------------------------------- cache and laziness


def test_second_load_reads_the_cache_and_does_not_decode(tmp_path, cache_dir, monkeypatch):
    write_imagefolder(tmp_path / "root")
    first = load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train")
    assert len(list(cache_dir.glob("pixels-train-*.safetensors"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(encoded, "decode_all", no_decoding)
    second = load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train")
    assert torch.equal(first.pixels, second.pixels) and first.fingerprint() == second.fingerprint()
    # a changed source file misses the cache
    changed = tmp_path / "root" / "train" / "ant" / "0000.png"
    changed.write_bytes(encode(rng_image(99), "PNG"))
    os.utime(changed, ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded although cached"):
        load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train")


def test_tar_index_is_cached(tmp_path, cache_dir, monkeypatch):
    write_imagefolder(tmp_path / "root")
    tar = make_tar(tmp_path / "all.tar", tmp_path / "root", tree(tmp_path / "root", "train"))
    first = load_dataset(f"imagefolder:{tar}", split="train")
    assert len(list(cache_dir.glob("tarindex-all.tar-*.safetensors"))) == 1
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: pytest.fail("tar scanned again"))
    monkeypatch.setattr(encoded, "decode_all", lambda *a, **k: pytest.fail("decoded again"))
    assert torch.equal(load_dataset(f"imagefolder:{tar}", split="train").pixels, first.pixels)


def test_corrupt_cache_entry_is_rebuilt(tmp_path, cache_dir):
    write_imagefolder(tmp_path / "root")
    first = load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train")
    (entry,) = cache_dir.glob("pixels-train-*.safetensors")
    entry.write_bytes(b"garbage")
    assert torch.equal(load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train").pixels, first.pixels)
    assert entry.stat().st_size > 100


def test_large_sets_stay_lazy(tmp_path, cache_dir, monkeypatch):
    write_imagefolder(tmp_path / "root", fmt="JPEG")
    eager = load_dataset(f"imagefolder:{tmp_path / 'root'}", split="test")
    monkeypatch.setattr(encoded, "IN_MEMORY_LIMIT", 100)  # decoded size of this set: 6 * 192 bytes
    lazy = load_dataset(f"imagefolder:{tmp_path / 'root'}", split="test")
    assert lazy.pixels is None and not lazy.meta["in_memory"]
    # held or streamed, one dataset: the same normalisation and the same fingerprint
    assert (lazy.mean, lazy.std) == (eager.mean, eager.std) and lazy.fingerprint() == eager.fingerprint()
    assert torch.equal(lazy.images([5, 0]), eager.pixels[[5, 0]])
    assert torch.equal(lazy.subset([1, 2]).pixels, eager.pixels[1:3])


def test_imagenet_is_an_imagefolder_decoded_at_224(tmp_path):
    write_imagefolder(tmp_path / "root", fmt="JPEG")
    images = load_dataset("imagenet", tmp_path / "root", "val", in_memory=False)
    assert images.name == "imagenet" and images.shape == (3, 224, 224) and images.pixels is None
    assert (images.mean, images.std) == NORMALIZATION["imagenet"]
    assert images.images([0]).shape == (1, 3, 224, 224)


# ---------------------------------------------------------------- ImageFolder errors


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}", split="train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no train/ folder or \*train\*.tar in"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}", split="train")
    write_imagefolder(tmp_path / "root")
    (tmp_path / "root" / "test" / "cat" / "0000.png").unlink()
    (tmp_path / "root" / "test" / "cat" / "0001.png").unlink()
    with pytest.raises(DataError, match=r"class folder .*test/cat holds no images"):
        load_dataset(f"imagefolder:{tmp_path / 'root'}", split="test")
    (tmp_path / "root" / "test" / "cat").rmdir()
    with pytest.raises(DataError, match=r"test classes differ from train's \(missing \['cat'\]"):
        load_dataset(f"imagefolder:{tmp_path / 'root'}", split="test")


def test_empty_class_folder_in_a_tar(tmp_path):
    write_imagefolder(tmp_path / "root")
    for f in (tmp_path / "root" / "train" / "bee").iterdir():
        f.unlink()
    tar = make_tar(tmp_path / "all.tar", tmp_path / "root", tree(tmp_path / "root", "train"))
    with pytest.raises(DataError, match=r"class folder bee/ in .*all.tar:train/ holds no images"):
        load_dataset(f"imagefolder:{tar}", split="train")


def test_corrupt_image_is_named(tmp_path):
    write_imagefolder(tmp_path / "root", fmt="JPEG")
    (tmp_path / "root" / "train" / "bee" / "0001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    with pytest.raises(DataError, match=r"cannot decode image train/bee/0001.jpg"):
        load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train")


def test_dispatcher_errors(tmp_path):
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("cifar10", tmp_path, "holdout")
    with pytest.raises(DataError, match="unknown dataset 'svhn'"):
        load_dataset("svhn", tmp_path)
    with pytest.raises(DataError, match="needs --data-root"):
        load_dataset("cifar100")
    with pytest.raises(DataError, match="data root .* does not exist"):
        load_dataset("cifar10", tmp_path / "nowhere")
    with pytest.raises(DataError, match="takes no option resolution"):
        load_dataset("mnist", tmp_path, resolution=32)
    with pytest.raises(DataError, match="names no path"):
        load_dataset("imagefolder:")
    with pytest.raises(DataError, match="dataset 'cifar10' takes no ':'"):
        load_dataset("cifar10:/data")


# ---------------------------------------------------------------- the registry and compact listings


def test_names_come_from_the_registry_and_aliases_normalise():
    from sl_compiler.data import dataset_key, known_datasets
    from sl_compiler.data.registry import entries, lookup

    assert known_datasets() == [
        "cifar10", "cifar100", "mnist", "fashion_mnist", "tinyimagenet", "imagenet", "imagefolder:PATH", "wds:PATH", "parquet:PATH", "synthetic[:options]",
    ]
    assert [dataset_key(n) for n in ("Fashion-MNIST", "ILSVRC2012", "imagenet-1k", "tiny-imagenet", "wds:/a/b/shards", "synthetic:classes=10")] == [
        "fashion_mnist", "imagenet", "imagenet", "tinyimagenet", "wds:shards", "synthetic",
    ]
    assert dataset_key("jpeg50-cifar10") == "jpeg50_cifar10"  # a renamed set's name is kept, not refused
    assert lookup("imagenet")[0].crop == 224 and lookup("imagenet")[0].crop_fraction == 0.875
    assert {e.name for e in entries("root")} == {"cifar10", "cifar100", "mnist", "fashion_mnist", "tinyimagenet", "imagenet"}
    assert lookup("imagenet")[0].options() == ["channels", "in_memory", "resize", "resolution"]


def test_names_are_a_compact_sequence():
    from sl_compiler.data.files import Names

    ids = [f"train/n{k:08d}/n{k:08d}_{i:05d}.JPEG" for k in range(3) for i in range(4)] + ["é/ü.png"]
    names = Names(ids)
    assert len(names) == 13 and list(names) == ids and names == ids and names[5] == ids[5] and names[-1] == ids[-1] and names[2:4] == ids[2:4]
    assert names.joined() == "\n".join(ids).encode()
    assert names.nbytes() == len("\n".join(ids).encode()) + 1 + 8 * len(ids)  # the characters, a separator and an offset each
    assert Names.from_tensor(names.tensor()) == names and pickle.loads(pickle.dumps(names)) == names
    assert list(Names([])) == [] and len(Names([])) == 0
    with pytest.raises(IndexError):
        names[13]
    with pytest.raises(DataError, match="holds a line break"):
        Names(["a\nb"])


def test_normalisation_must_fit_the_channels(tmp_path):
    write_imagefolder(tmp_path / "root")
    with pytest.raises(DataError, match="a 3-channel normalisation for 1-channel images"):
        load_dataset("cifar10", tmp_path / "root", channels=1)  # CIFAR's mean/std are per RGB channel


# ---------------------------------------------------------------- CIFAR pickles


def write_cifar(root: Path, key: str, per_batch: int = 2) -> dict[str, tuple[np.ndarray, list[int]]]:
    """torchvision's layout of CIFAR-10/100 pickles (bytes keys, as the Python 2 originals load)."""
    c10 = key == "cifar10"
    folder = root / ("cifar-10-batches-py" if c10 else "cifar-100-python")
    folder.mkdir(parents=True)
    classes = 10 if c10 else 100
    names = [f"class{k:03d}".encode() for k in range(classes)]
    meta = {b"label_names": names} if c10 else {b"fine_label_names": names, b"coarse_label_names": names[:20]}
    (folder / ("batches.meta" if c10 else "meta")).write_bytes(pickle.dumps(meta, protocol=2))
    files = ([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]) if c10 else ["train", "test"]
    written = {}
    for j, name in enumerate(files):
        data = np.random.default_rng(j).integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(j * 7 + i * 3) % classes for i in range(per_batch)]
        batch = {b"data": data, (b"labels" if c10 else b"fine_labels"): labels, b"filenames": [b"x.png"] * per_batch}
        if not c10:
            batch[b"coarse_labels"] = [0] * per_batch
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("key", ["cifar10", "cifar100"])
def test_cifar_pickles(tmp_path, key):
    written = write_cifar(tmp_path, key)
    train, test = load_dataset(key, tmp_path, "train"), load_dataset(key, tmp_path, "test")
    train_files = [f"data_batch_{i}" for i in range(1, 6)] if key == "cifar10" else ["train"]
    test_file = "test_batch" if key == "cifar10" else "test"
    assert torch.equal(train.pixels, torch.from_numpy(np.concatenate([written[f][0] for f in train_files])).view(-1, 3, 32, 32))
    assert train.targets.tolist() == sum((written[f][1] for f in train_files), [])
    assert test.targets.tolist() == written[test_file][1] and len(test) == 2
    assert train.classes[:2] == ["class000", "class001"] and train.num_classes == (10 if key == "cifar10" else 100)
    assert (train.mean, train.std) == NORMALIZATION[key] and train.sources is None and train.encoded(0) is None


def test_cifar_root_may_be_the_pickle_folder(tmp_path):
    write_cifar(tmp_path, "cifar10")
    assert len(load_dataset("cifar10", tmp_path / "cifar-10-batches-py", "train")) == 10


def test_cifar_pickle_cannot_run_code(tmp_path):
    write_cifar(tmp_path, "cifar10")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_2 is not a CIFAR pickle \(refusing to load"):
        load_dataset("cifar10", tmp_path, "train")
    assert not marker.exists()


def test_cifar_errors(tmp_path):
    write_cifar(tmp_path, "cifar10")
    batches = tmp_path / "cifar-10-batches-py"
    (batches / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing .*data_batch_3"):
        load_dataset("cifar10", tmp_path, "train")
    (batches / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match="test_batch is malformed"):
        load_dataset("cifar10", tmp_path, "test")
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="no CIFAR-100 files in .*expected torchvision's cifar-100-python/"):
        load_dataset("cifar100", tmp_path / "other", "train")


def test_cifar_falls_back_to_imagefolder_tars(tmp_path):
    """The shared CIFAR-10 layout: cifar10-train.tar and cifar10-test.tar of JPEG class folders."""
    names = [f"c{k}" for k in range(10)]
    src = tmp_path / "src"
    for split in ("train", "test"):
        for k, cls in enumerate(names):
            (src / split / cls).mkdir(parents=True)
            (src / split / cls / "0000.jpg").write_bytes(encode(rng_image(k), "JPEG"))
    (tmp_path / "root").mkdir()
    for split in ("train", "test"):
        make_tar(tmp_path / "root" / f"cifar10-{split}.tar", src, tree(src, split))
    test = load_dataset("cifar10", tmp_path / "root", "test")
    assert test.name == "cifar10" and test.classes == names and len(test) == 10
    assert (test.mean, test.std) == NORMALIZATION["cifar10"] and test.encoded(3)[0] == (src / "test" / "c3" / "0000.jpg").read_bytes()
    write_imagefolder(tmp_path / "three")
    with pytest.raises(DataError, match="holds 3 class folders, CIFAR-10 has 10"):
        load_dataset("cifar10", tmp_path / "three", "train")


# ---------------------------------------------------------------- MNIST / Fashion-MNIST idx


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_idx(folder: Path, gz: bool, n_train: int = 6, n_test: int = 4) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    for stem, arr in arrays.items():
        data = idx_bytes(arr)
        (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return arrays


@pytest.mark.parametrize("key,gz,sub", [("mnist", False, "MNIST/raw"), ("fashion_mnist", True, "")])
def test_idx_files(tmp_path, key, gz, sub):
    arrays = write_idx(tmp_path / sub, gz)
    train, test = load_dataset(key, tmp_path, "train"), load_dataset(key.replace("_", "-"), tmp_path, "test")
    assert train.shape == (1, 28, 28) and len(train) == 6 and len(test) == 4
    assert torch.equal(train.pixels[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert test.targets.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert train.classes[:2] == (["0", "1"] if key == "mnist" else ["T-shirt/top", "Trouser"]) and train.num_classes == 10
    assert (train.mean, train.std) == NORMALIZATION[key]


def test_idx_errors(tmp_path):
    arrays = write_idx(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\[.gz\] in"):
        load_dataset("mnist", tmp_path, "test")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataError, match="holds 6 images but train-labels-idx1-ubyte 5 labels"):
        load_dataset("mnist", tmp_path, "train")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(arrays["train-images-idx3-ubyte"])[:-10])
    with pytest.raises(DataError, match="its header says"):
        load_dataset("mnist", tmp_path, "train")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03" + bytes(100))
    with pytest.raises(DataError, match="not an idx file"):
        load_dataset("mnist", tmp_path, "train")


# ---------------------------------------------------------------- TinyImageNet


def write_tinyimagenet(root: Path) -> list[str]:
    base = root / "tiny-imagenet-200"
    wnids = ["n0300", "n0100", "n0200"]
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("n0100\tgoldfish, Carassius auratus\nn0200\tsalamander\nn0300\tbullfrog\nn9999\tother\n")
    for k, w in enumerate(wnids):
        (base / "train" / w / "images").mkdir(parents=True)
        (base / "train" / w / f"{w}_boxes.txt").write_text("")
        for i in range(2):
            (base / "train" / w / "images" / f"{w}_{i}.JPEG").write_bytes(encode(rng_image(k * 10 + i, size=64), "JPEG"))
    (base / "val" / "images").mkdir(parents=True)
    labels = ["n0200", "n0100", "n0300", "n0200"]
    for i in range(4):
        (base / "val" / "images" / f"val_{i}.JPEG").write_bytes(encode(rng_image(100 + i, size=64), "JPEG"))
    (base / "val" / "val_annotations.txt").write_text("".join(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63\n" for i, w in enumerate(labels)))
    return labels


def test_tinyimagenet(tmp_path):
    labels = write_tinyimagenet(tmp_path)
    train, test = load_dataset("tinyimagenet", tmp_path, "train"), load_dataset("tinyimagenet", tmp_path, "val")
    assert train.classes == ["n0100", "n0200", "n0300"] and train.shape == (3, 64, 64)
    assert train.targets.tolist() == [0, 0, 1, 1, 2, 2] and train.source_id(2) == "train/n0200/images/n0200_0.JPEG"
    assert train.meta["class_names"] == ["goldfish, Carassius auratus", "salamander", "bullfrog"]
    assert test.targets.tolist() == [train.classes.index(w) for w in labels] and test.source_id(1) == "val/images/val_1.JPEG"
    assert test.encoded(1) == ((tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_1.JPEG").read_bytes(), "jpg")
    assert torch.equal(test.pixels[1], decode_image(test.encoded(1)[0], (3, 64, 64)))
    assert (train.mean, train.std) == NORMALIZATION["tinyimagenet"]


def test_tinyimagenet_errors(tmp_path):
    write_tinyimagenet(tmp_path)
    base = tmp_path / "tiny-imagenet-200"
    (base / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn0777\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match=r"val_annotations.txt:1: expected 'file<TAB>wnid' with a known wnid"):
        load_dataset("tinyimagenet", tmp_path, "test")
    (base / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataError, match="missing .*val/val_annotations.txt"):
        load_dataset("tinyimagenet", tmp_path, "test")
    with pytest.raises(DataError, match="no TinyImageNet in"):
        load_dataset("tinyimagenet", base / "val", "train")


# ---------------------------------------------------------------- WebDataset shards


def write_shards(root: Path, with_classes: bool = True) -> dict[str, tuple[bytes, int]]:
    """train-000000.tar, train-000001.tar and test-000000.tar of <key>.png + <key>.cls samples."""
    root.mkdir(parents=True)
    samples = {}
    plan = {"train-000000.tar": range(0, 4), "train-000001.tar": range(4, 6), "test-000000.tar": range(6, 9)}
    for shard, keys in plan.items():
        with tarfile.open(root / shard, "w") as tf:
            for i in keys:
                png, cls = encode(rng_image(i), "PNG"), i % 3
                for name, data in ((f"s{i:03d}.png", png), (f"s{i:03d}.cls", str(cls).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
                samples[f"{shard}/s{i:03d}.png"] = (png, cls)
    if with_classes:
        (root / "classes.txt").write_text("ant\nbee\ncat\n")
    return samples


def test_webdataset_shards(tmp_path):
    samples = write_shards(tmp_path / "shards")
    train, test = (load_dataset(f"wds:{tmp_path / 'shards'}", split=s) for s in ("train", "test"))
    assert train.name == "wds:shards" and train.classes == CLASSES and len(train) == 6 and len(test) == 3
    assert train.sources.ids == [f"train-00000{i // 4}.tar/s{i:03d}.png" for i in range(6)]
    for images in (train, test):
        for i, sid in enumerate(images.sources.ids):
            data, cls = samples[sid]
            assert images.encoded(i) == (data, "png") and int(images.targets[i]) == cls
            assert torch.equal(images.pixels[i], decode_image(data, (3, 8, 8)))
    assert (test.mean, test.std) == (train.mean, train.std) == pixel_stats(train.pixels)


def test_webdataset_numeric_classes_and_errors(tmp_path):
    write_shards(tmp_path / "shards", with_classes=False)
    assert load_dataset(f"wds:{tmp_path / 'shards'}").classes == ["0", "1", "2"]
    with tarfile.open(tmp_path / "shards" / "train-000002.tar", "w") as tf:
        info = tarfile.TarInfo("lonely.png")
        data = encode(rng_image(0), "PNG")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="sample 'lonely' in .*train-000002.tar lacks a .cls label"):
        load_dataset(f"wds:{tmp_path / 'shards'}")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match=r"no test-\*.tar or val-\*.tar or validation-\*.tar shards in"):
        load_dataset(f"wds:{tmp_path / 'none'}", split="test")
    with pytest.raises(DataError, match="WebDataset folder .* does not exist"):
        load_dataset(f"wds:{tmp_path / 'nowhere'}")


# ---------------------------------------------------------------- reproducibility


def test_loads_are_reproducible_across_caches(tmp_path, monkeypatch):
    write_imagefolder(tmp_path / "root", fmt="JPEG")
    spec = f"imagefolder:{tmp_path / 'root'}"
    first = load_dataset(spec, split="train")
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "other-cache"))
    second = load_dataset(spec, split="train")
    assert first.fingerprint() == second.fingerprint() and json.dumps(first.info()) == json.dumps(second.info())


def test_webdataset_prefixed_shards_and_an_unlabelled_test_is_skipped(tmp_path):
    root = tmp_path / "shards"
    write_shards(root)
    for shard in sorted(root.glob("*.tar")):
        shard.rename(root / f"imagenet1k-{shard.name.replace('test-', 'validation-')}")
    with tarfile.open(root / "imagenet1k-test-000000.tar", "w") as tf:  # ILSVRC's test: images, no .cls
        data = encode(rng_image(50), "PNG")
        info = tarfile.TarInfo("t000.png")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    test = load_dataset(f"wds:{root}", split="test")
    assert len(test) == 3 and test.meta["shards"] == ["imagenet1k-validation-000000.tar"]
    assert test.meta["skipped"] == ["test shards carry no .cls labels (unlabelled, like ILSVRC's test set)"]
    assert len(load_dataset(f"wds:{root}", split="train")) == 6


def test_readers_open_their_own_files_after_a_fork(tmp_path):
    """DataLoader workers fork: a reader must not use (or close) its parent's descriptors."""
    from sl_compiler.data.files import TarReader, scan_tar

    tar = make_tar(tmp_path / "a.tar", *_one_file(tmp_path))
    index = scan_tar(tar)
    reader = TarReader([tar], np.zeros(1, dtype=np.int32), index.offsets, index.sizes)
    expected = reader.read(0)
    parent_fd = reader._fds[0]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read, report whether it used a descriptor of its own
        try:
            ok = reader.read(0) == expected and reader._fds[0] != parent_fd and reader._pid == os.getpid()
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
    assert reader._fds == {0: parent_fd} and reader.read(0) == expected  # the parent's descriptor is intact


def _one_file(tmp_path: Path) -> tuple[Path, list[str]]:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.png").write_bytes(encode(rng_image(1), "PNG"))
    return tmp_path / "x", ["a.png"]


def test_synthetic_pixels_do_not_depend_on_the_cpus_float_kernels(tmp_path):
    """The demo's dataset under torch's portable kernels equals this CPU's (AVX2/AVX-512) bit for bit.

    In float32, 7 of its 1.5 M training pixels rounded the other way between kernel paths, so the
    dataset's fingerprint, and the demo's artifact, depended on the CPU.
    """
    import subprocess
    import sys

    spec = "synthetic:size=16,train=200,test=50"
    code = f"from sl_compiler.data import load_dataset\nfor s in ('train', 'test'):\n    d = load_dataset({spec!r}, split=s)\n    print(d.fingerprint(), d.mean, d.std)"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    portable = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    here = [f"{d.fingerprint()} {d.mean} {d.std}" for d in (load_dataset(spec, split=s) for s in ("train", "test"))]
    assert portable == here


def test_the_in_memory_limit_is_a_setting_and_never_changes_the_dataset(tmp_path, cache_dir, monkeypatch):
    write_imagefolder(tmp_path / "root", fmt="JPEG")
    held = load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train")
    monkeypatch.setenv("SLC_IN_MEMORY_GIB", "0")  # stream every dataset of files
    streamed = load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train")
    assert held.pixels is not None and streamed.pixels is None
    assert streamed.info() == {**held.info()}  # same fingerprint, statistics and preprocess
    monkeypatch.setenv("SLC_IN_MEMORY_GIB", "lots")
    with pytest.raises(DataError, match="SLC_IN_MEMORY_GIB='lots'"):
        load_dataset(f"imagefolder:{tmp_path / 'root'}", split="train")
