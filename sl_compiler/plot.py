"""Plots for result tables: student accuracy against expert epoch, one curve per IPC.

Matplotlib's Agg backend renders without a display, so the same code runs on servers and in CI;
PNG metadata is fixed, so the same numbers give the same bytes.
"""

from __future__ import annotations

from pathlib import Path


def accuracy_by_epoch(curves: dict[int, list[tuple[float, float, float]]], path: Path, title: str, references: dict[int, tuple[str, float]] | None = None) -> Path:
    """Write a PNG with one curve per IPC; ``curves[ipc]`` holds (expert epoch, mean %, std % or None) points.

    A std of None (one seed: no spread measured) draws no error bar.

    ``references[ipc] = (label, accuracy %)`` draws a dashed line in that IPC's colour, e.g. the
    hard-label baseline the soft labels must beat.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    try:
        epochs = sorted({e for points in curves.values() for e, _, _ in points})
        for ipc in sorted(curves):
            points = sorted(curves[ipc], key=lambda point: point[0])
            xs, means, stds = zip(*points)
            stds = [0.0 if s is None else s for s in stds]
            line = ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=f"IPC {ipc}")
            if references and ipc in references:
                label, value = references[ipc]
                ax.axhline(value, linestyle="--", linewidth=1, color=line[0].get_color(), label=f"IPC {ipc}, {label}")
        if epochs and epochs[0] > 0 and epochs[-1] / epochs[0] >= 8:
            ax.set_xscale("log", base=2)  # early checkpoints (0.125, 0.25, ...) would crowd a linear axis
        ax.set_xlabel("expert epoch")
        ax.set_ylabel("student test accuracy (%)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fig.savefig(tmp, format="png", metadata={"Software": None})
        tmp.replace(path)
    finally:
        plt.close(fig)
    return path
