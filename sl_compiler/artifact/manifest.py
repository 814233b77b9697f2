"""manifest.json in code: its schema with types and ranges, its canonical bytes, its self-checksum.

``check_manifest`` is the spec's manifest table as code: the reader runs it on every load, the
writer on what it is about to write, ``verify`` before looking at the shards. What can only be
checked against the shards (counts, sources, bytes, the content hash) is ``verify``'s.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

from ..errors import VerifyError
from . import format as fmt

# required in every format-1 manifest (spec: manifest.json); None in a tuple allows null
MANIFEST_TYPES = {
    "format": str,
    "name": str,
    "version": str,
    "slc_version": str,
    "dataset": dict,
    "ipc": (int, type(None)),
    "counts": dict,
    "recipe": dict,
    "teachers": list,
    "selection": dict,
    "provenance": dict,
    "license": (str, type(None)),
    "labels": dict,
    "bytes": dict,
    "shards": list,
    "content_hash": str,
}
# what slc >= 0.2 adds so that verify covers every byte of the folder; 0.1.0 wrote neither
INTEGRITY_TYPES = {"card": dict, "manifest_sha256": str}
# optional: what a writer records about the extra files it wrote (grid.png unless told not to draw it)
OPTIONAL_TYPES = {"grid": dict}
# what some sets add: their float images' dtype and space (format 1.1), the learned lr a third-party set ships
IMPORT_TYPES = {"images": dict, "learned_lr": float}
DATASET_TYPES = {"name": str, "classes": list, "num_classes": int, "channels": int, "resolution": list, "mean": list, "std": list}
LABEL_TYPES = {
    "kind": str,
    "views": int,
    "num_classes": int,
    "dtype": (str, type(None)),
    "k": (int, type(None)),
    "index_dtype": (str, type(None)),
    "fill": (str, type(None)),
    "view_params": dict,
}
SHARD_TYPES = {"path": str, "sha256": str, "bytes": int, "samples": int}
LICENSE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]*$")  # a package version (semver or PEP 440)
TAR_BLOCK = 512


def manifest_sha256(manifest: dict) -> str:
    """sha256 of the canonical JSON of the manifest without its ``manifest_sha256`` key."""
    return hashlib.sha256(fmt.canonical_json({k: v for k, v in manifest.items() if k != "manifest_sha256"})).hexdigest()


def card_record(data: bytes) -> dict:
    """What the manifest records about README.md (and grid.png): size and sha256."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def decimal_sources(sources: list[str]) -> bool:
    """Whether every source id is a decimal integer: then they are dataset indices (in-memory sets name images so)."""
    return all(s.isascii() and s.isdigit() for s in sources)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"repeated key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def parse_manifest(data: bytes, where: str = fmt.MANIFEST) -> dict:
    """Strict JSON: UTF-8, no repeated keys, no NaN or Infinity; VerifyError otherwise."""
    try:
        manifest = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise VerifyError(f"{where}: unreadable ({exc})", "restore the original manifest or rebuild the artifact", path=where) from None
    if not isinstance(manifest, dict):
        raise VerifyError(f"{where}: not a JSON object", "restore the original manifest or rebuild the artifact", path=where)
    return manifest


def _is_int(v, lo: int | None = None, hi: int | None = None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo) and (hi is None or v <= hi)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Check:
    def __init__(self, where: str):
        self.where = where

    def fail(self, problem: str):
        raise VerifyError(f"{self.where}: {problem}", "rebuild the artifact or restore the original manifest", path=self.where)

    def types(self, obj, types: dict, prefix: str) -> None:
        if not isinstance(obj, dict):
            self.fail(f"{prefix.rstrip('.') or 'manifest'} is not an object")
        for key, typ in types.items():
            if key not in obj:
                self.fail(f"missing {prefix}{key}")
            value = obj[key]
            if isinstance(value, bool) or not isinstance(value, typ):
                self.fail(f"{prefix}{key} has the wrong type ({type(value).__name__})")

    def that(self, ok: bool, problem: str) -> None:
        if not ok:
            self.fail(problem)


def check_metadata(manifest, where: str = fmt.MANIFEST) -> None:
    """Every manifest field except those about the written bytes (shards, bytes, content hash, card)."""
    c = _Check(where)
    if isinstance(manifest, dict) and manifest.get("format") not in fmt.FORMATS:
        c.fail(f"unknown format {manifest.get('format')!r} (this slc reads {', '.join(fmt.FORMATS)}; a newer slc may read it)")
    c.types(manifest, {k: v for k, v in MANIFEST_TYPES.items() if k not in ("bytes", "shards", "content_hash")}, "")
    m = manifest
    c.that(bool(fmt.NAME_RE.match(m["name"])), f"name {m['name']!r} is not lowercase [a-z0-9][a-z0-9_-]*")
    c.that(bool(fmt.SEMVER_RE.match(m["version"])), f"version {m['version']!r} is not a semantic version")
    c.that(bool(VERSION_RE.match(m["slc_version"])), f"slc_version {m['slc_version']!r} is not a version")
    c.that(m["license"] is None or bool(LICENSE_RE.match(m["license"])), f"license {m['license']!r} is not an SPDX-style id")

    ds = m["dataset"]
    c.types(ds, DATASET_TYPES, "dataset.")
    classes, n_classes = ds["classes"], ds["num_classes"]
    c.that(bool(ds["name"]), "dataset.name is empty")
    c.that(all(isinstance(x, str) and x for x in classes), "dataset.classes must be non-empty strings")
    c.that(n_classes >= 1 and len(classes) == n_classes, f"dataset.num_classes {n_classes} but {len(classes)} class names")
    c.that(ds["channels"] in (1, 3, 4), f"dataset.channels {ds['channels']} is not 1, 3 or 4")
    c.that(len(ds["resolution"]) == 2 and all(_is_int(r, 1) for r in ds["resolution"]), "dataset.resolution is not [H, W] of positive integers")
    for key in ("mean", "std"):
        values = ds[key]
        c.that(len(values) == ds["channels"] and all(_is_number(v) for v in values), f"dataset.{key} is not one finite number per channel")
    c.that(all(s > 0 for s in ds["std"]), "dataset.std must be positive")
    for key, typ in (("split", str), ("fingerprint", str), ("size", int)):
        if key in ds:
            c.that(isinstance(ds[key], typ) and not isinstance(ds[key], bool), f"dataset.{key} has the wrong type")
    c.that(not isinstance(ds.get("size"), int) or ds["size"] >= 0, "dataset.size is negative")

    counts = m["counts"]
    c.types(counts, {"samples": int, "per_class": list}, "counts.")
    per_class = counts["per_class"]
    c.that(_is_int(counts["samples"], 1), "counts.samples must be at least 1")
    c.that(len(per_class) == n_classes and all(_is_int(x, 0) for x in per_class), f"counts.per_class is not {n_classes} counts")
    c.that(sum(per_class) == counts["samples"], f"counts.per_class sums to {sum(per_class)}, counts.samples is {counts['samples']}")
    ipc = m["ipc"]
    c.that(ipc is None or (ipc >= 1 and all(x == ipc for x in per_class)), f"ipc {ipc} does not match the per-class counts {per_class}")
    recipe = m["recipe"]
    for key in ("name", "version", "ipc"):
        if recipe.get(key) is not None:
            c.that(recipe[key] == m[key], f"recipe.{key} {recipe[key]!r} disagrees with the manifest's {key} {m[key]!r}")

    for i, t in enumerate(m["teachers"]):
        p = f"teachers[{i}]"
        c.that(isinstance(t, dict), f"{p} is not an object")
        c.that(t.get("sha256") is None or (isinstance(t["sha256"], str) and bool(fmt.HEX64_RE.match(t["sha256"]))), f"{p}.sha256 is not 64 lowercase hex digits")
        c.that(t.get("epoch") is None or (_is_number(t["epoch"]) and t["epoch"] >= 0), f"{p}.epoch is not a non-negative number")
        c.that(t.get("seed") is None or _is_int(t["seed"], 0), f"{p}.seed is not a non-negative integer")
        acc = t.get("test_accuracy")
        c.that(acc is None or (_is_number(acc) and 0 <= acc <= 100), f"{p}.test_accuracy is not a percentage")
        for key in ("reference", "arch", "dataset", "checkpoint"):
            c.that(t.get(key) is None or isinstance(t[key], str), f"{p}.{key} is not a string")

    sel, n = m["selection"], counts["samples"]
    c.that(sel.get("strategy") is None or (isinstance(sel["strategy"], str) and bool(sel["strategy"])), "selection.strategy is not a name")
    c.that(sel.get("seed") is None or _is_int(sel["seed"], 0), "selection.seed is not a non-negative integer")
    if "source_indices" in sel:
        idx = sel["source_indices"]
        c.that(isinstance(idx, list) and len(idx) == n and all(_is_int(i, 0) for i in idx), f"selection.source_indices is not {n} non-negative integers")
        c.that(len(set(idx)) == n, "selection.source_indices repeats an index")
    if "source_ids" in sel:
        ids = sel["source_ids"]
        c.that(isinstance(ids, list) and len(ids) == n and all(isinstance(s, str) for s in ids), f"selection.source_ids is not {n} strings")

    _check_labels(c, m["labels"], n_classes)
    _check_images(c, m)


def _check_images(c: _Check, m: dict) -> None:
    """Format 1.1's ``images`` (float images and their space) and the optional ``learned_lr``."""
    c.that((m["format"] == fmt.FLOAT_FORMAT) == ("images" in m), f"format {m['format']} {'without' if 'images' not in m else 'with'} an images record (float images are format {fmt.FLOAT_FORMAT}, uint8 ones {fmt.FORMAT})")
    if "learned_lr" in m:
        c.that(_is_number(m["learned_lr"]) and not isinstance(m["learned_lr"], int) and m["learned_lr"] > 0, "learned_lr is not a positive number")
    if "images" not in m:
        return
    im = m["images"]
    c.that(isinstance(im, dict) and set(im) == {"dtype", "normalize", "zca"}, "images is not {dtype, normalize, zca}")
    c.that(im["dtype"] in fmt.PIXEL_DTYPES, f"images.dtype {im['dtype']!r} is not one of {', '.join(fmt.PIXEL_DTYPES)}")
    norm, zca, channels = im["normalize"], im["zca"], m["dataset"]["channels"]
    c.that(norm is None or (isinstance(norm, dict) and set(norm) == {"mean", "std"} and all(isinstance(norm[k], list) and len(norm[k]) == channels and all(_is_number(v) for v in norm[k]) for k in norm) and all(v > 0 for v in norm["std"])),
           "images.normalize is not null or {mean, std} with one finite number per channel (std > 0)")
    c.that(zca is None or (isinstance(zca, dict) and _is_number(zca.get("eps")) and zca["eps"] > 0 and isinstance(zca.get("input"), str)), "images.zca is not null or a record with a positive eps and an input")
    c.that((norm is None) != (zca is None), "images are either normalised or ZCA-whitened: exactly one of images.normalize and images.zca")
    c.that(norm is None or (norm["mean"] == m["dataset"]["mean"] and norm["std"] == m["dataset"]["std"]), "images.normalize differs from dataset.mean/std (the test images are normalised with those)")


def _check_labels(c: _Check, lab: dict, n_classes: int) -> None:
    c.types(lab, LABEL_TYPES, "labels.")
    kind, views, k = lab["kind"], lab["views"], lab["k"]
    c.that(kind in fmt.LABEL_KINDS, f"unknown labels.kind {kind!r}")
    c.that(lab["num_classes"] == n_classes, "class counts of dataset and labels disagree")
    c.that(views >= 1, "labels.views must be at least 1")
    if kind == "hard":
        c.that(views == 1 and lab["dtype"] is None and k is None and lab["index_dtype"] is None and lab["fill"] is None and not lab["view_params"],
               "hard labels have one view and no dtype, k, index_dtype, fill or view_params")
    else:
        c.that(lab["dtype"] == "float16", f"labels.dtype {lab['dtype']!r} is not float16")
    if kind == "topk":
        c.that(k is not None and 1 <= k <= n_classes, f"labels.k {k!r} is not in 1..{n_classes}")
        c.that(lab["index_dtype"] == ("int16" if n_classes <= 32767 else "int32"), f"labels.index_dtype {lab['index_dtype']!r} does not fit {n_classes} classes")
        c.that(lab["fill"] in fmt.FILL_RULES, f"labels.fill {lab['fill']!r} is not one of {', '.join(fmt.FILL_RULES)}")
    elif kind == "dense":
        c.that(k is None and lab["index_dtype"] is None and lab["fill"] is None, "dense labels have no k, index_dtype or fill")
    for vname, spec in lab["view_params"].items():
        ok = (
            bool(fmt.VIEW_NAME_RE.match(vname))
            and isinstance(spec, dict)
            and spec.get("dtype") in fmt.VIEW_DTYPES
            and isinstance(spec.get("shape"), list)
            and len(spec["shape"]) >= 1
            and all(_is_int(s, 0) for s in spec["shape"])
            and spec["shape"][0] == views
        )
        c.that(ok, f"labels.view_params[{vname!r}] is malformed")
    t = lab.get("temperature")
    c.that(t is None or (_is_number(t) and t > 0), f"labels.temperature {t!r} is not a positive number")


def check_manifest(manifest, where: str = fmt.MANIFEST) -> None:
    """Raise VerifyError naming ``where`` when the manifest breaks the spec's schema, types or ranges."""
    check_metadata(manifest, where)
    c = _Check(where)
    m = manifest
    c.types(m, {k: MANIFEST_TYPES[k] for k in ("bytes", "shards", "content_hash")}, "")
    c.that(bool(m["shards"]), "no shards listed")
    for i, shard in enumerate(m["shards"]):
        c.types(shard, SHARD_TYPES, f"shards[{i}].")
        c.that(shard["path"] == fmt.shard_path(i), f"shards[{i}].path is {shard['path']!r}, expected {fmt.shard_path(i)!r}")
        c.that(bool(fmt.HEX64_RE.match(shard["sha256"])), f"shards[{i}].sha256 is not 64 lowercase hex digits")
        c.that(shard["bytes"] > 0 and shard["bytes"] % TAR_BLOCK == 0, f"shards[{i}].bytes is not a positive multiple of {TAR_BLOCK}")
        c.that(shard["samples"] >= 1, f"shards[{i}].samples must be at least 1")
    c.that(sum(s["samples"] for s in m["shards"]) == m["counts"]["samples"], "the shards' samples do not add up to counts.samples")
    c.types(m["bytes"], {"images": int, "labels": int, "shards": int}, "bytes.")
    c.that(all(v >= 0 for v in m["bytes"].values() if _is_int(v)), "bytes holds a negative size")
    c.that(m["bytes"]["shards"] == sum(s["bytes"] for s in m["shards"]), "bytes.shards is not the sum of the shard sizes")
    c.that(m["labels"]["kind"] != "hard" or m["bytes"]["labels"] == 0, "hard labels store no label bytes")
    c.that(bool(fmt.HEX64_RE.match(m["content_hash"])), "content_hash is not 64 lowercase hex digits")
    for key in ("card", "grid"):
        if key in m:
            record = m[key]
            c.that(isinstance(record, dict) and set(record) == {"bytes", "sha256"}, f"{key} is not {{bytes, sha256}}")
            c.that(_is_int(record["bytes"], 1) and isinstance(record["sha256"], str) and bool(fmt.HEX64_RE.match(record["sha256"])), f"{key} holds a bad size or sha256")
    if "manifest_sha256" in m:
        c.that(isinstance(m["manifest_sha256"], str) and bool(fmt.HEX64_RE.match(m["manifest_sha256"])), "manifest_sha256 is not 64 lowercase hex digits")
