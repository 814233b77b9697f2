"""The paper's analyses as commands: ``run_analysis(name, spec, out, **options)`` -> a written :class:`~.cells.Result`.

One module per study (Qin, Deng, Alvarez-Melis, NeurIPS 2024): entropy (Figure 2), swap
(Figure 4), temperature (Figure 5), scaling (Figures 6, 11), zeroshot (Figure 7), jsd (Figures
8, 12) and classes (Figure 10). Each is a grid of cached cells (:mod:`.cells`) over the sweep's
artifacts and in-memory label transforms of them (:mod:`.transforms`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .cells import AnalysisSpec, Grid, Result

ANALYSES = ("entropy", "swap", "temperature", "scaling", "zeroshot", "jsd", "classes")


def run_analysis(name: str, spec: AnalysisSpec, out: str | Path, lookup: list[Path] = (), **options) -> Result:
    """Check the grid, compute what no cache holds, and write ``<out>/<name>.json|.csv|.md|.png``."""
    if name not in ANALYSES:
        raise ValueError(f"unknown analysis {name!r}")
    grid = Grid(spec, out, list(lookup))
    result = importlib.import_module(f".{name}", __name__).run(grid, **options)
    result.counts = dict(grid.counts)
    result.write(out)
    return result


__all__ = ["ANALYSES", "AnalysisSpec", "Grid", "Result", "run_analysis"]
