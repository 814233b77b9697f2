"""Read an artifact: ``load(path) -> Artifact`` with images, targets, labels and view parameters.

``load`` reads every shard once into memory (distilled sets are small); ``Artifact.wds_stream()``
streams the shards instead for sets too large for that. Tar members are read, never extracted,
so a member name cannot reach outside the artifact.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
import json
import re
import tarfile
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors

from ..data.decode import decode_image
from ..data.preprocess import Preprocess
from ..errors import ArtifactError, VerifyError
from . import format as fmt
from .manifest import check_manifest, parse_manifest

MEMBER_RE = re.compile(r"^([0-9]+)\.([a-z0-9]+)$")


def read_shard(path: Path, rel: str) -> list[tuple[str, dict[str, bytes]]]:
    """[(key, {suffix: bytes})] in tar order; VerifyError names the shard (and key) on a bad member."""
    samples: list[tuple[str, dict[str, bytes]]] = []
    seen: set[str] = set()
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                m = MEMBER_RE.match(member.name)
                if not member.isreg() or not m:
                    raise VerifyError(f"{rel}: unsafe or unexpected member {member.name!r}", "artifact members are plain files named <key>.<ext>; rebuild it", path=rel)
                key, suffix = m.groups()
                if not samples or samples[-1][0] != key:
                    if key in seen:
                        raise VerifyError(f"{rel}: sample {key} is split across the tar", "rebuild the artifact", path=rel)
                    seen.add(key)
                    samples.append((key, {}))
                parts = samples[-1][1]
                if suffix in parts:
                    raise VerifyError(f"{rel}: sample {key} has a repeated member {member.name!r}", "rebuild the artifact", path=rel)
                parts[suffix] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise VerifyError(f"{rel}: not a readable tar ({exc})", "re-download or rebuild the artifact", path=rel) from None
    return samples


def image_suffix(parts: dict[str, bytes]) -> str | None:
    found = [s for s in parts if s in fmt.IMAGE_EXTS or s == fmt.PIXELS_EXT]
    return found[0] if len(found) == 1 else None


def decode_member(ext: str, data: bytes, shape, key: str, resize: int | None = None) -> torch.Tensor:
    """A sample's image: uint8 (C, H, W) decoded as the loaders decode, or a format-1.1 float image as stored."""
    if ext != fmt.PIXELS_EXT:
        return decode_image(data, shape, key, resize)
    try:
        return fmt.read_pixels(data, shape)
    except ValueError as exc:
        raise ArtifactError(f"sample {key}: {key}.{ext} {exc}", "run slc verify on the artifact") from None


def sample_labels(data: bytes, rel: str, key: str) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors(data)
    except Exception as exc:
        raise VerifyError(f"{rel}: sample {key}: unreadable safetensors ({exc})", "rebuild the artifact", path=rel) from None


HUB_HINT = "open it with sl_compiler.hub.open_artifact(uri) (the CLI does), or download it first with slc pull OWNER/NAME@REV --out DIR"


def resolve_path(path: str | Path) -> Path:
    """A local artifact folder. ``hf://`` references belong to sl_compiler.hub, above this package."""
    if str(path).startswith("hf://"):
        raise ArtifactError(f"{path} is a Hub reference; the artifact reader opens local folders only", HUB_HINT)
    path = Path(path)
    if not (path / fmt.MANIFEST).is_file():
        raise ArtifactError(f"no artifact at {path} (no {fmt.MANIFEST})", "pass the artifact folder that slc compile or slc import wrote")
    return path


def read_manifest(path: Path) -> dict:
    """The parsed, schema-checked manifest of the artifact folder ``path``."""
    try:
        data = (path / fmt.MANIFEST).read_bytes()
    except OSError as exc:
        raise VerifyError(f"{fmt.MANIFEST}: unreadable ({exc.strerror})", "restore the original manifest or rebuild the artifact", path=fmt.MANIFEST) from None
    manifest = parse_manifest(data)
    check_manifest(manifest)
    return manifest


def load(path: str | Path, verify: bool = False) -> "Artifact":
    """Open the artifact folder ``path``; ``verify=True`` checks every checksum first.

    For ``hf://OWNER/NAME@REV`` use :func:`sl_compiler.hub.open_artifact`.
    """
    path = resolve_path(path)
    if verify:
        from .verify import verify as verify_artifact

        verify_artifact(path)
    return Artifact(path, read_manifest(path))


class Artifact:
    """An artifact in memory: ``images`` (uint8 N,C,H,W, decoded on first use), ``targets``,
    stored ``labels`` (fp16 probs or top-k), ``views`` (recorded view parameters) and metadata."""

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        ds, lab = manifest["dataset"], manifest["labels"]
        self.classes: list[str] = list(ds["classes"])
        self.num_classes: int = ds["num_classes"]
        self.shape: tuple[int, int, int] = (ds["channels"], *ds["resolution"])
        self.mean: tuple[float, ...] = tuple(ds["mean"])
        self.std: tuple[float, ...] = tuple(ds["std"])
        self.resize: int = Preprocess.from_info(ds).resize  # short side before the centre crop, as the teacher saw it
        self.image_space: dict | None = manifest.get("images")  # format 1.1: float images, their dtype and space; None: uint8
        self.learned_lr: float | None = _learned_lr(manifest)
        self.ipc: int | None = manifest["ipc"]
        self.content_hash: str = manifest["content_hash"]
        self.label_kind: str = lab["kind"]
        self.num_views: int = lab["views"]
        self.name, self.version = manifest["name"], manifest["version"]
        self._read_samples()

    def _read_samples(self) -> None:
        keys, raw, targets, sources, labels = [], [], [], [], []
        for shard in self.manifest["shards"]:
            file = self.path / shard["path"]
            if not file.is_file():
                raise ArtifactError(f"{shard['path']} is missing from {self.path}", "re-download or rebuild the artifact; slc verify lists what is wrong")
            for key, parts in read_shard(file, shard["path"]):
                if image_suffix(parts) is None or "cls" not in parts:
                    raise ArtifactError(f"{shard['path']}: sample {key} lacks its image or class", "run slc verify on the artifact")
                try:
                    targets.append(int(parts["cls"]))
                    sources.append(str(json.loads(parts["json"])["source"]))
                except (KeyError, TypeError, ValueError):
                    raise ArtifactError(f"{shard['path']}: sample {key} has a bad .cls or .json", "run slc verify on the artifact") from None
                keys.append(key)
                raw.append(parts)
                if self.label_kind != "hard":
                    labels.append(sample_labels(parts.get("safetensors", b""), shard["path"], key))
        if len(keys) != self.manifest["counts"]["samples"]:
            raise ArtifactError(f"{self.path}: {len(keys)} samples in the shards, {self.manifest['counts']['samples']} in the manifest", "run slc verify on the artifact")
        self.keys: list[str] = keys
        self.source_ids: list[str] = sources
        self.targets = torch.tensor(targets, dtype=torch.int64)
        self._raw = raw
        try:
            stacked = {name: torch.stack([s[name] for s in labels]) for name in labels[0]} if labels else {}
        except (KeyError, RuntimeError):
            raise ArtifactError(f"{self.path}: samples disagree in their label tensors", "run slc verify on the artifact") from None
        self.labels: dict[str, torch.Tensor] = {k: v for k, v in stacked.items() if not k.startswith("view.")}
        self.views: dict[str, torch.Tensor] | None = {k[5:]: v for k, v in stacked.items() if k.startswith("view.")} or None

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"Artifact({self.name} {self.version}, {len(self)} images, {self.label_kind} labels x{self.num_views}, {self.content_hash[:12]})"

    @functools.cached_property
    def images(self) -> torch.Tensor:
        """uint8 (N, C, H, W), decoded once as the dataset loaders decode (the manifest's resize, then the crop), on threads;
        a format-1.1 set's float16/float32 images as stored, in their own space (``image_space``)."""
        dtype = fmt.PIXEL_DTYPES[self.image_space["dtype"]] if self.image_space else torch.uint8
        out = torch.empty((len(self), *self.shape), dtype=dtype)

        def decode(i: int) -> None:
            parts = self._raw[i]
            ext = image_suffix(parts)
            image = decode_member(ext, parts[ext], self.shape, self.keys[i], self.resize)
            if image.dtype != dtype:
                raise ArtifactError(f"sample {self.keys[i]}: a {image.dtype} image in a set of {dtype} images", "run slc verify on the artifact")
            out[i] = image

        with ThreadPoolExecutor(max(1, min(torch.get_num_threads(), len(self) // 64 + 1))) as pool:  # PIL decodes without the GIL
            list(pool.map(decode, range(len(self))))
        return out

    def encoded(self, i: int) -> tuple[bytes, str]:
        """Sample i's image as stored (bytes, ext): re-export without re-encoding."""
        parts = self._raw[i]
        ext = image_suffix(parts)
        return parts[ext], ext

    def sample_bytes(self, i: int) -> dict[str, bytes]:
        """Every stored member of sample i, {suffix: bytes}, exactly as in the shard."""
        return dict(self._raw[i])

    def dense_labels(self) -> torch.Tensor:
        """float32 (N, V, C): stored probabilities; top-k filled by the manifest's rule; hard as one-hot (V=1)."""
        if self.label_kind == "dense":
            return self.labels["probs"].float()
        if self.label_kind == "topk":
            return fmt.dense_from_topk(self.labels["topk_values"], self.labels["topk_indices"], self.num_classes, self.manifest["labels"]["fill"])
        return torch.nn.functional.one_hot(self.targets, self.num_classes).float().unsqueeze(1)

    def torch_dataset(self) -> torch.utils.data.Dataset:
        """A map-style Dataset of (image uint8 (C,H,W), label probs float32 (V,C), target int64)."""
        return torch.utils.data.TensorDataset(self.images, self.dense_labels(), self.targets)

    def shard_urls(self) -> list[str]:
        return [str(self.path / s["path"]) for s in self.manifest["shards"]]

    def wds_stream(self):
        """A webdataset pipeline over the shards yielding (image uint8 (C,H,W), probs float32 (V,C), target)."""
        import webdataset as wds

        decode = functools.partial(decode_sample, shape=self.shape, resize=self.resize, num_classes=self.num_classes, kind=self.label_kind, fill=self.manifest["labels"]["fill"])
        return wds.WebDataset(self.shard_urls(), shardshuffle=False, empty_check=False).map(decode)


def _learned_lr(manifest: dict) -> float | None:
    """The learned student lr a third-party set ships: ``learned_lr``, else (imports before it existed) ``recipe.lr`` of an import."""
    if "learned_lr" in manifest:
        return float(manifest["learned_lr"])
    recipe = manifest.get("recipe", {})
    return float(recipe["lr"]) if recipe.get("importer") and isinstance(recipe.get("lr"), (int, float)) else None


def decode_sample(sample: dict, shape, num_classes: int, kind: str, fill: str | None, resize: int | None = None):
    """One webdataset sample dict (raw bytes per suffix) -> (image, probs (V, C), target)."""
    ext = image_suffix({k: v for k, v in sample.items() if not k.startswith("__")})
    image = decode_member(ext, sample[ext], shape, sample.get("__key__", "sample"), resize)
    target = torch.tensor(int(sample["cls"]), dtype=torch.int64)
    if kind == "hard":
        probs = torch.nn.functional.one_hot(target, num_classes).float().unsqueeze(0)
    else:
        t = load_safetensors(sample["safetensors"])
        probs = t["probs"].float() if kind == "dense" else fmt.dense_from_topk(t["topk_values"], t["topk_indices"], num_classes, fill)
    return image, probs, target


__all__ = ["Artifact", "load", "read_shard", "decode_member", "decode_sample"]
