"""What an analysis's ``report_view`` shares: reading its own JSON with every bad field named.

``report_view(data)`` in each analysis module turns the module's ``slc-analyze-<name>/1`` JSON into
the report's generic ``slc-analysis/1`` shape (:data:`sl_compiler.report.inputs.ANALYSIS_SHAPE`).
It reads fields through :func:`need` and :func:`each`, which raise :class:`BadField` with the
field's path (``cells[0].swaps``); ``slc report`` turns that into its one-line error.
"""

from __future__ import annotations

from ..evaluate.tables import is_a, short


class BadField(ValueError):
    """A field of an analysis's JSON that is missing or of the wrong type: its path and the problem."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"field `{field}` {problem}")
        self.field, self.problem = field, problem


def need(obj: dict, at: str, key: str, kind: str):
    """``obj[key]``, which must be ``kind`` ("a number", "an object", ...; see :func:`is_a`)."""
    path = f"{at}.{key}" if at else key
    if not isinstance(obj, dict) or key not in obj:
        raise BadField(path, "is missing")
    value = obj[key]
    if not is_a(value, kind):
        raise BadField(path, f"is {type(value).__name__} {short(value)}, not {kind}")
    return value


def each(obj: dict, at: str, key: str, empty_ok: bool = False):
    """``(path, item)`` for each object of the list ``obj[key]``."""
    items = need(obj, at, key, "a list")
    path = f"{at}.{key}" if at else key
    if not items and not empty_ok:
        raise BadField(path, "is empty")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadField(f"{path}[{i}]", f"is {short(item)}, not an object")
        yield f"{path}[{i}]", item


def view(data: dict, name: str, title: str, figures=(), tables=(), heatmaps=(), notes=()) -> dict:
    """The ``slc-analysis/1`` object, with the analysis's settings as they are."""
    settings = need(data, "", "settings", "an object")
    return {"kind": "slc-analysis/1", "analysis": name, "title": title, "slc_version": str(settings.get("slc_version", "")), "settings": settings,
            "figures": list(figures), "tables": list(tables), "heatmaps": list(heatmaps), "notes": list(notes)}


def axis(label: str, scale: str = "linear") -> dict:
    return {"label": label, "scale": scale}
