"""HTML for one self-contained page: escaped text, sortable tables, figures as data URIs, no framework.

The page loads nothing: its Content-Security-Policy allows no source at all except ``data:``
images and the one inline style sheet and script, named by their sha256. So a page that tried to
reach the network (or ran an injected script) would be stopped by the browser, not just by care.
The script only sorts tables: a click (or Enter) on a header sorts the rows by that column's
``data-sort`` values, numbers as numbers, again for the other direction.
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass

CSS = """\
:root { color-scheme: light; --line: #d0d4da; --muted: #5b6470; --head: #f3f5f8; --accent: #1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d2330; background: #fff; }
header, main { max-width: 1180px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 22px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 34px 0 8px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 17px; margin: 24px 0 6px; }
h4 { font-size: 15px; margin: 16px 0 4px; }
p, li { max-width: 90ch; }
.muted, figcaption, caption { color: var(--muted); font-size: 13px; }
nav ul { display: flex; flex-wrap: wrap; gap: 4px 18px; padding: 0; list-style: none; }
a { color: var(--accent); }
code, pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
pre { background: var(--head); border: 1px solid var(--line); padding: 8px 10px; overflow-x: auto; max-height: 360px; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 14px; }
caption { caption-side: bottom; text-align: left; padding-top: 4px; max-width: 90ch; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; min-width: 4em; max-width: 16em; }
td.name { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { font-weight: 700; }
.std, .seeds { color: var(--muted); font-size: 12px; }
.seeds { display: block; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #9aa3ad; }
table.sortable th[aria-sort="ascending"]::after { content: " \\2191"; color: var(--accent); }
table.sortable th[aria-sort="descending"]::after { content: " \\2193"; color: var(--accent); }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0 12px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.note { background: #fff8e1; border: 1px solid #f0d98a; padding: 6px 10px; max-width: 90ch; }
"""

SCRIPT = """\
(function () {
  "use strict";
  function key(cell) {
    var v = cell ? cell.getAttribute("data-sort") : null;
    if (v === null) { v = cell ? cell.textContent.trim() : ""; }
    var n = Number(v);
    return v !== "" && isFinite(n) ? n : v.toLowerCase();
  }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    if (typeof a === "number") { return -1; }
    if (typeof b === "number") { return 1; }
    return a < b ? -1 : a > b ? 1 : 0;
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, column) {
      th.tabIndex = 0;
      function sort() {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var order = compare(key(a.cells[column]), key(b.cells[column]));
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(); }
      });
    });
  });
}());
"""

MISSING = "-1e300"  # sort key of an empty cell: below every number


def esc(value) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Cell:
    """A table cell: ``html`` (already escaped markup), its sort key, and a CSS class (``num`` right-aligns)."""

    html: str
    sort: str | None = None
    cls: str = ""


def text(value, sort=None, cls: str = "") -> Cell:
    """A cell of plain text (escaped)."""
    return Cell(esc(value), None if sort is None else str(sort), cls)


def fixed(value: float, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, never ``-0.00``."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def number(value: float | None, digits: int = 2, scale: float = 1.0) -> Cell:
    """A right-aligned number (``value * scale``), sorted by value; None is an empty cell sorted last."""
    if value is None:
        return Cell("", MISSING, "num")
    return Cell(esc(fixed(value * scale, digits)), repr(float(value)), "num")


def mean_std(mean: float, std: float | None, seeds: list | None = None, scale: float = 100.0, best: bool = False) -> Cell:
    """``67.80 ± 0.40`` (percent of a fraction), the seeds under it, sorted by the mean."""
    spread = "n/a" if std is None else fixed(std * scale)
    body = f"{esc(fixed(mean * scale))} <span class=\"std\">± {esc(spread)}</span>"
    if seeds is not None:
        body += f'<span class="seeds">seeds {esc(format_list(seeds))}</span>'
    return Cell(body, repr(float(mean)), "num best" if best else "num")


def format_list(values: list) -> str:
    """Seeds as ``0-4`` when consecutive, else ``0, 3, 7``."""
    values = list(values)
    if len(values) > 2 and all(isinstance(v, int) for v in values) and values == list(range(values[0], values[0] + len(values))):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(str(v) for v in values)


def table(header: list[str], rows: list[list[Cell]], caption: str | None = None, sortable: bool = True, tid: str | None = None) -> str:
    """A table whose rows sort by any column (a click on its header) unless ``sortable`` is False."""
    attrs = ' class="sortable"' if sortable else ""
    attrs += f' id="{esc(tid)}"' if tid else ""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in header)
    body = []
    for row in rows:
        tds = []
        for c in row:
            a = (f' class="{esc(c.cls)}"' if c.cls else "") + (f' data-sort="{esc(c.sort)}"' if c.sort is not None else "")
            tds.append(f"<td{a}>{c.html}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f'<div class="scroll"><table{attrs}>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def figure(png: bytes, alt: str, caption: str | None = None) -> str:
    """A PNG inline as a data URI, with its alt text and caption."""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{esc(alt)}">{cap}</figure>'


def facts(items: list[tuple[str, str]]) -> str:
    """A definition list of (term, already escaped markup)."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def code(value) -> str:
    return f"<code>{esc(value)}</code>"


def pre(value) -> str:
    return f"<pre>{esc(value)}</pre>"


def note(markup: str) -> str:
    return f'<p class="note">{markup}</p>'


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


def page(title: str, subtitle: str, nav: list[tuple[str, str]], body: str) -> str:
    """The whole document: head with the policy, style and title, header with the contents, ``body``, the script."""
    policy = f"default-src 'none'; img-src data:; style-src {_csp_hash(CSS)}; script-src {_csp_hash(SCRIPT)}; base-uri 'none'; form-action 'none'"
    links = "".join(f'<li><a href="#{esc(anchor)}">{esc(label)}</a></li>' for anchor, label in nav)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(policy)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{esc(title)}</h1><p class=\"muted\">{subtitle}</p><nav><ul>{links}</ul></nav></header>\n"
        f"<main>\n{body}\n</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
