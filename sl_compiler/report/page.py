"""``slc report --html``: one static page of everything the results say, and what the artifacts show.

Sections, each present when the inputs have something for it:

- Evaluation: the merged paper-style grid per dataset (rows IPC, columns methods), every cell
  mean ± std with its seeds; then each run's table (rows artifacts, columns regimes and
  baselines, IOR and HLR) under its protocol, device, versions and wall time.
- Sweeps: student accuracy against expert epoch per IPC, the Pareto front over (IPC, accuracy),
  and the grid as a table.
- Analyses: each ``slc-analysis/1`` result's figures, tables and heat maps.
- Artifacts: per artifact (by content hash), its cells with per-seed accuracy, per-class test
  accuracy (when the results carry it), and, when its folder can be read here, the per-class mean
  soft label as a heat map, the image grid, and its provenance: recipe, teachers, hashes,
  versions, devices and wall times.

The page is deterministic: the same inputs (and artifacts) give the same bytes, with no time in it.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..evaluate.tables import report as merge_grids
from . import html as h
from .artifacts import LocalArtifact, find
from .inputs import ANALYSIS_KIND, RESULT_KIND, SWEEP_KIND, Input, sweep_chosen_on

CELL_TEXT = {
    "sl": "stored labels",
    "slkd": "teacher in the loop",
    "hl": "hard labels",
    "random-hl": "random images, hard labels",
    "random-sl": "random images, teacher labels",
}


def render(inputs: list[Input], title: str = "slc report") -> str:
    """The page for checked inputs (:func:`~.inputs.load_inputs`) as one HTML string."""
    evals = [i for i in inputs if i.kind == RESULT_KIND]
    sweeps = [i for i in inputs if i.kind == SWEEP_KIND]
    analyses = [i for i in inputs if i.kind == ANALYSIS_KIND]
    nav, body = [("inputs", "Inputs")], [_inputs(inputs)]
    if evals:
        nav.append(("evaluation", "Evaluation"))
        body.append(_evaluation(evals))
    if sweeps:
        nav.append(("sweeps", "Sweeps"))
        body.append(_section("sweeps", "Sweeps", "".join(_sweep(i, n) for n, i in enumerate(sweeps))))
    if analyses:
        nav.append(("analyses", "Analyses"))
        body.append(_section("analyses", "Analyses", "".join(_analysis(i, n) for n, i in enumerate(analyses))))
    if evals:
        nav.append(("artifacts", "Artifacts"))
        body.append(_artifacts(evals))
    kinds = ", ".join(f"{sum(i.kind == k for i in inputs)} {name}" for k, name in ((RESULT_KIND, "evaluation"), (SWEEP_KIND, "sweep"), (ANALYSIS_KIND, "analysis")) if any(i.kind == k for i in inputs))
    subtitle = f"{len(inputs)} result file{'s' if len(inputs) != 1 else ''} ({kinds}); page by slc {h.esc(__version__)}. Click a table's header to sort by that column."
    return h.page(title, subtitle, nav, "\n".join(body))


def write_html(inputs: list[Input], out: str | Path, title: str = "slc report") -> Path:
    """Render the page and write it to ``out`` whole or not at all."""
    from ..plot import write_bytes

    return write_bytes(Path(out), render(inputs, title).encode("utf-8"))


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{h.esc(anchor)}"><h2>{h.esc(title)}</h2>{body}</section>'


def _inputs(inputs: list[Input]) -> str:
    rows = [[h.text(i.path.name), h.text(i.source_kind or i.kind), h.Cell(h.code(i.sha256[:16]))] for i in inputs]
    return _section("inputs", "Inputs", h.table(["file", "kind", "sha256"], rows, sortable=False))


# ---- evaluation ----------------------------------------------------------------------------------


def _evaluation(evals: list[Input]) -> str:
    grids = merge_grids([i.data for i in evals])
    parts = ['<p>Test accuracy (%), mean ± std over the seeds shown, at the final epoch. A later file\'s cell replaces an earlier one for the same dataset, IPC and column.</p>']
    for dataset, grid in grids.items():
        rows = []
        for ipc, cells in grid["rows"].items():
            row = [h.text(ipc, sort=ipc if ipc.isdigit() else None, cls="num")]
            for column in grid["columns"]:
                cell = cells.get(column)
                row.append(h.mean_std(cell["mean"], cell["std"], cell["seeds"]) if cell else h.Cell("", h.MISSING))
            rows.append(row)
        parts.append(f"<h3>{h.esc(dataset)}</h3>" + h.table(["IPC", *grid["columns"]], rows, caption=f"protocols: {', '.join(grid['protocols'])}"))
    for n, i in enumerate(evals):
        parts.append(_run(i, n))
    return _section("evaluation", "Evaluation", "".join(parts))


def _protocol_text(p: dict) -> str:
    lr = "the artifact's learned lr" if p.get("lr") == "artifact" else f"lr {p['lr']:g}" if p.get("lr") is not None else f"lr chosen from {', '.join(f'{x:g}' for x in p.get('lr_grid') or [])} on a held-out slice"
    return f"{p['model']}, {p['epochs']} epochs, batch {p['batch_size']}, {p['optimizer']}, {lr}, augment {p['augment']}, loss {p['loss']}"


def _run(i: Input, n: int) -> str:
    """One evaluation file: its protocol and machine, then rows artifacts, columns regimes, baselines, IOR, HLR."""
    data, p = i.data, i.data["protocol"]
    columns = [*p["regimes"], *p["baselines"]]
    metric_cols = [m for m in ("ior", "hlr") if any((a.get("metrics") or {}).get(m) for a in data["artifacts"])]
    rows = []
    for a in data["artifacts"]:
        row = [h.Cell(f'<a href="#{_anchor(a)}">{h.esc(a["name"])}@{h.esc(a["version"])}</a><br>{h.code(a["content_hash"][:8])}', f"{a['name']}@{a['version']}", "name"), h.number(a["ipc"], 0) if a["ipc"] is not None else h.text("-")]
        for c in columns:
            cell = a["cells"].get(c)
            if cell:
                row.append(h.mean_std(cell["mean"], cell["std"], cell["seeds"]))
            else:
                row.append(h.Cell("skipped" if c in (a.get("skipped") or {}) else "", h.MISSING))
        for m in metric_cols:
            metric = (a.get("metrics") or {}).get(m)
            row.append(h.mean_std(metric["mean"], metric.get("std")) if metric else h.Cell("", h.MISSING))
        rows.append(row)
    header = ["artifact", "IPC", *(f"{c} ({CELL_TEXT[c]})" if c in CELL_TEXT else c for c in columns), *(m.upper() for m in metric_cols)]
    skipped = [f"{h.esc(a['name'])}: {h.esc(name)} skipped: {h.esc(why)}" for a in data["artifacts"] for name, why in (a.get("skipped") or {}).items()]
    facts = h.facts([
        ("protocol", f"{h.code(p['name'])}: {h.esc(_protocol_text(p))}"),
        ("seeds", h.esc(h.format_list(p["seeds"]))),
        ("device", h.esc(data["device"]) + (f", batched {h.esc(data.get('batched'))}, torch.compile {h.esc(data.get('compile'))}" if "batched" in data else "")),
        ("versions", h.esc(f"slc {data['slc_version']}, torch {data.get('torch_version', '?')}, Python {data.get('python_version', '?')}")),
        ("wall time", h.esc(f"{data['wall_s']:.1f} s")),
    ])
    notes = "".join(h.note(s) for s in skipped)
    caption = "Test accuracy (%), mean ± std over seeds; IOR and HLR in points of accuracy (DD-Ranking)."
    return f'<h3 id="run-{n}">Run {h.esc(i.path.name)}</h3>{facts}{h.table(header, rows, caption=caption)}{notes}'


# ---- sweeps --------------------------------------------------------------------------------------


def _sweep(i: Input, n: int) -> str:
    from ..plot import accuracy_by_epoch_png, pareto_png

    data, spec = i.data, i.data["spec"]
    cells = data["cells"]
    title = f"{spec['dataset']}: {spec['teacher_arch']} soft labels"
    curves: dict[int, list] = {}
    for c in cells:
        curves.setdefault(c["ipc"], []).append((c["epoch"], c["mean"], c["std"]))
    best = {int(ipc): b for ipc, b in data["best"].items()}
    frontier = [(p["ipc"], p["epoch"], p["mean"]) for p in data["pareto"]]
    parts = [f'<h3 id="sweep-{n}">{h.esc(title)} <span class="muted">({h.esc(i.path.name)})</span></h3>']
    protocol = data["protocol"]
    parts.append(h.facts([
        ("protocol", f"{h.code(protocol.get('name', '?'))} {h.code(str(protocol.get('hash', ''))[:16])}"),
        ("teacher seeds", h.esc(h.format_list(spec.get("seeds", [])))),
        ("evaluation seeds", h.esc(h.format_list(protocol.get("seeds", [])))),
    ]))
    parts.append(h.figure(accuracy_by_epoch_png(curves, title), f"Student accuracy against expert epoch, one curve per IPC, for {title}", "Student test accuracy against the expert epoch that labelled the images, one curve per IPC (mean ± std over evaluation seeds)."))
    points = [(c["ipc"], c["epoch"], c["mean"]) for c in cells]
    best_points = [(ipc, b["epoch"], b["mean"], b.get("std")) for ipc, b in sorted(best.items())]
    parts.append(h.figure(pareto_png(points, best_points, frontier, title), f"Pareto front of accuracy against IPC for {title}", "Every (IPC, expert epoch) cell, each IPC's best epoch, and the Pareto front: the budgets where more images per class still buy accuracy."))
    ipcs = sorted({c["ipc"] for c in cells})
    epochs = sorted({c["epoch"] for c in cells})
    grid = {(c["ipc"], c["epoch"]): c for c in cells}
    rows = []
    for epoch in epochs:
        row = [h.text(f"{epoch:g}", sort=epoch, cls="num")]
        for ipc in ipcs:
            c = grid.get((ipc, epoch))
            is_best = c is not None and ipc in best and abs(best[ipc]["epoch"] - epoch) < 1e-9
            row.append(h.mean_std(c["mean"], c["std"], scale=1.0, best=is_best) if c else h.Cell("", h.MISSING))
        rows.append(row)
    parts.append(h.table(["expert epoch", *(f"IPC {i}" for i in ipcs)], rows, caption=f"Student test accuracy (%), mean ± std over evaluation seeds; each IPC's best epoch in bold, {sweep_chosen_on(data)}."))
    return "".join(parts)


# ---- analyses ------------------------------------------------------------------------------------


def _value(v) -> h.Cell:
    if isinstance(v, bool) or v is None or isinstance(v, (str, list, dict)):
        return h.text("" if v is None else (json.dumps(v) if isinstance(v, (list, dict)) else v))
    return h.Cell(h.esc(f"{v:.4g}" if isinstance(v, float) else v), repr(float(v)), "num")


def _analysis(i: Input, n: int) -> str:
    from ..plot import heatmap_png, series_png

    data = i.data
    parts = [f'<h3 id="analysis-{n}">{h.esc(data["title"])} <span class="muted">({h.esc(data["analysis"])}, {h.esc(i.path.name)})</span></h3>']
    if data.get("settings"):
        parts.append(h.facts([(str(k), h.code(json.dumps(v, sort_keys=True))) for k, v in sorted(data["settings"].items())]))
    for fig in data.get("figures") or []:
        x, y = fig["x"], fig["y"]
        png = series_png(fig["series"], fig["title"], x["label"], y["label"], x.get("scale", "linear"), y.get("scale", "linear"))
        labels = ", ".join(s["label"] for s in fig["series"])
        parts.append(h.figure(png, f"{fig['title']}: {y['label']} against {x['label']} ({labels})", fig["title"]))
    for table in data.get("tables") or []:
        parts.append(f"<h4>{h.esc(table['title'])}</h4>" + h.table([str(c) for c in table["columns"]], [[_value(v) for v in row] for row in table["rows"]]))
    for heat in data.get("heatmaps") or []:
        png = heatmap_png(heat["values"], heat["rows"], heat["columns"], heat["title"], heat.get("xlabel", ""), heat.get("ylabel", ""), heat.get("colorbar", "value"))
        parts.append(h.figure(png, heat["title"], heat["title"]))
    parts += [h.note(h.esc(note)) for note in data.get("notes") or []]
    return "".join(parts)


# ---- artifacts -----------------------------------------------------------------------------------


def _anchor(row: dict) -> str:
    return f"artifact-{row['content_hash'][:12]}"


def _artifacts(evals: list[Input]) -> str:
    """One part per artifact (content hash), with every run that evaluated it."""
    seen: dict[str, list[tuple[Input, dict]]] = {}
    for i in evals:
        for row in i.data["artifacts"]:
            seen.setdefault(row["content_hash"], []).append((i, row))
    return _section("artifacts", "Artifacts", "".join(_artifact(appearances) for appearances in seen.values()))


def _artifact(appearances: list[tuple[Input, dict]]) -> str:
    row = appearances[0][1]
    local, why = None, ""
    for i, r in appearances:
        local, why = find(r, i.path)
        if local:
            break
    classes = _class_names(row, local)
    parts = [f'<h3 id="{_anchor(row)}">{h.esc(row["name"])}@{h.esc(row["version"])} <span class="muted">{h.esc(row["dataset"])}, IPC {h.esc(row["ipc"] if row["ipc"] is not None else "-")}, {h.esc(row["method"])}</span></h3>']
    if local is None:
        parts.append(h.note(f"The artifact cannot be read here ({h.esc(why)}): its heat map, image grid and manifest are left out; pass results whose artifact folders exist."))
    parts.append(_cells(appearances))
    parts.append(_per_class(appearances, classes))
    if local is not None:
        parts.append(_pictures(local, row))
    parts.append(_provenance(appearances, local))
    return "".join(parts)


def _class_names(row: dict, local: LocalArtifact | None) -> list[str] | None:
    if isinstance(row.get("classes"), list):
        return [str(c) for c in row["classes"]]
    if local is not None:
        return list(local.manifest["dataset"]["classes"])
    return None


def _cells(appearances: list[tuple[Input, dict]]) -> str:
    rows = []
    for i, row in appearances:
        for name, cell in row["cells"].items():
            per_seed = ", ".join(f"{s}: {100 * a:.2f}" for s, a in zip(cell["seeds"], cell["accuracy"]))
            selection = cell.get("lr_selection")
            lr = f"{cell['lr']:g}" + (" (chosen: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in selection.items()) + ")" if selection else "")
            rows.append([h.text(i.path.name), h.text(name), h.mean_std(cell["mean"], cell["std"]), h.text(per_seed), h.text(lr, sort=cell["lr"]), h.number(cell.get("wall_s"), 1)])
    return h.table(["results", "cell", "accuracy (%)", "per seed (%)", "lr", "wall s"], rows, caption="Each cell's per-seed test accuracy, the learning rate (and the held-out accuracy of each candidate when it was chosen), and its wall time.")


def _per_class(appearances: list[tuple[Input, dict]], classes: list[str] | None) -> str:
    from ..plot import per_class_png

    series = []  # (label, per_class record)
    for i, row in appearances:
        for name, cell in row["cells"].items():
            if cell.get("per_class"):
                series.append((name if len(appearances) == 1 else f"{name} ({i.path.name})", cell["per_class"]))
    if not series:
        return h.note("These results record no per-class accuracy (slc evaluate before 0.2).")
    c = len(series[0][1]["count"])
    series = [(label, pc) for label, pc in series if len(pc["count"]) == c]
    names = classes if classes is not None and len(classes) == c else [f"class {k}" for k in range(c)]
    means = {label: [None if m is None else 100 * m for m in pc["mean"]] for label, pc in series}
    stds = {label: [None if s is None else 100 * s for s in pc["std"]] for label, pc in series}
    png = per_class_png(names, means, stds, "Per-class test accuracy")
    rows = [[h.text(name), h.number(series[0][1]["count"][k], 0), *(h.mean_std(pc["mean"][k], pc["std"][k]) if pc["mean"][k] is not None else h.Cell("", h.MISSING) for _, pc in series)] for k, name in enumerate(names)]
    table = h.table(["class", "test images", *(label for label, _ in series)], rows, caption="Per-class test accuracy (%), mean ± std over seeds.")
    return "<h4>Per-class accuracy</h4>" + h.figure(png, "Per-class test accuracy of each cell", "Test accuracy per class (mean ± std over seeds).") + table


def _pictures(local: LocalArtifact, row: dict) -> str:
    from ..artifact.inspect import class_mean_labels
    from ..plot import heatmap_png

    art = local.artifact
    classes = list(art.classes)
    matrix = class_mean_labels(art).numpy()
    heat = heatmap_png(matrix, classes, classes, "Mean soft label per class", "label class", "true class", "mean probability")
    parts = ["<h4>Labels and images</h4>"]
    parts.append(h.figure(heat, "Heat map of the mean soft label of each class", "Row c: the mean label of the images of class c (over views and images). Mass off the diagonal is what soft labels teach beyond the class."))
    parts.append(h.figure(local.grid(), f"The first images of each class of {row['name']} with their labels' top classes", "The artifact's grid.png: the first images of each class, each captioned with its label's top-3 classes and probabilities (the true class in bold)."))
    return "".join(parts)


def _provenance(appearances: list[tuple[Input, dict]], local: LocalArtifact | None) -> str:
    row = appearances[0][1]
    labels = row.get("labels") or {}
    items = [
        ("content hash", h.code(row["content_hash"])),
        ("dataset", h.esc(row["dataset"])),
        ("samples", h.esc(row.get("samples", "?"))),
        ("labels", h.esc(", ".join(f"{k} {v}" for k, v in labels.items() if v is not None))),
    ]
    teachers_rows = []
    if local is not None:
        m = local.manifest
        ds, sel = m["dataset"], m.get("selection") or {}
        items += [
            ("folder", h.code(local.path)),
            ("manifest sha256", h.code(m.get("manifest_sha256", "not recorded (slc 0.1.0)"))),
            ("grid sha256", h.code(m["grid"]["sha256"]) if m.get("grid") else h.esc("no grid.png")),
            ("source data", h.esc(", ".join(f"{k} {ds[k]}" for k in ("name", "split", "size", "fingerprint") if ds.get(k) is not None))),
            ("selection", h.esc(", ".join(f"{k} {sel[k]}" for k in ("strategy", "seed", "quantile", "score") if sel.get(k) is not None) or "not recorded")),
            ("built by", h.esc(f"slc {m['slc_version']}") + (" " + h.code(json.dumps(m["provenance"], sort_keys=True)) if m.get("provenance") else "")),
        ]
        teachers_rows = [[h.text(t.get("reference") or t.get("arch", "?")), h.number(t.get("epoch"), 2), h.text(t.get("seed", "")), h.number(t.get("test_accuracy"), 2), h.Cell(h.code(t.get("sha256") or "")) ] for t in m.get("teachers") or []]
    elif row.get("teachers"):
        items.append(("teachers", h.esc(", ".join(str(t) for t in row["teachers"]))))
    for i, r in appearances:
        test = r.get("test_set") or {}
        d = i.data
        items.append((f"evaluated ({i.path.name})", h.esc(
            f"slc {d['slc_version']}, torch {d.get('torch_version', '?')}, Python {d.get('python_version', '?')} on {d['device']}; "
            f"run wall time {d['wall_s']:.1f} s, this artifact's cells {sum(c.get('wall_s') or 0 for c in r['cells'].values()):.1f} s"
            + (f"; test set {test['size']} images, fingerprint {test.get('fingerprint', '?')}" if "size" in test else "")
        )))
    parts = ["<h4>Provenance</h4>", h.facts(items)]
    if teachers_rows:
        parts.append(h.table(["teacher", "epoch", "seed", "test accuracy (%)", "checkpoint sha256"], teachers_rows))
    if local is not None and local.manifest.get("recipe"):
        parts.append("<p>Recipe:</p>" + h.pre(json.dumps(local.manifest["recipe"], indent=2, sort_keys=True)))
    return "".join(parts)
