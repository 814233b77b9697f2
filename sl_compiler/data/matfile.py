"""A reader and writer for the small MATLAB 5 (``-v6``/``-v7``) files ImageNet's devkit ships.

``ILSVRC2012_devkit_t12/data/meta.mat`` maps the ground truth's class ids (ILSVRC2012_ID, not
in wnid order) to wnids and names. It is a MAT-file version 5: a 128-byte header, then tagged data
elements, each variable a ``miMATRIX`` (optionally zlib-compressed, ``miCOMPRESSED``). This module
reads struct arrays, cell arrays, char arrays and numeric arrays, which is everything the devkit
uses, so slc needs no scipy; anything else (sparse, objects, complex) is a clear error. ``write``
makes such files for the fake ImageNet (``fake.py``).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ..errors import DataError

# data types of a tag
NUMERIC = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
MI_MATRIX, MI_COMPRESSED, MI_UTF8, MI_UTF16, MI_UTF32 = 14, 15, 16, 17, 18
# array classes of a matrix
MX_CELL, MX_STRUCT, MX_CHAR = 1, 2, 4
MX_NUMERIC = {6, 7, 8, 9, 10, 11, 12, 13, 14, 15}


class _Reader:
    def __init__(self, data: bytes, order: str, name: str):
        self.data, self.order, self.name = data, order, name

    def fail(self, what: str):
        raise DataError(f"{self.name} is not a MAT-file slc can read ({what})", "use the devkit's data/meta.mat as distributed, or a map_clsloc.txt")

    def tag(self, pos: int) -> tuple[int, int, int, int]:
        """(type, nbytes, data start, next element) of the element at ``pos``."""
        if pos + 8 > len(self.data):
            self.fail("a data element runs past the end")
        first, second = struct.unpack_from(self.order + "II", self.data, pos)
        if first >> 16:  # small data element: size and type in 4 bytes, data in the next 4
            return first & 0xFFFF, first >> 16, pos + 4, pos + 8
        end = pos + 8 + second
        if end > len(self.data):
            self.fail("a data element runs past the end")
        return first, second, pos + 8, end if first == MI_COMPRESSED else pos + 8 + ((second + 7) // 8) * 8

    def values(self, pos: int) -> tuple[np.ndarray | str, int]:
        """The numeric (or text) payload of the element at ``pos`` and where the next one starts."""
        kind, n, start, nxt = self.tag(pos)
        raw = self.data[start : start + n]
        if kind in NUMERIC:
            return np.frombuffer(raw, dtype=np.dtype(NUMERIC[kind]).newbyteorder(self.order)), nxt
        if kind == MI_UTF8:
            return raw.decode("utf-8"), nxt
        if kind == MI_UTF16:
            return raw.decode("utf-16-le" if self.order == "<" else "utf-16-be"), nxt
        if kind == MI_UTF32:
            return raw.decode("utf-32-le" if self.order == "<" else "utf-32-be"), nxt
        self.fail(f"data type {kind} where numbers or text belong")

    def element(self, pos: int):
        """(value, next position) of the variable element at ``pos``: (name, value) for a matrix."""
        kind, n, start, nxt = self.tag(pos)
        if kind == MI_COMPRESSED:
            try:
                inner = zlib.decompress(self.data[start : start + n])
            except zlib.error as exc:
                self.fail(f"corrupt compressed data: {exc}")
            name, value = _Reader(inner, self.order, self.name).matrix(0)[:2]
            return (name, value), nxt
        if kind != MI_MATRIX:
            self.fail(f"a top-level element of type {kind}")
        name, value, _ = self.matrix(pos)
        return (name, value), nxt

    def matrix(self, pos: int):
        """(name, value, next) of the miMATRIX element at ``pos``."""
        kind, n, start, nxt = self.tag(pos)
        if kind != MI_MATRIX:
            self.fail(f"type {kind} where an array belongs")
        if n == 0:  # an empty array
            return "", np.zeros((0, 0)), nxt
        flags, p = self.values(start)
        mx = int(flags[0]) & 0xFF
        if int(flags[0]) & 0x0800:
            self.fail("a complex array")
        dims, p = self.values(p)
        dims = tuple(int(d) for d in dims)
        name, p = self.values(p)
        name = name.tobytes().decode("ascii", "replace") if isinstance(name, np.ndarray) else name
        count = int(np.prod(dims)) if dims else 0
        if mx in MX_NUMERIC:
            real, p = self.values(p)
            return name, np.asarray(real).reshape(dims, order="F"), nxt
        if mx == MX_CHAR:
            text, p = self.values(p)
            if isinstance(text, np.ndarray):
                text = "".join(map(chr, text.tolist()))
            rows = dims[0] if dims else 0
            if rows <= 1:
                return name, text, nxt
            cols = len(text) // rows  # column-major: character j of row i is text[j * rows + i]
            return name, ["".join(text[j * rows + i] for j in range(cols)) for i in range(rows)], nxt
        if mx == MX_CELL:
            cells = []
            for _ in range(count):
                _, value, p = self.matrix(p)
                cells.append(value)
            return name, cells, nxt
        if mx == MX_STRUCT:
            width, p = self.values(p)
            raw, p = self.values(p)
            raw = raw.tobytes() if isinstance(raw, np.ndarray) else raw.encode()
            size = int(width[0])
            fields = [raw[i : i + size].split(b"\0", 1)[0].decode("ascii") for i in range(0, len(raw), size)] if size else []
            items = []
            for _ in range(count):
                item = {}
                for f in fields:
                    _, value, p = self.matrix(p)
                    item[f] = value
                items.append(item)
            return name, items, nxt
        self.fail(f"array class {mx} (sparse, object or function handle)")


def read(data: bytes, name: str = "MAT-file") -> dict:
    """``{variable: value}`` of a MAT-file 5: numeric arrays as numpy (MATLAB's shape), text as str,
    struct arrays as lists of dicts (column-major order), cell arrays as lists."""
    if len(data) < 128:
        raise DataError(f"{name} is too short to be a MAT-file", "use the devkit's data/meta.mat as distributed")
    if data[512:520] == b"\x89HDF\r\n\x1a\n":
        raise DataError(f"{name} is a MATLAB 7.3 (HDF5) file", "save it again with MATLAB's -v7 option, or use a map_clsloc.txt")
    order = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if order is None:
        raise DataError(f"{name} is not a MAT-file 5 (no endian mark)", "use the devkit's data/meta.mat as distributed")
    reader = _Reader(data, order, name)
    out, pos = {}, 128
    while pos + 8 <= len(data):
        (var, value), pos = reader.element(pos)
        out[var] = value
    return out


# ------------------------------------------------------------------------------------------ writing


def _element(kind: int, payload: bytes) -> bytes:
    if len(payload) <= 4 and kind != MI_MATRIX:  # small data element, as MATLAB writes short ones
        return struct.pack("<HH", kind, len(payload)) + payload.ljust(4, b"\0")
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _matrix(name: str, value) -> bytes:
    if isinstance(value, str):
        mx, dims = MX_CHAR, (1, len(value))
        body = _element(MI_UTF8, value.encode("utf-8"))
    elif isinstance(value, list) and value and isinstance(value[0], dict):  # a struct array (1 x N) of dicts with the same keys
        fields = list(value[0]) if value else []
        width = max([len(f) for f in fields] + [0]) + 1
        body = _element(5, struct.pack("<i", width)) + _element(1, b"".join(f.encode().ljust(width, b"\0") for f in fields))
        body += b"".join(_matrix("", item[f]) for item in value for f in fields)
        mx, dims = MX_STRUCT, (1, len(value))
    else:
        arr = np.atleast_2d(np.asarray(value, dtype=np.float64))
        mx, dims = 6, arr.shape
        if arr.size == 0:
            return struct.pack("<II", MI_MATRIX, 0)
        if np.all(arr == np.round(arr)) and arr.min() >= 0 and arr.max() < 256:
            body = _element(2, arr.astype(np.uint8).tobytes(order="F"))  # MATLAB stores whole doubles as the smallest type
        else:
            body = _element(9, arr.astype("<f8").tobytes(order="F"))
    head = _element(6, struct.pack("<II", mx, 0)) + _element(5, struct.pack(f"<{len(dims)}i", *dims)) + _element(1, name.encode())
    return _element(MI_MATRIX, head + body)


def write(variables: dict, compress: bool = True) -> bytes:
    """A MAT-file 5 holding ``variables`` (str, numbers or arrays, lists of dicts as struct arrays)."""
    text = b"MATLAB 5.0 MAT-file, written by slc".ljust(116, b" ")
    out = [text, b"\0" * 8, struct.pack("<H", 0x0100), b"IM"]
    for name, value in variables.items():
        element = _matrix(name, value)
        out.append(struct.pack("<II", MI_COMPRESSED, len(z := zlib.compress(element, 6))) + z if compress else element)
    return b"".join(out)
