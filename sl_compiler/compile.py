"""The compile pipeline: recipe -> selected images -> teacher soft labels -> artifact.

Every check that can fail runs before the expensive work (reference syntax, output folder,
dataset, teachers, IPC), and the artifact is written to a temporary folder and renamed at the
end, so a bad input or a killed run leaves nothing that looks like an artifact.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import __version__
from .artifact import artifact_dirname, write_artifact
from .artifact.format import key_width, sample_key
from .data import ImageSet, load_dataset
from .device import describe, resolve_device
from .errors import ArtifactError
from .experts import default_store, format_reference, parse_reference, resolve
from .label import AugmentedViews, sample_views, soft_labels, teacher_logits
from .label.views import RRC_RATIO, RRC_SCALE
from .recipe import QUANTILES, Recipe
from .select import ce_scores, check_decile, quantile_per_class, random_per_class

DEFAULT_OUT = Path("artifacts")


def default_out(recipe: Recipe) -> Path:
    """``./artifacts/<name>-<version>-<recipe hash>``: two recipes that differ in anything (seed,
    temperature, top-k, views, augment ...) never share a default folder. The hash is the first 8
    hex digits of the sha256 of the recipe's canonical JSON without ``data_root`` (a machine's
    path, not part of what is made)."""
    import hashlib

    from .artifact.format import canonical_json

    body = {k: v for k, v in recipe.to_dict().items() if k != "data_root"}
    digest = hashlib.sha256(canonical_json(body)).hexdigest()[:8]
    return DEFAULT_OUT / f"{artifact_dirname(recipe.artifact_name, recipe.version)}-{digest}"


def compile_artifact(
    recipe: Recipe,
    *,
    experts: str | Path | None = None,
    device: str | torch.device = "auto",
    out: str | Path | None = None,
    force: bool = False,
    batch_size: int = 256,
) -> Path:
    """Compile ``recipe`` into an artifact folder and return its path (default ``default_out(recipe)``).

    ``experts`` is the expert store (default ``$SLC_EXPERTS``, then ``./experts``); ``batch_size``
    is the teacher's inference batch and does not change the result's randomness.
    """
    members = parse_reference(recipe.teacher)
    out = Path(out) if out is not None else default_out(recipe)
    if out.exists() and not force:
        raise ArtifactError(f"{out} already exists", "pick another --out, bump --version, or pass --force to replace it")
    if batch_size < 1:
        raise ArtifactError(f"batch size must be at least 1, got {batch_size}", "pass --batch-size 1 or more")
    device = resolve_device(device)
    data = load_dataset(recipe.dataset, recipe.data_root, recipe.split)
    info = data.info()
    teachers = resolve(members, default_store(experts), info)

    indices, selection = select_images(recipe, data, teachers, device, batch_size)
    images = data.images(indices)
    n, views = len(indices), recipe.num_views
    keys = [sample_key(i, key_width(n)) for i in range(n)]
    params = sample_views(keys, recipe.views, recipe.augment, recipe.seed, data.shape) if recipe.views else None
    source = AugmentedViews(images.to(device), params) if params else images
    logits = teacher_logits(teachers, source, data.mean, data.std, device, batch_size)
    labels = soft_labels(logits.view(n, views, -1), recipe.temperature, recipe.topk)
    if params:
        labels["views"] = params

    stored = [data.encoded(i) for i in indices.tolist()] if data.sources is not None else images
    return write_artifact(
        out,
        name=recipe.artifact_name,
        version=recipe.version,
        dataset=info,
        images=stored,
        targets=data.targets[indices],
        source_ids=[data.source_id(i) for i in indices.tolist()],
        labels=labels,
        label_schema=label_schema(recipe, format_reference(members)),
        recipe={k: v for k, v in recipe.to_dict().items() if k != "data_root"},  # no machine paths; the fingerprint names the data
        teachers=[t.manifest_entry() for t in teachers],
        selection=selection,
        provenance={"tool": f"slc {__version__}", "torch": torch.__version__, "device": describe(device)},
        ipc=recipe.ipc,
        force=force,
    )


def select_images(recipe: Recipe, data: ImageSet, teachers: list, device: torch.device, batch_size: int) -> tuple[torch.Tensor, dict]:
    """Dataset indices in sample order, and the manifest's ``selection`` record."""
    if recipe.select == "ce-quantile":
        check_decile(data.targets, data.classes, recipe.ipc, recipe.quantile)  # before any teacher work
        scores = ce_scores(teachers, data, device, batch_size)
        indices = quantile_per_class(scores, data.targets, data.classes, recipe.ipc, recipe.quantile, recipe.seed)
        extra = {"quantile": recipe.quantile, "quantiles": QUANTILES, "score": "teacher cross-entropy on the true label"}
    else:
        indices = random_per_class(data.targets, data.classes, recipe.ipc, recipe.seed)
        extra = {}
    record = {
        "strategy": recipe.select,
        "seed": recipe.seed,
        "source_indices": indices.tolist(),
        "source_ids": [data.source_id(i) for i in indices.tolist()],
        **extra,
    }
    return indices, record


def label_schema(recipe: Recipe, teacher: str) -> dict:
    """What ``manifest.labels`` records beyond the tensors' own shapes: how the labels were made."""
    schema = {
        "temperature": recipe.temperature,
        "teacher": teacher,
        "logits": "mean over teachers, float32, then softmax(logits / temperature)",
        "augment": recipe.augment,
    }
    if recipe.topk is not None:
        schema["fill"] = "uniform"
    if recipe.views:
        schema["view_seed"] = recipe.seed
        schema["view_sampling"] = {
            "rrc_scale": list(RRC_SCALE),
            "rrc_ratio": [round(r, 6) for r in RRC_RATIO],
            "cutmix_lambda": "uniform(0, 1), box area 1 - lambda",
            "replay": "sl_compiler.label.views.replay",
        }
    return schema
