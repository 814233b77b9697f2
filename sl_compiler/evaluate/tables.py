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


RESULT_KIND = "slc-evaluate/1"
FIX = f"pass the .json files that slc evaluate wrote (kind {RESULT_KIND})"


def per_class_cell(correct, counts) -> dict:
    """Per-class test accuracy of one cell from ``correct[k][c]`` (test images of class c that
    student k got right) and ``counts[c]`` (test images of class c).

    Returns the counts, and per class the mean over seeds of the accuracy (a fraction) and its
    population std, like the cell's: None for one seed, and both None for a class the test set
    lacks.
    """
    import torch

    correct = torch.as_tensor(correct, dtype=torch.float64)
    counts = torch.as_tensor(counts, dtype=torch.float64)
    acc = correct / counts.clamp_min(1)  # (K, C)
    present = (counts > 0).tolist()
    mean = acc.mean(0).tolist()
    std = acc.std(0, unbiased=False).tolist() if len(acc) > 1 else [None] * len(mean)
    return {
        "count": [int(c) for c in counts.tolist()],
        "correct": [[int(x) for x in row] for row in correct.tolist()],
        "mean": [m if ok else None for m, ok in zip(mean, present)],
        "std": [s if ok else None for s, ok in zip(std, present)],
    }


class Fields:
    """Type checks on a parsed result whose failures name the file and the field (``artifacts[0].cells.sl.mean``)."""

    def __init__(self, where: str, kind: str = RESULT_KIND, fix: str = FIX):
        self.where, self.kind, self.fix = where, kind, fix

    def fail(self, field: str, problem: str):
        raise EvaluateError(f"{self.where}: field `{field}` {problem}", self.fix)

    def get(self, obj: dict, field: str, key: str, kind: str, optional: bool = False):
        path = f"{field}.{key}" if field else key
        if key not in obj:
            if optional:
                return None
            self.fail(path, f"is missing (an {self.kind} result has it)")
        value = obj[key]
        if not is_a(value, kind):
            self.fail(path, f"is {type(value).__name__} {short(value)}, not {kind}")
        return value


def is_a(value, kind: str) -> bool:
    """Whether ``value`` is of ``kind`` ("a string", "an integer or null", ...): JSON types, booleans are not numbers."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {
        "a string": isinstance(value, str),
        "an integer": isinstance(value, int) and not isinstance(value, bool),
        "an integer or null": value is None or (isinstance(value, int) and not isinstance(value, bool)),
        "a number": number,
        "a number or null": value is None or number,
        'a number, null or "artifact"': value is None or number or value == "artifact",
        "an object": isinstance(value, dict),
        "a list": isinstance(value, list),
    }[kind]


def short(value) -> str:
    """A value as JSON, cut to 40 characters, for an error message."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_result(data, where: str) -> dict:
    """``data`` if it is an ``slc evaluate`` result this slc reads (everything tables, reports and
    cards use), else an EvaluateError naming the file and the first bad field."""
    f = Fields(where)
    if not isinstance(data, dict):
        raise EvaluateError(f"{where} is not an slc evaluate result: it holds a JSON {type(data).__name__}, not an object", FIX)
    kind = data.get("kind")
    if kind != RESULT_KIND:
        if isinstance(kind, str) and kind.startswith("slc-evaluate/"):
            version = data.get("slc_version", "another version")
            raise EvaluateError(f"{where}: field `kind` is {kind!r}, written by slc {version}; this slc reads {RESULT_KIND}", f"report it with slc {version}, or evaluate again with this one")
        raise EvaluateError(f"{where} is not an slc evaluate result: field `kind` is {short(kind) if 'kind' in data else 'missing'}, not {RESULT_KIND!r}", FIX)
    for key, kind_ in (("slc_version", "a string"), ("device", "a string"), ("wall_s", "a number"), ("protocol", "an object"), ("artifacts", "a list")):
        f.get(data, "", key, kind_)
    p = data["protocol"]
    for key, kind_ in (("name", "a string"), ("model", "a string"), ("epochs", "an integer"), ("batch_size", "an integer"), ("optimizer", "a string"),
                       ("augment", "a string"), ("loss", "a string"), ("seeds", "a list"), ("regimes", "a list"), ("baselines", "a list")):
        f.get(p, "protocol", key, kind_)
    f.get(p, "protocol", "lr", 'a number, null or "artifact"', optional=True)
    if not data["artifacts"]:
        f.fail("artifacts", "is empty: the run evaluated no artifact")
    for i, a in enumerate(data["artifacts"]):
        row = f"artifacts[{i}]"
        if not isinstance(a, dict):
            f.fail(row, "is not an object")
        for key, kind_ in (("name", "a string"), ("version", "a string"), ("content_hash", "a string"), ("dataset", "a string"),
                           ("method", "a string"), ("cells", "an object"), ("metrics", "an object")):
            f.get(a, row, key, kind_)
        f.get(a, row, "ipc", "an integer or null")
        f.get(a, row, "skipped", "an object", optional=True)
        for name, cell in a["cells"].items():
            _check_cell(f, cell, f"{row}.cells.{name}")
    return data


def _check_cell(f: Fields, cell, field: str) -> None:
    if not isinstance(cell, dict):
        f.fail(field, "is not an object")
    seeds = f.get(cell, field, "seeds", "a list")
    acc = f.get(cell, field, "accuracy", "a list")
    for key, kind in (("mean", "a number"), ("std", "a number or null"), ("lr", "a number")):
        f.get(cell, field, key, kind)
    if not seeds or len(acc) != len(seeds) or not all(is_a(s, "an integer") for s in seeds) or not all(is_a(x, "a number") for x in acc):
        f.fail(f"{field}.accuracy", f"is not one number per seed ({len(acc)} values, {len(seeds)} seeds)")
    per_class = f.get(cell, field, "per_class", "an object", optional=True)
    if per_class is not None:
        where = f"{field}.per_class"
        counts = f.get(per_class, where, "count", "a list")
        rows = f.get(per_class, where, "correct", "a list")
        mean, std = f.get(per_class, where, "mean", "a list"), f.get(per_class, where, "std", "a list")
        c = len(counts)
        if not all(is_a(x, "an integer") for x in counts) or len(rows) != len(seeds) or any(not isinstance(r, list) or len(r) != c for r in rows) or len(mean) != c or len(std) != c:
            f.fail(where, f"is not {c} classes of counts, {len(seeds)} rows of correct answers, means and stds")


def load_results(paths: list[str | Path]) -> list[dict]:
    """The ``slc evaluate`` results in ``paths``, each checked (:func:`check_result`); none at all is refused."""
    if not paths:
        raise EvaluateError("no results given", FIX)
    return [check_result(read_json(p), str(p)) for p in paths]


def read_json(path: str | Path):
    """A results file's JSON, or an EvaluateError that names the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvaluateError(f"results file {path} does not exist", FIX) from None
    except IsADirectoryError:
        raise EvaluateError(f"results file {path} is a folder", FIX) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluateError(f"results file {path} is not JSON ({exc})", FIX) from None


def report(results: list[dict]) -> dict:
    """Merge runs into per-dataset grids: rows IPC, columns methods (``method (regime)`` and baselines).

    A later file's cell replaces an earlier one for the same (dataset, ipc, column); each grid
    lists the protocols it draws on, so mixed protocols are visible. No results is an error.
    """
    if not results:
        raise EvaluateError("no results to report", FIX)
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
