"""A cache of decoded datasets and tar indexes, as safetensors files in ``$SLC_CACHE``.

Decoding 50,000 JPEGs or scanning a large tar takes seconds to minutes; reading the result back
takes a fraction of a second. An entry is keyed by what it was built from (each source file's
resolved path, size and mtime, plus the build parameters), so a changed source misses the cache
instead of returning stale pixels. The cache is only an optimisation: an unreadable entry is
rebuilt, an unwritable cache folder is skipped with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = 2  # bump when what an entry holds changes, so old entries miss (2: torchvision's resize arithmetic, compact names)


def cache_dir() -> Path:
    """``$SLC_CACHE/data``, default ``~/.cache/slc/data``."""
    return Path(os.environ.get("SLC_CACHE") or "~/.cache/slc").expanduser() / "data"


def file_signature(path: Path) -> list:
    """What identifies a source file's content cheaply: resolved path, size, mtime (ns)."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def entry_path(label: str, **key) -> Path:
    """The cache file for ``key`` (any JSON-able values); ``label`` keeps file names readable."""
    digest = hashlib.sha256(json.dumps({"format": FORMAT, **key}, sort_keys=True, default=str).encode()).hexdigest()
    return cache_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}-{digest[:32]}.safetensors"


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """Tensors and JSON metadata of an entry, or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("slc", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # a truncated or foreign file: rebuild it
        return None
    return tensors, meta


def save(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write an entry atomically (temp file, then rename): readers never see half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
        os.close(fd)
        try:
            save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata={"slc": json.dumps(meta, sort_keys=True)})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        warnings.warn(f"slc: cannot write the data cache at {path.parent} ({exc}); set SLC_CACHE to a writable folder", stacklevel=2)
