"""``jsd``: how close a label set is to each expert epoch's labels on the same images (Figures 8, 12).

The labels of an artifact (e.g. learned by BPTT) are compared image by image with the ensemble
labels (logits averaged over the seeds, then softmax at T = 1, float32) that each expert epoch
gives the artifact's own images: the Jensen-Shannon distance (log base 2, in [0, 1]), raw and
min-max normalised per image across the epochs (0: the image's closest epoch, 1: its farthest).
The reference is expert against expert: the distance between single experts of different seeds
at the same epoch, so "as close as another seed's expert" has a number.
"""

from __future__ import annotations

import itertools

import torch

from ..errors import RecipeError
from ..plot import series_png
from .cells import Grid, Result, format_epoch, table
from .transforms import js_distance


def run(grid: Grid, artifact) -> Result:
    from ..experts import default_store, resolve
    from ..label import teacher_logits

    if artifact.num_classes != grid.num_classes:
        raise RecipeError(f"artifact {artifact.name} has {artifact.num_classes} classes, the {grid.spec.teacher_arch} experts {grid.num_classes}", "compare labels of the dataset the experts were trained on")
    if artifact.num_views != 1:
        raise RecipeError(f"artifact {artifact.name} stores {artifact.num_views} labels per image (augmented views)", "compare an artifact with one label per image")
    labels = artifact.dense_labels()[:, 0]
    store = default_store(grid.spec.experts)
    probs: dict[float, list[torch.Tensor]] = {}
    for epoch in grid.epochs:
        probs[epoch] = []
        for seed in grid.spec.seeds:
            [teacher] = resolve(f"{grid.spec.teacher_arch}@{format_epoch(epoch)}#{seed}", store, artifact.manifest["dataset"])
            probs[epoch].append(teacher_logits([teacher], artifact.images, artifact.mean, artifact.std, grid.spec.device))
    ensemble = {e: torch.softmax(torch.stack(logits).mean(0), -1) for e, logits in probs.items()}
    raw = torch.stack([js_distance(labels, ensemble[e]) for e in grid.epochs], 1)  # (N, epochs)
    low, high = raw.min(1, keepdim=True).values, raw.max(1, keepdim=True).values
    normalised = torch.where(high > low, (raw - low) / (high - low).clamp_min(1e-300), 0.0)
    out, rows = [], []
    for j, epoch in enumerate(grid.epochs):
        singles = [torch.softmax(lg, -1) for lg in probs[epoch]]
        pairs = [float(js_distance(p, q).mean()) for p, q in itertools.combinations(singles, 2)]
        ref = {"pairs": len(pairs), "min": min(pairs), "mean": sum(pairs) / len(pairs), "max": max(pairs)} if pairs else None
        entry = {"epoch": epoch, "raw": float(raw[:, j].mean()), "normalised": float(normalised[:, j].mean()), "closest_images": int((raw.argmin(1) == j).sum()), "expert_vs_expert": ref}
        out.append(entry)
        rows.append({"epoch": epoch, "raw_mean": entry["raw"], "normalised_mean": entry["normalised"], "closest_images": entry["closest_images"],
                     "expert_vs_expert_min": None if ref is None else ref["min"], "expert_vs_expert_max": None if ref is None else ref["max"]})
    best = min(out, key=lambda e: (e["raw"], e["epoch"]))
    within = None if best["expert_vs_expert"] is None else best["raw"] <= best["expert_vs_expert"]["max"]
    data = {"kind": "slc-analyze-jsd/1", "settings": {**grid.settings(), "artifact": {"name": artifact.name, "version": artifact.version, "content_hash": artifact.content_hash, "images": len(artifact)},
            "distance": "Jensen-Shannon distance, log base 2", "expert_labels": "softmax of seed-averaged logits, T = 1"},
            "epochs": out, "best": {"epoch": best["epoch"], "raw": best["raw"], "within_expert_range": within}}
    return Result("jsd", data, rows, _markdown(grid, artifact, out, data["best"]), _plot(grid, artifact, out))


def _markdown(grid: Grid, artifact, epochs: list[dict], best: dict) -> str:
    body = [[format_epoch(e["epoch"]), f"{e['raw']:.4f}", f"{e['normalised']:.3f}", str(e["closest_images"]),
             "" if e["expert_vs_expert"] is None else f"{e['expert_vs_expert']['min']:.4f}-{e['expert_vs_expert']['max']:.4f}"] for e in epochs]
    lines = [f"Jensen-Shannon distance (log2) of {artifact.name}'s labels ({len(artifact)} images) to each {grid.spec.teacher_arch} epoch's ensemble labels (seeds {','.join(map(str, grid.spec.seeds))})", "",
             *table(["expert epoch", "mean distance", "mean min-max normalised", "images closest", "expert vs expert"], body), ""]
    verdict = {None: "no expert-vs-expert reference (give two or more --seeds)", True: "within the expert-vs-expert range", False: "outside the expert-vs-expert range"}[best["within_expert_range"]]
    lines.append(f"Closest epoch: {format_epoch(best['epoch'])} ({best['raw']:.4f}), {verdict}.")
    return "\n".join(lines) + "\n"


def _plot(grid: Grid, artifact, epochs: list[dict]) -> bytes:
    series = [{"label": f"{artifact.name} vs ensemble", "points": [[e["epoch"], e["raw"], None] for e in epochs]},
              {"label": "min-max normalised", "points": [[e["epoch"], e["normalised"], None] for e in epochs]}]
    if epochs[0]["expert_vs_expert"] is not None:
        series.append({"label": "expert vs expert (mean over seed pairs)", "points": [[e["epoch"], e["expert_vs_expert"]["mean"], None] for e in epochs], "style": "dashed"})
    return series_png(series, f"{grid.spec.dataset}: label distance to each expert epoch", "expert epoch", "Jensen-Shannon distance (log2)")


def report_view(data: dict) -> dict:
    """This analysis's JSON as ``slc report`` draws it: the label distance to each expert epoch, raw, normalised and expert against expert."""
    from .view import axis, each, need, view

    epochs = []
    for at, e in each(data, "", "epochs"):
        ref = e.get("expert_vs_expert")
        if ref is not None:
            ref = {k: need(need(e, at, "expert_vs_expert", "an object"), f"{at}.expert_vs_expert", k, "a number") for k in ("min", "mean", "max")}
        epochs.append({"epoch": need(e, at, "epoch", "a number"), "raw": need(e, at, "raw", "a number"), "normalised": need(e, at, "normalised", "a number"),
                       "closest": need(e, at, "closest_images", "an integer"), "ref": ref})
    settings = need(data, "", "settings", "an object")
    name = settings.get("artifact", {}).get("name", "the artifact") if isinstance(settings.get("artifact"), dict) else "the artifact"
    series = [{"label": f"{name} vs ensemble", "style": "line", "points": [[e["epoch"], e["raw"], None] for e in epochs]},
              {"label": "min-max normalised", "style": "line", "points": [[e["epoch"], e["normalised"], None] for e in epochs]}]
    if all(e["ref"] is not None for e in epochs):
        series.append({"label": "expert vs expert (mean over seed pairs)", "style": "dashed", "points": [[e["epoch"], e["ref"]["mean"], None] for e in epochs]})
    fig = {"title": "Label distance to each expert epoch", "x": axis("expert epoch"), "y": axis("Jensen-Shannon distance (log2)"), "series": series}
    rows = [[format_epoch(e["epoch"]), e["raw"], e["normalised"], e["closest"], None if e["ref"] is None else e["ref"]["min"], None if e["ref"] is None else e["ref"]["max"]] for e in epochs]
    table_ = {"title": "Jensen-Shannon distance (log2) per expert epoch", "columns": ["expert epoch", "mean distance", "mean min-max normalised", "images closest", "expert vs expert min", "expert vs expert max"], "rows": rows}
    best = need(data, "", "best", "an object")
    within = {None: "no expert-vs-expert reference", True: "within the expert-vs-expert range", False: "outside the expert-vs-expert range"}.get(best.get("within_expert_range"), "")
    notes = [f"Closest epoch: {format_epoch(need(best, 'best', 'epoch', 'a number'))} ({need(best, 'best', 'raw', 'a number'):.4f}), {within}."]
    return view(data, "jsd", f"Label distance of {name} to the expert trajectory", [fig], [table_], [], notes)
