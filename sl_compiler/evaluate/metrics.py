"""Comparisons between cells of one artifact's row, on accuracy fractions, paired by seed.

- gain[regime][baseline] = acc(artifact, regime) - acc(baseline)
- DD-Ranking (Li et al., 2025, arXiv:2505.13300; NUS-HPC-AI-Lab/DD-Ranking README, "Label-Robust
  Score"): HLR = Acc(real-hard) - Acc(syn-hard), the hard-label recovery, where real-hard is the
  full training set with hard labels and syn-hard this artifact in regime ``hl``; IOR =
  Acc(syn-any) - Acc(rdm-any), the improvement over random under the same evaluation: here the
  artifact's stored labels (``sl``) against random real images labelled by the same teacher
  (``random-sl``).

A metric whose inputs were not measured is None (absent), never estimated. Differences are taken
per seed when both cells ran the same seeds (each seed a paired run), giving a mean and a std.
"""

from __future__ import annotations

import torch


def difference(a: dict, b: dict) -> dict:
    """mean and std of a - b, per seed when the seeds match, else of the means (std None; also None for one seed)."""
    if a["seeds"] == b["seeds"]:
        d = torch.tensor(a["accuracy"], dtype=torch.float64) - torch.tensor(b["accuracy"], dtype=torch.float64)
        return {"mean": float(d.mean()), "std": float(d.std(unbiased=False)) if len(d) > 1 else None, "paired": True}
    return {"mean": a["mean"] - b["mean"], "std": None, "paired": False}


def row_metrics(cells: dict[str, dict], regimes: list[str], baselines: list[str], full_data_accuracy: float | None) -> dict:
    """gain, hlr and ior for one artifact's cells (keys: regimes and baselines)."""
    gain = {r: {b: difference(cells[r], cells[b]) for b in baselines if b in cells} for r in regimes if r in cells}
    hlr = None
    if full_data_accuracy is not None and "hl" in cells:
        hl = cells["hl"]
        hlr = {"mean": full_data_accuracy - hl["mean"], "std": hl["std"], "paired": False, "full_data_accuracy": full_data_accuracy}
    ior = difference(cells["sl"], cells["random-sl"]) if "sl" in cells and "random-sl" in cells else None
    return {"gain": gain, "hlr": hlr, "ior": ior}
