"""A fake ImageNet in every layout slc reads, for tests and benchmarks (no ImageNet is on these machines).

``write_fake(out, layout, FakeSpec(classes=K, per_class=N, val_per_class=M, ...))`` writes K
classes of N training and M validation JPEGs (quality 90) whose sides are drawn from
``[min_size, max_size]`` independently, so sizes and aspect ratios vary as ImageNet's do. Each
class has its own colour and stripe pattern (angle and frequency); each image its own phase,
contrast and noise, so a model can learn the classes from a few images. Wnids are fake but
ImageNet-shaped (``n1xxxxxxx``, sorted in class order); the devkit's class ids are a seeded
permutation of them, as ILSVRC2012's ids are not in wnid order.

Layouts: ``imagefolder`` (train/<wnid>/, val/<wnid>/), ``imagefolder-tar`` (train.tar, val.tar),
``ilsvrc-tars`` (ILSVRC2012_img_train.tar of per-class tars, ILSVRC2012_img_val.tar, the devkit
as .tar.gz), ``flat-val-devkit`` (train/<wnid>/, flat val/, ILSVRC2012_devkit_t12/data/, an
unlabelled test/), ``kaggle`` (ILSVRC/Data/CLS-LOC/, LOC_val_solution.csv,
LOC_synset_mapping.txt), ``wds`` (timm-style imagenet1k-train-NNNN.tar shards), ``parquet``
(the Hub's data/train-NNNNN-of-NNNNN.parquet with an unlabelled test split), ``tinyimagenet``
(tiny-imagenet-200/ as distributed) and ``tinyimagenet-classval`` (its val/ in class folders).

Deterministic: the same spec gives byte-identical files on the same libraries (tars with mtime 0
and sorted members, gzip without a timestamp). Written into a temporary folder beside ``out`` and
renamed at the end.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..progress import bar
from . import matfile

LAYOUTS = ("imagefolder", "imagefolder-tar", "ilsvrc-tars", "flat-val-devkit", "kaggle", "wds", "parquet", "tinyimagenet", "tinyimagenet-classval")
SHARD_SAMPLES = 1000  # WebDataset samples per shard, parquet rows per file
ROW_GROUP = 100  # parquet rows per row group, as the Hub's image datasets


@dataclass(frozen=True)
class FakeSpec:
    classes: int = 10
    per_class: int = 10
    val_per_class: int = 5
    min_size: int = 200
    max_size: int = 500
    seed: int = 0
    quality: int = 90

    def check(self) -> None:
        if self.classes < 1 or self.per_class < 1 or self.val_per_class < 1:
            raise DataError(f"fake ImageNet needs at least one class and one image per split, not {self}", "pass --classes, --per-class and --val-per-class of 1 or more")
        if not 8 <= self.min_size <= self.max_size <= 4096:
            raise DataError(f"image sides {self.min_size}..{self.max_size} are out of range", "pass 8 <= --min-size <= --max-size <= 4096")
        if not 1 <= self.quality <= 100:
            raise DataError(f"JPEG quality {self.quality} is out of range", "pass a quality in 1..100")


def wnids(k: int) -> list[str]:
    """Fake, ImageNet-shaped wnids in sorted (= class) order."""
    return [f"n{10_000_000 + 7919 * i:08d}" for i in range(k)]


def words(k: int) -> list[str]:
    return [f"fake class {i}, fakeus {i}" for i in range(k)]


class Images:
    """The JPEG bytes of every fake image: class ``k``, number ``i`` of split ``split`` (0 train, 1 val, 2 test)."""

    def __init__(self, spec: FakeSpec):
        self.spec = spec
        g = np.random.default_rng([spec.seed, 0])
        self.colour = g.uniform(40, 215, (spec.classes, 3)).astype(np.float32)
        self.angle = np.pi * (np.arange(spec.classes) * 0.6180339887 % 1.0)
        self.freq = 2.0 + (np.arange(spec.classes) * 7 % 11) / 2.0  # cycles per short side

    def jpeg(self, k: int, i: int, split: int) -> bytes:
        from PIL import Image

        s = self.spec
        g = np.random.default_rng([s.seed, 1 + split, k, i])
        h, w = (int(v) for v in g.integers(s.min_size, s.max_size + 1, 2))
        step = 2 * np.pi * self.freq[k] / min(h, w)
        ax = step * np.cos(self.angle[k]) * np.arange(w, dtype=np.float32)
        by = step * np.sin(self.angle[k]) * np.arange(h, dtype=np.float32) + np.float32(g.uniform(0, 2 * np.pi))
        wave = np.outer(np.cos(by), np.sin(ax)) + np.outer(np.sin(by), np.cos(ax))  # sin(ax + by), separably
        contrast = np.float32(g.uniform(0.25, 0.45))
        light = wave * contrast + (1 - contrast) + 0.06 * g.standard_normal((h, w), dtype=np.float32)
        pixels = np.clip(light[..., None] * self.colour[k], 0, 255, out=np.empty((h, w, 3), dtype=np.float32))
        buf = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buf, format="JPEG", quality=s.quality)
        return buf.getvalue()


def val_order(spec: FakeSpec) -> list[tuple[int, int]]:
    """(class, i) of val image n (1-based number n at position n - 1): classes interleaved, as ILSVRC's are."""
    pairs = [(k, i) for k in range(spec.classes) for i in range(spec.val_per_class)]
    order = np.random.default_rng([spec.seed, 9]).permutation(len(pairs))
    return [pairs[j] for j in order]


def class_ids(spec: FakeSpec) -> list[int]:
    """The devkit's ILSVRC2012_ID of each class (1-based, a permutation: not wnid order)."""
    return (np.random.default_rng([spec.seed, 7]).permutation(spec.classes) + 1).tolist()


def meta_mat(spec: FakeSpec) -> bytes:
    """The devkit's data/meta.mat: the leaf synsets (the classes) by id, then two ancestors."""
    ids, names, glosses = class_ids(spec), wnids(spec.classes), words(spec.classes)
    synsets = sorted(
        (
            {"ILSVRC2012_ID": ids[k], "WNID": names[k], "words": glosses[k], "gloss": "a fake class", "num_children": 0, "children": [], "wordnet_height": 0, "num_train_images": spec.per_class}
            for k in range(spec.classes)
        ),
        key=lambda s: s["ILSVRC2012_ID"],
    )
    k = spec.classes
    synsets.append({"ILSVRC2012_ID": k + 1, "WNID": "n00001740", "words": "entity", "gloss": "a root", "num_children": 1, "children": [k + 2], "wordnet_height": 2, "num_train_images": 0})
    synsets.append({"ILSVRC2012_ID": k + 2, "WNID": "n00002684", "words": "object", "gloss": "a node", "num_children": k, "children": ids, "wordnet_height": 1, "num_train_images": 0})
    return matfile.write({"synsets": synsets})


def ground_truth(spec: FakeSpec) -> bytes:
    ids = class_ids(spec)
    return "".join(f"{ids[k]}\n" for k, _ in val_order(spec)).encode()


def val_name(n: int) -> str:
    return f"ILSVRC2012_val_{n:08d}.JPEG"


# ------------------------------------------------------------------------------------- writers


class Writer:
    """Files under one folder, written with their parents; tars built in memory order, deterministic."""

    def __init__(self, root: Path, progress):
        self.root, self.progress = root, progress

    def file(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def tar(self, rel: str, members, compress: bool = False) -> None:
        """``members``: iterable of (name, bytes), written in sorted name order."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as raw:
            target = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if compress else raw
            with tarfile.open(fileobj=target, mode="w", format=tarfile.GNU_FORMAT) as tf:
                for name, data in sorted(members):
                    tf.addfile(tar_info(name, len(data)), io.BytesIO(data))
            if compress:
                target.close()


def tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o644, 0, 0, "", ""
    return info


def train_members(img: Images, spec: FakeSpec, progress, prefix: str = ""):
    names = wnids(spec.classes)
    for k in range(spec.classes):
        for i in range(spec.per_class):
            yield f"{prefix}{names[k]}/{names[k]}_{i:04d}.JPEG", img.jpeg(k, i, 0)
            progress.update(1)


def val_members(img: Images, spec: FakeSpec, progress, by_class: bool, prefix: str = ""):
    names = wnids(spec.classes)
    for n, (k, i) in enumerate(val_order(spec), 1):
        yield f"{prefix}{names[k] + '/' if by_class else ''}{val_name(n)}", img.jpeg(k, i, 1)
        progress.update(1)


def test_members(img: Images, spec: FakeSpec, progress, prefix: str):
    for n in range(1, min(spec.classes, 5) + 1):
        yield f"{prefix}ILSVRC2012_test_{n:08d}.JPEG", img.jpeg(n % spec.classes, n, 2)
        progress.update(1)


def devkit_members(spec: FakeSpec) -> list[tuple[str, bytes]]:
    return [
        ("ILSVRC2012_devkit_t12/data/meta.mat", meta_mat(spec)),
        ("ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", ground_truth(spec)),
        ("ILSVRC2012_devkit_t12/readme.txt", b"A fake ILSVRC2012 devkit written by slc data fake.\n"),
    ]


def write_layout(w: Writer, layout: str, spec: FakeSpec) -> None:
    img, p = Images(spec), w.progress
    names, glosses = wnids(spec.classes), words(spec.classes)
    if layout == "imagefolder":
        for rel, data in train_members(img, spec, p, "train/"):
            w.file(rel, data)
        for rel, data in val_members(img, spec, p, True, "val/"):
            w.file(rel, data)
    elif layout == "imagefolder-tar":
        w.tar("train.tar", train_members(img, spec, p, "train/"))
        w.tar("val.tar", val_members(img, spec, p, True, "val/"))
    elif layout == "ilsvrc-tars":
        inner = {}
        for rel, data in train_members(img, spec, p):
            inner.setdefault(rel.split("/")[0], []).append((rel.split("/")[1], data))
        outer = []
        for wnid, members in inner.items():
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
                for name, data in sorted(members):
                    tf.addfile(tar_info(name, len(data)), io.BytesIO(data))
            outer.append((f"{wnid}.tar", buf.getvalue()))
        w.tar("ILSVRC2012_img_train.tar", outer)
        w.tar("ILSVRC2012_img_val.tar", val_members(img, spec, p, False))
        w.tar("ILSVRC2012_devkit_t12.tar.gz", devkit_members(spec), compress=True)
    elif layout == "flat-val-devkit":
        for rel, data in train_members(img, spec, p, "train/"):
            w.file(rel, data)
        for rel, data in val_members(img, spec, p, False, "val/"):
            w.file(rel, data)
        for rel, data in test_members(img, spec, p, "test/"):
            w.file(rel, data)
        for rel, data in devkit_members(spec):
            w.file(rel, data)
    elif layout == "kaggle":
        base = "ILSVRC/Data/CLS-LOC/"
        for rel, data in train_members(img, spec, p, base + "train/"):
            w.file(rel, data)
        solution = []
        for (rel, data), (k, _) in zip(val_members(img, spec, p, False, base + "val/"), val_order(spec)):
            w.file(rel, data)
            solution.append(f"{rel.rsplit('/', 1)[1][: -len('.JPEG')]},{names[k]} 10 12 180 190 {names[k]} 3 4 50 60\n")
        for rel, data in test_members(img, spec, p, base + "test/"):
            w.file(rel, data)
        w.file("LOC_val_solution.csv", ("ImageId,PredictionString\n" + "".join(sorted(solution))).encode())
        w.file("LOC_synset_mapping.txt", "".join(f"{n} {g}\n" for n, g in zip(names, glosses)).encode())
    elif layout == "wds":
        write_wds(w, img, spec)
    elif layout == "parquet":
        write_parquet(w, img, spec)
    elif layout in ("tinyimagenet", "tinyimagenet-classval"):
        base = "tiny-imagenet-200/"
        order = np.random.default_rng([spec.seed, 5]).permutation(spec.classes)
        w.file(base + "wnids.txt", "".join(f"{names[k]}\n" for k in order).encode())
        w.file(base + "words.txt", "".join(f"{n}\t{g}\n" for n, g in zip(names, glosses)).encode())
        for rel, data in train_members(img, spec, p):
            wnid, name = rel.split("/")
            w.file(f"{base}train/{wnid}/images/{name}", data)
        boxes = []
        for n, (k, i) in enumerate(val_order(spec)):
            name = f"val_{n}.JPEG"
            sub = f"{names[k]}/images/" if layout == "tinyimagenet-classval" else "images/"
            w.file(f"{base}val/{sub}{name}", img.jpeg(k, i, 1))
            boxes.append(f"{name}\t{names[k]}\t0\t0\t10\t10\n")
            p.update(1)
        if layout == "tinyimagenet":
            w.file(base + "val/val_annotations.txt", "".join(boxes).encode())
        for rel, data in test_members(img, spec, p, base + "test/images/"):
            w.file(rel, data)
    else:
        raise DataError(f"unknown fake layout {layout!r}", f"use one of: {', '.join(LAYOUTS)}")


def write_wds(w: Writer, img: Images, spec: FakeSpec) -> None:
    names = wnids(spec.classes)
    train = [(k, i) for k in range(spec.classes) for i in range(spec.per_class)]
    train = [train[j] for j in np.random.default_rng([spec.seed, 11]).permutation(len(train))]  # shards are shuffled, as timm's are
    shards = max(1, -(-len(train) // SHARD_SAMPLES))
    for s in range(shards):
        members = []
        for k, i in train[s * SHARD_SAMPLES : (s + 1) * SHARD_SAMPLES]:
            key = f"{names[k]}_{i:04d}"
            members += [(f"{key}.jpg", img.jpeg(k, i, 0)), (f"{key}.cls", str(k).encode()), (f"{key}.json", json.dumps({"wnid": names[k]}).encode())]
            w.progress.update(1)
        w.tar(f"imagenet1k-train-{s:04d}.tar", members)
    members = []
    for n, (k, i) in enumerate(val_order(spec), 1):
        key = val_name(n)[: -len(".JPEG")]
        members += [(f"{key}.jpg", img.jpeg(k, i, 1)), (f"{key}.cls", str(k).encode())]
        w.progress.update(1)
    w.tar("imagenet1k-validation-00.tar", members)
    w.file("classes.txt", "".join(f"{n}\n" for n in names).encode())


def write_parquet(w: Writer, img: Images, spec: FakeSpec) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = {"image": {"_type": "Image"}, "label": {"names": words(spec.classes), "_type": "ClassLabel"}}
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}, sort_keys=True).encode()}
    names = wnids(spec.classes)
    train = [(k, i) for k in range(spec.classes) for i in range(spec.per_class)]
    train = [train[j] for j in np.random.default_rng([spec.seed, 13]).permutation(len(train))]
    val = val_order(spec)
    test = [(n % spec.classes, n) for n in range(1, min(spec.classes, 5) + 1)]
    for split, rows, code in (("train", train, 0), ("validation", val, 1), ("test", test, 2)):
        files = max(1, -(-len(rows) // SHARD_SAMPLES))
        for f in range(files):
            part = rows[f * SHARD_SAMPLES : (f + 1) * SHARD_SAMPLES]
            images = []
            for k, i in part:
                images.append({"bytes": img.jpeg(k, i, code), "path": f"{names[k]}_{i:04d}.JPEG"})
                w.progress.update(1)
            labels = [k if code < 2 else -1 for k, _ in part]
            table = pa.table({"image": pa.array(images, type=image_type), "label": pa.array(labels, type=pa.int64())}).replace_schema_metadata(metadata)
            path = w.root / "data" / f"{split}-{f:05d}-of-{files:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, row_group_size=ROW_GROUP)


def write_fake(out: str | Path, layout: str, spec: FakeSpec = FakeSpec(), force: bool = False) -> Path:
    """Write a fake ImageNet in ``layout`` to ``out`` (a new folder; ``force`` replaces one)."""
    if layout not in LAYOUTS:
        raise DataError(f"unknown fake layout {layout!r}", f"use one of: {', '.join(LAYOUTS)}")
    spec.check()
    out = Path(out).expanduser()
    if out.exists() and not force:
        raise DataError(f"{out} already exists", "pass --force to replace it, or another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    total = spec.classes * (spec.per_class + spec.val_per_class)
    try:
        with bar(total, f"fake {layout}") as progress:
            write_layout(Writer(tmp, progress), layout, spec)
        (tmp / "FAKE.json").write_text(json.dumps({"layout": layout, **asdict(spec)}, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
