"""``scaling``: the knowledge-data scaling law (Figures 6 and 11, the paper's ``data_knowledge_scaling``).

Over a k x IPC grid, each image keeps its k largest probabilities and the rest become zero, not
renormalised (the paper's choice; ``renormalize`` on request); hard labels (one-hot) are the
reference curve. :mod:`.fit` fits ``acc = (a * IPC / b)^c - d`` with ``a = 1`` for hard labels:
a curve's ``a`` is the data-size factor its labels buy, and the law gives the IPC at which each
curve reaches the expert's own test accuracy. With several expert epochs the Pareto front (per
IPC the best soft-label cell over epochs and k) is fitted against hard labels the same way.
"""

from __future__ import annotations

import math

import torch

from ..errors import RecipeError
from ..plot import series_png
from .cells import Grid, Result, derive, format_epoch, pm, table
from .fit import HARD, fit_power_law
from .transforms import hard, keep_topk


def default_ks(classes: int) -> list[int]:
    """Powers of two below the class count, then every class (the paper's 1, 2, 4, ... 128, 200 on TinyImageNet)."""
    return [2**i for i in range(classes.bit_length()) if 2**i < classes] + [classes]


def check_ks(ks: list[int], classes: int) -> None:
    for k in ks:
        if not 1 <= k <= classes:
            raise RecipeError(f"top-k {k} is larger than the {classes} classes" if k > classes else f"top-k {k} keeps no probability", f"pass --k values in 1..{classes}")


def run(grid: Grid, ks: list[int] | None = None, renormalize: bool = False) -> Result:
    C = grid.num_classes
    ks = sorted(set(ks or default_ks(C)))
    check_ks(ks, C)
    cells = grid.cells()
    ipcs = sorted(grid.spec.ipcs)
    grid.check_budget(len(cells) * len(ks) + len(ipcs), "scaling")
    points, rows, hard_scores = [], [], {}
    for cell in cells:
        base = grid.base(cell)
        if cell.ipc not in hard_scores and cell.epoch == grid.epochs[0]:
            labels = hard(base.targets, C, base.num_views)
            hard_scores[cell.ipc] = grid.score(derive(base, {"hard": True}, labels))
        for k in ks:
            art = base if k == C else derive(base, {"topk": k, "renormalize": renormalize}, keep_topk(base.dense_labels(), k, renormalize))
            s = grid.score(art)
            points.append({"ipc": cell.ipc, "epoch": cell.epoch, "k": k, "content_hash": art.content_hash, "accuracies": s.accuracies, "mean": s.mean, "std": s.std})
            rows.append({"labels": f"top-{k}", "ipc": cell.ipc, "epoch": cell.epoch, "mean": s.mean, "std": s.std})
    for ipc, s in sorted(hard_scores.items()):
        rows.append({"labels": "hard", "ipc": ipc, "epoch": None, "mean": s.mean, "std": s.std})
    hard_curve = [(ipc, s.mean) for ipc, s in sorted(hard_scores.items())]
    fits = {}
    for epoch in grid.epochs:
        curves = {HARD: hard_curve, **{f"top-{k}": [(p["ipc"], p["mean"]) for p in points if p["epoch"] == epoch and p["k"] == k] for k in ks}}
        fits[format_epoch(epoch)] = _fit(curves, grid.expert_accuracy(epoch), f"top-{C}")
    pareto = None
    if len(grid.epochs) > 1:
        front = [max((p for p in points if p["ipc"] == ipc), key=lambda p: (p["mean"], -p["epoch"], -p["k"])) for ipc in ipcs]
        best_teacher = max((a for a in (grid.expert_accuracy(e) for e in grid.epochs) if a is not None), default=None)
        pareto = {"points": [{"ipc": p["ipc"], "epoch": p["epoch"], "k": p["k"], "mean": p["mean"]} for p in front],
                  "fit": _fit({HARD: hard_curve, "pareto": [(p["ipc"], p["mean"]) for p in front]}, best_teacher, "pareto")}
    data = {
        "kind": "slc-analyze-scaling/1",
        "settings": {**grid.settings(), "ks": ks, "renormalize": renormalize},
        "hard": [{"ipc": ipc, "accuracies": s.accuracies, "mean": s.mean, "std": s.std} for ipc, s in sorted(hard_scores.items())],
        "cells": points,
        "fits": fits,
        "pareto": pareto,
    }
    return Result("scaling", data, rows, _markdown(grid, data), _plot(grid, data))


def _fit(curves: dict, teacher: float | None, main: str) -> dict:
    """The law's parameters, R^2, each curve's data-size factor and the IPC at which it reaches the teacher's accuracy."""
    try:
        law = fit_power_law({k: v for k, v in curves.items() if v})
    except ValueError as exc:
        return {"fitted": False, "reason": str(exc)}
    recover = {name: law.ipc_reaching(name, teacher) if teacher is not None else None for name in law.a}
    return {"fitted": True, **law.to_json(), "factor": law.a.get(main), "factor_curve": main, "teacher_accuracy": teacher, "ipc_to_teacher": dict(sorted(recover.items()))}


def _markdown(grid: Grid, data: dict) -> str:
    ks, ipcs = data["settings"]["ks"], sorted(grid.spec.ipcs)
    renorm = "renormalised" if data["settings"]["renormalize"] else "not renormalised"
    lines = [f"Knowledge-data scaling on {grid.spec.dataset}: top-k labels ({renorm}) and hard labels, student accuracy (%); protocol {grid.protocol.name} ({grid.protocol_hash})"]
    hard_row = ["hard", *(pm(h["mean"], h["std"]) for h in data["hard"])]
    for epoch in grid.epochs:
        at = {(p["k"], p["ipc"]): p for p in data["cells"] if p["epoch"] == epoch}
        body = [hard_row, *([f"top-{k}", *(pm(at[k, i]["mean"], at[k, i]["std"]) for i in ipcs)] for k in ks)]
        lines += ["", f"Expert epoch {format_epoch(epoch)}", "", *table(["labels", *(f"IPC {i}" for i in ipcs)], body), ""]
        lines.append(_fit_text(data["fits"][format_epoch(epoch)]))
    if data["pareto"]:
        front = ", ".join(f"(IPC {p['ipc']}: {p['mean']:.1f} %, epoch {format_epoch(p['epoch'])}, top-{p['k']})" for p in data["pareto"]["points"])
        lines += ["", f"Pareto front over expert epochs: {front}", _fit_text(data["pareto"]["fit"])]
    return "\n".join(lines) + "\n"


def _fit_text(fit: dict) -> str:
    if not fit["fitted"]:
        return f"No fit: {fit['reason']}."
    factors = ", ".join(f"{name} {a:.2f}x" for name, a in fit["a"].items() if name != HARD)
    text = f"Fit acc = (a * IPC / {fit['b']:.3g})^{fit['c']:.3g} - ({fit['d']:.3g}), R^2 {fit['r2']:.3f}; data-size factor a: {factors}."
    if fit["teacher_accuracy"] is not None:
        reach = ", ".join(f"{name} {_ipc(v)}" for name, v in fit["ipc_to_teacher"].items())
        text += f" IPC that reaches the expert's {fit['teacher_accuracy']:.1f} %: {reach}."
    return text


def _ipc(v) -> str:
    return "never" if v is None or not math.isfinite(v) else f"{v:.3g}"


def _plot(grid: Grid, data: dict) -> bytes:
    ipcs = sorted(grid.spec.ipcs)
    xs = torch.logspace(math.log10(ipcs[0]), math.log10(ipcs[-1]), 25, dtype=torch.float64).tolist()
    series = [{"label": "hard labels", "points": [[h["ipc"], h["mean"], h["std"]] for h in data["hard"]], "style": "points"}]
    for epoch in grid.epochs:
        fit = data["fits"][format_epoch(epoch)]
        for k in data["settings"]["ks"]:
            name = f"top-{k}"
            series.append({"label": f"e{format_epoch(epoch)} {name}" + (f" (a={fit['a'][name]:.2g})" if fit["fitted"] else ""), "points": [[p["ipc"], p["mean"], p["std"]] for p in data["cells"] if p["epoch"] == epoch and p["k"] == k], "style": "points"})
            if fit["fitted"]:
                series.append({"label": f"fit e{format_epoch(epoch)} {name}", "points": [[x, _law(fit, name, x)] for x in xs], "style": "dashed"})
        if fit["fitted"]:
            series.append({"label": f"fit e{format_epoch(epoch)} hard", "points": [[x, _law(fit, HARD, x)] for x in xs], "style": "dashed"})
    return series_png(series, f"{grid.spec.dataset}: knowledge-data scaling", "images per class", "test accuracy (%)", xscale="log")


def _law(fit: dict, curve: str, x: float) -> float:
    return (fit["a"][curve] * x / fit["b"]) ** fit["c"] - fit["d"]


def report_view(data: dict) -> dict:
    """This analysis's JSON as ``slc report`` draws it: accuracy against IPC per label curve with the fitted law, the fits, the Pareto front."""
    from .view import axis, each, need, view

    hard_points = [[need(h, at, "ipc", "an integer"), need(h, at, "mean", "a number"), need(h, at, "std", "a number or null")] for at, h in each(data, "", "hard", empty_ok=True)]
    cells = [(need(p, at, "epoch", "a number"), need(p, at, "k", "an integer"), [need(p, at, "ipc", "an integer"), need(p, at, "mean", "a number"), need(p, at, "std", "a number or null")])
             for at, p in each(data, "", "cells")]
    fits = need(data, "", "fits", "an object")
    ipcs = sorted({p[2][0] for p in cells} | {p[0] for p in hard_points})
    lo, hi = math.log10(ipcs[0]), math.log10(ipcs[-1])
    xs = [10 ** (lo + (hi - lo) * j / 24) for j in range(25)]
    figures, tables, notes = [], [], []
    for epoch in sorted({e for e, _, _ in cells}):
        name = format_epoch(epoch)
        fit = _checked_fit(fits, "fits", name)
        series = [{"label": "hard labels", "style": "points", "points": hard_points}]
        for k in sorted({k for e, k, _ in cells if e == epoch}):
            curve = f"top-{k}"
            series.append({"label": curve, "style": "points", "points": sorted(p for e, kk, p in cells if e == epoch and kk == k)})
            if fit and curve in fit["a"]:
                series.append({"label": f"fit {curve} (a={fit['a'][curve]:.2g})", "style": "dashed", "points": [[x, _law(fit, curve, x)] for x in xs]})
        if fit and HARD in fit["a"]:
            series.append({"label": "fit hard", "style": "dashed", "points": [[x, _law(fit, HARD, x)] for x in xs]})
        figures.append({"title": f"Expert epoch {name}: student accuracy against images per class", "x": axis("images per class", "log"), "y": axis("test accuracy (%)"), "series": series})
        tables.append(_fit_table(fit, f"Expert epoch {name}: fit acc = (a * IPC / b)^c - d"))
        if not fit:
            notes.append(f"Expert epoch {name}: no fit ({fits[name].get('reason', 'not fitted')}).")
    pareto = data.get("pareto")
    if pareto is not None:
        pareto = need(data, "", "pareto", "an object")
        front = [[need(p, at, "ipc", "an integer"), need(p, at, "mean", "a number"), None] for at, p in each(pareto, "pareto", "points")]
        fit = _checked_fit(pareto, "pareto", "fit")
        series = [{"label": "hard labels", "style": "points", "points": hard_points}, {"label": "Pareto front (best over epochs and k)", "style": "points", "points": front}]
        if fit:
            series += [{"label": f"fit {c}", "style": "dashed", "points": [[x, _law(fit, c, x)] for x in xs]} for c in fit["a"]]
        figures.append({"title": "Pareto front over expert epochs against hard labels", "x": axis("images per class", "log"), "y": axis("test accuracy (%)"), "series": series})
        tables.append(_fit_table(fit, "Pareto front: fit acc = (a * IPC / b)^c - d"))
        if not fit:
            notes.append(f"Pareto front: no fit ({pareto['fit'].get('reason', 'not fitted')}).")
    rows = [["hard", "", *p] for p in hard_points] + [[f"top-{k}", format_epoch(e), *p] for e, k, p in cells]
    tables.insert(0, {"title": "Student accuracy (%) per label curve and IPC", "columns": ["labels", "expert epoch", "IPC", "accuracy (%)", "std"], "rows": rows})
    return view(data, "scaling", "Knowledge-data scaling law (top-k labels against hard labels)", figures, [t for t in tables if t], [], notes)


def _checked_fit(parent: dict, at: str, key: str) -> dict | None:
    """``parent[key]``'s parameters when the law was fitted, else None (its reason is in the JSON)."""
    from .view import need

    fit = need(parent, at, key, "an object")
    at = f"{at}.{key}" if at else key
    if not fit.get("fitted"):
        return None
    for p in ("b", "c", "d", "r2"):
        need(fit, at, p, "a number")
    a = need(fit, at, "a", "an object")
    for curve in a:
        need(a, f"{at}.a", curve, "a number")
    ipc_to_teacher = need(fit, at, "ipc_to_teacher", "an object")
    for curve in ipc_to_teacher:
        need(ipc_to_teacher, f"{at}.ipc_to_teacher", curve, "a number or null")
    return fit


def _fit_table(fit: dict | None, title: str) -> dict | None:
    if fit is None:
        return None
    reach = fit["ipc_to_teacher"]
    return {"title": title, "columns": ["curve", "a (data-size factor)", "b", "c", "d", "R^2", "IPC reaching the expert"],
            "rows": [[c, a, fit["b"], fit["c"], fit["d"], fit["r2"], _ipc(reach.get(c))] for c, a in fit["a"].items()]}
