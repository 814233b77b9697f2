"""The dataset card (README.md): Hub YAML front matter, then how the set was made and how to load it.

Rendered from the manifest alone, so the same manifest gives the same card, byte for byte.
"""

from __future__ import annotations

import json

import tomli_w

from ..errors import ArtifactError, VerifyError
from .format import CARD, EVAL_RESULTS, GRID, MANIFEST

CITATIONS = """\
@inproceedings{qin2024label,
  title     = {A Label is Worth a Thousand Images in Dataset Distillation},
  author    = {Qin, Tian and Deng, Zhiwei and Alvarez-Melis, David},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2024}
}

@article{dey2026rethinking,
  title  = {Rethinking Dataset Distillation: Hard Truths about Soft Labels},
  author = {Dey and others},
  year   = {2026}
}"""

# the Hub's size_categories values (its dataset card spec), by sample count
SIZE_CATEGORIES = [
    (1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"), (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
]
# where slc publish --results puts the evaluation results; the writer's card keeps this line
RESULTS_MARKER = "<!-- slc publish --results puts the evaluation results here -->"
RESULTS_KIND = "slc-card-results/1"


def size_category(n: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if n < limit), "n>1T")


def _yaml_str(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(str(text), ensure_ascii=False)


def features(manifest: dict, image_exts: list[str]) -> list[str]:
    """YAML lines of ``dataset_info`` (the Hub's dataset card metadata): the columns ``datasets``'
    WebDataset loader yields, with the class names as a ClassLabel, and the download size."""
    lines = ["dataset_info:", "  features:", "  - name: cls", "    dtype:", "      class_label:", "        names:"]
    lines += [f"          '{i}': {_yaml_str(c)}" for i, c in enumerate(manifest["dataset"]["classes"])]
    lines += ["  - name: json", "    struct:"]
    lines += [f"    - name: {k}\n      dtype: {t}" for k, t in (("class", "int64"), ("label", "string"), ("source", "string"))]
    lines += [f"  - name: {ext}\n    dtype: {'binary' if ext == 'pixels' else 'image'}" for ext in image_exts]  # pixels: a float image as safetensors
    if manifest["labels"]["kind"] != "hard":
        lines += ["  - name: safetensors", "    dtype: binary"]
    lines += ["  - name: __key__", "    dtype: string", "  - name: __url__", "    dtype: string"]
    lines += [f"  download_size: {manifest['bytes']['shards']}"]  # no `splits`: its num_bytes is the Arrow size, unknown here
    return lines


def front_matter(manifest: dict, image_exts: list[str]) -> str:
    """Hub metadata: license, task, tags, pretty name, size, the columns with the class names, and the WebDataset data files."""
    lines = [
        "---",
        f"license: {_yaml_str(manifest.get('license') or 'other')}",
        "task_categories:",
        "- image-classification",
        "task_ids:",
        "- multi-class-image-classification",
        *(["annotations_creators:", "- machine-generated"] if manifest["labels"]["kind"] != "hard" else []),
        "tags:",
        "- dataset-distillation",
        "- soft-labels",
        "- slc",
        f"pretty_name: {_yaml_str(pretty_name(manifest))}",
        "size_categories:",
        f"- {_yaml_str(size_category(manifest['counts']['samples']))}",
        *features(manifest, image_exts),
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        '    path: "data/train-*.tar"',
        "---",
    ]
    return "\n".join(lines) + "\n"


def pretty_name(manifest: dict) -> str:
    ipc = f", IPC {manifest['ipc']}" if manifest.get("ipc") is not None else ""
    return f"{manifest['name']} {manifest['version']} ({manifest['dataset']['name']}{ipc}, {manifest['labels']['kind']} labels)"


def _drop_none(obj):
    """TOML has no null: leave unset values out of the recipe listing."""
    if isinstance(obj, dict):
        return {str(k): _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [_drop_none(v) for v in obj if v is not None]
    return obj


def teacher_reference(entry: dict) -> str:
    """``arch@epoch#seed`` for a manifest teacher entry, or the reference it recorded."""
    if entry.get("reference"):
        return str(entry["reference"])
    ref = f"{entry.get('arch', '?')}@{entry.get('epoch', '?')}"
    return f"{ref}#{entry['seed']}" if entry.get("seed") is not None else ref


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def render_card(manifest: dict, image_exts: list[str]) -> str:
    """README.md for ``manifest`` whose samples store their images as ``image_exts`` (``["png"]``, ``["jpg"]``)."""
    m = manifest
    ds, labels = m["dataset"], m["labels"]
    name = f"{m['name']}-{m['version']}"
    kind_text = {
        "dense": f"the full class distribution (`probs[{labels['views']}, {labels['num_classes']}]`, float16)",
        "topk": f"the top {labels['k']} probabilities (`topk_values[{labels['views']}, {labels['k']}]` float16, `topk_indices` {labels['index_dtype']}); "
        f"the rest of a row is filled by the `{labels['fill']}` rule of the format spec",
        "hard": "hard labels only (the `.cls` class)",
    }[labels["kind"]]
    teachers = m.get("teachers") or []
    teacher_rows = [[f"`{teacher_reference(t)}`", t.get("epoch", ""), t.get("seed", ""), t.get("test_accuracy", ""), f"`{str(t.get('sha256', ''))[:16]}`"] for t in teachers]
    recipe = tomli_w.dumps(_drop_none(m.get("recipe") or {})).strip() or "# (no recipe recorded)"
    views = ", ".join(f"`view.{k}` {v['dtype']} {v['shape']}" for k, v in labels.get("view_params", {}).items()) or "none"
    shard_rows = [[f"`{s['path']}`", s["samples"], s["bytes"], f"`{s['sha256']}`"] for s in m["shards"]]
    extra = {k: v for k, v in labels.items() if k not in ("kind", "views", "num_classes", "dtype", "k", "index_dtype", "fill", "view_params")}
    parts = [
        front_matter(m, image_exts),
        f"# {name}",
        "",
        f"A distilled version of **{ds['name']}** ({ds['num_classes']} classes, {ds['channels']}x{ds['resolution'][0]}x{ds['resolution'][1]}): "
        f"{m['counts']['samples']} real images" + (f" ({m['ipc']} per class)" if m.get("ipc") is not None else "")
        + f", each labelled with {kind_text}. Built by slc {m['slc_version']}, artifact format `{m['format']}`.",
        "",
        f"Content hash: `{m['content_hash']}`",
        "",
    ]
    if m.get("grid"):
        caption = "The first images of each class" + (", each followed by its first replayed views," if labels.get("view_params") else "")
        parts += [f"![{caption} with their labels' top classes and probabilities]({GRID})", ""]
    parts += [
        RESULTS_MARKER,
        "",
        "## How it was made",
        "",
        f"Selection: `{json.dumps({k: v for k, v in (m.get('selection') or {}).items() if k not in ('source_indices', 'source_ids')}, sort_keys=True)}` "
        f"(each image's source is in its `.json`, and the list in `{MANIFEST}`).",
        "",
        "Recipe:",
        "",
        "```toml",
        recipe,
        "```",
        "",
        "Teachers:",
        "",
        _table(["teacher", "epoch", "seed", "test accuracy (%)", "checkpoint sha256"], teacher_rows) if teacher_rows else "none recorded.",
        "",
    ]
    if m.get("provenance"):
        parts += ["Provenance:", "", "```json", json.dumps(m["provenance"], sort_keys=True, indent=2, ensure_ascii=False), "```", ""]
    parts += [
        "## Load it",
        "",
        "With `datasets` and `safetensors` (no torch needed):",
        "",
        "```python",
        "from datasets import load_dataset",
        "from safetensors.numpy import load",
        f'ds = load_dataset("OWNER/NAME", split="train")   # or a local copy: load_dataset("{name}", split="train")',
        "sample = ds[0]   # cls: the class (ClassLabel), json: class, label and source, the image as PIL"
        + ("" if labels["kind"] == "hard" else ", safetensors: bytes"),
    ]
    if labels["kind"] != "hard":
        values = "probs" if labels["kind"] == "dense" else "topk_values"
        parts += [f'labels = load(sample["safetensors"])   # numpy: {values} float16 [{labels["views"]}, {labels["k"] or labels["num_classes"]}]' + (", view.* parameters" if labels.get("view_params") else "")]
    parts += [
        "```",
        "",
        "With slc (tensors, a torch Dataset, or students trained on it):",
        "",
        "```python",
        "from sl_compiler.hub import open_artifact",
        f'art = open_artifact("hf://OWNER/NAME@REV")   # or the local folder "{name}"',
        "images, labels = art.images, art.dense_labels()   # uint8 (N, C, H, W), float32 (N, V, C)",
        "```",
        "",
        f"`slc verify {name}` checks every byte against the manifest; `slc evaluate {name}` trains students on it;",
        f"`slc diff {name} hf://OWNER/NAME@REV` says whether a rebuild matches.",
        "",
        "## Label schema",
        "",
        f"- kind: `{labels['kind']}`; views per image: {labels['views']}; classes: {labels['num_classes']}",
        f"- dtype: `{labels['dtype']}`; k: {labels['k']}; fill: {labels['fill']}",
        f"- view parameters: {views}",
    ]
    parts += [f"- {k}: `{json.dumps(v, sort_keys=True)}`" for k, v in sorted(extra.items())]
    parts += [
        f"- per sample: `<key>.{'|'.join(image_exts)}` image, `<key>.cls` class, `<key>.json` source and class"
        + ("" if labels["kind"] == "hard" else ", `<key>.safetensors` labels"),
        f"- normalisation: mean {ds['mean']}, std {ds['std']}",
        *([f"- images: `{json.dumps(m['images'], sort_keys=True)}` (float, in their own space: train on them as stored)"] if m.get("images") else []),
        *([f"- learned lr: {m['learned_lr']:g}"] if "learned_lr" in m else []),
        "",
        f"The format is specified in slc's `docs/artifact-format.md`; `{MANIFEST}` holds everything above as JSON.",
        "",
        "## Checksums",
        "",
        _table(["shard", "samples", "bytes", "sha256"], shard_rows),
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATIONS,
        "```",
        "",
        f"License: {m.get('license') or 'other (see the source dataset)'}. This {CARD} was written by slc.",
        "",
    ]
    return "\n".join(parts)


# ---- evaluation results on the Hub (slc publish --results) -------------------------------------

CELL_TEXT = {
    "sl": "this artifact's stored labels",
    "slkd": "a teacher labelling every augmented batch",
    "hl": "this artifact's images, hard labels",
    "random-hl": "baseline: random real images, hard labels",
    "random-sl": "baseline: random real images, the same teacher's labels",
}


def results_document(results: list[dict], manifest: dict) -> bytes:
    """eval/results.json: the rows of ``results`` (``slc evaluate`` results, already checked) that
    evaluated this artifact (its content hash), without local paths, as canonical JSON."""
    h = manifest["content_hash"]
    kept = []
    for r in results:
        rows = [{k: v for k, v in a.items() if k != "path"} for a in r["artifacts"] if a["content_hash"] == h]
        if rows:
            kept.append({**r, "artifacts": rows})
    if not kept:
        seen = ", ".join(sorted({f"{a['name']}@{a['version']} ({a['content_hash'][:8]})" for r in results for a in r["artifacts"]}))
        raise ArtifactError(
            f"the results evaluated {seen}, not {manifest['name']}@{manifest['version']} (content hash {h[:8]})",
            "pass results of slc evaluate on this artifact",
        )
    doc = {"kind": RESULTS_KIND, "artifact": {"name": manifest["name"], "version": manifest["version"], "content_hash": h}, "results": kept}
    return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def _cell(text) -> str:
    """A value inside a markdown table cell: one line, no column breaks."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _pct(mean: float, std: float | None) -> str:
    """``67.80 ± 0.40`` from fractions (``0.00``, never ``-0.00``)."""
    fixed = lambda x: f"{100 * x:.2f}".replace("-0.00", "0.00")  # noqa: E731
    return f"{fixed(mean)} ± {'n/a' if std is None else fixed(std)}"


def results_section(doc: dict) -> str:
    """The card's "Evaluation results" section for an eval/results.json document."""
    parts = [
        "## Evaluation results",
        "",
        "Students trained on this artifact by `slc evaluate` and tested on the source's test split: accuracy in %, "
        f"mean ± std over the seeds, at the final epoch. Every seed, the per-class accuracy and the test set's fingerprint are in [`{EVAL_RESULTS}`]({EVAL_RESULTS}).",
    ]
    for result in doc["results"]:
        p = result["protocol"]
        lr = "lr chosen on a held-out slice of the training split" if p.get("lr") is None else "the artifact's learned lr" if p["lr"] == "artifact" else f"lr {p['lr']:g}"
        for row in result["artifacts"]:
            test = row.get("test_set") or {}
            test_text = f"; test set: {test['size']} images, fingerprint `{_cell(test.get('fingerprint', '?'))[:16]}`" if "size" in test else ""
            parts += [
                "",
                f"**{_cell(p['model'])}, {p['epochs']} epochs** (protocol `{_cell(p['name'])}`: batch {p['batch_size']}, {_cell(p['optimizer'])}, {lr}, "
                f"augment {_cell(p['augment'])}, loss {_cell(p['loss'])}); evaluated by slc {_cell(result['slc_version'])} on {_cell(result['device'])} "
                f"in {result['wall_s']:.0f} s{test_text}.",
                "",
                "| cell | accuracy (%) | seeds | per seed (%) | lr |",
                "|---|---:|---|---|---:|",
            ]
            order = [*p["regimes"], *p["baselines"]]
            for name, cell in sorted(row["cells"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
                label = f"`{_cell(name)}` ({CELL_TEXT[name]})" if name in CELL_TEXT else f"`{_cell(name)}`"
                seeds = ", ".join(str(int(s)) for s in cell["seeds"])
                per_seed = ", ".join(f"{100 * a:.2f}" for a in cell["accuracy"])
                parts.append(f"| {label} | {_pct(cell['mean'], cell['std'])} | {seeds} | {per_seed} | {cell['lr']:g} |")
            for name, why in (row.get("skipped") or {}).items():
                parts.append(f"| `{_cell(name)}` | skipped: {_cell(why)} | | | |")
            metrics = row.get("metrics") or {}
            found = [f"{key.upper()} {_pct(metrics[key]['mean'], metrics[key]['std'])}" for key in ("ior", "hlr") if metrics.get(key)]
            if found:
                parts += ["", "DD-Ranking's metrics (points of accuracy): " + "; ".join(found) + "."]
    return "\n".join(parts) + "\n"


def _section(results: bytes, manifest: dict) -> str:
    """The section for eval/results.json bytes, which must be the canonical document for this artifact."""
    from .manifest import parse_manifest

    doc = parse_manifest(results, EVAL_RESULTS)
    if not isinstance(doc, dict) or doc.get("kind") != RESULTS_KIND:
        raise VerifyError(f"{EVAL_RESULTS}: kind {doc.get('kind')!r} is not {RESULTS_KIND!r}", "pull the artifact again, or publish it again with --results", path=EVAL_RESULTS)
    if (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode() != results:
        raise VerifyError(f"{EVAL_RESULTS}: not in canonical form (sorted keys, indent 2, final newline): edited or corrupt", "pull the artifact again", path=EVAL_RESULTS)
    try:
        hashes = {doc["artifact"]["content_hash"]} | {a["content_hash"] for r in doc["results"] for a in r["artifacts"]}
        section = results_section(doc)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise VerifyError(f"{EVAL_RESULTS}: not the document slc publish --results writes ({type(exc).__name__}: {exc})", "pull the artifact again", path=EVAL_RESULTS) from None
    if hashes != {manifest["content_hash"]}:
        raise VerifyError(f"{EVAL_RESULTS}: evaluates content hash {', '.join(sorted(h[:8] for h in hashes))}, this artifact is {manifest['content_hash'][:8]}", "pull the artifact again", path=EVAL_RESULTS)
    return section


def card_with_results(card: bytes, results: bytes, manifest: dict) -> bytes:
    """The writer's card with the results section of eval/results.json put at its marker (what slc publish --results uploads)."""
    text = card.decode("utf-8")
    if text.count(RESULTS_MARKER) != 1:
        raise ArtifactError(f"{manifest['name']}@{manifest['version']}'s {CARD} has no place for results (written by an slc before 0.2)", "publish it without --results, or rebuild it with this slc")
    return text.replace(RESULTS_MARKER, f"{RESULTS_MARKER}\n\n{_section(results, manifest).rstrip()}", 1).encode("utf-8")


def card_without_results(card: bytes, results: bytes, manifest: dict) -> bytes:
    """The writer's card back from a published one (the inverse of :func:`card_with_results`), for verify;
    VerifyError when the card does not hold exactly the section that eval/results.json renders to."""
    inserted = f"{RESULTS_MARKER}\n\n{_section(results, manifest).rstrip()}"
    text = card.decode("utf-8", errors="replace")
    if text.count(inserted) != 1:
        raise VerifyError(f"{CARD}: does not hold the results section that {EVAL_RESULTS} renders to (edited or corrupt)", "pull the artifact again", path=CARD)
    return text.replace(inserted, RESULTS_MARKER, 1).encode("utf-8")
