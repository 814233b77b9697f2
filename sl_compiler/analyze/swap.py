"""``swap``: which ranks of a soft label carry the knowledge (Figure 4, the paper's ``ablation_k``).

Per (IPC, expert epoch) cell and swap index i, each image's i-th largest probability trades
places with its smallest; students train on the result and the accuracy is reported relative to
the unswapped labels. The paper finds the top ranks matter most, and more so at small IPC.
"""

from __future__ import annotations

from ..errors import RecipeError
from ..plot import series_png
from .cells import Grid, Result, derive, format_epoch, pm, table
from .transforms import swap_ith


def check_indices(indices: list[int], classes: int) -> None:
    for i in indices:
        if not 1 <= i <= classes - 1:
            raise RecipeError(f"swap index {i} is beyond the {classes} classes (the {classes}-th largest is the smallest itself)", f"pass --index values in 1..{classes - 1}")


def run(grid: Grid, indices: list[int] | None = None) -> Result:
    indices = sorted(set(indices or range(1, grid.num_classes)))
    check_indices(indices, grid.num_classes)
    cells = grid.cells()
    grid.check_budget(len(cells) * (1 + len(indices)), "swap")
    out, rows = [], []
    for cell in cells:
        base = grid.base(cell)
        control = grid.score(base)
        entry = {"ipc": cell.ipc, "epoch": cell.epoch, "content_hash": base.content_hash, "control": _score(control), "swaps": {}}
        for i in indices:
            got = grid.score(derive(base, {"swap": i}, swap_ith(base.dense_labels(), i)))
            relative = 100.0 * got.mean / control.mean if control.mean > 0 else None
            entry["swaps"][str(i)] = {**_score(got), "relative": relative}
            rows.append({"ipc": cell.ipc, "epoch": cell.epoch, "swap": i, "mean": got.mean, "std": got.std, "control_mean": control.mean, "relative": relative})
        out.append(entry)
    data = {"kind": "slc-analyze-swap/1", "settings": {**grid.settings(), "indices": indices}, "cells": out}
    return Result("swap", data, rows, _markdown(grid, out, indices), _plot(grid, out))


def _score(s) -> dict:
    return {"accuracies": s.accuracies, "mean": s.mean, "std": s.std}


def _markdown(grid: Grid, cells: list[dict], indices: list[int]) -> str:
    lines = [f"Swap test on {grid.spec.dataset} ({grid.num_classes} classes): the i-th largest label value swapped with the smallest; "
             f"student accuracy (%) and, in brackets, relative to unswapped; protocol {grid.protocol.name} ({grid.protocol_hash})", ""]
    header = ["swap i", *(f"IPC {c['ipc']} e{format_epoch(c['epoch'])}" for c in cells)]
    body = [["none", *(pm(c["control"]["mean"], c["control"]["std"]) for c in cells)]]
    for i in indices:
        body.append([str(i), *(f"{pm(c['swaps'][str(i)]['mean'], c['swaps'][str(i)]['std'])} ({_rel(c['swaps'][str(i)]['relative'])})" for c in cells)])
    return "\n".join([*lines, *table(header, body)]) + "\n"


def _rel(v) -> str:
    return "n/a" if v is None else f"{v:.0f} %"


def _plot(grid: Grid, cells: list[dict]) -> bytes:
    series = [{"label": f"IPC {c['ipc']}, expert epoch {format_epoch(c['epoch'])}", "points": [[int(i), s["relative"], None] for i, s in c["swaps"].items() if s["relative"] is not None]} for c in cells]
    return series_png(series, f"{grid.spec.dataset}: i-th label swapped with the smallest", "swapped rank i", "accuracy relative to unswapped (%)")


def report_view(data: dict) -> dict:
    """This analysis's JSON as ``slc report`` draws it: accuracy relative to unswapped against the swapped rank, one curve per (IPC, epoch)."""
    from .view import axis, each, need, view

    series, rows = [], []
    for at, cell in each(data, "", "cells"):
        ipc, epoch = need(cell, at, "ipc", "an integer"), need(cell, at, "epoch", "a number")
        control = need(cell, at, "control", "an object")
        rows.append([ipc, format_epoch(epoch), "none", need(control, f"{at}.control", "mean", "a number"), need(control, f"{at}.control", "std", "a number or null"), 100.0])
        points = []
        swaps = need(cell, at, "swaps", "an object")
        for i, got in sorted(swaps.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else -1):
            s = f"{at}.swaps.{i}"
            if not i.isdigit() or not isinstance(got, dict):
                _bad_swap(s)
            relative = need(got, s, "relative", "a number or null")
            rows.append([ipc, format_epoch(epoch), int(i), need(got, s, "mean", "a number"), need(got, s, "std", "a number or null"), relative])
            if relative is not None:
                points.append([int(i), relative, None])
        series.append({"label": f"IPC {ipc}, expert epoch {format_epoch(epoch)}", "style": "line", "points": points})
    fig = {"title": "The i-th largest label value swapped with the smallest", "x": axis("swapped rank i"), "y": axis("accuracy relative to unswapped (%)"), "series": series}
    table_ = {"title": "Student accuracy (%) per swapped rank", "columns": ["IPC", "expert epoch", "swap i", "accuracy (%)", "std", "relative (%)"], "rows": rows}
    return view(data, "swap", "Swap test: which ranks of a soft label carry the knowledge", [fig], [table_])


def _bad_swap(field: str):
    from .view import BadField

    raise BadField(field, "is not a swap index (a positive integer) with an object of scores")
