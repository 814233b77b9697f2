"""Cross-entropy quantile selection (the paper's Appendix B): easy or hard images by the teacher.

The teachers score the whole training split in one streamed pass (every teacher on each decoded
batch, ``label.Ensemble``): an image's score is the cross-entropy of the ensemble-averaged logits
on its true label, computed batch by batch, so that only the (N,) float32 scores are kept, never
an (N, C) logits matrix. Each class is cut into 10 deciles of score (0 = lowest cross-entropy,
the easiest), and IPC images are drawn at random from decile q.

Scores are cached in ``$SLC_CACHE/scores/`` (default ``~/.cache/slc``) per (dataset fingerprint,
teacher sha256s), so another q or IPC costs no teacher work. A long run checkpoints as it goes:
the split is cut into fixed chunks of ``SCORE_CHUNK`` images by index (whatever the batch size or
the workers), and each finished chunk is written atomically to ``<entry>.parts/``; a killed run
resumes from the finished chunks, and ranks of a distributed run can share the chunks out.
Images skipped as undecodable (``skip_bad``) score NaN, are recorded with their problem, and are
never selected; without ``skip_bad`` a chunk that skipped images is scored again (the file may
have been fixed; if not, its error names it).
"""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path
from typing import NamedTuple, Sequence

import torch

from .. import dist
from ..data import ImageSet, cache, stream
from ..data.stream import chunks
from ..dist import Team
from ..errors import RecipeError
from ..label import Ensemble, run_teachers
from ..label.teacher import as_ensemble
from ..progress import bar
from ..recipe import QUANTILES
from ..seeding import generator
from .random import check_ipc, draw_per_class, per_class_ranks

SCORE_CHUNK = 4096  # images per checkpointed chunk: minutes on a CPU, seconds on a GPU


class Scores(NamedTuple):
    """Per-image scores (float32 (N,), NaN where skipped) and the skipped ``(index, source id, problem)``."""

    values: torch.Tensor
    skipped: list[tuple[int, str, str]]


def scores_path(fingerprint: str, teachers: Sequence) -> Path:
    """``$SLC_CACHE/scores/<dataset fingerprint>-<sha256 of the teachers' sha256s>.safetensors``."""
    teachers_hash = hashlib.sha256("+".join(t.sha256 for t in teachers).encode()).hexdigest()
    return cache.cache_dir().parent / "scores" / f"{fingerprint}-{teachers_hash}.safetensors"


def parts_dir(path: Path) -> Path:
    """Where the finished chunks of an unfinished scoring run wait: ``<entry>.parts/``."""
    return path.with_name(path.name.removesuffix(".safetensors") + ".parts")


def score_chunks(n: int, chunk: int = SCORE_CHUNK) -> list[tuple[int, int]]:
    """The ``[start, stop)`` index ranges a split of ``n`` images is scored and checkpointed in."""
    return [(start, min(start + chunk, n)) for start in range(0, n, chunk)]


def ce_scores(
    teachers: Sequence | Ensemble,
    images: ImageSet,
    device: str | torch.device = "auto",
    batch_size: int = 256,
    *,
    workers: int | None = None,
    skip_bad: bool = False,
    chunk: int | None = None,
    team: Team | None = None,
) -> Scores:
    """Cross-entropy of the teachers' averaged logits on each image's true label; cached, resumable.

    ``images`` are streamed through ``workers`` decoding processes (default: the core count);
    with ``skip_bad`` an undecodable image scores NaN and is listed in ``Scores.skipped``.
    ``chunk`` (default ``SCORE_CHUNK``) sets the checkpointed ranges.

    Under torchrun (``team``, default ``sl_compiler.dist.team()``) the chunks still to score are
    dealt round-robin to the ranks, which score them in lockstep rounds and send each finished
    chunk to rank 0; rank 0 alone reads and writes the cache (it need not be shared between
    nodes) and gives every rank the whole result. The chunks are the same at any world size.
    """
    team = team or dist.team()
    members = teachers.teachers if isinstance(teachers, Ensemble) else list(teachers)
    mean, std = (teachers.mean, teachers.std) if isinstance(teachers, Ensemble) else (images.mean, images.std)
    path = scores_path(images.fingerprint(), members)
    n = len(images)
    key = {"size": n, "shape": list(images.shape), "mean": [round(float(m), 6) for m in mean], "std": [round(float(s), 6) for s in std]}
    if isinstance(teachers, Ensemble) and teachers.inputs.zca is not None:  # whitened inputs: another score per image
        key["zca"] = teachers.inputs.zca.id
    spans = score_chunks(n, chunk or SCORE_CHUNK)
    with team.together():
        whole = found = todo = result = None
        if team.main:
            whole = _read(path, key, 0, n)
            found = {s: _slice(whole, *s) for s in spans} if whole is not None else {s: _read(_part(path, s), key, *s) for s in spans}
            todo = [s for s in spans if found[s] is None or (found[s].skipped and not skip_bad)]
        todo = team.broadcast(todo)
        scored = {}
        if todo:
            ensemble = as_ensemble(teachers, mean, std, device)
            scored = _score(ensemble, images, todo, path, key, batch_size, workers, skip_bad, team)
        if team.main:
            if whole is not None and not todo:
                result = whole
            else:
                result = _assemble({**{s: done for s, done in found.items() if s not in todo}, **scored}, n)
                cache.save(path, {"scores": result.values}, {"key": key, "skipped": [list(s) for s in result.skipped]})
                shutil.rmtree(parts_dir(path), ignore_errors=True)
        return team.broadcast(result)


def _assemble(found: dict, n: int) -> Scores:
    """One :class:`Scores` of the whole split from its chunks' scores."""
    values = torch.full((n,), math.nan, dtype=torch.float32)
    for (start, stop), done in found.items():
        values[start:stop] = done.values
    return Scores(values, sorted(item for done in found.values() for item in done.skipped))


def _score(ensemble: Ensemble, images: ImageSet, todo: list[tuple[int, int]], path: Path, key: dict, batch_size: int, workers, skip_bad: bool, team: Team) -> dict:
    """Score this rank's share of the ``todo`` chunks in one stream; rank 0 gets every finished chunk and writes its part.

    Chunk r of this rank is finished in round r, when its last batch is scored; the ranks then
    exchange that round's chunks (an idle rank sends None), so rank 0 writes each part as soon as
    every rank has finished the round.
    """
    mine = team.rounds(todo)
    pending = [span for span in mine if span is not None]
    values = torch.full((len(images),), math.nan, dtype=torch.float32)
    batches = [b for start, stop in pending for b in chunks(range(start, stop), batch_size)]
    source = stream(images, batches=batches, workers=workers, skip_bad=skip_bad)
    done: dict = {}

    def finish(span: tuple[int, int] | None) -> None:
        piece = None
        if span is not None:
            start, stop = span
            piece = (span, Scores(values[start:stop].clone(), [s for s in source.skipped if start <= s[0] < stop]))
        for got in team.gather(piece) or []:
            if got is not None:
                done[got[0]] = got[1]
                cache.save(_part(path, got[0]), {"scores": got[1].values}, {"key": key, "skipped": [list(s) for s in got[1].skipped]})

    with bar(sum(stop - start for start, stop in pending), desc=f"score {ensemble.reference}") as progress:
        for positions, logits in run_teachers(ensemble, source):
            while pending and pending[0][1] <= int(positions[0]):  # batches arrive in order: that chunk is complete
                finish(pending.pop(0))
            target = images.targets[positions].to(logits.device).view(-1, 1)
            values[positions] = (torch.logsumexp(logits, 1) - logits.gather(1, target).squeeze(1)).cpu()
            progress.update(len(positions))
        while pending:
            finish(pending.pop(0))
        for _ in range(len(mine) - len([s for s in mine if s is not None])):
            finish(None)  # the rounds where this rank has no chunk left
    return done


def _part(path: Path, span: tuple[int, int]) -> Path:
    return parts_dir(path) / f"{span[0]:012d}-{span[1]:012d}.safetensors"


def _read(path: Path, key: dict, start: int, stop: int) -> Scores | None:
    """Scores of images ``[start, stop)`` from a cache file, or None when absent, foreign or damaged."""
    got = cache.load(path)
    if got is None:
        return None
    tensors, meta = got
    values = tensors.get("scores")
    if meta.get("key") != key or values is None or values.dtype != torch.float32 or tuple(values.shape) != (stop - start,):
        return None
    try:
        skipped = [(int(i), str(sid), str(problem)) for i, sid, problem in meta.get("skipped", [])]
    except (TypeError, ValueError):
        return None
    unscored = torch.zeros(stop - start, dtype=torch.bool)
    for i, _, _ in skipped:
        if not start <= i < stop:
            return None
        unscored[i - start] = True
    if not bool(torch.equal(torch.isnan(values), unscored)) or not bool(torch.isfinite(values[~unscored]).all()):
        return None  # a damaged entry is recomputed, never trusted
    return Scores(values, skipped)


def _slice(scores: Scores, start: int, stop: int) -> Scores:
    return Scores(scores.values[start:stop], [s for s in scores.skipped if start <= s[0] < stop])


def check_decile(targets: torch.Tensor, classes: list[str], ipc: int, quantile: int) -> None:
    """IPC must fit in decile ``quantile`` of every class; decile sizes follow from class sizes alone."""
    check_ipc(targets, classes, ipc)
    counts = torch.bincount(targets, minlength=len(classes))
    # ranks r with r * 10 // n == q are those in [ceil(n q / 10), ceil(n (q + 1) / 10))
    available = -((-counts * (quantile + 1)) // QUANTILES) + (-counts * quantile) // QUANTILES
    short = int(torch.argmin(available))
    if int(available[short]) < ipc:
        raise RecipeError(
            f"--ipc {ipc} is larger than decile {quantile} of class {classes[short]!r} ({int(available[short])} images)",
            f"pass --ipc {int(available[short])} or less, or use --select random",
        )


def quantile_per_class(
    scores: torch.Tensor,
    targets: torch.Tensor,
    classes: list[str],
    ipc: int,
    quantile: int,
    seed: int,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """``ipc`` images of every class drawn at random from decile ``quantile`` of the class's scores.

    Images scored NaN (skipped) belong to no decile; ``exclude`` (bool, N) leaves further images
    out of the draw without moving the deciles.
    """
    scored = ~torch.isnan(scores)
    check_decile(targets[scored], classes, ipc, quantile)
    counts = torch.bincount(targets[scored], minlength=len(classes)).clamp_min(1)
    ranks = per_class_ranks(targets, torch.where(scored, scores, math.inf))  # unscored images rank last
    candidate = scored & (ranks * QUANTILES // counts[targets] == quantile)
    if exclude is not None:
        candidate &= ~exclude
        left = torch.bincount(targets[candidate], minlength=len(classes))
        short = int(torch.argmin(left))
        if int(left[short]) < ipc:
            raise RecipeError(
                f"--ipc {ipc} is larger than the decodable images left in decile {quantile} of class {classes[short]!r} ({int(left[short])})",
                f"pass --ipc {int(left[short])} or less, or replace the undecodable files",
            )
    u = torch.rand(len(targets), generator=generator("select", "ce-quantile", seed), dtype=torch.float64)
    return draw_per_class(u, candidate, targets, ipc)
