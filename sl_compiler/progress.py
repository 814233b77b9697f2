"""Progress on stderr with rate and ETA: a bar on a terminal, plain lines in a log.

A terminal gets a tqdm bar. When stderr is not a terminal (a CI log, ``2> run.log``, a job
scheduler) a bar's carriage returns would pile up into one unreadable line, so a plain line is
written every ``SLC_PROGRESS_EVERY`` percent (default 5) instead, and once at the end.
``SLC_PROGRESS=0`` silences both (tests set it).
"""

from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm


def enabled() -> bool:
    return os.environ.get("SLC_PROGRESS", "1") != "0"


def _every_percent() -> float:
    try:
        value = float(os.environ.get("SLC_PROGRESS_EVERY", "5"))
    except ValueError:
        return 5.0
    return value if 0 < value <= 100 else 5.0


def bar(total: int | float | None = None, desc: str = "", unit: str = "img", **kwargs):
    """A progress reporter on stderr (``update(n)``, ``n``, ``set_postfix_str``, a context manager,
    and an iterator over ``iterable=`` when given); ``unit`` shapes the rate shown (``img/s``, ``step/s``)."""
    leave = kwargs.pop("leave", True)
    if enabled() and not _isatty(sys.stderr):
        return LineProgress(total, desc, unit, every=_every_percent(), iterable=kwargs.get("iterable"))
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True, file=sys.stderr, disable=not enabled(), leave=leave, **kwargs)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _human(x: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{suffix}"
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LineProgress:
    """Plain progress lines: ``label teacher: 25% 2.5k/10k img, 48.2 img/s, elapsed 0:52, ETA 2:35``.

    One line each time another ``every`` percent is done (at most one per update, and at most one
    every ``MIN_GAP_S`` seconds, so a job of seconds does not write twenty lines); without a
    total, one line a minute at most. A last line gives the total, the time and the mean rate.
    """

    MIN_GAP_S = 2.0
    MIN_GAP_UNKNOWN_S = 60.0

    def __init__(self, total, desc: str, unit: str, every: float = 5.0, file=None, clock=time.monotonic, iterable=None):
        self.iterable = iterable
        self.total = total if total else None
        self.desc, self.unit, self.every = desc, unit, every
        self.file = file or sys.stderr
        self.clock = clock
        self.start = self.last_time = clock()
        self.n = 0
        self.postfix = ""
        self.next_percent = every
        self.closed = False

    def update(self, k: int | float = 1) -> None:
        self.n += k
        now = self.clock()
        if self.total:
            percent = 100.0 * self.n / self.total
            if percent >= self.next_percent and self.n < self.total and now - self.last_time >= self.MIN_GAP_S:
                self._line(now, percent)
                self.next_percent = (int(percent // self.every) + 1) * self.every
        elif now - self.last_time >= self.MIN_GAP_UNKNOWN_S:
            self._line(now, None)

    def __iter__(self):
        with self:
            for item in self.iterable:
                yield item
                self.update(1)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def _rate(self, now: float) -> float:
        elapsed = now - self.start
        return self.n / elapsed if elapsed > 0 else 0.0

    def _line(self, now: float, percent: float | None) -> None:
        rate = self._rate(now)
        head = f"{self.desc}: " if self.desc else ""
        if percent is not None:
            eta = (self.total - self.n) / rate if rate > 0 else None
            text = f"{head}{percent:3.0f}% {_human(self.n)}/{_human(self.total)} {self.unit}, {_human(rate)} {self.unit}/s, elapsed {_clock(now - self.start)}"
            text += f", ETA {_clock(eta)}" if eta is not None else ""
        else:
            text = f"{head}{_human(self.n)} {self.unit}, {_human(rate)} {self.unit}/s, elapsed {_clock(now - self.start)}"
        if self.postfix:
            text += f" ({self.postfix})"
        print(text, file=self.file, flush=True)
        self.last_time = now

    def close(self, stopped: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        now = self.clock()
        head = f"{self.desc}: " if self.desc else ""
        done = f"stopped at {_human(self.n)}" + (f"/{_human(self.total)}" if self.total else "") if stopped else f"done, {_human(self.n)}"
        text = f"{head}{done} {self.unit} in {_clock(now - self.start)} ({_human(self._rate(now))} {self.unit}/s)"
        if self.postfix:
            text += f" ({self.postfix})"
        print(text, file=self.file, flush=True)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(stopped=exc_type is not None)
