"""``slc diff A B``: do two artifacts hold the same training data, and if not, where do they differ?

How a user checks that a rebuild matches a published artifact. The two are read shard by shard
in step (memory stays at one shard each) and compared sample by sample:

- images: the sha256 of each sample's stored bytes; where bytes differ, the decoded pixels
  (max absolute difference, in uint8 levels);
- selection: the source id of each sample (which dataset image it is) and its class;
- labels: the schema, then the stored float16 values per view: max absolute difference and
  max distance in float16 ulps (units in the last place), and how many samples differ;
  top-k indices and recorded view parameters exactly;
- recipe key by key (name and version aside), teachers (reference, checkpoint sha256),
  the dataset's identity (fingerprint, classes, normalisation), the format.

They match when their content hashes are equal, or when every compared field is (the same
data packed into other shards). Names, versions, slc versions and provenance are shown, never
counted: a rebuild called 1.0.1 can match 1.0.0. ``tolerance_ulps`` lets label values differ
by that many float16 ulps and still match (teacher float kernels differ between CPU kinds).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ArtifactError
from . import format as fmt
from .card import teacher_reference
from .reader import decode_member, image_suffix, read_manifest, read_shard, resolve_path, sample_labels

DATASET_KEYS = (*fmt.CONTENT_DATASET_KEYS, "num_classes", "split", "size", "preprocess")
INFO_KEYS = ("name", "version", "slc_version", "license")
RECIPE_INFO_KEYS = ("name", "version")  # shown with the metadata, not counted


@dataclass
class Section:
    """One compared aspect: ``same`` or not, a one-line ``summary``, and details for JSON."""

    name: str
    same: bool
    summary: str
    details: dict = field(default_factory=dict)
    counted: bool = True  # False: shown, never a reason to differ


@dataclass
class DiffReport:
    a: dict
    b: dict
    sections: list[Section]
    content_hash_equal: bool

    @property
    def match(self) -> bool:
        return self.content_hash_equal or all(s.same for s in self.sections if s.counted)

    @property
    def differing(self) -> list[str]:
        return [s.name for s in self.sections if s.counted and not s.same]

    def verdict(self) -> str:
        if self.content_hash_equal:
            return "match: the content hashes are equal (the same images, labels and schema, byte for byte)"
        if self.match:
            labels = next((s for s in self.sections if s.name == "labels"), None)
            if labels is not None and labels.details.get("within_tolerance"):
                return f"match within {labels.details['tolerance_ulps']} float16 ulps: every other compared field is equal"
            return "match: every compared field is equal (the content hash differs only in how samples are packed into shards)"
        return f"differ: {', '.join(self.differing)}"

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "match": self.match,
            "content_hash_equal": self.content_hash_equal,
            "differing": self.differing,
            "sections": {s.name: {"same": s.same, "counted": s.counted, "summary": s.summary, **s.details} for s in self.sections},
        }

    def to_text(self) -> str:
        width = max(len(s.name) for s in self.sections)
        lines = [f"A: {_describe(self.a)}", f"B: {_describe(self.b)}", ""]
        for s in self.sections:
            mark = "=" if s.same else ("~" if not s.counted else "!")
            lines.append(f"{mark} {s.name:<{width}}  {s.summary}")
        lines += ["", self.verdict()]
        return "\n".join(lines)


def _describe(side: dict) -> str:
    return f"{side['name']} {side['version']}, {side['samples']} samples, content hash {side['content_hash'][:16]}... ({side['path']})"


def ordered_fp16(x: torch.Tensor) -> torch.Tensor:
    """float16 values as int32 on a line where neighbouring floats are 1 apart (sign-magnitude bits)."""
    bits = x.contiguous().view(torch.int16).to(torch.int32)
    return torch.where(bits < 0, -(bits & 0x7FFF), bits)


def fp16_ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How many float16 steps apart each pair of values is (0 when equal; +0 and -0 are equal)."""
    return (ordered_fp16(a) - ordered_fp16(b)).abs()


def _samples(path: Path, manifest: dict):
    """(key, {suffix: bytes}) of every sample in order, one shard in memory at a time."""
    for shard in manifest["shards"]:
        yield from read_shard(path / shard["path"], shard["path"])


class _Stats:
    """Running per-sample comparisons."""

    def __init__(self, views: int):
        self.n = 0
        self.source: list[tuple[str, str, str]] = []  # the first (key, source in A, source in B) that differ
        self.source_count = 0
        self.cls_count = 0
        self.cls_first = None
        self.bytes_count = 0
        self.bytes_first = None
        self.pixel_count = 0
        self.pixel_max = 0
        self.pixel_unreadable = 0
        self.floats = False  # float images (format 1.1) were compared
        self.float_max = 0.0  # their largest difference in stored values
        self.label_samples = [0] * views
        self.label_abs = [0.0] * views
        self.label_ulps = [0] * views
        self.index_samples = [0] * views
        self.view_samples: dict[str, int] = {}


def diff_artifacts(a: str | Path, b: str | Path, *, tolerance_ulps: int = 0) -> DiffReport:
    """Compare the artifact folders ``a`` and ``b`` (``hf://`` is resolved above, by sl_compiler.hub)."""
    pa, pb = resolve_path(a), resolve_path(b)
    ma, mb = read_manifest(pa), read_manifest(pb)
    side = lambda p, m: {"path": str(p), "samples": m["counts"]["samples"], "content_hash": m["content_hash"], **{k: m.get(k) for k in INFO_KEYS}}  # noqa: E731
    la, lb = ma["labels"], mb["labels"]
    schema_same = la == lb
    comparable = schema_same or (la["kind"] == lb["kind"] and la["views"] == lb["views"] and la.get("k") == lb.get("k") and la["num_classes"] == lb["num_classes"])
    stats = _Stats(la["views"] if comparable else 0)
    shape_a = (ma["dataset"]["channels"], *ma["dataset"]["resolution"])
    shape_b = (mb["dataset"]["channels"], *mb["dataset"]["resolution"])

    for (ka, parts_a), (kb, parts_b) in zip(_samples(pa, ma), _samples(pb, mb)):
        stats.n += 1
        src_a, cls_a, img_a, ext_a = _members(parts_a, pa, ka)
        src_b, cls_b, img_b, ext_b = _members(parts_b, pb, kb)
        if src_a != src_b:
            stats.source_count += 1
            if len(stats.source) < 5:
                stats.source.append((ka, src_a, src_b))
        if cls_a != cls_b:
            stats.cls_count += 1
            stats.cls_first = stats.cls_first or (ka, cls_a, cls_b)
        if hashlib.sha256(img_a).digest() != hashlib.sha256(img_b).digest():
            stats.bytes_count += 1
            stats.bytes_first = stats.bytes_first or ka
            _compare_pixels(stats, (img_a, ext_a), (img_b, ext_b), shape_a, shape_b, ka)
        if comparable and la["kind"] != "hard":
            _compare_labels(stats, la["kind"], sample_labels(parts_a.get("safetensors", b""), str(pa), ka), sample_labels(parts_b.get("safetensors", b""), str(pb), kb))

    sections = [
        _format_section(ma, mb),
        _dataset_section(ma, mb),
        _selection_section(ma, mb, stats),
        _images_section(ma, mb, stats),
        _labels_section(la, lb, stats, comparable, tolerance_ulps),
        _views_section(la, lb, stats, comparable),
        _recipe_section(ma, mb),
        _teachers_section(ma, mb),
        _metadata_section(ma, mb),
    ]
    return DiffReport(side(pa, ma), side(pb, mb), sections, ma["content_hash"] == mb["content_hash"])


def _members(parts: dict[str, bytes], path: Path, key: str) -> tuple[str, str, bytes, str]:
    """(source id, class, image bytes, image extension) of one stored sample; ArtifactError when it is malformed."""
    try:
        ext = image_suffix(parts)
        return str(json.loads(parts["json"])["source"]), parts["cls"].decode("ascii"), parts[ext], ext
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(f"{path}: sample {key} lacks a readable image, .cls or .json", f"run slc verify {path}") from None


def _compare_pixels(stats: _Stats, img_a: tuple[bytes, str], img_b: tuple[bytes, str], shape_a, shape_b, key: str) -> None:
    if shape_a != shape_b:
        return
    try:
        xa, xb = decode_member(img_a[1], img_a[0], shape_a, key), decode_member(img_b[1], img_b[0], shape_b, key)
    except Exception:  # noqa: BLE001 - a broken image is reported as such, not raised: verify names it
        stats.pixel_unreadable += 1
        return
    if xa.is_floating_point() or xb.is_floating_point():  # float images (format 1.1), compared as stored values
        delta = float((xa.float() - xb.float()).abs().max()) if xa.is_floating_point() and xb.is_floating_point() else float("inf")
        stats.floats = True
        if delta or xa.dtype != xb.dtype:
            stats.pixel_count += 1
            stats.float_max = max(stats.float_max, delta)
        return
    delta = int((xa.int() - xb.int()).abs().max())
    if delta:
        stats.pixel_count += 1
        stats.pixel_max = max(stats.pixel_max, delta)


def _compare_labels(stats: _Stats, kind: str, ta: dict, tb: dict) -> None:
    values = "probs" if kind == "dense" else "topk_values"
    va, vb = ta[values], tb[values]
    if va.shape != vb.shape or va.dtype != torch.float16 or vb.dtype != torch.float16:
        return
    absdiff = (va.float() - vb.float()).abs().reshape(va.shape[0], -1).max(-1).values
    ulps = fp16_ulps(va, vb).reshape(va.shape[0], -1).max(-1).values
    for v in ulps.nonzero().flatten().tolist():
        stats.label_samples[v] += 1
        stats.label_abs[v] = max(stats.label_abs[v], float(absdiff[v]))
        stats.label_ulps[v] = max(stats.label_ulps[v], int(ulps[v]))
    if kind == "topk":
        for v in (ta["topk_indices"] != tb["topk_indices"]).reshape(va.shape[0], -1).any(-1).nonzero().flatten().tolist():
            stats.index_samples[v] += 1
    for name in ta:
        if name.startswith("view.") and name in tb and not torch.equal(ta[name], tb[name]):
            stats.view_samples[name[5:]] = stats.view_samples.get(name[5:], 0) + 1


def _format_section(ma: dict, mb: dict) -> Section:
    same = ma["format"] == mb["format"]
    return Section("format", same, ma["format"] if same else f"{ma['format']} vs {mb['format']}")


def _dataset_section(ma: dict, mb: dict) -> Section:
    da, db = ma["dataset"], mb["dataset"]
    keys = [k for k in DATASET_KEYS if da.get(k) != db.get(k)]
    fp = da.get("fingerprint")
    if not keys:
        return Section("dataset", True, f"{da['name']}" + (f", fingerprint {fp[:16]}..." if fp else ", no fingerprint recorded"))
    shown = "; ".join(f"{k}: {_short(da.get(k))} vs {_short(db.get(k))}" for k in keys)
    return Section("dataset", False, shown, {"keys": {k: [da.get(k), db.get(k)] for k in keys}})


def _selection_section(ma: dict, mb: dict, st: _Stats) -> Section:
    na, nb = ma["counts"]["samples"], mb["counts"]["samples"]
    sa, sb = ma["selection"], mb["selection"]
    head = f"{sa.get('strategy', '?')}, seed {sa.get('seed')}"
    details = {"samples": [na, nb], "sources_differ": st.source_count, "classes_differ": st.cls_count, "first": [list(x) for x in st.source]}
    if na == nb and not st.source_count and not st.cls_count:
        if sa.get("source_indices") != sb.get("source_indices"):
            return Section("selection", False, "the same sources, but the recorded source_indices differ", details)
        return Section("selection", True, f"the same {na} source images, in the same order ({head})", details)
    parts = []
    if na != nb:
        parts.append(f"{na} vs {nb} samples (compared the first {st.n})")
    if st.source_count:
        key, x, y = st.source[0]
        parts.append(f"{st.source_count} of {st.n} samples come from other source images (first: sample {key}, {x!r} vs {y!r})")
    if st.cls_count:
        key, x, y = st.cls_first
        parts.append(f"{st.cls_count} samples have another class (first: sample {key}, {x} vs {y})")
    if (sa.get("strategy"), sa.get("seed")) != (sb.get("strategy"), sb.get("seed")):
        parts.append(f"strategy/seed {sa.get('strategy')}/{sa.get('seed')} vs {sb.get('strategy')}/{sb.get('seed')}")
    return Section("selection", False, "; ".join(parts), details)


def _images_section(ma: dict, mb: dict, st: _Stats) -> Section:
    details = {"bytes_differ": st.bytes_count, "pixels_differ": st.pixel_count, "max_abs_pixel_difference": st.pixel_max, "unreadable": st.pixel_unreadable}
    if st.floats:
        details["max_abs_float_difference"] = st.float_max if st.float_max != float("inf") else "uint8 vs float"
    shape_a, shape_b = (ma["dataset"]["channels"], *ma["dataset"]["resolution"]), (mb["dataset"]["channels"], *mb["dataset"]["resolution"])
    if shape_a != shape_b:
        return Section("images", False, f"different shapes {list(shape_a)} vs {list(shape_b)}; {st.bytes_count} of {st.n} differ in bytes", details)
    space_a, space_b = _space(ma), _space(mb)
    if space_a != space_b:  # float images (format 1.1) in another dtype or space, or another learned lr: another input to a student
        return Section("images", False, f"stored {space_a} vs {space_b}; {st.bytes_count} of {st.n} differ in bytes", details)
    if not st.bytes_count:
        return Section("images", True, f"the same bytes for all {st.n} compared images (sha256 of each)", details)
    pixels = (
        f"the stored float values of {st.pixel_count} differ, by at most {details['max_abs_float_difference']}"
        if st.floats and st.pixel_count
        else f"the decoded pixels of {st.pixel_count} differ, by at most {st.pixel_max}/255"
        if st.pixel_count
        else "their decoded pixels are equal (the same image, encoded differently)"
    )
    return Section("images", False, f"{st.bytes_count} of {st.n} differ in bytes (first: sample {st.bytes_first}); {pixels}", details)


def _space(m: dict) -> str:
    """How a manifest's images are stored and trained with: uint8, or float in a space; and a learned lr."""
    im = m.get("images")
    text = "uint8" if im is None else f"{im['dtype']} " + (f"ZCA (eps {im['zca']['eps']}, id {str(im['zca'].get('id'))[:12]})" if im["zca"] else "normalised")
    return text + (f", learned lr {m['learned_lr']:g}" if "learned_lr" in m else "")


def _labels_section(la: dict, lb: dict, st: _Stats, comparable: bool, tolerance: int) -> Section:
    if not comparable:
        keys = sorted(k for k in set(la) | set(lb) if la.get(k) != lb.get(k))
        return Section("labels", False, "different label schemas: " + "; ".join(f"{k}: {_short(la.get(k))} vs {_short(lb.get(k))}" for k in keys), {"schema": [la, lb]})
    schema_diff = sorted(k for k in set(la) | set(lb) if la.get(k) != lb.get(k) and k != "view_params")
    per_view = [
        {"view": v, "samples_differ": st.label_samples[v], "max_abs": st.label_abs[v], "max_ulps": st.label_ulps[v], "indices_differ": st.index_samples[v]}
        for v in range(len(st.label_samples))
    ]
    details = {"tolerance_ulps": tolerance, "per_view": per_view, "schema_differs": {k: [la.get(k), lb.get(k)] for k in schema_diff}}
    worst_ulps = max(st.label_ulps, default=0)
    worst_abs = max(st.label_abs, default=0.0)
    index_diff = sum(st.index_samples)
    values_same = worst_ulps <= tolerance and not index_diff
    details["within_tolerance"] = values_same and worst_ulps > 0
    text = []
    if schema_diff:
        text.append("schema " + "; ".join(f"{k}: {_short(la.get(k))} vs {_short(lb.get(k))}" for k in schema_diff))
    if la["kind"] == "hard":
        text.append("hard labels (the classes, compared under selection)")
    elif not any(st.label_samples) and not index_diff:
        text.append(f"identical {la['kind']} float16 values in every view of all {st.n} compared samples")
    else:
        samples = max(st.label_samples)
        text.append(f"{la['kind']} values differ in up to {samples} of {st.n} samples per view: max |diff| {worst_abs:.3g}, max {worst_ulps} float16 ulps")
        if len(per_view) <= 8:
            text.append(", ".join(f"view {p['view']}: {p['max_ulps']} ulps ({p['max_abs']:.3g})" for p in per_view))
        else:
            worst = max(per_view, key=lambda p: p["max_ulps"])
            text.append(f"worst view {worst['view']} of {len(per_view)}")
        if index_diff:
            text.append(f"top-k indices differ in {index_diff} sample-views")
        if tolerance and values_same:
            text.append(f"within the tolerance of {tolerance} ulps")
    return Section("labels", values_same and not schema_diff, "; ".join(text), details)


def _views_section(la: dict, lb: dict, st: _Stats, comparable: bool) -> Section:
    if la.get("view_params") != lb.get("view_params"):
        return Section("views", False, f"different view parameters: {sorted(la.get('view_params', {}))} vs {sorted(lb.get('view_params', {}))}")
    if not la.get("view_params"):
        return Section("views", True, "no augmented views recorded")
    if not comparable:
        return Section("views", False, "not compared (label schemas differ)")
    if not st.view_samples:
        return Section("views", True, f"the same recorded parameters ({', '.join(sorted(la['view_params']))})")
    return Section("views", False, "; ".join(f"{k} differs in {n} samples" for k, n in sorted(st.view_samples.items())), {"samples_differ": st.view_samples})


def _recipe_section(ma: dict, mb: dict) -> Section:
    ra, rb = ma["recipe"], mb["recipe"]
    keys = sorted(k for k in set(ra) | set(rb) if k not in RECIPE_INFO_KEYS and ra.get(k, _ABSENT) != rb.get(k, _ABSENT))
    if not keys:
        return Section("recipe", True, "the same" + (f" ({len(ra)} keys)" if ra else " (none recorded)"))
    return Section("recipe", False, "; ".join(f"{k}: {_short(ra.get(k, _ABSENT))} vs {_short(rb.get(k, _ABSENT))}" for k in keys), {"keys": {k: [ra.get(k), rb.get(k)] for k in keys}})


def _teachers_section(ma: dict, mb: dict) -> Section:
    ident = lambda t: (teacher_reference(t), t.get("sha256"))  # noqa: E731
    ta, tb = [ident(t) for t in ma["teachers"]], [ident(t) for t in mb["teachers"]]
    if ta == tb:
        return Section("teachers", True, ", ".join(f"{r} ({(s or 'no sha256')[:12]})" for r, s in ta) or "none recorded")
    rows = []
    for i in range(max(len(ta), len(tb))):
        x, y = (ta[i] if i < len(ta) else None), (tb[i] if i < len(tb) else None)
        if x != y:
            show = lambda t: "absent" if t is None else f"{t[0]} sha256 {(t[1] or 'none')[:12]}"  # noqa: E731
            rows.append(f"{show(x)} vs {show(y)}")
    return Section("teachers", False, "; ".join(rows), {"a": [list(t) for t in ta], "b": [list(t) for t in tb]})


def _metadata_section(ma: dict, mb: dict) -> Section:
    keys = [k for k in INFO_KEYS if ma.get(k) != mb.get(k)]
    keys += [f"recipe.{k}" for k in RECIPE_INFO_KEYS if ma["recipe"].get(k) != mb["recipe"].get(k) and ma.get(k) == mb.get(k)]
    if ma["provenance"] != mb["provenance"]:
        keys.append("provenance")
    get = lambda m, k: m["recipe"].get(k[7:]) if k.startswith("recipe.") else m.get(k)  # noqa: E731
    if not keys:
        return Section("metadata", True, "the same name, version, slc version, licence and provenance", counted=False)
    shown = "; ".join(f"{k}: {_short(get(ma, k))} vs {_short(get(mb, k))}" for k in keys if k != "provenance")
    if "provenance" in keys:
        shown = (shown + "; " if shown else "") + "provenance differs"
    return Section("metadata", False, shown + " (shown, not compared)", counted=False)


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()


def _short(value, limit: int = 60) -> str:
    text = repr(value) if isinstance(value, _Absent) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
