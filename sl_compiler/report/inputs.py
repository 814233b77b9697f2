"""What ``slc report`` reads: result JSON files of the kinds it knows, each checked field by field.

A file's ``kind`` says what it is:

- ``slc-evaluate/1``: ``slc evaluate --out`` (:func:`sl_compiler.evaluate.tables.check_result`);
- ``slc-sweep/1``: ``slc sweep``'s ``sweep.json`` (slc 0.1.0's carried no ``kind`` and is known by
  its keys: ``spec``, ``protocol``, ``cells``, ``best``, ``pareto``);
- ``slc-analysis/1``: an analysis (scaling law, entropy, ...) as figures, tables and heat maps
  (:data:`ANALYSIS_SHAPE`), so that a new analysis renders without new report code;
- ``slc-analyze-<name>/1``: ``slc analyze NAME``'s ``<name>.json``, turned into that shape by the
  analysis module's own ``report_view`` (:mod:`sl_compiler.analyze`); the Input's kind is then
  ``slc-analysis/1`` and ``source_kind`` says what the file was.

Anything else, or a known kind with a missing or mistyped field, is an EvaluateError that names the
file and the field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import EvaluateError
from ..evaluate.tables import RESULT_KIND, Fields, check_result, is_a, short

SWEEP_KIND = "slc-sweep/1"
ANALYSIS_KIND = "slc-analysis/1"
ANALYZE_PREFIX = "slc-analyze-"  # + the analysis's name + "/1": slc analyze's own JSON
ANALYZE_VERSION = "1"
KINDS = (RESULT_KIND, SWEEP_KIND, ANALYSIS_KIND, f"{ANALYZE_PREFIX}<name>/{ANALYZE_VERSION}")
SWEEP_KEYS = {"spec", "protocol", "cells", "best", "pareto"}
FIX = f"pass result files slc wrote: {', '.join(KINDS)} (slc evaluate --out, slc sweep's sweep.json, analyses, slc analyze's <name>.json)"

# an analysis result, as the report reads it (every list may be empty)
ANALYSIS_SHAPE = """\
{"kind": "slc-analysis/1", "analysis": "scaling", "title": "...", "slc_version": "...", "settings": {...},
 "figures": [{"title": "...", "x": {"label": "...", "scale": "linear|log"}, "y": {"label": "...", "scale": "linear|log"},
              "series": [{"label": "...", "style": "line|points|dashed", "points": [[x, y, error or null], ...]}]}],
 "tables": [{"title": "...", "columns": ["...", ...], "rows": [[value, ...], ...]}],
 "heatmaps": [{"title": "...", "rows": ["...", ...], "columns": ["...", ...], "values": [[number, ...], ...]}],
 "notes": ["...", ...]}"""
STYLES = ("line", "points", "dashed")
SCALES = ("linear", "log")


@dataclass(frozen=True)
class Input:
    """One result file: where it was, its sha256, its kind and its checked JSON."""

    path: Path
    sha256: str
    kind: str
    data: dict
    source_kind: str | None = None  # the file's own kind when it was converted (slc analyze's JSON)


def load_inputs(paths: list[str | Path]) -> list[Input]:
    """Read and check every file; none at all is refused."""
    if not paths:
        raise EvaluateError("no results given: a report of nothing", FIX)
    return [load_input(p) for p in paths]


def load_input(path: str | Path) -> Input:
    import json

    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EvaluateError(f"results file {path} does not exist", FIX) from None
    except IsADirectoryError:
        raise EvaluateError(f"results file {path} is a folder", FIX) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluateError(f"results file {path} is not JSON ({exc})", FIX) from None
    where = str(path)
    if not isinstance(data, dict):
        raise EvaluateError(f"{where}: holds a JSON {type(data).__name__}, not a result object", FIX)
    kind = data.get("kind")
    if kind is None and SWEEP_KEYS <= set(data):
        kind = SWEEP_KIND
    if kind == RESULT_KIND:
        check_result(data, where)
    elif kind == SWEEP_KIND:
        check_sweep(data, where)
    elif kind == ANALYSIS_KIND:
        check_analysis(data, where)
    elif isinstance(kind, str) and kind.startswith(ANALYZE_PREFIX) and kind.endswith(f"/{ANALYZE_VERSION}"):
        view = analyze_view(data, kind, where)
        return Input(path, hashlib.sha256(raw).hexdigest(), ANALYSIS_KIND, view, source_kind=kind)
    else:
        families = {k.split("/")[0]: k for k in KINDS[:3]}
        if isinstance(kind, str) and kind.startswith(ANALYZE_PREFIX):
            families[kind.split("/")[0]] = f"{kind.split('/')[0]}/{ANALYZE_VERSION}"
        family = families.get(str(kind).split("/")[0]) if isinstance(kind, str) else None
        if family:
            version = data.get("slc_version", "another version")
            raise EvaluateError(f"{where}: field `kind` is {kind!r}, written by slc {version}; this slc reads {family}", f"report it with slc {version}, or make it again with this one")
        shown = "missing" if "kind" not in data else short(kind)
        raise EvaluateError(f"{where}: field `kind` is {shown}: not a result this report knows ({', '.join(KINDS)})", FIX)
    return Input(path, hashlib.sha256(raw).hexdigest(), kind, data)


def analyze_view(data: dict, kind: str, where: str) -> dict:
    """``slc analyze``'s JSON of ``kind`` as an ``slc-analysis/1`` result, through its module's ``report_view``.

    The analysis modules import torch and the sweep, so they are imported here, when such a file
    is read, not when the report is. A missing or mistyped field is the report's usual error.
    """
    import importlib

    from ..analyze import ANALYSES
    from ..analyze.view import BadField

    name = kind[len(ANALYZE_PREFIX):-len(f"/{ANALYZE_VERSION}")]
    if name not in ANALYSES:
        raise EvaluateError(f"{where}: field `kind` is {kind!r}: not an analysis this slc knows ({', '.join(ANALYSES)})", FIX)
    f = Fields(where, kind, FIX)
    try:
        view = importlib.import_module(f"sl_compiler.analyze.{name}").report_view(data)
    except BadField as exc:
        f.fail(exc.field, f"{exc.problem} (an {kind} result has it)" if exc.problem == "is missing" else exc.problem)
    return check_analysis(view, where)


def check_sweep(data: dict, where: str) -> dict:
    """A sweep.json (:meth:`sl_compiler.sweep.SweepResult.to_json`) with what the report draws."""
    f = Fields(where, SWEEP_KIND, FIX)
    spec = f.get(data, "", "spec", "an object")
    for key in ("dataset", "teacher_arch"):
        f.get(spec, "spec", key, "a string")
    f.get(data, "", "protocol", "an object")
    cells = f.get(data, "", "cells", "a list")
    if not cells:
        f.fail("cells", "is empty: the sweep measured nothing")
    for i, cell in enumerate(cells):
        at = f"cells[{i}]"
        if not isinstance(cell, dict):
            f.fail(at, "is not an object")
        f.get(cell, at, "ipc", "an integer")
        f.get(cell, at, "epoch", "a number")
        f.get(cell, at, "mean", "a number")
        f.get(cell, at, "std", "a number or null")
        f.get(cell, at, "teacher", "a string")
        f.get(cell, at, "content_hash", "a string")
    f.get(data, "", "best", "an object")
    for i, point in enumerate(f.get(data, "", "pareto", "a list")):
        at = f"pareto[{i}]"
        if not isinstance(point, dict):
            f.fail(at, "is not an object")
        f.get(point, at, "ipc", "an integer")
        f.get(point, at, "epoch", "a number")
        f.get(point, at, "mean", "a number")
    return data


def sweep_chosen_on(data: dict) -> str:
    """How a sweep chose its best epoch, in words: a file without ``select_on`` (slc 0.1.0) chose on test."""
    return "chosen on a held-out slice of the training split" if data.get("select_on", "test") == "holdout" else "chosen on test accuracy"


def check_analysis(data: dict, where: str) -> dict:
    """An ``slc-analysis/1`` result (:data:`ANALYSIS_SHAPE`)."""
    f = Fields(where, ANALYSIS_KIND, FIX)
    for key in ("analysis", "title"):
        f.get(data, "", key, "a string")
    f.get(data, "", "settings", "an object", optional=True)
    for i, fig in enumerate(f.get(data, "", "figures", "a list", optional=True) or []):
        at = f"figures[{i}]"
        if not isinstance(fig, dict):
            f.fail(at, "is not an object")
        f.get(fig, at, "title", "a string")
        for axis in ("x", "y"):
            ax = f.get(fig, at, axis, "an object")
            f.get(ax, f"{at}.{axis}", "label", "a string")
            scale = f.get(ax, f"{at}.{axis}", "scale", "a string", optional=True)
            if scale is not None and scale not in SCALES:
                f.fail(f"{at}.{axis}.scale", f"is {scale!r}, not one of {', '.join(SCALES)}")
        for j, series in enumerate(f.get(fig, at, "series", "a list")):
            s = f"{at}.series[{j}]"
            if not isinstance(series, dict):
                f.fail(s, "is not an object")
            f.get(series, s, "label", "a string")
            style = f.get(series, s, "style", "a string", optional=True)
            if style is not None and style not in STYLES:
                f.fail(f"{s}.style", f"is {style!r}, not one of {', '.join(STYLES)}")
            for k, point in enumerate(f.get(series, s, "points", "a list")):
                ok = isinstance(point, list) and len(point) in (2, 3) and is_a(point[0], "a number") and is_a(point[1], "a number") and (len(point) == 2 or is_a(point[2], "a number or null"))
                if not ok:
                    f.fail(f"{s}.points[{k}]", f"is {short(point)}, not [x, y] or [x, y, error]")
    for i, table in enumerate(f.get(data, "", "tables", "a list", optional=True) or []):
        at = f"tables[{i}]"
        if not isinstance(table, dict):
            f.fail(at, "is not an object")
        f.get(table, at, "title", "a string")
        columns = f.get(table, at, "columns", "a list")
        for k, row in enumerate(f.get(table, at, "rows", "a list")):
            if not isinstance(row, list) or len(row) != len(columns):
                f.fail(f"{at}.rows[{k}]", f"is not a list of {len(columns)} values (one per column)")
    for i, heat in enumerate(f.get(data, "", "heatmaps", "a list", optional=True) or []):
        at = f"heatmaps[{i}]"
        if not isinstance(heat, dict):
            f.fail(at, "is not an object")
        f.get(heat, at, "title", "a string")
        rows, columns = f.get(heat, at, "rows", "a list"), f.get(heat, at, "columns", "a list")
        values = f.get(heat, at, "values", "a list")
        if len(values) != len(rows) or any(not isinstance(r, list) or len(r) != len(columns) or not all(is_a(v, "a number") for v in r) for r in values):
            f.fail(f"{at}.values", f"is not {len(rows)} rows of {len(columns)} numbers")
    notes = f.get(data, "", "notes", "a list", optional=True) or []
    if not all(isinstance(n, str) for n in notes):
        f.fail("notes", "is not a list of strings")
    return data
