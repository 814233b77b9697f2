"""``classes``: the mean soft label of each class as a heat map (Figure 10).

Row c is the mean label over the images of class c: the diagonal is the expert's confidence,
the rest the class similarities the labels teach (cat next to dog). From an artifact, or from
the one (IPC, expert epoch) cell of the grid.
"""

from __future__ import annotations

import torch

from ..errors import RecipeError
from ..plot import heatmap_png
from .cells import Grid, Result, format_epoch, table


def mean_label_per_class(labels: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) float64: row c the mean over the images (and views) of class c of their labels (zeros for a class without images)."""
    rows = labels.double().mean(1) if labels.dim() == 3 else labels.double()
    onehot = torch.nn.functional.one_hot(targets, num_classes).double()
    return (onehot.T @ rows) / onehot.sum(0).clamp_min(1).unsqueeze(1)


def run(grid: Grid | None, artifact=None) -> Result:
    if artifact is None:
        cells = grid.cells()
        if len(cells) != 1:
            raise RecipeError(f"classes draws one heat map, and the grid has {len(cells)} (IPC, epoch) cells", "pass one --ipc and one --epochs, or --artifact")
        artifact = grid.base(cells[0])
        source = {"ipc": cells[0].ipc, "epoch": cells[0].epoch, "teacher": cells[0].teacher}
    else:
        source = {}
    matrix = mean_label_per_class(artifact.dense_labels(), artifact.targets, artifact.num_classes)
    names = list(artifact.classes)
    settings = grid.settings() if grid is not None else {}
    data = {"kind": "slc-analyze-classes/1", "settings": {**settings, "artifact": {"name": artifact.name, "content_hash": artifact.content_hash}, **source},
            "classes": names, "mean_label": matrix.tolist(), "diagonal": torch.diagonal(matrix).tolist()}
    rows = [{"class": names[c], **{f"label_{names[j]}": float(matrix[c, j]) for j in range(len(names))}} for c in range(len(names))]
    what = f"{artifact.name}" + (f" (IPC {source['ipc']}, expert epoch {format_epoch(source['epoch'])})" if source else "")
    md = [f"Mean soft label per class of {what}: row = the images' class, column = the label's class", "",
          *table(["class", *names], [[n, *(f"{float(v):.3f}" for v in matrix[c])] for c, n in enumerate(names)])]
    png = heatmap_png(matrix.numpy(), names, names, f"mean soft label per class: {what}", "label class", "image class", "mean probability")
    return Result("classes", data, rows, "\n".join(md) + "\n", png)


def report_view(data: dict) -> dict:
    """This analysis's JSON as ``slc report`` draws it: the mean soft label per class as a heat map, and its numbers as a table."""
    from .view import BadField, need, view

    names = [str(n) for n in need(data, "", "classes", "a list")]
    matrix = need(data, "", "mean_label", "a list")
    if len(matrix) != len(names) or any(not isinstance(r, list) or len(r) != len(names) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r) for r in matrix):
        raise BadField("mean_label", f"is not {len(names)} rows of {len(names)} numbers (one per class)")
    settings = need(data, "", "settings", "an object")
    art = settings.get("artifact") if isinstance(settings.get("artifact"), dict) else {}
    what = str(art.get("name", "the artifact")) + (f" (IPC {settings['ipc']}, expert epoch {format_epoch(settings['epoch'])})" if "ipc" in settings and "epoch" in settings else "")
    heat = {"title": f"Mean soft label per class: {what}", "rows": names, "columns": names, "values": matrix, "xlabel": "label class", "ylabel": "image class", "colorbar": "mean probability"}
    table_ = {"title": "Mean soft label per class (row: the images' class, column: the label's class)", "columns": ["class", *names], "rows": [[n, *r] for n, r in zip(names, matrix)]}
    return view(data, "classes", f"Mean soft label per class of {what}", [], [table_], [heat])
