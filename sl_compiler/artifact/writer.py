"""Write an artifact: validate everything first, build it in a hidden temp folder, rename it last.

Byte-identical rebuilds: the same inputs give the same bytes (reproducible tar headers, sorted
JSON, safetensors without metadata, PNG with fixed options, no timestamps). A crash or a bad
input leaves no artifact behind (spec: Layout).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import save as save_safetensors

from .. import __version__
from ..data.decode import decode_image
from ..data.preprocess import Preprocess
from ..errors import ArtifactError, VerifyError
from ..progress import bar
from . import atomic
from . import format as fmt
from .card import render_card
from .grid import GridSource, grid_png, stored_labels
from .manifest import card_record, check_metadata, decimal_sources, manifest_sha256

ImageInput = torch.Tensor | Sequence["tuple[bytes, str] | torch.Tensor"]


def write_artifact(
    out: str | Path,
    *,
    name: str,
    version: str,
    dataset: dict,
    images: ImageInput,
    targets: torch.Tensor | Sequence[int],
    source_ids: Sequence[str],
    labels: dict | None,
    label_schema: dict | None = None,
    recipe: dict | None = None,
    teachers: Sequence[dict] = (),
    selection: dict | None = None,
    provenance: dict | None = None,
    license: str | None = None,
    ipc: int | None = None,
    shard_bytes: int = fmt.DEFAULT_SHARD_BYTES,
    shard_samples: int | None = None,
    force: bool = False,
    grid: bool = True,
    image_space: dict | None = None,
    learned_lr: float | None = None,
) -> Path:
    """Write the artifact folder ``out`` (conventionally ``<name>-<version>``) and return its path.

    dataset: ``ImageSet.info()`` or an equivalent dict (``classes``, ``mean``, ``std``; ``channels``
      and ``resolution`` are taken from tensor images when absent).
    images: uint8 (N, C, H, W) stored as PNG, or a list of N items, each the source's own
      ``(bytes, ext)`` (stored unchanged) or a uint8 (C, H, W) tensor; or float16/float32
      (N, C, H, W) images already in a model's input space, stored exactly as given
      (``<key>.pixels``, format 1.1), with ``image_space`` ``{"normalize": {mean, std} | None,
      "zca": record | None}`` saying which space.
    learned_lr: the student learning rate a third-party set learned with its images (MTT's syn_lr).
    labels: None for hard labels; else ``{"probs": (N, V, C)}`` or ``{"topk_values": (N, V, k),
      "topk_indices": (N, V, k)}`` (a 2-d (N, C|k) tensor means V = 1), optionally with
      ``"views": {name: Tensor (N, V, ...)}``, stored per sample as ``view.<name>``.
    label_schema: extra keys recorded in ``manifest.labels`` (temperature, augment, ``fill`` for
      top-k: "uniform" (default) or "renormalize"); keys the tensors determine must agree.
    grid: draw ``grid.png`` (the first images of the first classes with their labels'
      top classes, views replayed; :mod:`.grid`) and show it in the card.
    Raises ArtifactError on bad input, on an existing ``out`` (unless ``force``: then the old
    artifact is replaced, and kept if writing fails), or while another process writes ``out``.
    Temp folders that killed writers left beside ``out`` are removed first.
    """
    out = Path(out)
    fmt.check_name(name)
    fmt.check_version(version)
    if shard_bytes <= 0 or (shard_samples is not None and shard_samples <= 0):
        raise ArtifactError("shard size limits must be positive", "pass shard_bytes > 0 and shard_samples > 0 or None")
    _check_target(out, force)
    dataset = dict(dataset)
    targets = torch.as_tensor(targets).reshape(-1)
    n = len(targets)
    classes = _check_dataset(dataset, images, n)
    targets = _check_targets(targets, len(classes))
    source_ids = [str(s) for s in source_ids]
    if len(source_ids) != n:
        raise ArtifactError(f"{len(source_ids)} source ids for {n} images", "pass one source id (index or path) per image")
    kind, tensors, views = _check_labels(labels, n, len(classes))
    floats = _check_floats(images, image_space, views)
    schema = _label_schema(kind, tensors, views, len(classes), label_schema or {})
    per_class = torch.bincount(targets, minlength=len(classes)).tolist()
    if ipc is None and len(set(per_class)) == 1:
        ipc = per_class[0]
    manifest = {
        "format": fmt.FLOAT_FORMAT if floats else fmt.FORMAT,
        "name": name,
        "version": version,
        "slc_version": __version__,
        "dataset": dataset,
        "ipc": ipc,
        "counts": {"samples": n, "per_class": per_class},
        "recipe": dict(recipe or {}),
        "teachers": [dict(t) for t in teachers],
        "selection": dict(selection or {}),
        "provenance": dict(provenance or {}),
        "license": license,
        "labels": schema,
    }
    if floats:
        manifest["images"] = {"dtype": fmt.DTYPE_NAMES[images.dtype], "normalize": image_space.get("normalize"), "zca": image_space.get("zca")}
    if learned_lr is not None:
        if isinstance(learned_lr, bool) or not isinstance(learned_lr, (int, float)) or not learned_lr > 0 or learned_lr == float("inf"):
            raise ArtifactError(f"learned_lr {learned_lr!r} is not a positive number", "pass the learned student lr as a float")
        manifest["learned_lr"] = float(learned_lr)
    try:
        manifest = json.loads(fmt.dumps_manifest(manifest))  # plain JSON from here on: what is checked is what is written
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"manifest metadata is not plain JSON: {exc}", "pass recipe, teachers, selection and provenance as dicts of str, int, float, bool, list") from None
    try:
        check_metadata(manifest)
    except VerifyError as exc:
        raise ArtifactError(f"the manifest would be invalid: {exc.problem.removeprefix(fmt.MANIFEST + ': ')}", "fix the metadata passed to write_artifact") from None
    selection = manifest["selection"]
    if selection.get("source_ids", source_ids) != source_ids:
        raise ArtifactError("selection.source_ids differ from the images' source ids", "record the source ids of the images written, in order")
    if "source_indices" in selection and decimal_sources(source_ids) and [str(i) for i in selection["source_indices"]] != source_ids:
        raise ArtifactError("the source ids are dataset indices but differ from selection.source_indices", "pass source_ids=[str(i) for i in indices]")

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.OutLock(out):
        _check_target(out, force)  # again: another writer may have finished since the first check
        atomic.clean_stale(out)
        tmp = atomic.owned_name(out)
        try:
            (tmp / fmt.DATA_DIR).mkdir(parents=True)
            shape = (dataset["channels"], *dataset["resolution"])
            shards, sizes, exts = _write_shards(tmp, images, targets, source_ids, classes, shape, tensors, views, shard_bytes, shard_samples, name, floats)
            manifest["shards"] = shards
            manifest["bytes"] = sizes
            manifest["content_hash"] = fmt.content_hash(manifest)
            if grid:
                picture = _grid(manifest, images, targets, tensors, views)
                _write_durably(tmp / fmt.GRID, picture)
                manifest["grid"] = card_record(picture)
            card = render_card(manifest, exts).encode()
            manifest["card"] = card_record(card)
            manifest["manifest_sha256"] = manifest_sha256(manifest)
            _write_durably(tmp / fmt.CARD, card)
            _write_durably(tmp / fmt.MANIFEST, fmt.dumps_manifest(manifest))
            atomic.fsync_dir(tmp / fmt.DATA_DIR)
            atomic.fsync_dir(tmp)
            atomic.publish(tmp, out, force)
            atomic.fsync_dir(out.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def _grid(manifest: dict, images: ImageInput, targets: torch.Tensor, tensors: dict, views: dict) -> bytes:
    """grid.png from the inputs as they are stored (labels in float16, images decoded as the reader decodes them)."""
    ds, lab = manifest["dataset"], manifest["labels"]
    shape, resize = (ds["channels"], *ds["resolution"]), Preprocess.from_info(ds).resize

    def image(i: int) -> torch.Tensor:
        item = images[i]
        if isinstance(item, torch.Tensor):
            return fmt.display_uint8(item, manifest["images"]) if "images" in manifest else item
        data, _ = item
        return decode_image(bytes(data), shape, f"sample {i}", resize)

    source = GridSource(ds["classes"], targets, image, stored_labels(lab["kind"], tensors, ds["num_classes"], lab["fill"]), views or None)
    return grid_png(source, manifest)


def _write_durably(path: Path, data: bytes) -> None:
    """Write and fsync, so that the rename that publishes the folder never exposes a short file."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _check_target(out: Path, force: bool) -> None:
    if not out.exists() and not out.is_symlink():
        return
    if not force:
        raise ArtifactError(f"{out} already exists", "pick another --out, bump the version, or pass --force to replace it")
    if not atomic.replaceable(out):
        raise ArtifactError(f"{out} exists and is not an slc artifact; refusing to replace it", "pick another --out")


def _check_dataset(dataset: dict, images: ImageInput, n: int) -> list[str]:
    classes = dataset.get("classes")
    if not isinstance(classes, (list, tuple)) or len(classes) < 1:
        raise ArtifactError("dataset info has no class list", "pass dataset=ImageSet.info() or a dict with 'classes', 'mean' and 'std'")
    dataset["classes"] = classes = [str(c) for c in classes]
    dataset["num_classes"] = len(classes)
    if "resolution" in dataset:
        res = dataset["resolution"]
        dataset["resolution"] = [int(res), int(res)] if isinstance(res, (int, float)) else [int(r) for r in res]
    if isinstance(images, torch.Tensor):
        if images.dtype not in (torch.uint8, *fmt.PIXEL_DTYPES.values()) or images.dim() != 4 or len(images) != n:
            raise ArtifactError(f"images must be uint8 (or float16/float32) (N, C, H, W) with N={n}, got {images.dtype} {tuple(images.shape)}", "pass ImageSet.images(indices)")
        c, h, w = images.shape[1:]
        for key, value in (("channels", c), ("resolution", [h, w])):
            if dataset.setdefault(key, value) != value:
                raise ArtifactError(f"dataset {key} {dataset[key]} differs from the images' {value}", "pass the images the dataset info describes")
    elif len(images) != n:
        raise ArtifactError(f"{len(images)} images for {n} targets", "pass one image per target")
    for key in ("channels", "resolution", "mean", "std"):
        if key not in dataset:
            raise ArtifactError(f"dataset info lacks {key!r}", "pass dataset=ImageSet.info() or add the key")
    dataset["channels"] = int(dataset["channels"])
    if dataset["channels"] not in (1, 3, 4) or len(dataset["resolution"]) != 2:
        raise ArtifactError(f"unsupported image shape: {dataset['channels']} channels, resolution {dataset['resolution']}", "use 1, 3 or 4 channels and resolution [H, W]")
    if len(dataset["mean"]) != dataset["channels"] or len(dataset["std"]) != dataset["channels"]:
        raise ArtifactError("dataset mean/std do not have one value per channel", "pass per-channel mean and std")
    dataset["mean"] = [float(m) for m in dataset["mean"]]
    dataset["std"] = [float(s) for s in dataset["std"]]
    return classes


def _check_floats(images: ImageInput, space: dict | None, views: dict) -> bool:
    """Whether ``images`` are float images (format 1.1); their space and finiteness checked."""
    floats = isinstance(images, torch.Tensor) and images.dtype in fmt.PIXEL_DTYPES.values()
    if not floats:
        if space is not None:
            raise ArtifactError("image_space given for uint8 or encoded images", "pass image_space only with float16/float32 images")
        return False
    if not isinstance(space, dict) or set(space) - {"normalize", "zca"} or (space.get("normalize") is None) == (space.get("zca") is None):
        raise ArtifactError("float images need their space: image_space={'normalize': {'mean', 'std'}} or {'zca': record}, exactly one", "say how the float images were preprocessed, or pass uint8 images")
    if views:
        raise ArtifactError("recorded views replay on uint8 images; these are float", "store per-view labels with uint8 images")
    if not bool(torch.isfinite(images).all()):
        raise ArtifactError("float images hold NaN or inf", "export the images from a finished, finite run")
    return True


def _check_targets(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ArtifactError(f"targets have dtype {targets.dtype}", "pass integer class indices")
    targets = targets.to(torch.int64)
    if len(targets) == 0:
        raise ArtifactError("no images to write", "select at least one image")
    if int(targets.min()) < 0 or int(targets.max()) >= num_classes:
        raise ArtifactError(f"targets outside 0..{num_classes - 1}", "pass class indices of the dataset's class list")
    return targets


def _check_labels(labels: dict | None, n: int, num_classes: int):
    """-> (kind, {name: (N, V, ...) stored tensor}, {view name: (N, V, ...)})."""
    if labels is None:
        return "hard", {}, {}
    labels = dict(labels)
    views = dict(labels.pop("views", None) or {})
    if set(labels) == {"probs"}:
        kind = "dense"
    elif set(labels) == {"topk_values", "topk_indices"}:
        kind = "topk"
    else:
        raise ArtifactError(f"labels have keys {sorted(labels)}", "pass {'probs'} or {'topk_values', 'topk_indices'}, plus optional 'views'")
    tensors = {}
    for key, t in labels.items():
        t = torch.as_tensor(t)
        if t.dim() == 2:
            t = t.unsqueeze(1)
        if t.dim() != 3 or t.shape[0] != n:
            raise ArtifactError(f"labels[{key!r}] has shape {tuple(t.shape)}", f"pass (N, V, C|k) or (N, C|k) with N={n}")
        tensors[key] = t
    v = tensors[next(iter(tensors))].shape[1]
    if kind == "dense":
        if tensors["probs"].shape[2] != num_classes:
            raise ArtifactError(f"probs have {tensors['probs'].shape[2]} classes, the dataset {num_classes}", "pass one probability per class")
        if not tensors["probs"].dtype.is_floating_point:
            raise ArtifactError("probs are not floating point", "pass probabilities as a float tensor")
        tensors["probs"] = tensors["probs"].to(fmt.LABEL_DTYPE)
    else:
        values, indices = tensors["topk_values"], tensors["topk_indices"]
        if values.shape != indices.shape or values.shape[2] > num_classes:
            raise ArtifactError(f"topk values {tuple(values.shape)} and indices {tuple(indices.shape)} differ or k > {num_classes}", "pass matching (N, V, k) tensors with k <= classes")
        if not values.dtype.is_floating_point or indices.dtype.is_floating_point or indices.dtype == torch.bool:
            raise ArtifactError("topk values must be float and indices integer", "pass probabilities and class indices")
        tensors["topk_values"] = values.to(fmt.LABEL_DTYPE)
        tensors["topk_indices"] = indices.to(torch.int16 if num_classes <= 32767 else torch.int32)
    bad = fmt.label_problems(kind, tensors, num_classes)
    if bad is not None:
        i = int(bad.nonzero()[0])
        raise ArtifactError(
            f"labels of sample {i} are not probabilities (NaN/inf, negative, or a row sum off 1 by more than {fmt.SUM_TOLERANCE}; top-k: index out of range or repeated)",
            "pass softmax outputs, not logits",
        )
    for vname, t in views.items():
        t = torch.as_tensor(t)
        if not isinstance(vname, str) or not fmt.VIEW_NAME_RE.match(vname):
            raise ArtifactError(f"bad view parameter name {vname!r}", "use lowercase letters, digits and '_'")
        if t.dim() < 2 or t.shape[0] != n or t.shape[1] != v:
            raise ArtifactError(f"view parameter {vname!r} has shape {tuple(t.shape)}", f"pass (N, V, ...) with N={n}, V={v}")
        if t.dtype not in fmt.DTYPE_NAMES:
            raise ArtifactError(f"view parameter {vname!r} has dtype {t.dtype}", f"use one of {', '.join(fmt.VIEW_DTYPES)}")
        if t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
            raise ArtifactError(f"view parameter {vname!r} holds NaN or inf", "record finite view parameters")
        views[vname] = t
    return kind, tensors, views


def _label_schema(kind: str, tensors: dict, views: dict, num_classes: int, extra: dict) -> dict:
    if kind == "hard":
        schema = {"kind": "hard", "views": 1, "num_classes": num_classes, "dtype": None, "k": None, "index_dtype": None, "fill": None, "view_params": {}}
    else:
        first = next(iter(tensors.values()))
        schema = {
            "kind": kind,
            "views": int(first.shape[1]),
            "num_classes": num_classes,
            "dtype": "float16",
            "k": int(first.shape[2]) if kind == "topk" else None,
            "index_dtype": fmt.DTYPE_NAMES[tensors["topk_indices"].dtype] if kind == "topk" else None,
            "fill": extra.get("fill", "uniform") if kind == "topk" else None,
            "view_params": {k: {"dtype": fmt.DTYPE_NAMES[t.dtype], "shape": list(t.shape[1:])} for k, t in sorted(views.items())},
        }
        if schema["fill"] is not None and schema["fill"] not in fmt.FILL_RULES:
            raise ArtifactError(f"unknown top-k fill rule {schema['fill']!r}", f"use one of {', '.join(fmt.FILL_RULES)}")
    for key, value in extra.items():
        if key in schema and key != "fill" and value is not None and value != schema[key]:
            raise ArtifactError(f"label_schema says {key}={value!r} but the labels give {schema[key]!r}", f"drop {key!r} from label_schema or fix the labels")
        schema.setdefault(key, value)
    return schema


def _encode_image(item, i: int, shape: tuple[int, int, int]) -> tuple[bytes, str]:
    from PIL import Image

    if isinstance(item, torch.Tensor):
        if item.dtype != torch.uint8 or tuple(item.shape) != shape:
            raise ArtifactError(f"image {i} is {item.dtype} {tuple(item.shape)}", f"pass uint8 images of shape {shape}")
        arr = item.permute(1, 2, 0).contiguous().numpy()
        img = Image.fromarray(arr[:, :, 0] if shape[0] == 1 else arr)  # L, RGB or RGBA
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=6, optimize=False)
        return buf.getvalue(), "png"
    try:
        data, ext = item
    except (TypeError, ValueError):
        raise ArtifactError(f"image {i} is neither a tensor nor (bytes, ext)", "pass ImageSet.encoded(i) or a uint8 (C, H, W) tensor") from None
    ext = str(ext).lower().lstrip(".")
    if ext not in fmt.IMAGE_EXTS or not isinstance(data, (bytes, bytearray)) or not data:
        raise ArtifactError(f"image {i}: unsupported encoded image ({ext!r}, {type(data).__name__})", f"pass non-empty bytes with one of {', '.join(fmt.IMAGE_EXTS)}")
    return bytes(data), ext


def _write_shards(tmp, images, targets, source_ids, classes, shape, tensors, views, shard_bytes, shard_samples, name, floats=False):
    """Stream samples into shards; returns (manifest shard list, byte totals, image extensions used)."""
    n = len(targets)
    width = fmt.key_width(n)
    label_parts = {**tensors, **{f"view.{k}": t for k, t in views.items()}}
    target_list = targets.tolist()
    totals = {"images": 0, "labels": 0}
    exts: set[str] = set()
    with _Shards(tmp, shard_bytes, shard_samples) as shards, bar(n, desc=f"write {name}", unit="img") as progress:
        for i in range(n):
            image, ext = (fmt.pixels_member(images[i]), fmt.PIXELS_EXT) if floats else _encode_image(images[i], i, shape)  # a float image, bit for bit
            exts.add(ext)
            c = target_list[i]
            members = {
                "cls": str(c).encode(),
                ext: image,
                "json": json.dumps({"class": c, "label": classes[c], "source": source_ids[i]}, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
            }
            if label_parts:
                members["safetensors"] = save_safetensors({k: t[i].clone() for k, t in label_parts.items()})
                totals["labels"] += len(members["safetensors"])
            shards.add(fmt.sample_key(i, width), members)
            totals["images"] += len(image)
            progress.update(1)
    totals["shards"] = sum(s["bytes"] for s in shards.records)
    return shards.records, totals, sorted(exts)


class _HashingFile:
    """A write-only file that hashes and counts what passes through, so a shard is never read back."""

    def __init__(self, path: Path):
        self.file = open(path, "wb")
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.file.write(data)

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


class _Shards:
    """Consecutive shards under ``root/data``; the next sample starts a new shard when it would pass a limit."""

    def __init__(self, root: Path, max_bytes: int, max_samples: int | None):
        self.root, self.max_bytes, self.max_samples = root, max_bytes, max_samples
        self.records: list[dict] = []
        self.tar = self.file = None
        self.used = self.count = 0

    def add(self, key: str, members: dict[str, bytes]) -> None:
        size = sum(fmt.member_blocks(len(b)) for b in members.values())
        if self.tar is not None and (self.used + size + 1024 > self.max_bytes or self.count == self.max_samples):
            self._close()
        if self.tar is None:
            path = fmt.shard_path(len(self.records))
            self.records.append({"path": path})
            self.file = _HashingFile(self.root / path)
            self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.USTAR_FORMAT)
            self.used = self.count = 0
        for suffix in sorted(members):
            fmt.add_member(self.tar, f"{key}.{suffix}", members[suffix])
        self.used += size
        self.count += 1

    def _close(self) -> None:
        self.tar.close()  # writes the end-of-archive blocks; leaves the file to us
        self.file.close()
        self.records[-1].update(sha256=self.file.sha256.hexdigest(), bytes=self.file.size, samples=self.count)
        self.tar = None

    def __enter__(self) -> "_Shards":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self._close()
        elif self.file is not None:
            self.file.file.close()
