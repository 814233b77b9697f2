"""Listing ImageNet at full size: time and memory of a 1.28M-file split, as folders and as the official tar of tars.

    .venv/bin/python benchmarks/listing_scale.py            # 1000 classes x 1281 files (~2 min to create, 640 MB of tar)
    .venv/bin/python benchmarks/listing_scale.py --quick    # 100 classes x 200

The files are empty (listing reads no image bytes): ``train/<wnid>/<wnid>_<i>.JPEG`` and an
``ILSVRC2012_img_train.tar`` of per-class tars of the same names. With an empty ``$SLC_CACHE``,
``load_dataset("imagenet", root, "train", in_memory=False)`` lists the folders twice (first, then
from the cached index) and ``imagenet.list_train`` indexes the tar twice. Memory: the ids as
``files.Names`` against the same ids as a list of str (``sys.getsizeof`` of the list and each
string), and the process's peak RSS. Writes benchmarks/results/listing_scale.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def make(root: Path, classes: int, per_class: int) -> None:
    """Empty image files in ImageNet's folder layout, and the same names as a tar of tars."""
    wnids = [f"n{10_000_000 + 7919 * k:08d}" for k in range(classes)]
    (root / "folders").mkdir(parents=True)
    (root / "tars").mkdir()
    with tarfile.open(root / "tars" / "ILSVRC2012_img_train.tar", "w") as outer:
        for wnid in wnids:
            folder = root / "folders" / "train" / wnid
            folder.mkdir(parents=True)
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as inner:
                for i in range(per_class):
                    name = f"{wnid}_{i:05d}.JPEG"
                    open(folder / name, "wb").close()
                    inner.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
            info = tarfile.TarInfo(f"{wnid}.tar")
            info.size = len(buf.getvalue())
            outer.addfile(info, io.BytesIO(buf.getvalue()))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 classes x 200 files (seconds)")
    ap.add_argument("--classes", type=int, default=None, help="default 1000 (quick 100)")
    ap.add_argument("--per-class", type=int, default=None, help="default 1281 (quick 200)")
    ap.add_argument("--out", default=str(RESULTS / "listing_scale.json"))
    args = ap.parse_args(argv)
    classes, per_class = args.classes or (100 if args.quick else 1000), args.per_class or (200 if args.quick else 1281)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["SLC_CACHE"] = str(tmp / "cache")
        os.environ.setdefault("SLC_PROGRESS", "0")
        start = time.perf_counter()
        make(tmp, classes, per_class)
        created = time.perf_counter() - start
        from sl_compiler.data import imagenet, load_dataset

        baseline = peak_mb()
        result = {"files": classes * per_class, "created_s": round(created, 1), "rss_after_imports_mb": baseline}
        for attempt in ("first", "cached"):
            start = time.perf_counter()
            train = load_dataset("imagenet", tmp / "folders", "train", in_memory=False)
            result[f"folders_list_{attempt}_s"] = round(time.perf_counter() - start, 3)
        result["peak_rss_after_folders_mb"] = peak_mb()
        ids = train.sources.ids
        as_list = list(ids)
        result["ids_names_bytes"] = ids.nbytes()
        result["ids_list_of_str_bytes"] = sys.getsizeof(as_list) + sum(sys.getsizeof(s) for s in as_list)
        result["targets_mb"] = round(train.targets.numel() * 8 / 1e6, 1)
        del as_list
        tar = tmp / "tars" / "ILSVRC2012_img_train.tar"
        result["tar_mb"] = round(tar.stat().st_size / 1e6, 1)
        for attempt in ("first", "cached"):
            start = time.perf_counter()
            split = imagenet.list_train(tmp / "tars", "ilsvrc-tar", tar)
            result[f"tar_index_{attempt}_s"] = round(time.perf_counter() - start, 3)
        result["peak_rss_mb"] = peak_mb()
        assert split.ids.joined().count(b"\n") == len(train) - 1 and bool((split.targets == train.targets).all())
    result["command"] = "benchmarks/listing_scale.py" + (" --quick" if args.quick else "")
    result["figures"] = [
        {"name": f"list {result['files']} files as folders, cached", "value": result["folders_list_cached_s"], "unit": "s", "target": None},
        {"name": f"index a {result['files']}-member tar of tars, cached", "value": result["tar_index_cached_s"], "unit": "s", "target": None},
        {"name": f"ids of {result['files']} files, Names / list of str", "value": round(result["ids_names_bytes"] / result["ids_list_of_str_bytes"], 3), "unit": "x", "target": None},
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "figures"}, indent=1))
    return result


if __name__ == "__main__":
    main()
