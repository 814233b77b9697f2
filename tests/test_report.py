"""slc report: result files checked by kind and field, per-class accuracy from slc evaluate, markdown
and JSON as before, and the HTML page, read as a parser sees it and (marker ``browser``) as a person
sees it in headless Chromium."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cli.main import main as slc
from sl_compiler.errors import EvaluateError
from sl_compiler.evaluate.tables import per_class_cell, report, report_markdown
from sl_compiler.report import html as h
from sl_compiler.report import load_inputs, render

from headless import CHROMIUM, Browser
from report_data import build


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Real result files: an evaluation of two artifacts (with per-class accuracy), a sweep, an analysis."""
    return build(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def page(made, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("page") / "report.html"
    assert slc(["report", str(made["results"]), str(made["sweep"]), str(made["analysis"]), "--html", str(out)]) == 0
    return out


def _results(made) -> dict:
    return json.loads(made["results"].read_text())


# ---- per-class accuracy --------------------------------------------------------------------------


def test_per_class_cell_is_the_mean_and_spread_of_each_class_over_seeds():
    cell = per_class_cell([[3, 0, 2], [1, 0, 2]], [4, 0, 2])
    assert cell["count"] == [4, 0, 2] and cell["correct"] == [[3, 0, 2], [1, 0, 2]]
    assert cell["mean"] == [0.5, None, 1.0] and cell["std"] == [0.25, None, 0.0]  # exact in binary: quarters
    assert per_class_cell([[1, 2]], [2, 4])["std"] == [None, None]  # one seed measures no spread


def test_evaluate_records_per_class_hits_that_add_up_to_each_seeds_accuracy(made):
    for row in _results(made)["artifacts"]:
        for name, cell in row["cells"].items():
            pc = cell["per_class"]
            assert pc["count"] == [6, 6, 6, 6]  # the test split: 6 images per class
            for k, acc in enumerate(cell["accuracy"]):
                assert sum(pc["correct"][k]) == round(acc * 24)  # the same predictions, counted by class
                assert acc == sum(pc["correct"][k]) / 24
            for c in range(4):
                assert pc["mean"][c] == pytest.approx(sum(r[c] for r in pc["correct"]) / 6 / len(cell["seeds"]), abs=1e-15)


# ---- inputs: kinds and fields ----------------------------------------------------------------------


def _write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _fails(path: Path, message: str) -> None:
    with pytest.raises(EvaluateError, match=message):
        load_inputs([path])


def test_each_kind_is_checked_and_a_bad_field_is_named(made, tmp_path):
    result = _results(made)
    assert [i.kind for i in load_inputs([made["results"], made["sweep"], made["analysis"]])] == ["slc-evaluate/1", "slc-sweep/1", "slc-analysis/1"]
    bad = copy.deepcopy(result)
    del bad["artifacts"][1]["cells"]["sl"]["mean"]
    _fails(_write(tmp_path, "a.json", bad), r"a.json: field `artifacts\[1\].cells.sl.mean` is missing \(an slc-evaluate/1 result has it\)")
    bad = copy.deepcopy(result)
    bad["artifacts"][0]["ipc"] = "two"
    _fails(_write(tmp_path, "b.json", bad), r'b.json: field `artifacts\[0\].ipc` is str "two", not an integer or null')
    bad = copy.deepcopy(result)
    bad["artifacts"][0]["cells"]["random-hl"]["per_class"]["correct"].pop()
    _fails(_write(tmp_path, "c.json", bad), r"field `artifacts\[0\].cells.random-hl.per_class` is not 4 classes")
    bad = {**result, "artifacts": []}
    _fails(_write(tmp_path, "d.json", bad), r"field `artifacts` is empty")
    sweep = json.loads(made["sweep"].read_text())
    del sweep["cells"][0]["mean"]
    _fails(_write(tmp_path, "sweep.json", sweep), r"field `cells\[0\].mean` is missing \(an slc-sweep/1 result has it\)")
    analysis = json.loads(made["analysis"].read_text())
    analysis["figures"][0]["series"][0]["style"] = "wiggly"
    _fails(_write(tmp_path, "an.json", analysis), r"field `figures\[0\].series\[0\].style` is 'wiggly', not one of line, points, dashed")
    analysis["figures"][0]["series"][0]["style"] = "line"
    analysis["figures"][0]["series"][0]["points"][1] = [2]
    _fails(_write(tmp_path, "an.json", analysis), r"field `figures\[0\].series\[0\].points\[1\]` is \[2\], not \[x, y\] or \[x, y, error\]")


def test_another_version_or_another_shape_names_the_kind_field(made, tmp_path):
    result = _results(made)
    _fails(_write(tmp_path, "new.json", {**result, "kind": "slc-evaluate/2", "slc_version": "9.0.0"}),
           r"new.json: field `kind` is 'slc-evaluate/2', written by slc 9.0.0; this slc reads slc-evaluate/1")
    _fails(_write(tmp_path, "bench.json", {"benchmark": "storage", "figures": {}}), r"bench.json: field `kind` is missing: not a result this report knows")
    _fails(_write(tmp_path, "other.json", {"kind": "something/1"}), r"field `kind` is \"something/1\"")
    _fails(_write(tmp_path, "list.json", [1, 2]), r"holds a JSON list, not a result object")
    (tmp_path / "text.json").write_text("not json")
    _fails(tmp_path / "text.json", r"text.json is not JSON")
    _fails(tmp_path / "missing.json", r"missing.json does not exist")
    with pytest.raises(EvaluateError, match="no results given"):
        load_inputs([])
    with pytest.raises(EvaluateError, match="no results to report"):
        report([])


def test_cli_bad_input_is_one_line_and_exit_2(made, tmp_path, capsys):
    bad = _write(tmp_path, "bad.json", {**_results(made), "kind": "slc-evaluate/7", "slc_version": "7.1"})
    out = tmp_path / "r.html"
    assert slc(["report", str(bad), "--html", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: field `kind`") and not out.exists()
    assert slc(["report"]) == 2  # a report of nothing
    assert "Missing argument" in capsys.readouterr().err


# ---- markdown and --json, as before ------------------------------------------------------------------


def test_markdown_and_json_of_evaluation_results_are_unchanged(made, capsys):
    result = _results(made)
    assert slc(["report", str(made["results"])]) == 0
    assert capsys.readouterr().out == report_markdown(report([result])) + "\n"
    assert slc(["report", str(made["results"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(report([result])))


def test_markdown_shows_sweeps_and_analyses_and_json_refuses_them(made, capsys):
    assert slc(["report", str(made["results"]), str(made["sweep"]), str(made["analysis"])]) == 0
    out = capsys.readouterr().out
    sweep = json.loads(made["sweep"].read_text())
    assert "| expert epoch | IPC 1 | IPC 2 |" in out and "Fit acc = (a IPC / b)^c - d" in out and "| top-2 | 1 | 0.12 | 0.18 | 0.3 | 0.997 |" in out
    for ipc, best in sweep["best"].items():
        assert f"**{best['mean']:.1f} ± n/a**" in out  # each IPC's best, in bold
    assert slc(["report", str(made["results"]), str(made["sweep"]), "--json"]) == 2
    assert "is a slc-sweep/1 result" in capsys.readouterr().err


# ---- the page, parsed ------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Tables (header and cell texts), images, links, scripts and styles of a page."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.urls, self.scripts, self.styles, self.csp = [], [], [], [], [], None
        self._cell = self._in = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href", "action"):
            if key in a:
                self.urls.append(a[key])
        if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.csp = a["content"]
        elif tag == "table":
            self.tables.append({"head": [], "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = [tag, "", a.get("data-sort")]
        elif tag == "img":
            self.images.append(a)
        elif tag in ("script", "style"):
            self._in = [tag, ""]

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell:
            kind, text, sort = self._cell
            (self.tables[-1]["head"] if kind == "th" else self.tables[-1]["rows"][-1]).append((" ".join(text.split()), sort))
            self._cell = None
        elif tag in ("script", "style") and self._in:
            (self.scripts if tag == "script" else self.styles).append(self._in[1])
            self._in = None

    def handle_data(self, data):
        if self._cell:
            self._cell[1] += " " + data  # the seeds are a block under the value
        if self._in:
            self._in[1] += data


def _parse(page: Path | str) -> _Page:
    parsed = _Page()
    parsed.feed(page if isinstance(page, str) else page.read_text(encoding="utf-8"))
    return parsed


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_page_is_self_contained_and_its_policy_allows_only_itself(page):
    p = _parse(page)
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in p.urls)  # no network, no file next to it
    assert len(p.scripts) == len(p.styles) == 1
    assert p.csp.startswith("default-src 'none'; img-src data:;")
    assert f"style-src {_csp_hash(p.styles[0])};" in p.csp and f"script-src {_csp_hash(p.scripts[0])};" in p.csp  # exactly this script and style
    for img in p.images:
        data = base64.b64decode(img["src"].split(",", 1)[1])
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and img["alt"]


def test_the_page_holds_every_evaluation_cell_with_mean_std_and_seeds(made, page):
    p = _parse(page)
    result = _results(made)
    grid = next(t for t in p.tables if t["head"] and t["head"][0][0].startswith("IPC"))
    merged = report([result])[result["artifacts"][0]["dataset"]]
    assert [text for text, _ in grid["head"]] == ["IPC", *merged["columns"]]
    body = [r for r in grid["rows"] if r]
    assert [r[0][0] for r in body] == list(merged["rows"])
    for row in body:
        for (text, sort), column in zip(row[1:], merged["columns"]):
            cell = merged["rows"][row[0][0]].get(column)
            if cell is None:
                assert text == "" and sort == h.MISSING
                continue
            std = "n/a" if cell["std"] is None else f"{100 * cell['std']:.2f}"
            assert text == f"{100 * cell['mean']:.2f} ± {std} seeds {', '.join(map(str, cell['seeds']))}" and float(sort) == cell["mean"]


def test_the_page_shows_per_class_accuracy_heat_maps_grids_and_provenance(made, page):
    text = page.read_text()
    p = _parse(page)
    result = _results(made)
    parts = {chunk[:12]: chunk for chunk in text.split('<h3 id="artifact-')[1:]}  # each artifact's part of the page
    for row in result["artifacts"]:
        part = parts[row["content_hash"][:12]]
        manifest = json.loads((Path(row["path"]) / "manifest.json").read_text())
        assert manifest["manifest_sha256"] in part and manifest["content_hash"] in part and manifest["teachers"][0]["sha256"] in part
        grid_png = (Path(row["path"]) / "grid.png").read_bytes()
        assert base64.b64encode(grid_png).decode() in part  # the artifact's own grid, inline
        table = next(t for t in _parse("<h3>" + part).tables if [c for c, _ in t["head"]] == ["class", "test images", *row["cells"]])
        for r in (r for r in table["rows"] if r):
            k = int(r[0][0].split("_")[1])
            for (cell_text, sort), name in zip(r[2:], row["cells"]):
                assert float(sort) == row["cells"][name]["per_class"]["mean"][k]
    alts = [img["alt"] for img in p.images]
    assert sum(a.startswith("Heat map of the mean soft label") for a in alts) == 2
    assert sum(a.startswith("The first images of each class") for a in alts) == 2
    assert sum(a == "Per-class test accuracy of each cell" for a in alts) == 2
    assert any(a.startswith("Student accuracy against expert epoch") for a in alts) and any(a.startswith("Pareto front") for a in alts)
    assert any(a.startswith("Student accuracy against IPC, per k") for a in alts) and "Accuracy by k and IPC" in alts
    assert f"<dt>wall time</dt><dd>{result['wall_s']:.1f} s</dd>" in text and f"<dt>versions</dt><dd>slc {result['slc_version']}, torch {result['torch_version']}" in text


def test_the_page_is_the_same_bytes_from_the_same_inputs(made, tmp_path):
    inputs = load_inputs([made["results"], made["sweep"], made["analysis"]])
    assert render(inputs) == render(load_inputs([made["results"], made["sweep"], made["analysis"]]))


def test_artifacts_that_cannot_be_read_here_are_named_not_guessed(made, tmp_path):
    result = _results(made)
    moved = copy.deepcopy(result)
    moved["artifacts"][0]["path"] = str(tmp_path / "gone")
    shutil.copytree(made["views"], tmp_path / "impostor")  # another artifact where the second row's folder points
    moved["artifacts"][1]["path"] = str(tmp_path / "impostor")
    moved["artifacts"][1]["content_hash"] = moved["artifacts"][1]["content_hash"][::-1]
    text = render(load_inputs([_write(tmp_path, "moved.json", moved)]))
    assert f"no artifact at {tmp_path / 'gone'}" in text
    assert f"{tmp_path / 'impostor'} now holds content hash {result['artifacts'][1]['content_hash'][:8]}" in text
    assert "Heat map of the mean soft label" not in text and "grid.png:" not in text
    assert "Per-class test accuracy of each cell" in text  # what the results themselves record is still shown


def test_a_relative_artifact_path_is_found_beside_the_results_file(made, tmp_path, monkeypatch):
    folder = tmp_path / "elsewhere"
    shutil.copytree(made["dense"], folder / "art")
    result = _results(made)
    result["artifacts"] = [{**result["artifacts"][0], "path": "art"}]
    path = _write(folder, "results.json", result)
    monkeypatch.chdir(tmp_path)  # "art" is not in the current folder
    text = render(load_inputs([path]))
    assert base64.b64encode((folder / "art" / "grid.png").read_bytes()).decode() in text


# ---- the page, in a browser ------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_page_in_headless_chromium_loads_clean_and_shows_its_plots_and_sortable_tables(page, tmp_path):
    with Browser(1280, 1600) as browser:
        browser.open(page.resolve().as_uri())
        assert browser.problems() == []  # no console error, no exception, no blocked load
        assert all(u.startswith("data:image/png") or u == page.resolve().as_uri() for u in browser.requests())  # nothing from the network
        images = browser.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])")
        assert len(images) == len(_parse(page).images) == 10 and all(done and w > 0 and hgt > 0 and shown > 0 for done, w, hgt, shown in images)  # every plot decoded and laid out
        assert browser.evaluate("document.querySelectorAll('table.sortable').length") >= 8
        # a person clicks a header: the rows sort by that column, then the other way
        order = """(() => { const t = document.querySelector('#artifacts table.sortable'); return Array.from(t.tBodies[0].rows).map(r => Number(r.cells[2].dataset.sort)); })()"""
        click = "document.querySelector('#artifacts table.sortable').tHead.rows[0].cells[2].click()"
        before = browser.evaluate(order)
        browser.evaluate(click)
        ascending = browser.evaluate(order)
        browser.evaluate(click)
        descending = browser.evaluate(order)
        assert len(set(before)) > 1 and ascending == sorted(before) and descending == sorted(before, reverse=True)
        names = "Array.from(document.querySelector('#artifacts table.sortable').tBodies[0].rows).map(r => r.cells[1].textContent)"
        by_name = "document.querySelector('#artifacts table.sortable').tHead.rows[0].cells[1].click()"
        cells = browser.evaluate(names)
        browser.evaluate(by_name)
        assert len(set(cells)) > 1 and browser.evaluate(names) == sorted(cells)  # text sorts as text
        browser.evaluate(by_name)
        assert browser.evaluate(names) == sorted(cells, reverse=True)
        assert browser.evaluate("document.querySelector('#artifacts table.sortable').tHead.rows[0].cells[2].getAttribute('aria-sort')") is None
        assert browser.evaluate("document.querySelector('#artifacts table.sortable').tHead.rows[0].cells[1].getAttribute('aria-sort')") == "descending"
        shot = browser.screenshot()
        assert browser.problems() == []
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
    (tmp_path / "report.png").write_bytes(shot)


def test_a_grid_that_does_not_match_its_record_is_redrawn_not_shown(made, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(made["dense"], art)
    good = (art / "grid.png").read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 1
    (art / "grid.png").write_bytes(bytes(bad))
    result = _results(made)
    result["artifacts"] = [{**result["artifacts"][0], "path": str(art)}]
    text = render(load_inputs([_write(tmp_path, "r.json", result)]))
    assert base64.b64encode(good).decode() in text and base64.b64encode(bytes(bad)).decode() not in text


# ---- slc analyze's own JSON, converted by each analysis's report_view -------------------------------

SETTINGS = {"slc_version": "0.2.0", "spec": {"dataset": "synthetic", "teacher_arch": "convnet_d3"}, "epochs": [0.0, 1.0], "protocol": {"name": "tiny", "hash": "abc"}, "num_classes": 3}
FIT = {"fitted": True, "form": "acc = (a * IPC / b)^c - d", "b": 2.0, "c": 0.5, "d": -10.0, "a": {"hard": 1.0, "top-3": 3.0}, "r2": 0.99, "r2_curves": {}, "points": 6,
       "factor": 3.0, "factor_curve": "top-3", "teacher_accuracy": 60.0, "ipc_to_teacher": {"hard": 2500.0, "top-3": 833.3}}
ANALYZE = {
    "swap": {"kind": "slc-analyze-swap/1", "settings": {**SETTINGS, "indices": [1, 2]}, "cells": [
        {"ipc": 1, "epoch": 1.0, "content_hash": "h1", "control": {"accuracies": [40.0], "mean": 40.0, "std": None},
         "swaps": {"1": {"accuracies": [20.0], "mean": 20.0, "std": None, "relative": 50.0}, "2": {"accuracies": [30.0], "mean": 30.0, "std": None, "relative": 75.0}}},
        {"ipc": 10, "epoch": 1.0, "content_hash": "h2", "control": {"accuracies": [50.0], "mean": 50.0, "std": None},
         "swaps": {"1": {"accuracies": [45.0], "mean": 45.0, "std": None, "relative": 90.0}, "2": {"accuracies": [49.0], "mean": 49.0, "std": None, "relative": 98.0}}}]},
    "temperature": {"kind": "slc-analyze-temperature/1", "settings": {**SETTINGS, "temperatures": [1.0, 4.0]}, "cells": [
        {"ipc": 1, "epoch": e, "temperature": t, "content_hash": "h", "accuracies": [m], "mean": m, "std": None}
        for e, t, m in [(0.0, 1.0, 31.25), (0.0, 4.0, 33.5), (1.0, 1.0, 41.75), (1.0, 4.0, 37.0)]],
        "best": {"1": {"epoch": 1.0, "temperature": 1.0, "mean": 41.75}}},
    "scaling": {"kind": "slc-analyze-scaling/1", "settings": {**SETTINGS, "ks": [3], "renormalize": False},
                "hard": [{"ipc": i, "accuracies": [m], "mean": m, "std": None} for i, m in [(1, 20.0), (2, 24.0), (4, 30.0)]],
                "cells": [{"ipc": i, "epoch": 1.0, "k": 3, "content_hash": "h", "accuracies": [m], "mean": m, "std": 0.5} for i, m in [(1, 30.0), (2, 36.0), (4, 41.0)]],
                "fits": {"1": FIT}, "pareto": None},
    "entropy": {"kind": "slc-analyze-entropy/1", "settings": {**SETTINGS, "train": False}, "cells": [
        {"ipc": 1, "epoch": 0.0, "content_hash": "h", "expert_accuracy": 10.0, "entropy": 1.0986, "student": None},
        {"ipc": 1, "epoch": 1.0, "content_hash": "h", "expert_accuracy": 55.0, "entropy": 0.4321, "student": {"accuracies": [35.0], "mean": 35.0, "std": None}}]},
    "zeroshot": {"kind": "slc-analyze-zeroshot/1", "settings": {**SETTINGS, "classes": [2], "renormalize": False}, "class_names": ["bird"], "cells": [
        {"ipc": 1, "epoch": 1.0, "content_hash": "h", "classes": {"2": {
            "control": {"removed": 61.5, "removed_std": None, "rest": 40.0, "rest_std": None, "overall": 45.0},
            "remove image": {"removed": 12.25, "removed_std": None, "rest": 42.0, "rest_std": None, "overall": 35.0},
            "remove label": {"removed": 55.0, "removed_std": None, "rest": 30.0, "rest_std": None, "overall": 38.0}}}}]},
    "jsd": {"kind": "slc-analyze-jsd/1", "settings": {**SETTINGS, "artifact": {"name": "bptt-set", "version": "1", "content_hash": "h", "images": 3}},
            "epochs": [{"epoch": 0.0, "raw": 0.3125, "normalised": 1.0, "closest_images": 0, "expert_vs_expert": {"pairs": 1, "min": 0.05, "mean": 0.05, "max": 0.05}},
                       {"epoch": 1.0, "raw": 0.0625, "normalised": 0.0, "closest_images": 3, "expert_vs_expert": {"pairs": 1, "min": 0.07, "mean": 0.07, "max": 0.07}}],
            "best": {"epoch": 1.0, "raw": 0.0625, "within_expert_range": True}},
    "classes": {"kind": "slc-analyze-classes/1", "settings": {**SETTINGS, "artifact": {"name": "set", "content_hash": "h"}, "ipc": 1, "epoch": 1.0, "teacher": "convnet_d3@1#0"},
                "classes": ["cat", "dog", "bird"], "mean_label": [[0.7125, 0.2, 0.0875], [0.25, 0.6875, 0.0625], [0.1, 0.1, 0.8]], "diagonal": [0.7125, 0.6875, 0.8]},
}


def test_every_slc_analyze_kind_is_read_as_an_analysis(tmp_path):
    from sl_compiler.analyze import ANALYSES

    assert set(ANALYZE) == set(ANALYSES)
    inputs = load_inputs([_write(tmp_path, f"{n}.json", d) for n, d in ANALYZE.items()])
    assert [(i.kind, i.source_kind, i.data["analysis"]) for i in inputs] == [("slc-analysis/1", f"slc-analyze-{n}/1", n) for n in ANALYZE]
    view = {i.data["analysis"]: i.data for i in inputs}
    scaling = {s["label"]: s for s in view["scaling"]["figures"][0]["series"]}
    assert set(scaling) == {"hard labels", "top-3", "fit top-3 (a=3)", "fit hard"} and scaling["fit top-3 (a=3)"]["style"] == "dashed"
    x, y = scaling["fit top-3 (a=3)"]["points"][-1]
    assert x == pytest.approx(4.0) and y == pytest.approx((3.0 * 4 / 2.0) ** 0.5 + 10.0)  # the fitted law itself
    assert ["top-3", 3.0, 2.0, 0.5, -10.0, 0.99, "833"] in view["scaling"]["tables"][1]["rows"]
    assert [s["points"] for s in view["swap"]["figures"][0]["series"]] == [[[1, 50.0, None], [2, 75.0, None]], [[1, 90.0, None], [2, 98.0, None]]]
    assert view["temperature"]["heatmaps"][0]["values"] == [[31.25, 33.5], [41.75, 37.0]] and view["temperature"]["heatmaps"][0]["columns"] == ["1", "4"]
    assert view["entropy"]["figures"][0]["series"] == [{"label": "IPC 1", "style": "line", "points": [[0.0, 1.0986, None], [1.0, 0.4321, None]]}]
    assert view["zeroshot"]["heatmaps"][0]["values"] == [[61.5, 12.25, 55.0]]
    assert [p[1] for p in view["jsd"]["figures"][0]["series"][0]["points"]] == [0.3125, 0.0625]
    assert view["classes"]["heatmaps"][0]["values"] == ANALYZE["classes"]["mean_label"]


def test_the_page_draws_slc_analyze_results(tmp_path):
    paths = [_write(tmp_path, f"{n}.json", d) for n, d in ANALYZE.items()]
    out = tmp_path / "r.html"
    assert slc(["report", *map(str, paths), "--html", str(out)]) == 0
    text, p = out.read_text(encoding="utf-8"), _parse(out)
    alts = " ".join(i.get("alt", "") for i in p.images)
    for label in ("fit top-3 (a=3)", "fit hard", "IPC 10, expert epoch 1", "IPC 1: student accuracy (%) over expert epoch x temperature", "Mean soft label per class: set", "bptt-set vs ensemble"):
        assert label in alts
    cells = {c for t in p.tables for r in t["rows"] for c, _ in r}
    assert {"0.7125", "0.6875", "12.25", "41.75", "0.3125", "0.4321"} <= cells  # the heat maps' and curves' numbers, as tables
    assert "slc-analyze-classes/1" in text and text.count('id="analysis-') == 7
    assert slc(["report", str(paths[0])]) == 0  # markdown too


@pytest.mark.parametrize("name, change, field", [
    ("swap", lambda d: d["cells"][1]["control"].pop("mean"), r"cells\[1\].control.mean` is missing \(an slc-analyze-swap/1 result has it\)"),
    ("scaling", lambda d: d["fits"]["1"].update(b="two"), r'fits.1.b` is str "two", not a number'),
    ("temperature", lambda d: d["cells"][0].pop("temperature"), r"cells\[0\].temperature` is missing"),
    ("entropy", lambda d: d.update(cells=[]), r"field `cells` is empty"),
    ("zeroshot", lambda d: d["cells"][0]["classes"]["2"].pop("remove label"), r"cells\[0\].classes.2.remove label` is missing"),
    ("jsd", lambda d: d["epochs"][0].update(raw=None), r"epochs\[0\].raw` is NoneType null, not a number"),
    ("classes", lambda d: d["mean_label"].pop(), r"field `mean_label` is not 3 rows of 3 numbers"),
])
def test_a_bad_slc_analyze_field_is_named(name, change, field, tmp_path, capsys):
    data = copy.deepcopy(ANALYZE[name])
    change(data)
    path = _write(tmp_path, f"{name}.json", data)
    _fails(path, field)
    assert slc(["report", str(path), "--html", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: field `") and not (tmp_path / "r.html").exists()


def test_an_unknown_or_newer_slc_analyze_kind_is_refused(tmp_path):
    _fails(_write(tmp_path, "x.json", {**ANALYZE["swap"], "kind": "slc-analyze-swap/2", "slc_version": "9.0"}), r"field `kind` is 'slc-analyze-swap/2', written by slc 9.0; this slc reads slc-analyze-swap/1")
    _fails(_write(tmp_path, "y.json", {**ANALYZE["swap"], "kind": "slc-analyze-bogus/1"}), r"field `kind` is 'slc-analyze-bogus/1': not an analysis this slc knows")
