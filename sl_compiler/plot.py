"""Figures as PNG bytes: the same numbers give the same bytes.

Matplotlib's object API (``Figure`` on an Agg canvas, no pyplot) renders without a display and
leaves the caller's backend and open figures alone. Every figure is drawn under matplotlib's
default style (a user's matplotlibrc changes nothing), with the bundled DejaVu Sans font, at a
fixed dpi, and saved without the ``Software`` text chunk, the one entry that would name the
machine's matplotlib build. (Another matplotlib or FreeType version may still draw other bytes.)
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

DPI = 100
FONT = "DejaVu Sans"  # shipped with matplotlib: the same glyphs on every machine


@contextlib.contextmanager
def figure(width_in: float, height_in: float, dpi: int = DPI) -> Iterator["Figure"]:
    """A figure on its own Agg canvas, drawn under matplotlib's defaults; save it with :func:`png` inside the block."""
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"), matplotlib.rc_context({"font.family": FONT}):
        fig = Figure(figsize=(width_in, height_in), dpi=dpi)
        FigureCanvasAgg(fig)
        yield fig


def png(fig) -> bytes:
    """The figure as PNG bytes, without the Software chunk (no version or date in the file)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, metadata={"Software": None})
    return buf.getvalue()


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all (a temp file beside it, renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would have made it (mkstemp makes 0600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def accuracy_by_epoch_png(
    curves: dict[int, list[tuple[float, float, float | None]]],
    title: str,
    references: dict[int, tuple[str, float]] | None = None,
    holdout: dict[int, list[tuple[float, float, float | None]]] | None = None,
    chosen: dict[int, float] | None = None,
) -> bytes:
    """One curve per IPC; ``curves[ipc]`` holds (expert epoch, mean %, std % or None) test-accuracy points.

    A std of None (one seed: no spread measured) draws no error bar. ``references[ipc] = (label,
    accuracy %)`` draws a dashed line in that IPC's colour, e.g. the hard-label baseline the soft
    labels must beat. ``holdout[ipc]`` draws the held-out accuracy dotted in the same colour, and
    ``chosen[ipc]`` rings the chosen epoch's test point.
    """
    with figure(6.4, 4.2, dpi=120) as fig:
        ax = fig.add_subplot()
        epochs = sorted({e for points in curves.values() for e, _, _ in points})
        for ipc in sorted(curves):
            points = sorted(curves[ipc], key=lambda point: point[0])
            xs, means, stds = zip(*points)
            stds = [0.0 if s is None else s for s in stds]
            line = ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=f"IPC {ipc}" + (" test" if holdout else ""))
            colour = line[0].get_color()
            if holdout and ipc in holdout:
                hx, hy, _ = zip(*sorted(holdout[ipc], key=lambda point: point[0]))
                ax.plot(hx, hy, ":", marker="s", markersize=4, color=colour, label=f"IPC {ipc} held-out")
            if chosen and ipc in chosen:
                at = [m for x, m in zip(xs, means) if x == chosen[ipc]]
                ax.plot([chosen[ipc]] * len(at), at, "o", markersize=12, markerfacecolor="none", markeredgecolor=colour, label=f"IPC {ipc} chosen epoch")
            if references and ipc in references:
                label, value = references[ipc]
                ax.axhline(value, linestyle="--", linewidth=1, color=colour, label=f"IPC {ipc}, {label}")
        if epochs and epochs[0] > 0 and epochs[-1] / epochs[0] >= 8:
            ax.set_xscale("log", base=2)  # early checkpoints (0.125, 0.25, ...) would crowd a linear axis
        ax.set_xlabel("expert epoch")
        ax.set_ylabel("student accuracy (%)" if holdout else "student test accuracy (%)")
        ax.set_title(_wrap(title))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8 if holdout or chosen else None)
        fig.tight_layout()
        return png(fig)


def _wrap(title: str, width: int = 60) -> str:
    """A title on lines of at most ``width`` characters, so a long dataset name is not cut off."""
    import textwrap

    return "\n".join(textwrap.wrap(title, width)) or title


def accuracy_by_epoch(curves: dict[int, list[tuple[float, float, float | None]]], path: Path, title: str, references: dict[int, tuple[str, float]] | None = None, **marks) -> Path:
    """:func:`accuracy_by_epoch_png` (``marks``: ``holdout``, ``chosen``) written to ``path`` (whole or not at all)."""
    return write_bytes(Path(path), accuracy_by_epoch_png(curves, title, references, **marks))


def pareto_png(points: Sequence[tuple[int, float, float]], best: Sequence[tuple[int, float, float, float | None]], frontier: Sequence[tuple[int, float, float]], title: str) -> bytes:
    """Accuracy against IPC: every cell (ipc, epoch, mean %) as a dot, each IPC's best (ipc, epoch, mean, std) with
    its error bar, and the Pareto frontier (ipc, epoch, mean) as a line, each frontier point labelled with its epoch."""
    with figure(6.4, 4.2, dpi=120) as fig:
        ax = fig.add_subplot()
        if points:
            ax.scatter([p[0] for p in points], [p[2] for p in points], s=14, color="0.7", label="every (IPC, epoch) cell", zorder=1)
        if best:
            ax.errorbar([b[0] for b in best], [b[2] for b in best], yerr=[0.0 if b[3] is None else b[3] for b in best], fmt="o", capsize=3, color="C0", label="best epoch per IPC", zorder=2)
        if frontier:
            ax.plot([f[0] for f in frontier], [f[2] for f in frontier], "-", color="C1", linewidth=2, label="Pareto frontier", zorder=3)
            for ipc, epoch, mean in frontier:
                ax.annotate(f"epoch {epoch:g}", (ipc, mean), textcoords="offset points", xytext=(4, -12), fontsize=8)
        ipcs = sorted({p[0] for p in points} | {b[0] for b in best})
        if ipcs and ipcs[0] > 0 and ipcs[-1] / ipcs[0] >= 8:
            ax.set_xscale("log")
        if ipcs:
            ax.set_xticks(ipcs, [str(i) for i in ipcs])
        ax.set_xlabel("images per class (IPC)")
        ax.set_ylabel("student test accuracy (%)")
        ax.set_title(_wrap(title))
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        return png(fig)


def series_png(series: Sequence[dict], title: str, xlabel: str, ylabel: str, xscale: str = "linear", yscale: str = "linear") -> bytes:
    """Lines or points: each series ``{"label", "points": [[x, y, yerr|None], ...], "style": "line"|"points"|"dashed"}``."""
    with figure(6.4, 4.2, dpi=120) as fig:
        ax = fig.add_subplot()
        for s in series:
            pts = sorted(s["points"], key=lambda p: p[0])
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            errs = [0.0 if len(p) < 3 or p[2] is None else p[2] for p in pts]
            style = s.get("style", "line")
            fmt = {"line": "-o", "points": "o", "dashed": "--"}[style]
            if any(errs) and style != "dashed":
                ax.errorbar(xs, ys, yerr=errs, fmt=fmt, capsize=3, label=s["label"], markersize=4)
            else:
                ax.plot(xs, ys, fmt, label=s["label"], markersize=4)
        ax.set_xscale(xscale)
        ax.set_yscale(yscale)
        xs = sorted({p[0] for s in series for p in s["points"]})
        if xscale == "log" and 0 < len(xs) <= 12:
            ax.set_xticks(xs, [f"{x:g}" for x in xs])  # the measured points, not powers of ten
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if series:
            ax.legend(fontsize=8)
        fig.tight_layout()
        return png(fig)


def per_class_png(classes: Sequence[str], cells: dict[str, Sequence[float | None]], errors: dict[str, Sequence[float | None]], title: str) -> bytes:
    """Per-class accuracy (%) of each cell: grouped bars with error bars over seeds for up to 30
    classes, else each cell's classes sorted by accuracy (a distribution: many classes leave no room for names)."""
    many = len(classes) > 30
    width = 6.4 if many else max(6.4, 0.32 * len(classes) * max(1, len(cells)) ** 0.5 + 2)
    with figure(width, 4.2, dpi=120) as fig:
        ax = fig.add_subplot()
        names = list(cells)
        if many:
            for name in names:
                values = sorted((v for v in cells[name] if v is not None), reverse=True)
                ax.plot(range(1, len(values) + 1), values, "-", label=name)
            ax.set_xlabel(f"class rank (of {len(classes)}, by accuracy)")
        else:
            step = 0.8 / max(1, len(names))
            for j, name in enumerate(names):
                xs = [i - 0.4 + step * (j + 0.5) for i in range(len(classes))]
                ys = [0.0 if v is None else v for v in cells[name]]
                err = [0.0 if e is None else e for e in errors.get(name, [None] * len(classes))]
                ax.bar(xs, ys, width=step, yerr=err, capsize=2, label=name)
            ax.set_xticks(range(len(classes)), [c[:14] for c in classes], rotation=45, ha="right", fontsize=8)
            ax.set_xlabel("class")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return png(fig)


def heatmap_png(matrix, rows: Sequence[str], columns: Sequence[str], title: str, xlabel: str, ylabel: str, colorbar: str) -> bytes:
    """A (R, C) matrix as an image with a colour bar from 0 to its maximum; axis names up to 30 rows and columns."""
    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float64)
    side = min(max(2.4, 0.32 * max(len(rows), len(columns))), 7.0)  # inches of matrix: small sets stay small
    tall = len(rows) / max(1, len(columns))
    with figure(side + 2.6, min(max(3.0, side * tall + 1.8), 12.0), dpi=120) as fig:
        ax = fig.add_subplot()
        top = float(matrix.max()) if matrix.size else 0.0
        im = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=top if top > 0 else 1.0, interpolation="nearest", aspect="auto")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=colorbar)
        if len(columns) <= 30:
            ax.set_xticks(range(len(columns)), [str(n)[:14] for n in columns], rotation=90, fontsize=7)
        if len(rows) <= 30:
            ax.set_yticks(range(len(rows)), [str(n)[:14] for n in rows], fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        fig.tight_layout()
        return png(fig)


GRID_LABEL_PX = 130  # left margin for the class names
GRID_LINE_PX = 11  # one caption line at 7 pt, 100 dpi
GRID_TITLE_LINE_PX = 16  # one title line at 10 pt
GRID_TITLE_CHAR_PX = 7  # a title character, on average, for wrapping
GRID_GAP_PX = 10
GRID_MAX_PX = 32768  # Agg draws at most 2**16 pixels a side; a grid taller than this is unreadable anyway


def image_grid_png(rows: Sequence[tuple[str, Sequence[tuple["np.ndarray", Sequence[tuple[str, bool]]] | None]]], title: str) -> bytes:
    """Tiles in rows: ``rows[r] = (row label, [(image uint8 (T, T, 3), [(caption line, emphasised), ...]) or None, ...])``.

    Every image has the same side T (scaled by the caller); None leaves a gap that groups the tiles
    around it. The tiles are pasted into one pixel canvas drawn once (one image, not an axes per
    tile: fast, and exact pixels); captions are text under each tile, an emphasised line in bold.
    Drawn at :data:`DPI`, one canvas pixel per image pixel.
    """
    import textwrap

    import numpy as np

    tiles = [t for _, row in rows for t in row if t is not None]
    if not tiles:
        raise ValueError("an image grid needs at least one tile")
    side = tiles[0][0].shape[0]
    lines = max(len(caption) for _, caption in tiles)
    col_px, gap_px = side + GRID_GAP_PX, 2 * GRID_GAP_PX
    row_px = side + lines * GRID_LINE_PX + 2 * GRID_GAP_PX
    xs = []  # the left edge of each entry, per row
    for _, row in rows:
        at, edges = GRID_LABEL_PX, []
        for t in row:
            edges.append(at)
            at += col_px if t is not None else gap_px
        xs.append((edges, at))
    width = max(at for _, at in xs) + GRID_GAP_PX
    title_lines = textwrap.wrap(title, max(20, (width - 2 * GRID_GAP_PX) // GRID_TITLE_CHAR_PX)) or [""]
    top_px = GRID_GAP_PX + len(title_lines) * GRID_TITLE_LINE_PX
    height = top_px + len(rows) * row_px
    if max(width, height) > GRID_MAX_PX:
        raise ValueError(f"a grid of {len(rows)} rows and {len(tiles)} images would be {width}x{height} pixels (at most {GRID_MAX_PX} a side)")
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for r, (_, row) in enumerate(rows):
        y = top_px + r * row_px + GRID_GAP_PX // 2
        for x, t in zip(xs[r][0], row):
            if t is not None:
                canvas[y : y + side, x : x + side] = t[0]
    with figure(width / DPI, height / DPI) as fig:
        fig.figimage(canvas, 0, 0, origin="upper")
        fig.text(GRID_GAP_PX / width, 1 - (GRID_GAP_PX // 2) / height, "\n".join(title_lines), fontsize=10, va="top", ha="left", linespacing=1.1)
        for r, (label, row) in enumerate(rows):
            top = top_px + r * row_px + GRID_GAP_PX // 2
            fig.text((GRID_LABEL_PX - GRID_GAP_PX) / width, 1 - (top + side / 2) / height, label[:18], fontsize=8, va="center", ha="right")
            for x, t in zip(xs[r][0], row):
                if t is None:
                    continue
                for i, (text, bold) in enumerate(t[1]):
                    y = 1 - (top + side + 2 + i * GRID_LINE_PX) / height
                    fig.text(x / width, y, text, fontsize=7, va="top", ha="left", family="DejaVu Sans Mono", weight="bold" if bold else "normal")
        return png(fig)
