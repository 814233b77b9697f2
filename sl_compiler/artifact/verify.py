"""``verify(path)``: check an artifact against the format spec, byte by byte, label by label.

Stops at the first problem with a VerifyError whose ``path`` names the bad file (and whose message
names the sample key inside a shard), so a user knows which download to repeat.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..errors import VerifyError
from ..progress import bar
from . import format as fmt
from .card import card_without_results
from .manifest import MANIFEST_TYPES, card_record, check_manifest, decimal_sources, manifest_sha256, parse_manifest
from .reader import HUB_HINT, image_suffix, read_shard, sample_labels

# what PIL calls each stored image type
PIL_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP", "gif": "GIF", "tif": "TIFF", "tiff": "TIFF", "ppm": "PPM", "pgm": "PPM"}


@dataclass
class VerifyReport:
    """What a passing verification saw; ``notes`` says what it could not check."""

    path: str
    name: str
    version: str
    samples: int
    shards: int
    bytes: int
    label_kind: str
    content_hash: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"ok: {self.name} {self.version}: {self.samples} samples in {self.shards} shard(s), "
            f"{self.bytes:,} bytes, {self.label_kind} labels, content hash {self.content_hash}"
        )
        return "\n".join([text, *(f"  note: {n}" for n in self.notes)])

    def to_dict(self) -> dict:
        return asdict(self)


LEGACY_NOTE = (
    "written by slc 0.1.0, which recorded no checksum of README.md or of the manifest's fields outside the content hash: "
    "those were checked for form, not for corruption"
)


def _fail(rel: str, problem: str, fix: str = "re-download or rebuild the artifact") -> None:
    raise VerifyError(f"{rel}: {problem}", fix, path=rel)


def verify(path: str | Path, *, allow_links: bool = False) -> VerifyReport:
    """Check every file, shard, sample and label of the artifact folder ``path``; raise VerifyError on the first problem.

    ``allow_links`` accepts files that are symbolic links to regular files: the Hugging Face cache
    stores a snapshot as links into its blob store (sl_compiler.hub passes it for that folder only).
    ``hf://`` references are verified by :func:`sl_compiler.hub.pull`.
    """
    if str(path).startswith("hf://"):
        raise VerifyError(f"{path} is a Hub reference; verify checks local folders", HUB_HINT)
    path = Path(path)
    if not (path / fmt.MANIFEST).exists() and not (path / fmt.MANIFEST).is_symlink():
        _fail(str(path / fmt.MANIFEST), "missing: this is not an slc artifact (or a half-written one)", "pass the folder that slc compile or slc import wrote")
    _regular(path, fmt.MANIFEST, allow_links)
    raw = (path / fmt.MANIFEST).read_bytes()
    manifest = parse_manifest(raw)
    notes = _check_integrity(manifest, raw)
    check_manifest(manifest)
    _check_folder(path, manifest, allow_links)
    _check_card(path, manifest)
    if "grid" in manifest:
        _check_grid((path / fmt.GRID).read_bytes(), manifest["grid"])

    checker = _SampleChecker(manifest)
    with bar(manifest["counts"]["samples"], desc="verify", unit="img") as progress:
        for shard in manifest["shards"]:
            rel, file = shard["path"], path / shard["path"]
            size = file.stat().st_size
            if size != shard["bytes"]:
                _fail(rel, f"has {size} bytes, the manifest says {shard['bytes']}")
            if _sha256(file) != shard["sha256"]:
                _fail(rel, "sha256 does not match the manifest (corrupt or modified)")
            samples = read_shard(file, rel)
            checker.check_shard(rel, samples)
            if len(samples) != shard["samples"]:
                _fail(rel, f"holds {len(samples)} samples, the manifest says {shard['samples']}")
            progress.update(len(samples))
    checker.check_totals()
    expected = fmt.content_hash(manifest)
    if manifest["content_hash"] != expected:
        _fail(fmt.MANIFEST, f"content_hash {manifest['content_hash'][:16]}... does not match the content ({expected[:16]}...)", "restore the original manifest or rebuild the artifact")
    return VerifyReport(
        path=str(path),
        name=manifest["name"],
        version=manifest["version"],
        samples=manifest["counts"]["samples"],
        shards=len(manifest["shards"]),
        bytes=manifest["bytes"]["shards"],
        label_kind=manifest["labels"]["kind"],
        content_hash=manifest["content_hash"],
        notes=notes,
    )


def _check_integrity(manifest: dict, raw: bytes) -> list[str]:
    """The manifest's bytes are canonical and match its own checksum; returns notes for a 0.1.0 artifact.

    Canonical bytes leave no byte free: a flipped space or a reordered key fails as surely as a
    flipped digit. A manifest without ``manifest_sha256`` passes only as a whole 0.1.0 manifest
    (no ``card`` either, no key 0.1.0 did not write), which no single corrupted byte of a newer
    one can turn into.
    """
    fix = "restore the original manifest or rebuild the artifact"
    if manifest.get("format") not in fmt.FORMATS:
        check_manifest(manifest)  # names the unknown format
    try:
        canonical = fmt.dumps_manifest(manifest)
    except (TypeError, ValueError):
        canonical = None
    if raw != canonical:
        _fail(fmt.MANIFEST, "not in canonical form (sorted keys, indent 2, final newline): edited or corrupt", fix)
    if "manifest_sha256" in manifest:
        if manifest["manifest_sha256"] != manifest_sha256(manifest):
            _fail(fmt.MANIFEST, "manifest_sha256 does not match the manifest (corrupt or edited)", fix)
        return []
    unknown = sorted(set(manifest) - set(MANIFEST_TYPES))
    if unknown:
        _fail(fmt.MANIFEST, f"has {', '.join(unknown)} but no manifest_sha256", fix)
    return [LEGACY_NOTE]


def _regular(root: Path, rel: str, allow_links: bool) -> None:
    """``root/rel`` is a regular file (or, with ``allow_links``, a link to one)."""
    file = root / rel
    try:
        st = file.lstat()
    except FileNotFoundError:
        _fail(rel, "missing")
    if stat.S_ISLNK(st.st_mode):
        if not allow_links:
            _fail(rel, "is a symbolic link, not a file (an artifact holds plain files only)")
        st = file.stat() if file.exists() else st
    if not stat.S_ISREG(st.st_mode):
        _fail(rel, "is not a regular file")


def _check_folder(path: Path, manifest: dict, allow_links: bool) -> None:
    """The folder holds exactly manifest.json, README.md, grid.png when recorded, eval/results.json
    when the Hub copy has one, and the listed shards, each a plain file."""
    expected = [fmt.MANIFEST, fmt.CARD, *([fmt.GRID] if "grid" in manifest else []), fmt.DATA_DIR]
    for entry in sorted(path.iterdir()):
        if entry.name not in expected and entry.name != fmt.EVAL_DIR:
            _fail(entry.name, f"is not part of an artifact (a folder holds {', '.join(expected)}/ and, from slc publish --results, {fmt.EVAL_RESULTS} only)", "remove it, or rebuild the artifact")
    _regular(path, fmt.CARD, allow_links)
    if "grid" in manifest:
        _regular(path, fmt.GRID, allow_links)
    evals = path / fmt.EVAL_DIR
    if evals.exists() or evals.is_symlink():
        if evals.is_symlink() or not evals.is_dir():
            _fail(fmt.EVAL_DIR, "is not a folder")
        for entry in sorted(evals.iterdir()):
            if f"{fmt.EVAL_DIR}/{entry.name}" != fmt.EVAL_RESULTS:
                _fail(f"{fmt.EVAL_DIR}/{entry.name}", f"is not part of an artifact ({fmt.EVAL_DIR}/ holds results.json only)", "remove it, or pull the artifact again")
        _regular(path, fmt.EVAL_RESULTS, allow_links)
    data = path / fmt.DATA_DIR
    if data.is_symlink() or not data.is_dir():
        _fail(fmt.DATA_DIR, "missing or not a folder")
    listed = [s["path"] for s in manifest["shards"]]
    present = {f"{fmt.DATA_DIR}/{p.name}" for p in data.iterdir()}
    for extra in sorted(present - set(listed)):
        _fail(extra, "not listed in the manifest", "remove the file or rebuild the artifact")
    for rel in listed:
        if rel not in present:
            _fail(rel, "missing")
        _regular(path, rel, allow_links)


def _check_card(path: Path, manifest: dict) -> None:
    """README.md is the card the writer recorded, or (with eval/results.json) that card with the
    results section that slc publish --results rendered from that file, byte for byte."""
    card = (path / fmt.CARD).read_bytes()
    results = path / fmt.EVAL_RESULTS
    if results.exists():
        if "card" not in manifest:
            _fail(fmt.EVAL_RESULTS, "an artifact without a card record (slc 0.1.0) cannot carry published results")
        card = card_without_results(card, results.read_bytes(), manifest)
    if "card" in manifest and card_record(card) != manifest["card"]:
        _fail(fmt.CARD, f"{len(card)} bytes with sha256 {card_record(card)['sha256'][:16]}..., the manifest records {manifest['card']['bytes']} bytes, {manifest['card']['sha256'][:16]}... (corrupt or edited)")


def _check_grid(data: bytes, record: dict) -> None:
    """grid.png matches its manifest record and is a PNG."""
    from PIL import Image

    if card_record(data) != record:
        _fail(fmt.GRID, f"{len(data)} bytes with sha256 {card_record(data)['sha256'][:16]}..., the manifest records {record['bytes']} bytes, {record['sha256'][:16]}... (corrupt or edited)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            found = img.format
    except Exception:
        found = None
    if found != "PNG":
        _fail(fmt.GRID, "is not a readable PNG image")


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _SampleChecker:
    """Per-sample structure checks, with the label rules batched per shard."""

    def __init__(self, manifest: dict):
        self.manifest = manifest
        lab = manifest["labels"]
        self.kind, self.num_classes = lab["kind"], lab["num_classes"]
        self.n = manifest["counts"]["samples"]
        self.width = fmt.key_width(self.n)
        self.index = 0
        self.per_class = [0] * self.num_classes
        self.classes = manifest["dataset"]["classes"]
        self.sources: list[str] = []
        self.bytes = {"images": 0, "labels": 0}
        v = lab["views"]
        self.tensors: dict[str, tuple[str, list[int]]] = {}
        if self.kind == "dense":
            self.tensors["probs"] = ("float16", [v, self.num_classes])
        elif self.kind == "topk":
            self.tensors["topk_values"] = ("float16", [v, lab["k"]])
            self.tensors["topk_indices"] = (lab["index_dtype"], [v, lab["k"]])
        for name, spec in lab["view_params"].items():
            self.tensors[f"view.{name}"] = (spec["dtype"], spec["shape"])

    def check_shard(self, rel: str, samples: list[tuple[str, dict[str, bytes]]]) -> None:
        keys, stored = [], {name: [] for name in self.tensors if not name.startswith("view.")}
        for key, parts in samples:
            self._check_sample(rel, key, parts)
            keys.append(key)
            if self.kind != "hard":
                tensors = sample_labels(parts["safetensors"], rel, key)
                self._check_tensors(rel, key, tensors)
                for name in stored:
                    stored[name].append(tensors[name])
        if self.kind != "hard" and keys:
            bad = fmt.label_problems(self.kind, {k: torch.stack(v) for k, v in stored.items()}, self.num_classes)
            if bad is not None:
                key = keys[int(bad.nonzero()[0])]
                _fail(rel, f"sample {key}: labels are not probabilities (NaN/inf, negative, row sum off 1 by more than {fmt.SUM_TOLERANCE}, or a top-k index out of range or repeated)")

    def _check_sample(self, rel: str, key: str, parts: dict[str, bytes]) -> None:
        expected_key = fmt.sample_key(self.index, self.width)
        if key != expected_key:
            _fail(rel, f"sample key {key} where {expected_key} was expected (samples missing, reordered or repeated)")
        self.index += 1
        ext = image_suffix(parts)
        wanted = {"cls", "json"} | ({"safetensors"} if self.kind != "hard" else set())
        if ext is None or set(parts) != wanted | {ext}:
            _fail(rel, f"sample {key} has members {sorted(parts)}; expected {sorted(wanted)} and one image")
        try:
            cls = int(parts["cls"].decode("ascii"))
            meta = json.loads(parts["json"])
        except (ValueError, UnicodeDecodeError):
            _fail(rel, f"sample {key}: unreadable .cls or .json")
        if not 0 <= cls < self.num_classes or not isinstance(meta, dict) or meta.get("class") != cls:
            _fail(rel, f"sample {key}: class {cls} is out of range or disagrees with its .json")
        if set(meta) != {"class", "label", "source"} or meta["label"] != self.classes[cls] or not isinstance(meta["source"], str):
            _fail(rel, f"sample {key}: its .json is not {{class, label, source}} with the class's name {self.classes[cls]!r}")
        self.per_class[cls] += 1
        self.sources.append(meta["source"])
        self._check_image(rel, key, ext, parts[ext])
        floats = self.manifest.get("images")
        if (ext == fmt.PIXELS_EXT) != (floats is not None):
            _fail(rel, f"sample {key}: a {ext} image in a set whose manifest records {'float' if floats else 'uint8'} images")
        if floats is not None:
            ds = self.manifest["dataset"]
            try:
                fmt.read_pixels(parts[ext], (ds["channels"], *ds["resolution"]), floats["dtype"])
            except ValueError as exc:
                _fail(rel, f"sample {key}: {key}.{ext} {exc}")
        self.bytes["images"] += len(parts[ext])
        self.bytes["labels"] += len(parts.get("safetensors", b""))

    @staticmethod
    def _check_image(rel: str, key: str, ext: str, data: bytes) -> None:
        from PIL import Image

        if ext == fmt.PIXELS_EXT:  # a float image: checked against the manifest's images record
            return
        try:
            with Image.open(io.BytesIO(data)) as img:
                found = img.format
        except Exception:
            found = None
        if found != PIL_FORMATS[ext]:
            _fail(rel, f"sample {key}: {key}.{ext} is not a readable {PIL_FORMATS[ext]} image")

    def _check_tensors(self, rel: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        if set(tensors) != set(self.tensors):
            _fail(rel, f"sample {key}: label tensors {sorted(tensors)}, the schema wants {sorted(self.tensors)}")
        for name, (dtype, shape) in self.tensors.items():
            t = tensors[name]
            if fmt.DTYPE_NAMES.get(t.dtype) != dtype or list(t.shape) != shape:
                _fail(rel, f"sample {key}: {name} is {t.dtype} {list(t.shape)}, the schema wants {dtype} {shape}")
            if name.startswith("view.") and t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
                _fail(rel, f"sample {key}: {name} holds NaN or inf")

    def check_totals(self) -> None:
        m = self.manifest
        if self.index != self.n:
            _fail(fmt.MANIFEST, f"counts.samples is {self.n} but the shards hold {self.index}")
        if self.per_class != m["counts"]["per_class"]:
            _fail(fmt.MANIFEST, "counts.per_class does not match the shards")
        sizes = {**self.bytes, "shards": sum(s["bytes"] for s in m["shards"])}
        if sizes != m["bytes"]:
            _fail(fmt.MANIFEST, f"bytes {m['bytes']} do not match the shards {sizes}")
        self._check_selection()

    def _check_selection(self) -> None:
        """selection.source_ids are the samples' .json sources; where the sources are dataset indices (decimal), so are source_indices."""
        sel = self.manifest["selection"]
        ids = sel.get("source_ids")
        if ids is not None and ids != self.sources:
            i = next(i for i, (a, b) in enumerate(zip(ids, self.sources)) if a != b)
            _fail(fmt.MANIFEST, f"selection.source_ids[{i}] is {ids[i]!r} but sample {fmt.sample_key(i, self.width)} came from {self.sources[i]!r}")
        indices = sel.get("source_indices")
        if indices is not None and decimal_sources(self.sources) and [str(i) for i in indices] != self.sources:
            i = next(i for i, (a, b) in enumerate(zip(indices, self.sources)) if str(a) != b)
            _fail(fmt.MANIFEST, f"selection.source_indices[{i}] is {indices[i]} but sample {fmt.sample_key(i, self.width)} came from index {self.sources[i]}")
