"""Results as tables: a markdown table per run, JSON and CSV files, and the paper-style report.

Cells print as ``mean (std)`` in percent, ``mean (n/a)`` when the spread was not measured (one
seed, or unpaired differences), ``skipped`` for a baseline that could not run; the files keep
fractions and every per-seed value (a missing std is null in JSON, ``n/a`` in CSV).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from ..errors import EvaluateError


NA = "n/a"


def pct(cell: dict | None) -> str:
    if not cell:
        return "-"
    std = cell.get("std")
    return f"{100 * cell['mean']:.2f} ({NA if std is None else f'{100 * std:.2f}'})"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_table(result: dict) -> str:
    """Rows: artifacts; columns: regimes, baselines, then IOR and HLR where measured."""
    columns = [*result["protocol"]["regimes"], *result["protocol"]["baselines"]]
    metric_cols = [m for m in ("ior", "hlr") if any(a["metrics"].get(m) for a in result["artifacts"])]
    header = ["artifact", "ipc", *columns, *(m.upper() for m in metric_cols)]
    rows = []
    for a in result["artifacts"]:
        skipped = a.get("skipped", {})
        cells = ["skipped" if c in skipped and c not in a["cells"] else pct(a["cells"].get(c)) for c in columns]
        rows.append([f"{a['name']}@{a['version']} ({a['content_hash'][:8]})", str(a["ipc"]), *cells, *(pct(a["metrics"].get(m)) for m in metric_cols)])
    p = result["protocol"]
    caption = (
        f"Test accuracy %, mean (std) over seeds {','.join(map(str, p['seeds']))}, final epoch; protocol {p['name']}: "
        f"{p['model']}, {p['epochs']} epochs, batch {p['batch_size']}, {p['optimizer']}, augment {p['augment']}, loss {p['loss']}; "
        f"device {result['device']}, {result['wall_s']:.0f} s."
    )
    notes = [f"{a['name']}: skipped {name}: {why}" for a in result["artifacts"] for name, why in a.get("skipped", {}).items()]
    return _markdown(header, rows) + "\n\n" + caption + "".join(f"\n{n}" for n in notes)


CSV_FIELDS = ["artifact", "version", "content_hash", "ipc", "cell", "mean", "std", "lr", "seeds", "accuracy"]


def csv_text(result: dict) -> str:
    """One row per (artifact, regime or baseline) with the per-seed accuracies."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for a in result["artifacts"]:
        for name, cell in a["cells"].items():
            writer.writerow(
                {
                    "artifact": a["name"],
                    "version": a["version"],
                    "content_hash": a["content_hash"],
                    "ipc": a["ipc"],
                    "cell": name,
                    "mean": f"{cell['mean']:.6f}",
                    "std": NA if cell["std"] is None else f"{cell['std']:.6f}",
                    "lr": cell["lr"],
                    "seeds": " ".join(map(str, cell["seeds"])),
                    "accuracy": " ".join(f"{x:.6f}" for x in cell["accuracy"]),
                }
            )
    return buf.getvalue()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_results(result: dict, out: str | Path) -> tuple[Path, Path]:
    """``<out>.json`` and ``<out>.csv`` (``out`` without suffix), each written whole or not at all."""
    out = Path(out)
    out = out.with_suffix("") if out.suffix in (".json", ".csv") else out
    json_path, csv_path = out.parent / f"{out.name}.json", out.parent / f"{out.name}.csv"
    _atomic_write(json_path, json.dumps(result, indent=2, sort_keys=True) + "\n")
    _atomic_write(csv_path, csv_text(result))
    return json_path, csv_path


def load_results(paths: list[str | Path]) -> list[dict]:
    results = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())
        except FileNotFoundError:
            raise EvaluateError(f"results file {p} does not exist", "pass the .json files that slc evaluate wrote") from None
        except json.JSONDecodeError as exc:
            raise EvaluateError(f"results file {p} is not JSON ({exc})", "pass the .json files that slc evaluate wrote") from None
        if not isinstance(data, dict) or "artifacts" not in data or "protocol" not in data:
            raise EvaluateError(f"{p} is not an slc evaluate result", "pass the .json files that slc evaluate wrote")
        results.append(data)
    return results


def report(results: list[dict]) -> dict:
    """Merge runs into per-dataset grids: rows IPC, columns methods (``method (regime)`` and baselines).

    A later file's cell replaces an earlier one for the same (dataset, ipc, column); each grid
    lists the protocols it draws on, so mixed protocols are visible.
    """
    grids: dict[str, dict] = {}
    for res in results:
        p = res["protocol"]
        for a in res["artifacts"]:
            grid = grids.setdefault(a["dataset"], {"rows": {}, "columns": [], "protocols": []})
            if p["name"] not in grid["protocols"]:
                grid["protocols"].append(p["name"])
            row = grid["rows"].setdefault(str(a["ipc"]), {})
            for name, cell in a["cells"].items():
                column = name if name in p["baselines"] else f"{a['method']} ({name})"
                if column not in grid["columns"]:
                    grid["columns"].append(column)
                std = cell["std"] if len(cell["seeds"]) > 1 else None  # one seed measures no spread (older files wrote 0)
                row[column] = {"mean": cell["mean"], "std": std, "seeds": cell["seeds"], "content_hash": a["content_hash"]}
    for grid in grids.values():
        baselines = [c for c in grid["columns"] if " (" not in c]
        grid["columns"] = sorted(baselines) + [c for c in grid["columns"] if c not in baselines]
        grid["rows"] = dict(sorted(grid["rows"].items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0, kv[0])))
    return grids


def report_markdown(grids: dict) -> str:
    parts = []
    for dataset, grid in grids.items():
        rows = [[ipc, *(pct(cells.get(c)) for c in grid["columns"])] for ipc, cells in grid["rows"].items()]
        parts.append(f"**{dataset}** (test accuracy %, mean (std); protocols: {', '.join(grid['protocols'])})\n\n" + _markdown(["IPC", *grid["columns"]], rows))
    return "\n\n".join(parts)
