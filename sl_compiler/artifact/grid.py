"""grid.png: an artifact's images per class, each captioned with its label's top classes.

Rows are classes (the first ``max_classes`` of the class list that have images), columns the
first ``per_class`` images of each class in sample order. A soft-labelled image is captioned with its top-3 classes
and probabilities (the true class in bold); a hard-labelled one with its class. An artifact with
recorded views (per-view labels) shows each image followed by its first ``views`` views, replayed
from the stored parameters by :func:`sl_compiler.label.views.replay` (the exact pixels the teacher
labelled) and captioned with that view's own label; the image itself is captioned with the mean
label over all its views.

The writer draws it from what it is about to store and ``slc inspect --grid`` from the stored
artifact, through the same :func:`grid_png`, so the defaults give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import ArtifactError
from . import format as fmt

PER_CLASS = 8  # images per class, single-view labels
PER_CLASS_VIEWS = 4  # images per class when each is followed by its views
VIEWS = 2  # views shown per image
MAX_CLASSES = 10
TILE_PX = 96  # each image is scaled to fit this square: upscaled by a whole factor (crisp pixels), or downscaled
TOP = 3  # classes per caption
NAME_CHARS = 11  # a caption line is "0.62 <name>", cut to fit under the tile


@dataclass
class GridSource:
    """What a grid is drawn from: ``image(i)`` uint8 (C, H, W) of sample i; ``labels(idx)`` float32
    (n, V, C) probabilities of samples ``idx`` (None for hard labels); ``views`` the recorded view
    parameters ``{name: (N, V, ...)}`` or None."""

    classes: list[str]
    targets: torch.Tensor
    image: Callable[[int], torch.Tensor]
    labels: Callable[[torch.Tensor], torch.Tensor] | None
    views: dict[str, torch.Tensor] | None


def source_of_artifact(art) -> GridSource:
    """A :class:`GridSource` over an opened :class:`~sl_compiler.artifact.Artifact`: decodes only the images drawn."""
    from ..data.decode import decode_image

    def image(i: int) -> torch.Tensor:
        if art.image_space:  # float images: a picture of each
            return fmt.display_uint8(art.images[i], art.image_space)
        if "images" in art.__dict__:  # already decoded (cached_property)
            return art.images[i]
        data, _ = art.encoded(i)
        return decode_image(data, art.shape, art.keys[i], art.resize)

    return GridSource(list(art.classes), art.targets, image, stored_labels(art.label_kind, art.labels, art.num_classes, art.manifest["labels"].get("fill")), art.views)


def stored_labels(kind: str, tensors: dict[str, torch.Tensor], num_classes: int, fill: str | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``labels(idx)`` for stored label tensors (N, V, ...): dense probabilities, top-k filled by the manifest's rule."""
    if kind == "dense":
        return lambda idx: tensors["probs"][idx].float()
    if kind == "topk":
        return lambda idx: fmt.dense_from_topk(tensors["topk_values"][idx], tensors["topk_indices"][idx], num_classes, fill or "uniform")
    return None


def grid_title(manifest: dict, shown: int, present: int) -> str:
    """``name version: dataset, N images (IPC k), kind labels x V views`` plus which classes are shown
    (``shown`` of the ``present`` classes that have images)."""
    ds, lab = manifest["dataset"], manifest["labels"]
    ipc = f" (IPC {manifest['ipc']})" if manifest.get("ipc") is not None else ""
    views = f" x {lab['views']} views" if lab["views"] > 1 else ""
    classes = ""
    if shown < ds["num_classes"]:
        classes = f"; the first {shown} of {ds['num_classes']} classes" + (f" ({present} have images)" if present < ds["num_classes"] else "")
    return f"{manifest['name']} {manifest['version']}: {ds['name']}, {manifest['counts']['samples']} images{ipc}, {lab['kind']} labels{views}{classes}"


def grid_png(source: GridSource, manifest: dict, *, per_class: int | None = None, max_classes: int = MAX_CLASSES, views: int = VIEWS) -> bytes:
    """PNG bytes of the grid (module docstring), titled from ``manifest``. ``per_class`` None: :data:`PER_CLASS`, or
    :data:`PER_CLASS_VIEWS` when views are drawn; ``max_classes`` 0: every class; ``views`` 0 draws none."""
    from ..plot import image_grid_png

    has_views = bool(source.views) and views > 0
    per_class = (PER_CLASS_VIEWS if has_views else PER_CLASS) if per_class is None else per_class
    if per_class < 1 or max_classes < 0 or views < 0:
        raise ArtifactError(f"bad grid size: {per_class} images per class, {max_classes} classes, {views} views", "give --per-class >= 1, --max-classes >= 0 (0: all) and --views >= 0")
    present = torch.unique(source.targets).tolist()  # sorted; a subset of a dataset may hold only some of its classes
    shown = present if max_classes == 0 else present[:max_classes]
    chosen = [(c, (source.targets == c).nonzero().flatten()[:per_class]) for c in shown]
    idx = torch.cat([i for _, i in chosen])
    probs = source.labels(idx) if source.labels is not None else None  # (n, V, C)
    shown_views = min(views, probs.shape[1]) if has_views and probs is not None else 0
    pictures = _pictures(source, idx, shown_views)  # (n, 1 + shown_views, C, H, W)
    rows, at = [], 0
    for c, members in chosen:
        tiles = []
        for _ in range(len(members)):
            if probs is None:
                tiles.append((_tile(pictures[at, 0]), [(source.classes[c][: NAME_CHARS + 5], True)]))
            else:
                own = probs[at]
                head = [(f"mean of {own.shape[0]} views", False)] if shown_views else []
                if shown_views and tiles:
                    tiles.append(None)  # a gap between one image's group of views and the next
                tiles.append((_tile(pictures[at, 0]), head + _caption(own.mean(0), c, source.classes)))
                for v in range(shown_views):
                    tiles.append((_tile(pictures[at, 1 + v]), [(f"view {v}", False)] + _caption(own[v], c, source.classes)))
            at += 1
        rows.append((source.classes[c], tiles))
    return image_grid_png(rows, grid_title(manifest, len(shown), len(present)))


def _pictures(source: GridSource, idx: torch.Tensor, shown_views: int) -> torch.Tensor:
    """uint8 (n, 1 + shown_views, C, H, W): each chosen image, then its first views replayed from the recorded parameters."""
    positions = idx.tolist()
    if not shown_views:
        return torch.stack([source.image(i) for i in positions]).unsqueeze(1)
    from ..label.views import gather, replay

    n = len(positions)
    sample = idx.repeat_interleave(shown_views)
    view = torch.arange(shown_views).repeat(n)
    params = gather(source.views, sample, view)
    needed = sorted(set(positions) | (set(params["partner"].long().tolist()) if "partner" in params else set()))
    local = {g: j for j, g in enumerate(needed)}
    batch = torch.stack([source.image(g) for g in needed])
    to_local = lambda t: torch.tensor([local[g] for g in t.long().tolist()], dtype=torch.long)  # noqa: E731
    partner = to_local(params["partner"]) if "partner" in params else None
    replayed = replay(batch, to_local(sample), params, partner_index=partner)
    own = batch[to_local(idx)]
    return torch.cat([own.unsqueeze(1), replayed.view(n, shown_views, *replayed.shape[1:])], 1)


def _caption(p: torch.Tensor, true_class: int, names: list[str]) -> list[tuple[str, bool]]:
    """The top classes of one probability row, ``0.62 cat``, the true class emphasised; ties go to the lower class index
    (top-k labels fill the other classes with equal mass)."""
    values, classes = p.sort(descending=True, stable=True)
    values, classes = values[:TOP], classes[:TOP]
    return [(f"{v:.2f} {names[k][:NAME_CHARS]}", k == true_class) for v, k in zip(values.tolist(), classes.tolist())]


def _tile(image: torch.Tensor):
    """uint8 (C, H, W) -> RGB (TILE_PX, TILE_PX, 3) numpy: scaled to fit (a whole factor up, antialiased down), centred on white."""
    x = image
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    elif x.shape[0] == 4:  # composite on white
        rgb, alpha = x[:3].float(), x[3:].float() / 255
        x = (rgb * alpha + 255 * (1 - alpha)).round().to(torch.uint8)
    _, h, w = x.shape
    side = max(h, w)
    if side <= TILE_PX:
        f = TILE_PX // side
        x = x.repeat_interleave(f, 1).repeat_interleave(f, 2)
    else:
        size = (max(1, round(h * TILE_PX / side)), max(1, round(w * TILE_PX / side)))
        x = F.interpolate(x[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
    out = torch.full((3, TILE_PX, TILE_PX), 255, dtype=torch.uint8)
    top, left = (TILE_PX - x.shape[1]) // 2, (TILE_PX - x.shape[2]) // 2
    out[:, top : top + x.shape[1], left : left + x.shape[2]] = x
    return out.permute(1, 2, 0).contiguous().numpy()
