"""``slc experts list``: the store as rows, a plain-text table and JSON."""

from __future__ import annotations

from .store import ExpertStore, Trajectory, format_epoch


def _accuracy(trajectory: Trajectory, epoch: float) -> str:
    checkpoint = trajectory.checkpoint_at(epoch)
    if checkpoint is None or checkpoint.test_accuracy is None:
        return "-"
    return f"{checkpoint.test_accuracy:.1f}"


def summary(store: ExpertStore) -> list[dict]:
    """One dict per trajectory: what it is and its test accuracy at every checkpoint."""
    rows = []
    for t in store.trajectories():
        rows.append(
            {
                "dataset": t.dataset_key,
                "arch": t.arch,
                "seed": t.seed,
                "checkpoints": len(t.checkpoints),
                "epochs": [c.epoch for c in t.checkpoints],
                "complete": t.complete,
                "imported": t.recipe is None,
                "preprocess": t.preprocess,
                "test_accuracy": {format_epoch(c.epoch): c.test_accuracy for c in t.checkpoints},
                "path": str(t.path),
            }
        )
    return rows


def table(store: ExpertStore) -> str:
    """A fixed-width table: accuracy at the first checkpoint, at epoch 1 and at the last."""
    header = ["dataset", "arch", "seed", "checkpoints", "complete", "acc@first", "acc@1", "acc@last"]
    lines = []
    for t in store.trajectories():
        epochs = t.epochs()
        first, last = (epochs[0], epochs[-1]) if epochs else (None, None)
        span = f"{len(epochs)} ({format_epoch(first)}-{format_epoch(last)})" if epochs else "0"
        lines.append(
            [
                t.dataset_key,
                t.arch,
                str(t.seed),
                span,
                "imported" if t.recipe is None else ("yes" if t.complete else "no"),
                f"{_accuracy(t, first)} @{format_epoch(first)}" if epochs else "-",
                _accuracy(t, 1.0),
                f"{_accuracy(t, last)} @{format_epoch(last)}" if epochs else "-",
            ]
        )
    if not lines:
        return f"no experts in {store.root}"
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    fmt = lambda row: "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, lines)])
