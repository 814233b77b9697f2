"""``slc report`` as text: the merged evaluation grids, each sweep's grid, each analysis's tables (markdown)."""

from __future__ import annotations

from ..evaluate.tables import report, report_markdown
from ..errors import EvaluateError
from .inputs import ANALYSIS_KIND, RESULT_KIND, SWEEP_KIND, Input, sweep_chosen_on


def to_markdown(inputs: list[Input]) -> str:
    parts = []
    evals = [i.data for i in inputs if i.kind == RESULT_KIND]
    if evals:
        parts.append(report_markdown(report(evals)))
    for i in inputs:
        if i.kind == SWEEP_KIND:
            parts.append(sweep_markdown(i))
        elif i.kind == ANALYSIS_KIND:
            parts.append(analysis_markdown(i))
    return "\n\n".join(parts)


def evaluation_json(inputs: list[Input]) -> dict:
    """The merged evaluation grids (``slc report --json``), as before sweeps and analyses were read."""
    other = [i for i in inputs if i.kind != RESULT_KIND]
    if other:
        raise EvaluateError(
            f"--json merges slc evaluate results; {other[0].path} is a {other[0].kind} result, which is JSON already",
            "read that file directly, or use --html (or markdown, the default) to see it with the others",
        )
    return report([i.data for i in inputs])


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)])


def sweep_markdown(i: Input) -> str:
    data, spec = i.data, i.data["spec"]
    ipcs = sorted({c["ipc"] for c in data["cells"]})
    epochs = sorted({c["epoch"] for c in data["cells"]})
    grid = {(c["ipc"], c["epoch"]): c for c in data["cells"]}
    best = {int(k): v for k, v in data["best"].items()}
    rows = []
    for e in epochs:
        row = [f"{e:g}"]
        for ipc in ipcs:
            c = grid.get((ipc, e))
            text = "" if c is None else f"{c['mean']:.1f} ± {'n/a' if c['std'] is None else format(c['std'], '.1f')}"
            row.append(f"**{text}**" if c is not None and ipc in best and abs(best[ipc]["epoch"] - e) < 1e-9 else text)
        rows.append(row)
    head = f"**sweep {spec['dataset']}, {spec['teacher_arch']}** ({i.path.name}: student test accuracy %, mean ± std; best epoch per IPC in bold, {sweep_chosen_on(data)})"
    frontier = ", ".join(f"({p['ipc']}, {p['mean']:.1f} %)" for p in data["pareto"])
    return f"{head}\n\n{_table(['expert epoch', *(f'IPC {x}' for x in ipcs)], rows)}\n\nPareto frontier (IPC, accuracy): {frontier}"


def analysis_markdown(i: Input) -> str:
    data = i.data
    parts = [f"**{data['title']}** ({data['analysis']}, {i.path.name})"]
    for t in data.get("tables") or []:
        cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in t["rows"]]
        parts.append(f"{t['title']}\n\n{_table([str(c) for c in t['columns']], cells)}")
    parts += list(data.get("notes") or [])
    return "\n\n".join(parts)

