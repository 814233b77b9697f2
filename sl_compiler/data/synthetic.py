"""``synthetic``: seeded, class-dependent images, for tests and the README's default run.

Each class has a smooth random template. An image is a *mixture* of all templates, shifted, with
random contrast and pixel noise: its own class carries weight 0.45 and the rest is spread over
the other classes at random. Images are thus ambiguous the way real ones are, and a teacher's
soft label says how (which a hard label cannot): the effect slc exists for shows on data made in
a second, with no download.

Options ride on the name: ``synthetic:classes=10,size=32,channels=3,train=100,test=20,seed=0``.

The arithmetic is float64 and the statistics are exact histograms, so the pixels are the same on
every CPU: a float32 last-bit difference between kernels flipped 7 of 1.5 M pixels' rounding
(and so the dataset's fingerprint); in float64 such a flip needs a value within 1e-13 of a
rounding boundary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DataError
from .base import ImageSet
from .stats import pixel_stats

OWN_WEIGHT = 0.45  # the true class's share of an image; the other classes share the rest
DEFAULTS = {"classes": 10, "size": 32, "channels": 3, "train": 100, "test": 20, "seed": 0}


def parse_options(spec: str) -> dict:
    """``"classes=4,size=16"`` -> {"classes": 4, "size": 16, ...defaults}."""
    opts = dict(DEFAULTS)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        if key not in DEFAULTS or not value.isdigit():
            raise DataError(
                f"bad synthetic option {part!r}",
                f"write synthetic:KEY=INT,... with keys {', '.join(DEFAULTS)}",
            )
        opts[key] = int(value)
    if opts["classes"] < 2 or opts["size"] < 4 or opts["channels"] not in (1, 3) or opts["train"] < 1 or opts["test"] < 1:
        raise DataError(f"synthetic options out of range: {opts}", "use classes>=2, size>=4, channels 1 or 3, train/test>=1")
    return opts


def canonical_name(opts: dict) -> str:
    """The dataset name recorded in manifests and expert stores: defaults left out."""
    extra = ",".join(f"{k}={opts[k]}" for k in DEFAULTS if opts[k] != DEFAULTS[k])
    return f"synthetic:{extra}" if extra else "synthetic"


def key(spec: str) -> str:
    """The canonical name of ``synthetic:<spec>``."""
    return canonical_name(parse_options(spec))


def _smooth(g: torch.Generator, n: int, c: int, s: int) -> torch.Tensor:
    """n low-frequency random patterns (c, s, s) with zero mean and unit std."""
    coarse = max(2, s // 4)
    t = F.interpolate(torch.rand(n, c, coarse, coarse, generator=g, dtype=torch.float64), size=(s, s), mode="bicubic", align_corners=False)
    t = t - t.mean((1, 2, 3), keepdim=True)
    return t / (t.std((1, 2, 3), keepdim=True) + 1e-6)


def load(spec: str, split: str) -> ImageSet:
    opts = parse_options(spec)
    k, s, c = opts["classes"], opts["size"], opts["channels"]
    templates = _smooth(torch.Generator().manual_seed(opts["seed"]), k, c, s)
    # the test split draws from its own stream, so train and test never share an image
    g = torch.Generator().manual_seed(opts["seed"] * 1_000_003 + (0 if split == "train" else 1) + 7)
    per_class = opts["train"] if split == "train" else opts["test"]
    targets = torch.arange(k).repeat_interleave(per_class)
    n = len(targets)
    others = -torch.log(torch.rand(n, k, generator=g, dtype=torch.float64)).square()  # heavy-tailed: a few classes dominate the rest
    others[torch.arange(n), targets] = 0
    weights = (1 - OWN_WEIGHT) * others / others.sum(1, keepdim=True)
    weights[torch.arange(n), targets] = OWN_WEIGHT
    mixed = torch.einsum("nk,kchw->nchw", weights, templates)
    shifts = torch.randint(-s // 4, s // 4 + 1, (n, 2), generator=g)
    rows = (torch.arange(s).view(1, s) - shifts[:, :1]) % s
    cols = (torch.arange(s).view(1, s) - shifts[:, 1:]) % s
    mixed = mixed[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
    contrast = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=g, dtype=torch.float64)
    x = 0.5 + 0.2 * (mixed * contrast + 0.3 * torch.randn(n, c, s, s, generator=g, dtype=torch.float64))
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    mean, std = pixel_stats(load_train_pixels(spec) if split != "train" else pixels)
    return ImageSet(
        name=canonical_name(opts),
        split=split,
        classes=[f"class_{i:0{len(str(k - 1))}d}" for i in range(k)],
        targets=targets,
        shape=(c, s, s),
        mean=mean,
        std=std,
        pixels=pixels,
        meta={"loader": "synthetic", "options": opts},
    )


def load_train_pixels(spec: str) -> torch.Tensor:
    """Normalisation statistics always come from the training split."""
    return load(spec, "train").pixels
