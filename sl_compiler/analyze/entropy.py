"""``entropy``: how an expert's labels change along its trajectory (Figure 2).

Per expert epoch: the expert's test accuracy (as the store recorded it, the mean over the seeds),
the mean entropy (nats) of its labels on the IPC's fixed random selection (the same images at
every epoch: the selection depends on the seed alone), and the student accuracy of that artifact
when a cache holds it (this analysis's, or ``--sweep DIR``'s), or trained here with ``train``.
"""

from __future__ import annotations

from ..plot import figure, png
from .cells import Grid, Result, format_epoch, pm, table
from .transforms import entropy


def run(grid: Grid, train: bool = False) -> Result:
    cells = grid.cells()
    if train:
        grid.check_budget(len(cells), "entropy")
    out, rows = [], []
    for cell in cells:
        art = grid.base(cell)
        s = grid.score(art) if train else grid.cached(art)
        e = float(entropy(art.dense_labels()).mean())
        entry = {"ipc": cell.ipc, "epoch": cell.epoch, "content_hash": art.content_hash, "expert_accuracy": grid.expert_accuracy(cell.epoch), "entropy": e,
                 "student": None if s is None else {"accuracies": s.accuracies, "mean": s.mean, "std": s.std}}
        out.append(entry)
        rows.append({"ipc": cell.ipc, "epoch": cell.epoch, "expert_accuracy": entry["expert_accuracy"], "entropy": e, "student_mean": None if s is None else s.mean, "student_std": None if s is None else s.std})
    data = {"kind": "slc-analyze-entropy/1", "settings": {**grid.settings(), "train": train}, "cells": out}
    return Result("entropy", data, rows, _markdown(grid, out), _plot(grid, out))


def _markdown(grid: Grid, cells: list[dict]) -> str:
    ipcs = sorted({c["ipc"] for c in cells})
    at = {(c["ipc"], c["epoch"]): c for c in cells}
    header = ["expert epoch", "expert accuracy (%)", *(f"entropy IPC {i}" for i in ipcs), *(f"student IPC {i}" for i in ipcs)]
    body = []
    for epoch in sorted({c["epoch"] for c in cells}):
        acc = at[ipcs[0], epoch]["expert_accuracy"]
        students = [at[i, epoch]["student"] for i in ipcs]
        body.append([format_epoch(epoch), "" if acc is None else f"{acc:.1f}", *(f"{at[i, epoch]['entropy']:.3f}" for i in ipcs),
                     *("not run" if s is None else pm(s["mean"], s["std"]) for s in students)])
    title = f"Label entropy (nats, mean over the IPC's random selection) along the {grid.spec.teacher_arch} trajectory on {grid.spec.dataset}; protocol {grid.protocol.name} ({grid.protocol_hash})"
    return "\n".join([title, "", *table(header, body)]) + "\n"


def _plot(grid: Grid, cells: list[dict]) -> bytes:
    ipcs = sorted({c["ipc"] for c in cells})
    with figure(6.4, 6.0, dpi=120) as fig:
        top, bottom = fig.subplots(2, 1, sharex=True)
        first = sorted((c for c in cells if c["ipc"] == ipcs[0]), key=lambda c: c["epoch"])
        expert = [(c["epoch"], c["expert_accuracy"]) for c in first if c["expert_accuracy"] is not None]
        if expert:
            top.plot(*zip(*expert), "-o", color="black", label="expert", markersize=4)
        for ipc in ipcs:
            mine = sorted((c for c in cells if c["ipc"] == ipc), key=lambda c: c["epoch"])
            students = [(c["epoch"], c["student"]["mean"]) for c in mine if c["student"]]
            if students:
                top.plot(*zip(*students), "-s", label=f"student IPC {ipc}", markersize=4)
            bottom.plot([c["epoch"] for c in mine], [c["entropy"] for c in mine], "-o", label=f"IPC {ipc}", markersize=4)
        top.set_ylabel("test accuracy (%)")
        bottom.set_ylabel("mean label entropy (nats)")
        bottom.set_xlabel("expert epoch")
        top.set_title(f"{grid.spec.dataset}: {grid.spec.teacher_arch} labels along the trajectory")
        for ax in (top, bottom):
            ax.grid(True, alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
        fig.tight_layout()
        return png(fig)


def report_view(data: dict) -> dict:
    """This analysis's JSON as ``slc report`` draws it: label entropy along the expert trajectory per IPC, and expert and student accuracy."""
    from .view import axis, each, need, view

    cells = []
    for at, c in each(data, "", "cells"):
        student = need(c, at, "student", "an object") if c.get("student") is not None else None
        cells.append({"ipc": need(c, at, "ipc", "an integer"), "epoch": need(c, at, "epoch", "a number"), "entropy": need(c, at, "entropy", "a number"),
                      "expert": need(c, at, "expert_accuracy", "a number or null"),
                      "mean": None if student is None else need(student, f"{at}.student", "mean", "a number"),
                      "std": None if student is None else need(student, f"{at}.student", "std", "a number or null")})
    cells.sort(key=lambda c: (c["ipc"], c["epoch"]))
    ipcs = sorted({c["ipc"] for c in cells})
    first = [c for c in cells if c["ipc"] == ipcs[0]]
    accuracy = [{"label": "expert", "style": "line", "points": [[c["epoch"], c["expert"], None] for c in first if c["expert"] is not None]}]
    accuracy += [{"label": f"student IPC {i}", "style": "line", "points": [[c["epoch"], c["mean"], c["std"]] for c in cells if c["ipc"] == i and c["mean"] is not None]} for i in ipcs]
    entropy_ = [{"label": f"IPC {i}", "style": "line", "points": [[c["epoch"], c["entropy"], None] for c in cells if c["ipc"] == i]} for i in ipcs]
    figures = [{"title": "Label entropy along the expert trajectory", "x": axis("expert epoch"), "y": axis("mean label entropy (nats)"), "series": entropy_},
               {"title": "Expert and student accuracy along the trajectory", "x": axis("expert epoch"), "y": axis("test accuracy (%)"), "series": [s for s in accuracy if s["points"]]}]
    rows = [[c["ipc"], format_epoch(c["epoch"]), c["expert"], c["entropy"], "not run" if c["mean"] is None else c["mean"], c["std"]] for c in cells]
    table_ = {"title": "Label entropy (nats) and accuracy (%) per expert epoch", "columns": ["IPC", "expert epoch", "expert accuracy (%)", "entropy (nats)", "student accuracy (%)", "std"], "rows": rows}
    return view(data, "entropy", "Label entropy along the expert trajectory", figures, [table_])
