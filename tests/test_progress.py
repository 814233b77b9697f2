"""Progress: plain lines every few percent in a log, a bar on a terminal, silence on request."""

from __future__ import annotations

import io

from tqdm import tqdm

from sl_compiler import progress


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_lines_every_few_percent_with_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    with progress.LineProgress(200, "label convnet_d3@1", "img", every=25, file=out, clock=clock) as p:
        for _ in range(100):
            clock.t += 0.5  # 2 img/s
            p.update(2)
        p.set_postfix_str("epoch 1")
    lines = out.getvalue().splitlines()
    assert lines == [
        "label convnet_d3@1:  25% 50/200 img, 4 img/s, elapsed 0:12, ETA 0:38",
        "label convnet_d3@1:  50% 100/200 img, 4 img/s, elapsed 0:25, ETA 0:25",
        "label convnet_d3@1:  75% 150/200 img, 4 img/s, elapsed 0:38, ETA 0:12",
        "label convnet_d3@1: done, 200 img in 0:50 (4 img/s) (epoch 1)",
    ]


def test_big_steps_print_one_line_and_a_failure_says_where_it_stopped():
    out, clock = io.StringIO(), Clock()
    try:
        with progress.LineProgress(10_000, "verify", "img", every=5, file=out, clock=clock) as p:
            clock.t += 10
            p.update(5_000)  # 50 % at once: one line, not ten
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    lines = out.getvalue().splitlines()
    assert lines == ["verify:  50% 5.0k/10.0k img, 500 img/s, elapsed 0:10, ETA 0:10", "verify: stopped at 5.0k/10.0k img in 0:10 (500 img/s)"]


def test_bar_is_lines_in_a_log_a_bar_on_a_terminal_and_silent_when_off(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("SLC_PROGRESS", "1")
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    assert isinstance(progress.bar(10, "x"), progress.LineProgress)
    monkeypatch.setattr(progress.sys, "stderr", Terminal())
    b = progress.bar(10, "x")
    assert isinstance(b, tqdm) and not b.disable
    b.close()
    monkeypatch.setenv("SLC_PROGRESS", "0")
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    b = progress.bar(10, "x")
    assert isinstance(b, tqdm) and b.disable
    b.update(10)
    b.close()
    assert progress.sys.stderr.getvalue() == ""


def test_a_fast_job_writes_few_lines_and_an_iterable_is_walked(monkeypatch):
    out, clock = io.StringIO(), Clock()
    with progress.LineProgress(16, "decode", "img", every=5, file=out, clock=clock) as p:
        for _ in range(16):
            clock.t += 0.01  # 16 images in 0.16 s: every one is another 6 %, none deserves a line
            p.update(1)
    assert out.getvalue().splitlines() == ["decode: done, 16 img in 0:00 (100 img/s)"]
    monkeypatch.setenv("SLC_PROGRESS", "1")
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    assert list(progress.bar(3, "list", unit="class", iterable=["a", "b", "c"])) == ["a", "b", "c"]
    assert progress.sys.stderr.getvalue().splitlines()[-1].startswith("list: done, 3 class")
