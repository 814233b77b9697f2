"""``slc inspect``: what an artifact holds, how certain its labels are, and where its bytes go."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..errors import ArtifactError
from . import format as fmt
from . import grid
from .card import teacher_reference
from .reader import load


def label_statistics(probs: torch.Tensor, targets: torch.Tensor) -> dict:
    """Mean entropy (nats, and over log C) and top-1 agreement with the true class of (N, V, C) labels."""
    entropy = -torch.special.xlogy(probs, probs).sum(-1)
    c = probs.shape[-1]
    mean_entropy = float(entropy.mean())
    agreement = float((probs.argmax(-1) == targets.view(-1, 1)).float().mean())
    return {
        "mean_entropy_nats": round(mean_entropy, 6),
        "mean_entropy_normalized": round(mean_entropy / math.log(c), 6) if c > 1 else 0.0,
        "top1_agreement": round(agreement, 6),
    }


def per_class_statistics(probs: torch.Tensor, targets: torch.Tensor, classes: list[str]) -> list[dict]:
    """Per true class: images, mean label entropy (nats, over all views) and top-1 agreement with the class."""
    entropy = (-torch.special.xlogy(probs, probs).sum(-1)).mean(-1)  # (N,)
    agrees = (probs.argmax(-1) == targets.view(-1, 1)).float().mean(-1)  # (N,)
    counts = torch.bincount(targets, minlength=len(classes))
    ent_sum = torch.zeros(len(classes), dtype=torch.float64).index_add_(0, targets, entropy.double())
    agree_sum = torch.zeros(len(classes), dtype=torch.float64).index_add_(0, targets, agrees.double())
    rows = []
    for c, name in enumerate(classes):
        n = int(counts[c])
        rows.append({
            "class": name,
            "images": n,
            "mean_entropy_nats": round(float(ent_sum[c]) / n, 6) if n else None,
            "top1_agreement": round(float(agree_sum[c]) / n, 6) if n else None,
        })
    return rows


def class_mean_labels(art, chunk: int = 4096) -> torch.Tensor:
    """float64 (C, C): row c is the mean soft label (over views, then images) of the images of class c;
    a class without images is a row of zeros. Computed ``chunk`` samples at a time from the stored labels."""
    from .grid import stored_labels

    c = art.num_classes
    labels = stored_labels(art.label_kind, art.labels, c, art.manifest["labels"].get("fill"))
    sums = torch.zeros(c, c, dtype=torch.float64)
    for start in range(0, len(art), chunk):
        idx = torch.arange(start, min(start + chunk, len(art)))
        rows = labels(idx).double().mean(1) if labels is not None else torch.nn.functional.one_hot(art.targets[idx], c).double()
        sums.index_add_(0, art.targets[idx], rows)
    counts = torch.bincount(art.targets, minlength=c).double().clamp_min(1)
    return sums / counts[:, None]


def byte_breakdown(art, path: Path) -> dict:
    """Where the bytes go: images, labels (values, view parameters, safetensors headers) and the rest
    (tar headers and padding, .cls and .json members, manifest.json, README.md, grid.png, and
    eval/results.json in a Hub copy)."""
    parts = {"cls": 0, "json": 0, "label_values": 0, "view_params": 0, "safetensors_headers": 0}
    for i in range(len(art)):
        sample = art.sample_bytes(i)
        parts["cls"] += len(sample["cls"])
        parts["json"] += len(sample["json"])
        if "safetensors" in sample:
            data = sample["safetensors"]
            header = 8 + int.from_bytes(data[:8], "little")
            parts["safetensors_headers"] += header
            for name, entry in json.loads(data[8:header]).items():
                if name != "__metadata__":
                    begin, end = entry["data_offsets"]
                    parts["view_params" if name.startswith("view.") else "label_values"] += end - begin
    m = art.manifest
    shard_bytes = m["bytes"]["shards"]
    members = m["bytes"]["images"] + m["bytes"]["labels"] + parts["cls"] + parts["json"]
    files = {f.relative_to(path).as_posix(): f.stat().st_size for f in path.rglob("*") if f.is_file()}
    total = sum(files.values())
    other = {
        "tar_headers_and_padding": shard_bytes - members,
        "cls_members": parts["cls"],
        "json_members": parts["json"],
        "manifest": files.get(fmt.MANIFEST, 0),
        "card": files.get(fmt.CARD, 0),
        "grid": files.get(fmt.GRID, 0),
        "eval_results": files.get(fmt.EVAL_RESULTS, 0),
    }
    return {
        "images": m["bytes"]["images"],
        "labels": m["bytes"]["labels"],
        "other": total - m["bytes"]["images"] - m["bytes"]["labels"],
        "total": total,
        "labels_parts": {k: parts[k] for k in ("label_values", "view_params", "safetensors_headers")},
        "other_parts": other,
    }


def inspect_artifact(path: str | Path) -> dict:
    """A JSON-ready summary of the artifact folder ``path`` (``hf://`` is resolved by sl_compiler.hub)."""
    art = load(path)
    m = art.manifest
    lab = m["labels"]
    sel = m["selection"]
    probs = art.dense_labels()
    return {
        "name": m["name"],
        "version": m["version"],
        "format": m["format"],
        "path": str(art.path),
        "dataset": m["dataset"]["name"],
        "classes": art.num_classes,
        "class_names": list(art.classes),
        "resolution": m["dataset"]["resolution"],
        "ipc": art.ipc,
        "samples": len(art),
        "views": art.num_views,
        "selection": {k: sel.get(k) for k in ("strategy", "seed", "quantile", "score") if k in sel},
        "teachers": [
            {"reference": teacher_reference(t), "epoch": t.get("epoch"), "test_accuracy": t.get("test_accuracy")} for t in m["teachers"]
        ],
        "labels": {k: lab.get(k) for k in ("kind", "dtype", "k", "fill", "temperature")} | {"view_params": sorted(lab["view_params"])},
        "images": image_space_text(m),
        "zca": (lab.get("preprocess") or {}).get("zca") or (m.get("images") or {}).get("zca"),
        "learned_lr": art.learned_lr,
        **label_statistics(probs, art.targets),
        "per_class": per_class_statistics(probs, art.targets, list(art.classes)),
        "bytes": byte_breakdown(art, art.path),
        "content_hash": art.content_hash,
    }


def write_grid(path: str | Path, out: str | Path, *, per_class: int | None = None, max_classes: int = grid.MAX_CLASSES, views: int = grid.VIEWS) -> Path:
    """Draw the artifact's images per class with their labels' top classes (:mod:`.grid`) into the PNG ``out``.

    With the defaults this is the artifact's own grid.png, byte for byte.
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ArtifactError(f"grid file {out} does not end in .png", "name the grid FILE.png (it is written as PNG)")
    art = load(path)
    try:
        data = grid.grid_png(grid.source_of_artifact(art), art.manifest, per_class=per_class, max_classes=max_classes, views=views)
    except ValueError as exc:  # too large to draw
        raise ArtifactError(str(exc), "draw fewer classes (--max-classes) or images (--per-class)") from None
    from ..plot import write_bytes

    return write_bytes(out, data)


def image_space_text(m: dict) -> str:
    """How the images are stored and in which space: uint8 (normalised or whitened by the evaluation), or float and where."""
    lab_zca = (m["labels"].get("preprocess") or {}).get("zca")
    teacher = f"; labels by a teacher on ZCA inputs (eps {lab_zca['eps']}, id {lab_zca['id'][:12]})" if lab_zca else ""
    im = m.get("images")
    if im is None:
        return "uint8" + teacher
    if im["zca"]:
        z = im["zca"]
        return f"{im['dtype']}, ZCA-whitened (eps {z['eps']}, input {z['input']}" + (f", id {z['id'][:12]})" if z.get("id") else ")") + teacher
    return f"{im['dtype']}, normalised (mean {im['normalize']['mean']}, std {im['normalize']['std']})" + teacher


def _human(n: int) -> str:
    """Bytes in binary units: 512 B, 6.6 KiB, 1.2 GiB."""
    if n < 1024:
        return f"{n} B"
    exp = min((n.bit_length() - 1) // 10, 4)
    return f"{n / 1024**exp:.1f} {('KiB', 'MiB', 'GiB', 'TiB')[exp - 1]}"


def summary_table(info: dict) -> str:
    """The inspect summary as an aligned two-column table, then the per-class table."""
    lab = info["labels"]
    label_text = f"{lab['kind']}" + (f", {lab['dtype']}" if lab["dtype"] else "") + (f", k={lab['k']} ({lab['fill']} fill)" if lab["k"] else "")
    if lab.get("temperature") is not None:
        label_text += f", T={lab['temperature']}"
    b = info["bytes"]
    pct = (lambda x: f"{100 * x / b['total']:.1f}%") if b["total"] else (lambda x: "-")
    names = info["class_names"]
    shown = ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
    sel = info["selection"]
    sel_text = ", ".join(f"{k} {v}" for k, v in sel.items() if k != "strategy" and v is not None)
    rows = [
        ("artifact", f"{info['name']} {info['version']} ({info['format']})"),
        ("dataset", f"{info['dataset']}, {info['classes']} classes, {info['resolution'][0]}x{info['resolution'][1]}"),
        ("classes", shown),
        ("images per class", "-" if info["ipc"] is None else str(info["ipc"])),
        ("samples", str(info["samples"])),
        ("images", info["images"]),
        *([("learned lr", f"{info['learned_lr']:g}")] if info.get("learned_lr") is not None else []),
        ("selection", (sel.get("strategy") or "not recorded") + (f" ({sel_text})" if sel_text else "")),
        ("views per image", str(info["views"]) + (f" ({', '.join(lab['view_params'])})" if lab["view_params"] else "")),
        ("labels", label_text),
        ("mean label entropy", f"{info['mean_entropy_nats']:.4f} nats ({info['mean_entropy_normalized']:.3f} of log C)"),
        ("top-1 agrees with class", f"{100 * info['top1_agreement']:.1f}%"),
    ]
    for i, t in enumerate(info["teachers"] or [None]):
        acc = "" if not t or t["test_accuracy"] is None else f", test accuracy {t['test_accuracy']:.1f}%"  # percent, as the expert store records it
        rows.append(("teachers" if i == 0 else "", "none" if t is None else f"{t['reference']} (epoch {t['epoch']}{acc})"))
    lp, op = b["labels_parts"], b["other_parts"]
    rows += [
        ("bytes: images", f"{_human(b['images'])} ({pct(b['images'])})"),
        ("bytes: labels", f"{_human(b['labels'])} ({pct(b['labels'])}): values {_human(lp['label_values'])}, view parameters {_human(lp['view_params'])}, safetensors headers {_human(lp['safetensors_headers'])}"),
        ("bytes: other", f"{_human(b['other'])} ({pct(b['other'])}): tar headers and padding {_human(op['tar_headers_and_padding'])}, .cls {_human(op['cls_members'])}, "
         f".json {_human(op['json_members'])}, manifest {_human(op['manifest'])}, card {_human(op['card'])}, grid {_human(op['grid'])}"
         + (f", eval results {_human(op['eval_results'])}" if op["eval_results"] else "")),
        ("bytes: total", _human(b["total"])),
        ("content hash", info["content_hash"]),
    ]
    width = max(len(k) for k, _ in rows)
    table = "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
    per_class = info["per_class"]
    limit = 20
    lines = ["", "| class | images | mean entropy (nats) | top-1 agrees |", "|---|---:|---:|---:|"]
    for row in per_class[:limit]:
        ent = "-" if row["mean_entropy_nats"] is None else f"{row['mean_entropy_nats']:.4f}"
        agree = "-" if row["top1_agreement"] is None else f"{100 * row['top1_agreement']:.1f}%"
        lines.append(f"| {row['class']} | {row['images']} | {ent} | {agree} |")
    if len(per_class) > limit:
        lines.append(f"\n({len(per_class) - limit} more classes: slc inspect --json)")
    return table + "\n" + "\n".join(lines)
