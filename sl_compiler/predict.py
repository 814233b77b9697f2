"""Predict the best expert epoch per IPC from label statistics alone: no student is trained.

For every expert epoch of a sweep's grid this measures, in one teacher forward over each IPC's
selected images (the sweep's own compiled artifacts, so a later sweep reuses them) and one over a
held-out slice of the training split:

- ``entropy``: the mean entropy of the stored soft labels on the selection, over ln(classes) (0..1);
- ``fit``: the teacher's accuracy (%) on the held-out slice. The experts trained on the whole
  training split, this slice included, so this measures how far the expert has fit its data, not
  how well it generalises; that is what the rule below needs;
- ``jsd``: the mean Jensen-Shannon divergence (bits, 0..1) of the epoch's labels to the ensemble
  label (the mean over the swept epochs) on the same images: how atypical the epoch's labels are.

The rule (a documented heuristic, calibrated on nothing yet: ``slc sweep --predict`` beside a
finished sweep reports how well it ranks). The paper finds the best expert early for small IPC
(labels soft, the teacher part-trained) and later as the IPC grows. So each epoch gets its
*progress* p = (fit - chance) / (best fit over the swept epochs - chance), and each IPC a target
X(ipc) = sqrt(ipc) / (1 + sqrt(ipc)) (0.5 at IPC 1, 0.76 at 10, 0.88 at 50, towards 1 with the
full data). The predicted best epoch is the earliest epoch whose progress reaches X; the epochs
that reach it rank in epoch order, then the rest by progress, highest first (ties to the earlier
epoch). Entropy and JSD are reported beside it, not used: there is no measurement yet of how to
weigh them.

Against a finished sweep (``sweep.json`` in the same folder) it reports per IPC the Spearman rank
correlation of predicted and measured order and the accuracy lost by trusting the prediction
(best measured minus measured at the predicted epoch), on the held-out slice and on test.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .seeding import format_seeds
from .sweep import SweepSpec, write_text, cell_folder, compile_cached, format_epoch, held_out_slice, load_sweep, plan, resolve_protocol, spec_json, train_split

KIND = "slc-sweep-predict/1"


def target_fraction(ipc: int) -> float:
    """The progress the predicted epoch's teacher must reach at ``ipc``: sqrt(ipc) / (1 + sqrt(ipc)), rising with the budget."""
    return math.sqrt(ipc) / (1.0 + math.sqrt(ipc))


def progress(fits: dict[float, float], num_classes: int) -> dict[float, float]:
    """Chance-corrected fit relative to the best swept epoch's: 0 at chance, 1 at the best (all 0 when none beats chance)."""
    chance = 100.0 / num_classes
    span = max(fits.values()) - chance
    return {e: (f - chance) / span if span > 0 else 0.0 for e, f in fits.items()}


def rank_epochs(progresses: dict[float, float], ipc: int) -> list[float]:
    """Epochs best first by the rule: those whose progress reaches the target, earliest first; then the rest, highest progress first."""
    x = target_fraction(ipc)
    return sorted(progresses, key=lambda e: (False, e, 0.0) if progresses[e] >= x else (True, -progresses[e], e))


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rank correlation (ties get their average rank); None when either side is constant or has under 2 values."""
    if len(a) != len(b):
        raise ValueError("spearman needs two lists of one length")
    ra, rb = _ranks(a), _ranks(b)
    n = len(a)
    if n < 2:
        return None
    ma, mb = sum(ra) / n, sum(rb) / n
    sab = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    saa, sbb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return None if saa == 0 or sbb == 0 else sab / math.sqrt(saa * sbb)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def compare(ranked: list[float], measured: dict[float, float]) -> dict | None:
    """Predicted order (best first) against measured accuracy per epoch, over the epochs both have.

    ``spearman``: between predicted rank and measured accuracy (1: the same order); ``lost``: best
    measured minus measured at the predicted epoch (points, >= 0). None with under 2 shared epochs.
    """
    shared = [e for e in ranked if e in measured]
    if len(shared) < 2:
        return None
    position = {e: i for i, e in enumerate(shared)}
    rho = spearman([-position[e] for e in shared], [measured[e] for e in shared])
    picked = shared[0]
    return {"spearman": rho, "lost": max(measured[e] for e in shared) - measured[picked], "predicted": picked, "measured_best": max(shared, key=lambda e: (measured[e], -e)), "epochs": len(shared)}


@dataclass
class Prediction:
    """Per IPC and epoch the label statistics, the ranking, and the comparison with a finished sweep."""

    spec: SweepSpec
    holdout: dict  # fraction, seed, size of the one slice
    num_classes: int
    stats: dict[int, dict[float, dict]]  # ipc -> epoch -> {entropy, fit, progress, jsd}
    ranked: dict[int, list[float]]
    comparison: dict[int, dict] = field(default_factory=dict)  # ipc -> {"holdout": compare, "test": compare}
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "kind": KIND,
            "spec": {k: v for k, v in spec_json(self.spec).items() if k not in ("eval_seeds", "student_epochs", "select_on")},
            "rule": "epochs whose progress reaches the target, earliest first, then the rest by progress, highest first; progress = (fit - chance) / (best fit - chance); target = sqrt(ipc) / (1 + sqrt(ipc))",
            "holdout": self.holdout,
            "ipc": {
                str(ipc): {
                    "target": target_fraction(ipc),
                    "predicted_epoch": self.ranked[ipc][0],
                    "epochs": [{"epoch": e, "rank": self.ranked[ipc].index(e) + 1, **self.stats[ipc][e]} for e in sorted(self.stats[ipc])],
                    "comparison": self.comparison.get(ipc),
                }
                for ipc in sorted(self.stats)
            },
            "notes": list(self.notes),
        }

    def to_markdown(self) -> str:
        h = self.holdout
        lines = [
            f"Predicted best expert epoch on {self.spec.dataset}, teacher {self.spec.teacher_arch} seeds {format_seeds(list(self.spec.seeds))}: no student trained",
            f"fit: teacher accuracy (%) on a held-out slice of the training split ({h['size']} images, fraction {h['fraction']:g}, seed {h['seed']}; the experts trained on it);",
            "progress: (fit - chance) / (best fit - chance); entropy: mean label entropy / ln(classes); jsd: mean JS divergence (bits) to the mean label over epochs.",
            "Rule: the earliest epoch whose progress reaches sqrt(IPC) / (1 + sqrt(IPC)); then the others that reach it, earliest first; then the rest, highest progress first.",
        ]
        for ipc in sorted(self.stats):
            rank = {e: i + 1 for i, e in enumerate(self.ranked[ipc])}
            lines += ["", f"IPC {ipc} (target {target_fraction(ipc):.2f}): predicted epoch {format_epoch(self.ranked[ipc][0])}", "",
                      "| expert epoch | rank | fit (%) | progress | entropy | jsd |", "|---:|---:|---:|---:|---:|---:|"]
            for e in sorted(self.stats[ipc]):
                s = self.stats[ipc][e]
                mark = "**" if rank[e] == 1 else ""
                lines.append(f"| {mark}{format_epoch(e)}{mark} | {rank[e]} | {s['fit']:.1f} | {s['progress']:.2f} | {s['entropy']:.3f} | {s['jsd']:.3f} |")
        if self.comparison:
            lines += ["", "Against the finished sweep (measured student accuracy):", "",
                      "| IPC | measured on | Spearman | predicted epoch | measured best | accuracy lost (points) |", "|---:|---|---:|---:|---:|---:|"]
            for ipc, by in sorted(self.comparison.items()):
                for on, c in by.items():
                    rho = "n/a" if c["spearman"] is None else f"{c['spearman']:.2f}"
                    lines.append(f"| {ipc} | {'held-out' if on == 'holdout' else on} | {rho} | {format_epoch(c['predicted'])} | {format_epoch(c['measured_best'])} | {c['lost']:.1f} |")
        lines += [""] + self.notes if self.notes else []
        return "\n".join(lines) + "\n"

    def write(self, out: Path) -> dict[str, Path]:
        """``predict.md``, ``predict.json`` and ``predict.png`` in ``out``."""
        from .plot import series_png, write_bytes

        out = Path(out)
        paths = {"markdown": out / "predict.md", "json": out / "predict.json", "plot": out / "predict.png"}
        write_text(paths["markdown"], self.to_markdown())
        write_text(paths["json"], json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        first = next(iter(sorted(self.stats)))
        epochs = sorted(self.stats[first])
        series = [{"label": "teacher progress (held-out fit)", "style": "line", "points": [[e, self.stats[first][e]["progress"], None] for e in epochs]}]
        for ipc in sorted(self.stats):
            series.append({"label": f"IPC {ipc} target {target_fraction(ipc):.2f} (predicted {format_epoch(self.ranked[ipc][0])})", "style": "dashed", "points": [[epochs[0], target_fraction(ipc), None], [epochs[-1], target_fraction(ipc), None]]})
            series.append({"label": f"IPC {ipc} label entropy", "style": "points", "points": [[e, self.stats[ipc][e]["entropy"], None] for e in epochs]})
        title = f"{self.spec.dataset}: {self.spec.teacher_arch}, predicted best epoch per IPC"
        write_bytes(paths["plot"], series_png(series, title, "expert epoch", "fraction"))
        return paths


def predict(spec: SweepSpec, out: str | Path, batch_size: int = 1024) -> Prediction:
    """Rank the expert epochs of ``spec``'s grid per IPC without training a student; compare with ``out/sweep.json`` when it is there.

    Compiles the grid's artifacts into ``out`` as ``slc sweep`` does (cached: a sweep run after
    reuses them). The slice is ``slc evaluate``'s rule (the protocol's fraction and seed) applied to
    the training split minus every image the artifacts record as selected, so none is in it.
    """
    from .compile import teachers_preprocess, teachers_zca
    from .device import resolve_device
    from .evaluate.data import eval_set
    from .evaluate.run import decode_options, preprocess
    from .experts import default_store, resolve
    from .experts.reference import parse_reference
    from .recipe import Recipe

    out = Path(out)
    device = resolve_device(spec.device)
    protocol = resolve_protocol(spec)
    cells = plan(spec)
    train = train_split(spec)
    labels: dict[int, dict[float, torch.Tensor]] = {}
    teachers: dict[float, str] = {}
    selected = []
    art = None
    for cell in cells:
        art = compile_cached(Recipe(**cell.recipe), cell_folder(cell, spec, out), spec.experts, spec.device)
        labels.setdefault(cell.ipc, {})[cell.epoch] = art.dense_labels().mean(1)  # (N, C): one view per image in a sweep
        teachers[cell.epoch] = cell.teacher
        selected.append(torch.as_tensor(art.manifest["selection"]["source_indices"], dtype=torch.long))  # what compile recorded it took
    slice_ = held_out_slice(train, protocol, torch.unique(torch.cat(selected)), max(spec.ipcs), "--predict needs the slice: use a smaller --ipc, or a protocol with a smaller holdout_fraction")
    options = decode_options(spec.dataset, preprocess(art))
    store = default_store(spec.experts)
    inputs = teachers_preprocess(parse_reference(cells[0].teacher), store, spec.dataset)  # the teachers' own: normalisation or ZCA, as compile feeds them
    zca = teachers_zca(inputs, train, Recipe(**cells[0].recipe))
    held = eval_set(train_split(spec, **options) if options else train, slice_, inputs["mean"], inputs["std"], device, zca=zca)
    fits = {e: _accuracy([t.load(device) for t in resolve(ref, store, train.info())], held, device, batch_size) for e, ref in sorted(teachers.items())}
    prog = progress(fits, train.num_classes)
    stats: dict[int, dict[float, dict]] = {}
    for ipc, by_epoch in labels.items():
        mean_label = torch.stack(list(by_epoch.values())).mean(0)
        stats[ipc] = {e: {"entropy": _entropy(p) / math.log(train.num_classes), "jsd": _jsd(p, mean_label), "fit": fits[e], "progress": prog[e]} for e, p in sorted(by_epoch.items())}
    ranked = {ipc: rank_epochs({e: s["progress"] for e, s in by.items()}, ipc) for ipc, by in stats.items()}
    result = Prediction(spec, {"fraction": protocol.holdout_fraction, "seed": protocol.baseline_seed, "size": len(slice_)}, train.num_classes, stats, ranked)
    _compare_with_sweep(result, out / "sweep.json")
    result.write(out)
    return result


def _compare_with_sweep(result: Prediction, path: Path) -> None:
    """Fill ``result.comparison`` from a finished sweep of the same teacher and selection, or say why not."""
    if not path.exists():
        result.notes.append(f"No finished sweep in {path.parent}: run slc sweep with the same options to measure how well the prediction ranks.")
        return
    sweep = load_sweep(path)
    theirs, ours = sweep["spec"], spec_json(result.spec)
    differ = [k for k in ("dataset", "teacher_arch", "seeds", "select_seed") if theirs.get(k) != ours[k]]
    if differ:
        result.notes.append(f"The sweep in {path} has another {', '.join(differ)}: no comparison.")
        return
    for ipc in sorted(result.ranked):
        cells = [c for c in sweep["cells"] if c["ipc"] == ipc]
        by = {}
        if cells and all(c["holdout_mean"] is not None for c in cells):
            by["holdout"] = compare(result.ranked[ipc], {float(c["epoch"]): float(c["holdout_mean"]) for c in cells})
        by["test"] = compare(result.ranked[ipc], {float(c["epoch"]): float(c["mean"]) for c in cells})
        by = {on: c for on, c in by.items() if c is not None}
        if by:
            result.comparison[ipc] = by
        else:
            result.notes.append(f"The sweep measured under 2 of the predicted epochs at IPC {ipc}: no comparison there.")


def _accuracy(models: list, held, device, batch_size: int) -> float:
    """Accuracy (%) of the logit-averaged ``models`` (the compile's ensemble rule) on an EvalSet (its inputs as the teachers take them), in float32."""
    from .label.teacher import full_precision

    right = torch.zeros((), dtype=torch.long, device=device)
    with full_precision(device):
        for x, y in held.batches(batch_size, device):
            logits = torch.stack([m(x).float() for m in models]).mean(0)
            right += (logits.argmax(1) == y.to(device)).sum()
    return 100.0 * int(right) / len(held)


def _entropy(p: torch.Tensor) -> float:
    """Mean entropy (nats) of the rows of ``p``."""
    return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())


def _jsd(p: torch.Tensor, q: torch.Tensor) -> float:
    """Mean Jensen-Shannon divergence (bits) between the rows of ``p`` and ``q``."""
    m = (p + q) / 2

    def kl(a, b):
        return (a * (a.clamp_min(1e-12).log() - b.clamp_min(1e-12).log())).sum(1)

    return float(((kl(p, m) + kl(q, m)) / (2 * math.log(2))).mean())
