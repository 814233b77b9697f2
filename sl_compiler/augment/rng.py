"""Random numbers for many students in one call: counter-based, device-independent, batched.

Students trained together (a batch of K students, each on its own B images) must each draw the
numbers it would draw alone, or batching would change results. One ``torch.Generator`` per
student would need a Python loop per student per step; :class:`Draws` instead computes every
number as an integer hash of (the student's key, a counter naming the use, the element's
position), in a handful of tensor operations for all students at once. Integer arithmetic is
exact, so the numbers are the same bits on the CPU and on a GPU, batched or not, and the host can
recompute any of them (:meth:`Draws.student_integers`) without waiting for the device.

:class:`TorchRandom` gives the same interface over a ``torch.Generator`` for code that owns one
stream (expert training).

Both answer ``uniform(n, k)``, ``integers(n, k, span)`` and ``permutation(n)``, where ``n`` rows
are K students' blocks of ``n // K`` samples and a permutation never leaves a student's block.
"""

from __future__ import annotations

import torch

from ..seeding import derive_seed

M32 = 0xFFFFFFFF
_UNIT = 2.0**-24


def hash32(x):
    """A 32-bit integer hash (Wellons' hash-prospector, 16-15-15 shifts) of ints or int64 tensors in [0, 2**32).

    Both multipliers are below 2**31, so ``x * c`` stays below 2**63: no int64 overflow, and the
    same bits whether ``x`` is a Python int or a tensor on any device.
    """
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & M32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & M32
    return x ^ (x >> 15)


def student_keys(seeds: list[int]) -> list[int]:
    """One 63-bit key per student seed, ``derive_seed(seed, "student-rng")``: make a tensor of them for :class:`Draws`."""
    return [derive_seed(s, "student-rng") for s in seeds]


class Draws:
    """``slots`` random 32-bit numbers for each of ``n`` rows (K students x n // K samples), computed once.

    Row r belongs to student ``r // (n // K)``; its numbers depend only on that student's key, the
    ``counter`` and (sample position, slot). Calls consume slots left to right; :meth:`reserve`
    sets a window aside so that code which skips an operation still leaves later slots in place.
    """

    def __init__(self, keys: torch.Tensor, counter: tuple, n: int, slots: int, host_keys: list[int] | None = None):
        k = len(keys)
        if n % k:
            raise ValueError(f"{n} rows do not split into {k} students")
        self.keys, self.counter, self.n, self.students, self.slots = keys, counter, n, k, slots
        self.host_keys = host_keys
        c = derive_seed("draws", *counter)
        self._c = (c & M32, (c >> 32) & M32)
        self.per = n // k
        a = hash32((keys & M32) ^ self._c[0]).view(k, 1)
        b = hash32(((keys >> 32) & M32) ^ self._c[1]).view(k, 1)
        e = torch.arange(self.per * slots, dtype=torch.int64, device=keys.device).view(1, -1)
        self.bits = hash32(hash32(e ^ a) ^ b).view(n, slots)  # int64 in [0, 2**32)
        self._next, self._end = 0, slots

    def _take(self, k: int) -> torch.Tensor:
        start = self._next
        if start + k > self._end:
            raise ValueError(f"asked for {k} more random slots than the {self._end - start} reserved")
        self._next += k
        return self.bits[:, start : start + k]

    def _rows(self, n: int) -> None:
        if n != self.n:
            raise ValueError(f"draws for {self.n} rows asked for {n}")

    def reserve(self, k: int) -> "Draws":
        """A view onto the next ``k`` slots (consumed here whether or not the view is used)."""
        view = object.__new__(Draws)
        view.__dict__.update(self.__dict__)
        view._next = self._next
        view._end = self._next + k
        self._take(k)
        return view

    def uniform(self, n: int, k: int) -> torch.Tensor:
        """float32 (n, k) in [0, 1), multiples of 2**-24 (exact in float32)."""
        self._rows(n)
        return (self._take(k) >> 8).to(torch.float32) * _UNIT

    def integers(self, n: int, k: int, span: int) -> torch.Tensor:
        """int64 (n, k) in [0, span), by integer arithmetic (no float rounding at the boundaries)."""
        self._rows(n)
        if not 1 <= span < 2**31:
            raise ValueError(f"span {span} out of range")
        return (self._take(k) * span) >> 32

    def permutation(self, n: int) -> torch.Tensor:
        """int64 (n,): a random permutation within each student's block of ``n // K`` rows."""
        self._rows(n)
        keys = self._take(1).view(self.students, self.per)
        local = torch.argsort(keys, dim=1, stable=True)
        offset = torch.arange(self.students, device=local.device).view(-1, 1) * self.per
        return (local + offset).flatten()

    def student_integers(self, span: int) -> tuple[torch.Tensor, list[int] | None]:
        """One integer in [0, span) per student: (K,) on the keys' device, and the same values as a host list.

        The host list is recomputed from ``host_keys`` in Python integers (no device sync); it is
        None when the draws were made without host keys.
        """
        slot = self._next
        col = self._take(1)
        values = (col.view(self.students, self.per)[:, 0] * span) >> 32
        host = None
        if self.host_keys is not None:
            host = []
            for key in self.host_keys:
                a = hash32((key & M32) ^ self._c[0])
                b = hash32(((key >> 32) & M32) ^ self._c[1])
                host.append((hash32(hash32(slot ^ a) ^ b) * span) >> 32)
        return values, host


def epoch_order(keys: torch.Tensor, epoch: int, n: int) -> torch.Tensor:
    """int64 (K, n): each student's sample order for ``epoch`` (a sort of 32-bit hashes, stable on ties)."""
    bits = Draws(keys, ("order", epoch), len(keys) * n, 1).bits.view(len(keys), n)
    return torch.argsort(bits, dim=1, stable=True)


def epoch_views(keys: torch.Tensor, epoch: int, n: int, views: int) -> torch.Tensor:
    """int64 (K, n): which stored view each student sees at each position of ``epoch``'s order."""
    return Draws(keys, ("views", epoch), len(keys) * n, 1).integers(len(keys) * n, 1, views).view(len(keys), n)


class TorchRandom:
    """The :class:`Draws` interface over one ``torch.Generator`` (a single stream, K = 1)."""

    students = 1

    def __init__(self, generator: torch.Generator, device: torch.device):
        self.g, self.device = generator, device

    def reserve(self, k: int) -> "TorchRandom":
        return self

    def uniform(self, n: int, k: int) -> torch.Tensor:
        return torch.rand(n, k, generator=self.g, device=self.device)

    def integers(self, n: int, k: int, span: int) -> torch.Tensor:
        return torch.randint(0, span, (n, k), generator=self.g, device=self.device)

    def permutation(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.g, device=self.device)


def as_random(rng, device: torch.device):
    """A :class:`Draws` or :class:`TorchRandom` from either, or from a bare ``torch.Generator``."""
    return TorchRandom(rng, device) if isinstance(rng, torch.Generator) else rng
