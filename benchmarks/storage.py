"""Storage: what soft labels cost per image and per view, and what cheaper schemes cost in accuracy.

    .venv/bin/python benchmarks/storage.py --quick          # CIFAR-10 IPC 10, 20 CutMix views, 100-epoch students x 2 seeds
    .venv/bin/python benchmarks/storage.py                  # the same with the cifar10 protocol's students (1000 epochs x 5 seeds)
    .venv/bin/python benchmarks/storage.py --no-accuracy    # byte accounting only (seconds)

Compiles one artifact per storable scheme from the same images, views and teacher: dense fp16
and top-k fp16 (k = 1, 2, 5; int16 indices), then counts label bytes exactly from the stored
tensors (fp32 is the same rows at 4 bytes a value; the artifact format stores fp16, so fp32 has
bytes but no artifact and no accuracy). Beside them, SRe2L's scheme, dense fp16 logits for every
view, scaled to ImageNet-1K: 1000 classes x 2 bytes x V views per image. Writes
benchmarks/results/storage.json. The teacher is the quarter-epoch checkpoint of the fidelity
benchmark's first quick expert (trained when the store lacks it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SRE2L_CLASSES, SRE2L_VIEWS, SRE2L_IMAGES = 1000, 300, 50_000  # ImageNet-1K, 300 relabelled epochs, IPC 50
FP16, FP32 = 2, 4
QUICK_SETTINGS = ROOT / "recipes" / "fidelity" / "cifar10-quick.toml"
DEFAULT_TEACHER = "convnet_d3@0.25#0"


def scheme_bytes(num_classes: int, views: int, k: int | None, value_bytes: int, index_bytes: int = 2) -> dict:
    """Label bytes of one view and of one image: dense rows hold C values; top-k rows k values and k indices."""
    per_view = num_classes * value_bytes if k is None else k * (value_bytes + index_bytes)
    return {"per_view": per_view, "per_image": per_view * views}


def stored_label_bytes(artifact) -> dict:
    """Bytes the artifact's label tensors hold per image, counted from the tensors themselves."""
    n = len(artifact)
    labels = sum(t.numel() * t.element_size() for t in artifact.labels.values())
    views = sum(t.numel() * t.element_size() for t in (artifact.views or {}).values())
    return {"labels_per_image": labels / n, "view_params_per_image": views / n, "members_per_image": artifact.manifest["bytes"]["labels"] / n, "images_per_image": artifact.manifest["bytes"]["images"] / n}


def sre2l(views: int) -> dict:
    """SRe2L's dense fp16 per-view labels scaled to 1000 classes; its ImageNet-1K IPC 50 total at 300 views."""
    total = SRE2L_IMAGES * SRE2L_VIEWS * SRE2L_CLASSES * FP16
    return {
        "formula": "bytes per image = 1000 classes x 2 bytes (fp16) x V views",
        "views": views,
        "bytes_per_image": SRE2L_CLASSES * FP16 * views,
        "bytes_per_view": SRE2L_CLASSES * FP16,
        "imagenet_ipc50": {"images": SRE2L_IMAGES, "views": SRE2L_VIEWS, "bytes": total, "gib": round(total / 2**30, 1)},
    }


def ensure_teacher(args) -> None:
    """Make sure the default teacher exists: seed 0 of the fidelity benchmark's quick experts.

    The default store is the fidelity benchmark's (runs/fidelity-cifar10/quick/experts); when it
    lacks the checkpoint, seed 0 is trained there with the same settings, so that a later fidelity
    run finds it complete instead of training it again.
    """
    from sl_compiler.tomlfile import tomllib

    from sl_compiler.experts.recipe import ExpertRecipe
    from sl_compiler.experts.store import ExpertStore
    from sl_compiler.experts.train import train_trajectories

    if args.teacher != DEFAULT_TEACHER:
        return
    held = ExpertStore(args.experts).find(args.dataset, "convnet_d3", 0)
    if held is not None and held.checkpoint_at(0.25) is not None:
        return
    quick = tomllib.loads(QUICK_SETTINGS.read_text())
    recipe = ExpertRecipe.from_toml(ROOT / quick["expert_recipe"])
    if "expert_milestones" in quick:
        recipe = recipe.with_overrides(milestones=tuple(quick["expert_milestones"]))
    train_trajectories(args.dataset, "convnet_d3", [0], data_root=args.data_root, recipe=recipe, epochs=float(quick["expert_epochs"]), every=float(quick["expert_every"]), store=args.experts, device=args.device)


def run(args) -> dict:
    from sl_compiler.evaluate.protocol import Protocol, default_protocol
    from sl_compiler.recipe import Recipe
    from sl_compiler.sweep import cached_accuracies, compile_cached, digest, mean_std

    ensure_teacher(args)
    base = Recipe(dataset=args.dataset, data_root=args.data_root, ipc=args.ipc, teacher=args.teacher, views=args.views, augment="cutmix", name="storage")
    topks = [int(k) for k in args.topk.split(",")]
    artifacts = {}
    for k in [None, *topks]:
        recipe = base.replace(topk=k, name=f"storage-top{k}" if k else "storage-dense")
        artifacts[k] = compile_cached(recipe, Path(args.out) / "artifacts" / f"{recipe.name}-{digest(recipe.to_dict())[:10]}", args.experts, args.device)
    dense = artifacts[None]
    n, views, classes = len(dense), dense.num_views, dense.num_classes
    index_bytes = artifacts[topks[0]].labels["topk_indices"].element_size() if topks else 2

    protocol = None
    if not args.no_accuracy:
        protocol = Protocol.from_toml(args.protocol) if args.protocol else default_protocol(args.dataset)
        protocol = protocol.override(epochs=args.student_epochs, seeds=args.eval_seeds, regimes=("sl",), baselines=())

    def accuracy(artifact):
        if protocol is None:
            return None
        values, _ = cached_accuracies(artifact, protocol, args.device, Path(args.out) / "cache", args.data_root)
        mean, std = mean_std(values)
        return {"mean": round(mean, 2), "std": round(std, 2), "accuracies": [round(v, 2) for v in values]}

    schemes = [{"scheme": "dense fp32", "k": None, "dtype": "float32", **scheme_bytes(classes, views, None, FP32), "stored": None, "accuracy": None, "content_hash": None}]
    for k, art in artifacts.items():
        computed = scheme_bytes(classes, views, k, FP16, index_bytes)
        stored = stored_label_bytes(art)
        if stored["labels_per_image"] != computed["per_image"]:
            raise AssertionError(f"{art.path}: label tensors hold {stored['labels_per_image']} bytes per image, the arithmetic says {computed['per_image']}")
        schemes.append({"scheme": "dense fp16" if k is None else f"top-{k} fp16", "k": k, "dtype": "float16", **computed, "stored": stored, "accuracy": accuracy(art), "content_hash": art.content_hash})

    setting = {
        "mode": "bytes only" if args.no_accuracy else ("quick" if args.quick else "full"),
        "dataset": args.dataset,
        "ipc": args.ipc,
        "images": n,
        "classes": classes,
        "views": views,
        "augment": "cutmix",
        "teacher": args.teacher,
        "index_dtype": f"int{8 * index_bytes}",
        "protocol": None if protocol is None else protocol.to_dict(),
    }
    return {"setting": setting, "schemes": schemes, "sre2l": sre2l(views), "figures": figures(schemes, sre2l(views))}


def figures(schemes: list[dict], sre: dict) -> list[dict]:
    out = []
    for s in schemes:
        out.append({"name": f"{s['scheme']} labels per image", "value": s["per_image"], "unit": "B", "target": None})
        if s["accuracy"] is not None:
            out.append({"name": f"{s['scheme']} student accuracy", "value": s["accuracy"]["mean"], "unit": "%", "target": None})
    out.append({"name": f"SRe2L dense fp16 at 1000 classes, {sre['views']} views", "value": sre["bytes_per_image"], "unit": "B/image", "target": None})
    return out


def table(result: dict) -> str:
    st = result["setting"]
    sre = result["sre2l"]
    lines = [
        f"{st['dataset']}, IPC {st['ipc']} ({st['images']} images), {st['views']} CutMix views, {st['classes']} classes, teacher {st['teacher']}",
        "",
        "| scheme | bytes / view | bytes / image | stored / image (with view params, headers) | vs dense fp16 | student accuracy (%) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    dense16 = next(s for s in result["schemes"] if s["scheme"] == "dense fp16")["per_image"]
    for s in result["schemes"]:
        stored = "" if s["stored"] is None else f"{s['stored']['members_per_image']:,.0f}"
        acc = "" if s["accuracy"] is None else f"{s['accuracy']['mean']:.1f} ± {s['accuracy']['std']:.1f}"
        lines.append(f"| {s['scheme']} | {s['per_view']:,} | {s['per_image']:,} | {stored} | {s['per_image'] / dense16:.3g}x | {acc} |")
    lines.append(f"| SRe2L dense fp16, 1000 classes | {sre['bytes_per_view']:,} | {sre['bytes_per_image']:,} | | | |")
    first = next(s["stored"] for s in result["schemes"] if s["stored"])
    lines += [
        "",
        f"Images: {first['images_per_image']:,.0f} B each as stored; view parameters {first['view_params_per_image']:,.0f} B per image.",
        f"SRe2L: {sre['formula']}; ImageNet-1K IPC 50 with {sre['imagenet_ipc50']['views']} views: {sre['imagenet_ipc50']['bytes']:,} B ({sre['imagenet_ipc50']['gib']} GiB).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100-epoch students, 2 seeds")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-root", default=str((ROOT / ".." / "shared" / "data" / "cifar10").resolve()))
    parser.add_argument("--experts", default=str(ROOT / "runs" / "fidelity-cifar10" / "quick" / "experts"), help="expert store (default: the fidelity benchmark's quick experts)")
    parser.add_argument("--teacher", default=DEFAULT_TEACHER, help="teacher reference (trained when it is the default and missing)")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--topk", default="1,2,5")
    parser.add_argument("--protocol", default=None, help="evaluation protocol TOML (default recipes/eval/<dataset>.toml)")
    parser.add_argument("--student-epochs", type=int, default=None)
    parser.add_argument("--eval-seeds", default=None, help="student seeds, e.g. 0-1")
    parser.add_argument("--no-accuracy", action="store_true", help="byte accounting only")
    parser.add_argument("--out", default=str(ROOT / "runs" / "storage"))
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    from sl_compiler.errors import SlcError
    from sl_compiler.seeding import parse_seeds

    if args.quick:
        args.student_epochs = args.student_epochs or 100
        args.eval_seeds = args.eval_seeds or "0-1"
    started = time.perf_counter()
    try:
        args.eval_seeds = tuple(parse_seeds(args.eval_seeds)) if args.eval_seeds else None
        result = run(args)
    except SlcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / "storage.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    print(table(result))
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
