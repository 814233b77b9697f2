"""Encoded image files read in place: from a folder, or from uncompressed tars without extracting.

A tar is scanned once (its index is cached) and members are then read by offset with
``os.pread``, which is thread-safe; each process opens its own descriptors, so a reader survives a
fork (DataLoader workers). A tar of tars (ImageNet's ``ILSVRC2012_img_train.tar``) is indexed
through: the inner tars' members are located at offsets of the outer file, and read from it.
Member names are validated: an absolute name or one with ``..`` is an error, links and other
non-files are skipped, so nothing a tar holds can point outside it.

Listings of a million files are kept compact (:class:`Names`: one buffer and an offset array, no
Python object per name): small in memory, and shared by forked workers instead of copied page by
page as reference counts change.
"""

from __future__ import annotations

import contextlib
import io
from array import array
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..progress import bar
from . import cache

# file suffix -> the extension recorded for the sample (artifacts store the bytes under it)
IMAGE_EXTS = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "bmp": "bmp", "webp": "webp", "ppm": "ppm", "pgm": "pgm"}
MAGIC = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"BM", "bmp"), (b"P6", "ppm"), (b"P5", "pgm"))


def image_ext(name: str) -> str | None:
    """``jpg``/``png``/... for an image file name, None for anything else."""
    return IMAGE_EXTS.get(name.rpartition(".")[2].lower()) if "." in name else None


def sniff_ext(data: bytes) -> str | None:
    """The image type of encoded bytes from their magic number (``jpg``, ``png``, ...), None if unknown."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((ext for magic, ext in MAGIC if data.startswith(magic)), None)


class Names(Sequence):
    """A sequence of strings stored as one ``\\n``-joined UTF-8 buffer plus int64 offsets.

    1.28M ImageNet ids take about their characters (~50 MB) instead of ~150 MB of str objects,
    and ``joined()`` is the exact bytes of ``"\\n".join(names)`` without building it.
    """

    __slots__ = ("data", "ends")

    def __init__(self, names: Iterable[str] = ()):
        if isinstance(names, Names):
            self.data, self.ends = names.data, names.ends
            return
        names = list(names)
        if any("\n" in n for n in names):
            bad = next(n for n in names if "\n" in n)
            raise DataError(f"file name {bad!r} holds a line break", "rename the file")
        self.data = ("\n".join(names) + "\n").encode() if names else b""
        self.ends = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == 10).astype(np.int64)

    @classmethod
    def from_buffer(cls, data: bytes) -> "Names":
        out = cls.__new__(cls)
        out.data = data
        out.ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10).astype(np.int64)
        return out

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = int(self.ends[i - 1]) + 1 if i else 0
        return self.data[start : int(self.ends[i])].decode()

    def __iter__(self):
        return iter(self.data[:-1].decode().split("\n")) if self.data else iter(())

    def __eq__(self, other) -> bool:
        if isinstance(other, Names):
            return self.data == other.data
        return isinstance(other, (list, tuple)) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Names({len(self)} names)"

    def joined(self) -> bytes:
        """``"\\n".join(self).encode()``."""
        return self.data[:-1]

    def nbytes(self) -> int:
        return len(self.data) + self.ends.nbytes

    def tensor(self) -> torch.Tensor:
        """The buffer as a uint8 tensor (how the cache stores it)."""
        return torch.frombuffer(bytearray(self.data), dtype=torch.uint8) if self.data else torch.zeros(0, dtype=torch.uint8)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> "Names":
        return cls.from_buffer(t.numpy().tobytes())


class Suffixes(Sequence):
    """``exts[i]`` derived from ``ids[i]``'s suffix (``jpg``, ``png``), with no list of its own."""

    def __init__(self, ids: Sequence[str]):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [image_ext(n) for n in self.ids[i]]
        return image_ext(self.ids[i])

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


@dataclass
class TarIndex:
    """The regular files of one tar: names, data offsets and sizes, in archive order; and its folders."""

    path: Path
    names: Names
    offsets: np.ndarray  # int64
    sizes: np.ndarray  # int64
    dirs: list[str]


def scan_tar(path: Path) -> TarIndex:
    """Index a tar (cached by path, size and mtime); unsafe member names raise :class:`DataError`."""
    entry = cache.entry_path(f"tarindex-{path.name}", kind="tarindex", source=cache.file_signature(path))
    hit = cache.load(entry)
    if hit is not None and "names" in hit[0]:
        tensors, meta = hit
        return TarIndex(path, Names.from_tensor(tensors["names"]), tensors["offsets"].numpy(), tensors["sizes"].numpy(), meta["dirs"])
    with open(path, "rb") as f:
        names, offsets, sizes, dirs = _scan(f, path, path.name, path.stat().st_size)
    index = TarIndex(path, Names(names), np.asarray(offsets, dtype=np.int64), np.asarray(sizes, dtype=np.int64), dirs)
    _save_index(entry, index)
    return index


def _save_index(entry: Path, index: TarIndex) -> None:
    cache.save(entry, {"names": index.names.tensor(), "offsets": torch.from_numpy(index.offsets), "sizes": torch.from_numpy(index.sizes)}, {"dirs": index.dirs})


def _scan(fileobj, path: Path, label: str, total: int, base: int = 0, show: bool = True):
    """Members of the tar in ``fileobj``: names, offsets (plus ``base``), sizes, folders."""
    names, offsets, sizes, dirs = [], array("q"), array("q"), []  # arrays: no int object per member
    try:
        with tarfile.open(fileobj=fileobj, mode="r:") as tf, (bar(total, f"index {label}", unit="B") if show else contextlib.nullcontext()) as progress:
            for member in tf:
                if progress is not None:
                    progress.update(member.offset_data + member.size - progress.n)
                check_member_name(member.name, path)
                if member.isdir():
                    dirs.append(member.name.rstrip("/"))
                elif member.isreg() and not member.issparse():  # links, devices, fifos: skipped
                    names.append(member.name)
                    offsets.append(base + member.offset_data)
                    sizes.append(member.size)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read {label} as an uncompressed tar ({exc})", "give a plain .tar (decompress .tar.gz first); slc reads members in place") from None
    return names, offsets, sizes, dirs


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes of an open file from ``start``: an inner tar in place."""

    def __init__(self, fd: int, start: int, size: int):
        self.fd, self.start, self.size, self.pos = fd, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = max(0, {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence])
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buf) -> int:
        n = max(0, min(len(buf), self.size - self.pos))
        data = os.pread(self.fd, n, self.start + self.pos) if n else b""
        buf[: len(data)] = data
        self.pos += len(data)
        return len(data)


def scan_nested_tar(path: Path) -> TarIndex:
    """Index a tar of tars: members ``<inner>.tar/<name>`` at offsets of the *outer* file (cached).

    Only the member headers are read (about 1.28M of 512 bytes for ImageNet's training tar), once;
    afterwards every image is one ``pread`` from the outer tar. Regular members that are not tars
    are indexed as they are.
    """
    entry = cache.entry_path(f"nestedindex-{path.name}", kind="nested-tarindex", source=cache.file_signature(path))
    hit = cache.load(entry)
    if hit is not None and "names" in hit[0]:
        tensors, meta = hit
        return TarIndex(path, Names.from_tensor(tensors["names"]), tensors["offsets"].numpy(), tensors["sizes"].numpy(), meta["dirs"])
    outer = scan_tar(path)
    names, offsets, sizes, dirs = [], array("q"), array("q"), list(outer.dirs)
    fd = os.open(path, os.O_RDONLY)
    try:
        members = list(outer.names)
        for name, start, size in bar(len(members), f"index {path.name}", unit="tar", iterable=list(zip(members, outer.offsets.tolist(), outer.sizes.tolist()))):
            if not name.lower().endswith(".tar"):
                names.append(name)
                offsets.append(start)
                sizes.append(size)
                continue
            inner = io.BufferedReader(_Window(fd, start, size), buffer_size=512)
            n, o, s, d = _scan(inner, path, f"{path}:{name}", size, base=start, show=False)
            names += [f"{name}/{m}" for m in n]
            offsets += o
            sizes += s
            dirs += [f"{name}/{m}" for m in d]
    finally:
        os.close(fd)
    index = TarIndex(path, Names(names), np.asarray(offsets, dtype=np.int64), np.asarray(sizes, dtype=np.int64), dirs)
    _save_index(entry, index)
    return index


def check_member_name(name: str, tar: Path) -> None:
    """Reject member names that could point outside the archive's folder."""
    if name.startswith("/") or ".." in name.split("/") or "\\" in name or "\n" in name:
        raise DataError(f"unsafe tar member {name!r} in {tar}", "rebuild the tar with relative member names and no '..'")


class TarReader:
    """``read(i)``: the bytes of item i, stored in ``paths[file[i]]`` at ``offsets[i]``.

    Descriptors are opened lazily and per process: a forked or unpickled copy opens its own.
    """

    def __init__(self, paths: list[Path], file: np.ndarray, offsets: np.ndarray, sizes: np.ndarray):
        self.paths, self.file, self.offsets, self.sizes = paths, file, offsets, sizes
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def _fd(self, f: int) -> int:
        if self._pid != os.getpid():  # a forked child: the parent's descriptors are not ours to share
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(f)
        if fd is None:  # first read of this file; threads may race here, the loser closes its copy
            try:
                opened = os.open(self.paths[f], os.O_RDONLY)
            except OSError as exc:
                raise DataError(f"cannot open {self.paths[f]} ({exc.strerror})", "restore the tar or reload the dataset") from None
            fd = self._fds.setdefault(f, opened)
            if fd != opened:
                os.close(opened)
        return fd

    def read(self, i: int) -> bytes:
        f = int(self.file[i])
        size = int(self.sizes[i])
        data = os.pread(self._fd(f), size, int(self.offsets[i]))
        if len(data) != size:
            raise DataError(f"{self.paths[f]} is truncated", "replace the tar with a complete copy")
        return data

    def __getstate__(self):  # descriptors are per process: reopen after pickling
        return {**self.__dict__, "_fds": {}}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pid = os.getpid()

    def __del__(self):
        if getattr(self, "_pid", None) == os.getpid():
            for fd in self._fds.values():
                os.close(fd)


class FolderReader:
    """``read(i)``: the bytes of ``root / ids[i]``."""

    def __init__(self, root: Path, ids: Sequence[str]):
        self.root, self.ids = root, ids

    def read(self, i: int) -> bytes:
        try:
            return (self.root / self.ids[i]).read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read {self.root / self.ids[i]} ({exc.strerror})", "restore the file or reload the dataset") from None
