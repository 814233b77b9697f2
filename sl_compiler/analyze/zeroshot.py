"""``zeroshot``: what a class's images and its label mass each teach (Figure 7, ``data_efficient_treat_*``).

Per (IPC, expert epoch) cell and removed class i: the control (the labels as they are); remove
image (drop every image of class i, keep class i's mass in the other images' labels: students
can still learn class i from the labels alone); remove label (keep every image, zero class i in
the labels of the other classes' images, not renormalised unless asked; class i's own images
keep their labels, as in the paper's code). Reported: test accuracy on class i and on the rest.
"""

from __future__ import annotations

from ..plot import per_class_png
from .cells import Grid, Result, derive, format_epoch, pm, table
from .transforms import remove_image, remove_label

TREATMENTS = ("control", "remove image", "remove label")


def run(grid: Grid, classes: list[int] | None = None, renormalize: bool = False) -> Result:
    classes = sorted(set(range(grid.num_classes) if classes is None else classes))
    for c in classes:
        grid.check_class(c, "--class")
    cells = grid.cells()
    grid.check_budget(len(cells) * (1 + 2 * len(classes)), "zeroshot")
    out, rows = [], []
    for cell in cells:
        base = grid.base(cell)
        control = grid.score(base, per_class=True)
        entry = {"ipc": cell.ipc, "epoch": cell.epoch, "content_hash": base.content_hash, "classes": {}}
        for c in classes:
            others = [o for o in range(grid.num_classes) if o != c]
            scores = {
                "control": control,
                "remove image": grid.score(derive(base, {"remove_image": c}, keep=remove_image(base.targets, c)), per_class=True),
                "remove label": grid.score(derive(base, {"remove_label": c, "renormalize": renormalize}, remove_label(base.dense_labels(), base.targets, c, renormalize)), per_class=True),
            }
            entry["classes"][str(c)] = {}
            for name, s in scores.items():
                (m, sd), (rm, rsd) = s.class_accuracy([c]), s.class_accuracy(others)
                entry["classes"][str(c)][name] = {"removed": m, "removed_std": sd, "rest": rm, "rest_std": rsd, "overall": s.mean}
                rows.append({"ipc": cell.ipc, "epoch": cell.epoch, "class": c, "class_name": base.classes[c], "treatment": name, "removed_class": m, "removed_class_std": sd, "rest": rm, "rest_std": rsd})
        out.append(entry)
    names = grid.trajectories[0].dataset.get("classes") or [str(c) for c in range(grid.num_classes)]
    data = {"kind": "slc-analyze-zeroshot/1", "settings": {**grid.settings(), "classes": classes, "renormalize": renormalize}, "cells": out, "class_names": [names[c] for c in classes]}
    return Result("zeroshot", data, rows, _markdown(grid, out, classes, names, renormalize), _plot(grid, out, classes, names))


def _markdown(grid: Grid, cells: list[dict], classes: list[int], names: list[str], renormalize: bool) -> str:
    lines = [f"Class removal on {grid.spec.dataset}: test accuracy (%) on the removed class / on the other classes; remove label "
             f"{'renormalised' if renormalize else 'not renormalised'}; protocol {grid.protocol.name} ({grid.protocol_hash})"]
    for cell in cells:
        body = []
        for c in classes:
            got = cell["classes"][str(c)]
            body.append([f"{c} {names[c]}", *(f"{pm(got[t]['removed'], got[t]['removed_std'])} / {pm(got[t]['rest'], got[t]['rest_std'])}" for t in TREATMENTS)])
        mean = [sum(cell["classes"][str(c)][t]["removed"] for c in classes) / len(classes) for t in TREATMENTS]
        body.append(["mean removed class", *(f"{m:.1f}" for m in mean)])
        lines += ["", f"IPC {cell['ipc']}, expert epoch {format_epoch(cell['epoch'])}", "", *table(["removed class", *TREATMENTS], body)]
    return "\n".join(lines) + "\n"


def _plot(grid: Grid, cells: list[dict], classes: list[int], names: list[str]) -> bytes:
    bars, errors = {}, {}
    for cell in cells:
        for t in TREATMENTS:
            key = f"IPC {cell['ipc']} e{format_epoch(cell['epoch'])} {t}"
            bars[key] = [cell["classes"][str(c)][t]["removed"] for c in classes]
            errors[key] = [cell["classes"][str(c)][t]["removed_std"] for c in classes]
    return per_class_png([names[c] for c in classes], bars, errors, f"{grid.spec.dataset}: accuracy on the removed class")


def report_view(data: dict) -> dict:
    """This analysis's JSON as ``slc report`` draws it: per (IPC, epoch) and removed class, the accuracy on that class and on the rest under each treatment."""
    from .view import BadField, axis, each, need, view

    classes = need(data, "", "class_names", "a list")
    order = [int(c) for c in need(need(data, "", "settings", "an object"), "settings", "classes", "a list")]
    if len(order) != len(classes):
        raise BadField("class_names", f"is {len(classes)} names for {len(order)} classes in settings.classes")
    rows, heatmaps, figures = [], [], []
    for at, cell in each(data, "", "cells"):
        ipc, epoch = need(cell, at, "ipc", "an integer"), need(cell, at, "epoch", "a number")
        got = need(cell, at, "classes", "an object")
        values = []
        for c, name in zip(order, classes):
            treated = need(got, f"{at}.classes", str(c), "an object")
            line = []
            for t in TREATMENTS:
                s = f"{at}.classes.{c}.{t}"
                score = need(treated, f"{at}.classes.{c}", t, "an object")
                removed, rest = need(score, s, "removed", "a number"), need(score, s, "rest", "a number")
                rows.append([ipc, format_epoch(epoch), f"{c} {name}", t, removed, need(score, s, "removed_std", "a number or null"), rest, need(score, s, "rest_std", "a number or null")])
                line.append(removed)
            values.append(line)
        where = f"IPC {ipc}, expert epoch {format_epoch(epoch)}"
        heatmaps.append({"title": f"{where}: accuracy (%) on the removed class", "rows": [f"{c} {n}" for c, n in zip(order, classes)], "columns": list(TREATMENTS),
                         "values": values, "xlabel": "treatment", "ylabel": "removed class", "colorbar": "test accuracy (%)"})
        figures.append({"title": f"{where}: accuracy on the removed class per treatment", "x": axis("removed class index"), "y": axis("test accuracy on the removed class (%)"),
                        "series": [{"label": t, "style": "points", "points": [[c, values[j][i], None] for j, c in enumerate(order)]} for i, t in enumerate(TREATMENTS)]})
    table_ = {"title": "Accuracy (%) on the removed class and on the rest, per treatment", "columns": ["IPC", "expert epoch", "removed class", "treatment", "removed class (%)", "std", "rest (%)", "rest std"], "rows": rows}
    return view(data, "zeroshot", "Class removal: what a class's images and its label mass each teach", figures, [table_], heatmaps)
