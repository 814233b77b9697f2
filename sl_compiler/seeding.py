"""Seeds: every random choice in slc comes from a recorded integer seed.

Randomness that must not depend on batch size or resumption point is derived from a tuple of
integers (seed, epoch, step, ...) rather than drawn from a global stream.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from any tuple of ints and strings, stable across runs and platforms."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generator(*parts: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator seeded from ``derive_seed(*parts)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g


def parse_seeds(text: str | int | list[int]) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` -> [0, 3, 7]; ``"2"`` -> [2]; ranges and lists mix."""
    from .errors import SlcError

    if isinstance(text, int):
        return [text]
    if isinstance(text, (list, tuple)):
        return [int(s) for s in text]
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                seeds.extend(range(lo_i, hi_i + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise SlcError(f"bad seed list {text!r}", "write seeds as 3, 0-4 or 0,3,7") from None
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise SlcError(f"bad seed list {text!r}: seeds must be distinct and non-negative", "write seeds as 3, 0-4 or 0,3,7")
    return seeds


def format_seeds(seeds: list[int]) -> str:
    """Inverse of :func:`parse_seeds`, compact: [0,1,2,3] -> "0-3"; [0,3,7] -> "0,3,7"."""
    seeds = sorted(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(str(s) for s in seeds)
