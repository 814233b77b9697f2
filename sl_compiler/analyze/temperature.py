"""``temperature``: student accuracy over the (expert epoch x temperature) grid, per IPC (Figure 5).

Each cell compiles the IPC's random selection labelled by the epoch's expert at temperature T
(``softmax(logits / T)``: T > 1 smooths; the paper's code multiplies the logits by an inverse
temperature), so a rerun shares its artifacts and results with ``slc sweep`` at T = 1.
"""

from __future__ import annotations

from ..errors import RecipeError
from ..plot import series_png
from .cells import Grid, Result, format_epoch, pm, table


def run(grid: Grid, temperatures: list[float]) -> Result:
    if not temperatures or any(not t > 0 for t in temperatures):
        raise RecipeError(f"bad temperature list {temperatures}", "give positive temperatures, e.g. --temperatures 0.5,1,2,4")
    temperatures = sorted(set(float(t) for t in temperatures))
    cells = grid.cells()
    grid.check_budget(len(cells) * len(temperatures), "temperature")
    out, rows = [], []
    for cell in cells:
        for t in temperatures:
            art = grid.base(cell, temperature=t)
            s = grid.score(art)
            out.append({"ipc": cell.ipc, "epoch": cell.epoch, "temperature": t, "content_hash": art.content_hash, "accuracies": s.accuracies, "mean": s.mean, "std": s.std})
            rows.append({"ipc": cell.ipc, "epoch": cell.epoch, "temperature": t, "mean": s.mean, "std": s.std})
    best = {}
    for c in out:
        if c["ipc"] not in best or c["mean"] > best[c["ipc"]]["mean"]:
            best[c["ipc"]] = c
    data = {"kind": "slc-analyze-temperature/1", "settings": {**grid.settings(), "temperatures": temperatures}, "cells": out,
            "best": {str(i): {"epoch": c["epoch"], "temperature": c["temperature"], "mean": c["mean"]} for i, c in sorted(best.items())}}
    return Result("temperature", data, rows, _markdown(grid, out, temperatures, best), _plot(grid, out))


def _markdown(grid: Grid, cells: list[dict], temperatures: list[float], best: dict) -> str:
    lines = [f"Student accuracy (%) on {grid.spec.dataset} over expert epoch x label temperature; protocol {grid.protocol.name} ({grid.protocol_hash})"]
    for ipc in sorted({c["ipc"] for c in cells}):
        at = {(c["epoch"], c["temperature"]): c for c in cells if c["ipc"] == ipc}
        body = [[format_epoch(e), *(f"**{pm(at[e, t]['mean'], at[e, t]['std'])}**" if at[e, t] is best[ipc] else pm(at[e, t]["mean"], at[e, t]["std"]) for t in temperatures)] for e in sorted({e for e, _ in at})]
        lines += ["", f"IPC {ipc}", "", *table(["expert epoch", *(f"T {t:g}" for t in temperatures)], body)]
    return "\n".join(lines) + "\n"


def _plot(grid: Grid, cells: list[dict]) -> bytes:
    keys = sorted({(c["ipc"], c["epoch"]) for c in cells})
    series = [{"label": f"IPC {i}, expert epoch {format_epoch(e)}", "points": [[c["temperature"], c["mean"], c["std"]] for c in cells if (c["ipc"], c["epoch"]) == (i, e)]} for i, e in keys]
    return series_png(series, f"{grid.spec.dataset}: student accuracy against label temperature", "temperature T", "test accuracy (%)", xscale="log")


def report_view(data: dict) -> dict:
    """This analysis's JSON as ``slc report`` draws it: per IPC the (expert epoch x temperature) grid as a heat map, and accuracy against T."""
    from .view import axis, each, need, view

    at_cell = {}
    for at, c in each(data, "", "cells"):
        key = (need(c, at, "ipc", "an integer"), need(c, at, "epoch", "a number"), need(c, at, "temperature", "a number"))
        at_cell[key] = (need(c, at, "mean", "a number"), need(c, at, "std", "a number or null"))
    ipcs = sorted({k[0] for k in at_cell})
    temperatures = sorted({k[2] for k in at_cell})
    heatmaps, series, rows = [], [], []
    for ipc in ipcs:
        epochs = sorted({k[1] for k in at_cell if k[0] == ipc})
        values = [[at_cell.get((ipc, e, t), (float("nan"), None))[0] for t in temperatures] for e in epochs]
        heatmaps.append({"title": f"IPC {ipc}: student accuracy (%) over expert epoch x temperature", "rows": [format_epoch(e) for e in epochs], "columns": [f"{t:g}" for t in temperatures],
                         "values": values, "xlabel": "temperature T", "ylabel": "expert epoch", "colorbar": "test accuracy (%)"})
        for e in epochs:
            series.append({"label": f"IPC {ipc}, expert epoch {format_epoch(e)}", "style": "line", "points": [[t, *at_cell[ipc, e, t]] for t in temperatures if (ipc, e, t) in at_cell]})
            rows += [[ipc, format_epoch(e), t, *at_cell[ipc, e, t]] for t in temperatures if (ipc, e, t) in at_cell]
    notes = []
    for ipc, best in sorted((need(data, "", "best", "an object") or {}).items()):
        if isinstance(best, dict) and {"epoch", "temperature", "mean"} <= set(best):
            notes.append(f"Best at IPC {ipc}: expert epoch {format_epoch(best['epoch'])}, T {best['temperature']:g}, {best['mean']:.1f} %.")
    fig = {"title": "Student accuracy against label temperature", "x": axis("temperature T", "log"), "y": axis("test accuracy (%)"), "series": series}
    table_ = {"title": "Student accuracy (%) per (IPC, expert epoch, temperature)", "columns": ["IPC", "expert epoch", "T", "accuracy (%)", "std"], "rows": rows}
    return view(data, "temperature", "Label temperature: student accuracy over expert epoch x temperature", [fig], [table_], heatmaps, notes)
