"""Format 1 (and 1.1) in code: names, keys, canonical JSON, the content hash and the top-k fill rule.

Everything the writer, the reader and the verifier must agree on lives here, once; the prose
is docs/artifact-format.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile

import torch

from ..errors import ArtifactError

FORMAT = "slc-artifact/1"
FLOAT_FORMAT = "slc-artifact/1.1"  # 1 plus float images (``<key>.pixels``, manifest ``images``); written only for such sets
FORMATS = (FORMAT, FLOAT_FORMAT)
MANIFEST = "manifest.json"
CARD = "README.md"
GRID = "grid.png"  # the card's picture of the images and their labels (optional, recorded in the manifest)
EVAL_DIR = "eval"  # on the Hub only: evaluation results that slc publish --results added (optional)
EVAL_RESULTS = "eval/results.json"
DATA_DIR = "data"
SHARD_PATTERN = re.compile(r"^data/train-(\d{6})\.tar$")
DEFAULT_SHARD_BYTES = 256 * 2**20

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm", "pgm")
PIXELS_EXT = "pixels"  # format 1.1: a safetensors member holding one float tensor ``pixels`` (C, H, W)
PIXELS_TENSOR = "pixels"
PIXEL_DTYPES = {"float16": torch.float16, "float32": torch.float32}
LABEL_KINDS = ("dense", "topk", "hard")
FILL_RULES = ("uniform", "renormalize")
LABEL_DTYPE = torch.float16
SUM_TOLERANCE = 1e-2
# dtypes a view parameter tensor may have, by the name safetensors and the manifest use
VIEW_DTYPES = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}
DTYPE_NAMES = {v: k for k, v in VIEW_DTYPES.items()}

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
VIEW_NAME_RE = re.compile(r"^[a-z0-9_]+$")
# semver.org 2.0.0
SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
CONTENT_DATASET_KEYS = ("name", "classes", "channels", "resolution", "mean", "std", "fingerprint")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ArtifactError(f"bad artifact name {name!r}", "use lowercase letters, digits, '-' and '_', starting with a letter or digit")
    return name


def check_version(version: str) -> str:
    if not isinstance(version, str) or not SEMVER_RE.match(version):
        raise ArtifactError(f"bad artifact version {version!r}", "use a semantic version such as 1.0.0 or 1.1.0-rc.1")
    return version


def artifact_dirname(name: str, version: str) -> str:
    """The conventional folder name ``<name>-<version>``."""
    return f"{check_name(name)}-{check_version(version)}"


def key_width(n: int) -> int:
    return max(6, len(str(max(n - 1, 0))))


def sample_key(i: int, width: int) -> str:
    return f"{i:0{width}d}"


def shard_path(index: int) -> str:
    return f"{DATA_DIR}/train-{index:06d}.tar"


def dumps_manifest(manifest: dict) -> bytes:
    """manifest.json bytes: sorted keys, indent 2, final newline."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def content_hash(manifest: dict) -> str:
    """sha256 over what a student trains on: dataset identity, label schema, shard hashes (spec: Content hash)."""
    dataset = manifest["dataset"]
    body = {
        "format": manifest["format"],
        "dataset": {k: dataset[k] for k in CONTENT_DATASET_KEYS if k in dataset},
        "labels": manifest["labels"],
        "shards": [{"sha256": s["sha256"], "bytes": s["bytes"], "samples": s["samples"]} for s in manifest["shards"]],
    }
    for key in ("images", "learned_lr"):  # what a student trains in and with; absent (and so unhashed) in older artifacts
        if key in manifest:
            body[key] = manifest[key]
    return hashlib.sha256(canonical_json(body)).hexdigest()


def pixels_member(image: torch.Tensor) -> bytes:
    """A float (C, H, W) image as its ``<key>.pixels`` member: safetensors with one tensor, no metadata."""
    from safetensors.torch import save

    return save({PIXELS_TENSOR: image.contiguous().clone()})


def read_pixels(data: bytes, shape: tuple[int, int, int], dtype: str | None = None) -> torch.Tensor:
    """The float (C, H, W) image of a ``<key>.pixels`` member; ValueError when it is not exactly that (finite)."""
    from safetensors.torch import load

    try:
        tensors = load(bytes(data))
    except Exception as exc:  # noqa: BLE001 - any unreadable member is reported as such
        raise ValueError(f"unreadable safetensors ({exc})") from None
    t = tensors.get(PIXELS_TENSOR)
    if set(tensors) != {PIXELS_TENSOR} or t.dtype not in PIXEL_DTYPES.values() or tuple(t.shape) != tuple(shape):
        raise ValueError(f"holds {sorted(tensors)}, not one float16/float32 tensor {PIXELS_TENSOR!r} of shape {list(shape)}")
    if dtype is not None and DTYPE_NAMES[t.dtype] != dtype:
        raise ValueError(f"is {DTYPE_NAMES[t.dtype]}, the manifest says {dtype}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("holds NaN or inf")
    return t


def display_uint8(image: torch.Tensor, space: dict) -> torch.Tensor:
    """A picture (uint8 C, H, W) of a float image for the grid: normalisation undone, or a ZCA image stretched to its own range."""
    x = image.double()
    norm = space.get("normalize")
    if norm:
        x = x * torch.tensor(norm["std"], dtype=torch.float64).view(-1, 1, 1) + torch.tensor(norm["mean"], dtype=torch.float64).view(-1, 1, 1)
    else:
        x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def tar_member(name: str, size: int) -> tarfile.TarInfo:
    """A reproducible regular-file header: no times, owners or modes that vary between machines."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(tar_member(name, len(data)), io.BytesIO(data))


def member_blocks(size: int) -> int:
    """Bytes a member takes in a tar: one header block plus its data padded to 512."""
    return 512 + -(-size // 512) * 512


def dense_from_topk(values: torch.Tensor, indices: torch.Tensor, num_classes: int, fill: str = "uniform") -> torch.Tensor:
    """Float32 (..., C) distributions from top-k (..., k) per the manifest's ``fill`` rule (spec: Reconstructing)."""
    if fill not in FILL_RULES:
        raise ArtifactError(f"unknown top-k fill rule {fill!r}", f"use one of {', '.join(FILL_RULES)}")
    values = values.float()
    k = values.shape[-1]
    if fill == "uniform" and k < num_classes:
        rest = (1.0 - values.sum(-1, keepdim=True)).clamp_min(0) / (num_classes - k)
        out = rest.expand(*values.shape[:-1], num_classes).clone()
    else:
        out = values.new_zeros(*values.shape[:-1], num_classes)
    out.scatter_(-1, indices.long(), values)
    if fill == "renormalize" or k == num_classes:
        out = out / out.sum(-1, keepdim=True).clamp_min(1e-12)
    return out


def label_problems(kind: str, tensors: dict[str, torch.Tensor], num_classes: int) -> torch.Tensor | None:
    """A bool mask over the leading (sample) dim marking rows that break the label rules, or None if all pass.

    Shared by the writer (inputs) and the verifier (stored shards), batched over samples.
    """
    if kind == "dense":
        p = tensors["probs"].float()
        bad = ~torch.isfinite(p).all(-1) | (p < 0).any(-1) | ((p.sum(-1) - 1).abs() > SUM_TOLERANCE)
    elif kind == "topk":
        v, i = tensors["topk_values"].float(), tensors["topk_indices"].long()
        bad = ~torch.isfinite(v).all(-1) | (v < 0).any(-1) | (v.sum(-1) > 1 + SUM_TOLERANCE)
        bad |= ((i < 0) | (i >= num_classes)).any(-1)
        s = i.sort(-1).values
        bad |= (s[..., 1:] == s[..., :-1]).any(-1)
    else:
        return None
    bad = bad.reshape(bad.shape[0], -1).any(-1)
    return bad if bool(bad.any()) else None
