"""Distributed runs under ``torchrun``: the one place that reads its environment and owns the process group.

slc scales out through ``torchrun`` only (NCCL between GPUs, gloo between CPUs, several nodes
through torchrun's rendezvous); it has no launcher of its own. Outside torchrun, or with
``WORLD_SIZE`` 1, there is no process group and every call here returns at once: a world of one.

The rest of slc asks a :class:`Team` four things: which items of a fixed list of work are mine
(:meth:`Team.share`), "gather these" (:meth:`Team.gather` to rank 0, :meth:`Team.all_gather` to
every rank, :meth:`Team.broadcast` from rank 0), "am I rank 0" (:attr:`Team.main`: only rank 0
writes files and prints) and "wait for the others" (:meth:`Team.barrier`). Work is split over a
fixed grid (score chunks, label batches, students, sweep cells), never by a random stream, so a
result never depends on the world size.

Faults. Every collective here first exchanges each rank's status, and :meth:`Team.together`
turns an error raised by slc's code on one rank (bad input, a broken checkpoint) into
:class:`RankFailed` on every other rank at its next collective, naming the rank; nobody waits for
a rank that has given up. A rank that dies (killed, out of memory) is torchrun's to notice: its
agent stops the other ranks and names the failed one. As a backstop against a rank that hangs,
waiting for the others' work times out after ``SLC_DIST_PATIENCE`` seconds (default 86400: longer
than one student, sweep cell or artifact write), and a data collective or DDP's all-reduce after
``SLC_DIST_TIMEOUT`` seconds (default 1800).

This module imports torch only when a process group is needed, so the CLI can ask
:func:`launched` whether it runs under torchrun without paying for torch.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, Sequence, TypeVar

from .errors import SlcError

T = TypeVar("T")

TIMEOUT_ENV = "SLC_DIST_TIMEOUT"  # seconds a data collective (and DDP's all-reduce) may take
PATIENCE_ENV = "SLC_DIST_PATIENCE"  # seconds a rank waits for the others to finish their work
DEFAULTS_S = {TIMEOUT_ENV: 1800, PATIENCE_ENV: 86400}
FAULT_ENV = "SLC_FAULT"  # fault injection for tests and drills: POINT:RANK:N kills rank RANK at its N-th POINT

# commands that split their work over the ranks of a torchrun launch; every other command refuses to run N times
DISTRIBUTED_COMMANDS = ("compile", "evaluate", "sweep", "experts train")


class DistError(SlcError):
    """A torchrun environment slc cannot use, or a command that is not distributed."""


class RankFailed(SlcError):
    """Another rank raised an error; this rank stops too, and rank 0 prints that error naming the rank."""

    def __init__(self, rank: int, size: int, problem: str, fix: str | None):
        self.rank = rank
        super().__init__(f"rank {rank} of {size} failed: {problem}", fix or f"rank {rank} printed its traceback; once fixed, rerun the same command: finished pieces are reused")


@dataclass(frozen=True)
class Launch:
    """What torchrun told this process: its rank, the world size, and its place on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched() -> Launch:
    """This process's place in a torchrun launch (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``); a world of one without them."""

    def number(name: str, default: int) -> int:
        value = os.environ.get(name)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except ValueError:
            raise DistError(f"{name}={value!r} is not a whole number", "launch slc with torchrun, which sets it, or unset it") from None

    size = number("WORLD_SIZE", 1)
    if size <= 1:
        return Launch()
    if "RANK" not in os.environ:
        raise DistError(f"WORLD_SIZE={size} but RANK is not set", "launch slc with torchrun, e.g. torchrun --nproc-per-node 2 -m cli.main compile ...")
    rank = number("RANK", 0)
    local_size = number("LOCAL_WORLD_SIZE", size)
    local_rank = number("LOCAL_RANK", rank % max(local_size, 1))
    if not 0 <= rank < size or not 0 <= local_rank < local_size:
        raise DistError(f"RANK={rank} / LOCAL_RANK={local_rank} do not fit WORLD_SIZE={size} / LOCAL_WORLD_SIZE={local_size}", "launch slc with torchrun, which sets them")
    return Launch(rank, size, local_rank, local_size)


def not_distributed(command: str) -> str | None:
    """The one line to print when ``command`` (e.g. ``"inspect"``, ``"experts list"``) is started under torchrun with several ranks, else None."""
    where = launched()
    if not where.distributed or command in DISTRIBUTED_COMMANDS:
        return None
    return (
        f"slc {command} is not distributed: started by torchrun with WORLD_SIZE={where.size}, it would run {where.size} times; "
        f"run it as a plain command (only {', '.join(f'slc {c}' for c in DISTRIBUTED_COMMANDS)} split their work over ranks)"
    )


def timeout_s(name: str = TIMEOUT_ENV) -> float:
    """``SLC_DIST_TIMEOUT`` (default 1800 s) or ``SLC_DIST_PATIENCE`` (default 86400 s), checked."""
    value = os.environ.get(name)
    if not value:
        return DEFAULTS_S[name]
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise DistError(f"{name}={value!r} is not a positive number of seconds", f"unset it (default {DEFAULTS_S[name]} s) or give e.g. {name}=3600")
    return seconds


class Team:
    """The ranks of this run as one of them sees them; a world of one (:data:`SOLO`) does no communication at all."""

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int = 0, local_size: int = 1, waits=None):
        self.rank, self.size, self.local_rank, self.local_size = rank, size, local_rank, local_size
        self._waits = waits  # the gloo group of the status exchanges (timeout SLC_DIST_PATIENCE)
        self._reporting = True  # False while collectives other than ours are in flight (DistributedDataParallel)

    def __repr__(self) -> str:
        return f"Team(rank={self.rank}, size={self.size})"

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the rank that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # ---- who does what ------------------------------------------------------------------------

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's items of a fixed list: every ``size``-th from ``rank`` (round-robin)."""
        return list(items[self.rank :: self.size])

    def rounds(self, items: Sequence[T]) -> list[T | None]:
        """This rank's items, padded with None to the same count on every rank: one per round of lockstep work."""
        count = -(-len(items) // self.size)
        mine = self.share(items)
        return mine + [None] * (count - len(mine))

    # ---- collectives --------------------------------------------------------------------------

    def _check(self, status: tuple[str, str | None] | None = None) -> None:
        """Exchange statuses: raise :class:`RankFailed` here if another rank reports a failure.

        This is where ranks wait for each other's work (a chunk, a student, rank 0 writing an
        artifact), so it runs in a gloo group of its own that waits ``SLC_DIST_PATIENCE``; the
        data collective that follows finds every rank there.
        """
        import torch.distributed as tdist

        statuses: list = [None] * self.size
        tdist.all_gather_object(statuses, status, group=self._waits)
        failed = [(r, s) for r, s in enumerate(statuses) if s is not None and r != self.rank]
        if failed:
            rank, (problem, fix) = failed[0]
            raise RankFailed(rank, self.size, problem, fix)

    def barrier(self) -> None:
        """Wait for every rank (and learn whether one failed)."""
        if self.distributed:
            self._check()

    def gather(self, obj: T) -> list[T] | None:
        """Every rank's ``obj`` in rank order on rank 0; None on the others."""
        if not self.distributed:
            return [obj]
        import torch.distributed as tdist

        self._check()
        out: list | None = [None] * self.size if self.main else None
        tdist.gather_object(obj, out, dst=0)
        return out

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's ``obj`` in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        import torch.distributed as tdist

        self._check()
        out: list = [None] * self.size
        tdist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T | None = None) -> T:
        """Rank 0's ``obj`` on every rank (the others pass None)."""
        if not self.distributed:
            return obj
        import torch.distributed as tdist

        self._check()
        box = [obj if self.main else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, value: int) -> int:
        """The sum of an integer over the ranks, on every rank."""
        return sum(self.all_gather(int(value)))

    def on_main(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` run on rank 0 only, its result on every rank; its error raised on every rank."""
        with self.together():
            result = fn(*args, **kwargs) if self.main else None
        return self.broadcast(result)

    # ---- failures -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Work whose failure on one rank must stop every rank: the error is sent to the others' next collective.

        The failing rank raises its own error; the others raise :class:`RankFailed` naming it.
        """
        try:
            yield
        except RankFailed:
            raise
        except BaseException as exc:
            if self.distributed and self._reporting and not hasattr(exc, "slc_sent"):
                status = (exc.problem, exc.fix) if isinstance(exc, SlcError) else (f"{type(exc).__name__}: {exc}", None)
                sent = True
                try:
                    self._check(status)
                except RankFailed:
                    pass  # exchanged: another rank failed as well
                except Exception:
                    sent = False  # the exchange itself broke: this rank must print its error
                with contextlib.suppress(AttributeError):
                    exc.slc_sent = sent  # type: ignore[attr-defined]  # an outer block does not send it again; cli.main lets rank 0 print it
            raise

    @contextlib.contextmanager
    def apart(self) -> Iterator[None]:
        """Code with collectives of its own (DistributedDataParallel's all-reduce), which ours must not cross.

        A failure inside is not sent to the other ranks (their pending collective is another
        kind): the rank exits and torchrun's agent stops the others, naming it.
        """
        if not self.distributed:
            yield
            return
        self._reporting = False
        yield  # an error propagates and leaves reporting off: the other ranks wait in a collective we must not answer
        self._reporting = True


SOLO = Team()

_team: Team | None = None
_alone = 0


def team() -> Team:
    """The team of this process: :data:`SOLO` outside torchrun (and inside :func:`alone`), else the process group's, created once."""
    global _team
    if _alone:
        return SOLO
    if _team is not None:
        return _team
    where = launched()
    if not where.distributed:
        _team = SOLO
        return _team
    import atexit

    import torch
    import torch.distributed as tdist

    cuda = torch.cuda.is_available()
    if cuda and where.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(where.local_rank)
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"  # object collectives go through gloo on the CPU either way
    if not tdist.is_initialized():
        tdist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()))
        atexit.register(_close)
    _team = Team(where.rank, where.size, where.local_rank, where.local_size, tdist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s(PATIENCE_ENV))))
    if not _team.main:
        os.environ.setdefault("SLC_PROGRESS", "0")  # one progress display: rank 0's, for its share
    return _team


def _close() -> None:
    import torch.distributed as tdist

    with contextlib.suppress(Exception):
        if tdist.is_initialized():
            tdist.destroy_process_group()


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Inside, this rank works as a world of one (a sweep cell: its compile and students run on one rank)."""
    global _alone
    _alone += 1
    try:
        yield
    finally:
        _alone -= 1


def device(spec: Any = "auto"):
    """The device of this rank: ``auto`` and ``cuda`` mean ``cuda:LOCAL_RANK`` under torchrun; otherwise as ``resolve_device``."""
    import torch

    from .device import resolve_device

    where = launched()
    if where.distributed and not isinstance(spec, torch.device) and (spec or "auto").strip().lower() in ("auto", "cuda") and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if where.local_rank >= count:
            raise DistError(
                f"local rank {where.local_rank} has no GPU: this node has {count} CUDA device{'s' if count != 1 else ''} for {where.local_size} ranks",
                f"launch at most {count} ranks per node (torchrun --nproc-per-node {count}) or pass --device cpu",
            )
        return torch.device("cuda", where.local_rank)
    return resolve_device(spec)


def workers(given: int | None) -> int | None:
    """Decoding processes per rank: as given, else the node's cores shared by its ranks (None outside torchrun: the loader's default)."""
    where = launched()
    if given is not None or not where.distributed:
        return given
    from .data.stream import default_workers

    return max(1, default_workers() // max(1, where.local_size))


_faults: dict[str, int] = {}


class InjectedFault(SlcError):
    """The error ``SLC_FAULT=POINT:RANK:N:raise`` raises: a rank failing in slc's own code, for tests and drills."""


def fault(point: str) -> None:
    """Fault injection at ``point``: ``SLC_FAULT=POINT:RANK:N`` makes rank RANK kill itself (SIGKILL) at its N-th ``point``.

    ``POINT:RANK:N:raise`` raises :class:`InjectedFault` there instead (an error every rank must
    learn of). Tests and failure drills use it; unset, it costs one lookup.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, rank, count, how = (spec.split(":") + ["", "", "", ""])[:4]
    if name != point or str(launched().rank) != rank:
        return
    _faults[point] = _faults.get(point, 0) + 1
    if _faults[point] < int(count or 1):
        return
    if how == "raise":
        raise InjectedFault(f"fault injected at {point} #{_faults[point]} on rank {rank} ({FAULT_ENV}={spec})", f"unset {FAULT_ENV}")
    os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["DISTRIBUTED_COMMANDS", "DistError", "InjectedFault", "Launch", "RankFailed", "SOLO", "Team", "alone", "device", "fault", "launched", "not_distributed", "team", "timeout_s", "workers"]
