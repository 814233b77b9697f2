"""Writers that race or die: one writer per --out, a final rename that never replaces, dead writers' folders cleaned.

Interleavings are made deterministic by pausing one writer at a named point (a monkeypatched
function that waits on an event) while the test drives the other.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sl_compiler.artifact import atomic, load, verify, write_artifact
from sl_compiler.artifact import writer as writer_module
from sl_compiler.data import load_dataset
from sl_compiler.errors import ArtifactError
from test_artifact import _files, _inputs


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("synthetic:classes=4,size=16,train=12,test=6", split="train")


class Paused:
    """Wrap ``module.name`` so that the writer thread stops inside it (before or after the real call) until released."""

    def __init__(self, monkeypatch, module, name: str, *, after: bool = False, calls: int = 1):
        self.real = getattr(module, name)
        self.reached, self.release = threading.Event(), threading.Event()
        self.after, self.calls, self.thread = after, calls, None
        monkeypatch.setattr(module, name, self)

    def __call__(self, *args, **kwargs):
        if threading.current_thread() is not self.thread or self.calls == 0:
            return self.real(*args, **kwargs)
        self.calls -= 1
        if not self.after:
            self.reached.set()
            assert self.release.wait(30)
        result = self.real(*args, **kwargs)
        if self.after:
            self.reached.set()
            assert self.release.wait(30)
        return result

    def run(self, fn, *args, **kwargs) -> dict:
        """Start ``fn`` in the writer thread; returns a dict that will hold its result or error."""
        outcome: dict = {}

        def target():
            try:
                outcome["result"] = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                outcome["error"] = exc

        self.thread = threading.Thread(target=target)
        self.thread.start()
        assert self.reached.wait(30), outcome
        return outcome

    def finish(self) -> None:
        self.release.set()
        self.thread.join(30)


def test_a_second_writer_fails_at_once_while_the_first_writes(tmp_path, tiny, monkeypatch):
    out = tmp_path / "a"
    pause = Paused(monkeypatch, writer_module, "_write_shards")
    first = pause.run(write_artifact, out, **_inputs(tiny))
    for force in (False, True):
        with pytest.raises(ArtifactError, match=rf"{out} is being written by another slc process \(pid {os.getpid()}\)"):
            write_artifact(out, **_inputs(tiny, seed=1), force=force)
    pause.finish()
    assert first.get("result") == out, first
    assert load(out).content_hash == load(write_artifact(tmp_path / "ref", **_inputs(tiny))).content_hash
    verify(out)


def test_an_artifact_that_appeared_after_the_first_check_is_kept(tmp_path, tiny, monkeypatch):
    """The issue's race: A checks --out, works for a while; B writes --out and finishes; A must not replace B's."""
    out = tmp_path / "a"
    pause = Paused(monkeypatch, writer_module, "_check_target", after=True)  # A has checked, not yet locked
    first = pause.run(write_artifact, out, **_inputs(tiny))
    write_artifact(out, **_inputs(tiny, seed=1))  # B
    second = _files(out)
    pause.finish()
    assert isinstance(first.get("error"), ArtifactError) and "already exists" in str(first["error"])
    assert _files(out) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_the_final_rename_never_replaces_what_appeared_meanwhile(tmp_path, tiny, monkeypatch):
    """A writer that ignores slc's lock (slc 0.1.0, a copy) fills --out while slc is about to rename: slc keeps it."""
    out = tmp_path / "a"
    other = write_artifact(tmp_path / "other", **_inputs(tiny, seed=1))
    pause = Paused(monkeypatch, atomic, "publish")
    first = pause.run(write_artifact, out, **_inputs(tiny))
    shutil.copytree(other, out)
    pause.finish()
    assert isinstance(first.get("error"), ArtifactError) and "appeared while this write ran" in str(first["error"])
    assert _files(out) == _files(other)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "other"]


@pytest.fixture
def no_renameat2(monkeypatch):
    """The platform without renameat2 (macOS, old kernels, some file systems)."""
    monkeypatch.setattr(atomic, "_renameat2", lambda *a: errno.ENOSYS)


def test_without_renameat2_rename_still_never_replaces_and_force_still_replaces(tmp_path, tiny, no_renameat2):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "x").mkdir(parents=True)
    (dst / "y").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        atomic.rename_noreplace(src, dst)
    assert (dst / "y").is_dir() and (src / "x").is_dir()
    atomic.rename_noreplace(src, tmp_path / "new")
    assert (tmp_path / "new" / "x").is_dir()
    art = write_artifact(tmp_path / "a", **_inputs(tiny))
    before = load(art).content_hash
    write_artifact(art, **_inputs(tiny, seed=1), force=True)
    assert load(art).content_hash != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "dst", "new"]  # the old copy moved aside is gone


LIVE_WRITER = """
import os, sys, time
sys.path.insert(0, {tests!r})
from test_artifact import _inputs
from sl_compiler.data import load_dataset
from sl_compiler.artifact import writer
real = writer._encode_image
def wait(item, i, shape):
    if i == 5:
        open({ready!r}, "w").close()
        while not os.path.exists({go!r}):
            time.sleep(0.02)
    return real(item, i, shape)
writer._encode_image = wait
tiny = load_dataset("synthetic:classes=4,size=16,train=12,test=6", split="train")
writer.write_artifact({out!r}, **_inputs(tiny), shard_samples=2)
"""


def test_a_live_writers_folder_is_kept_and_a_killed_ones_removed(tmp_path, tiny):
    out, ready, go = tmp_path / "a", tmp_path / "ready", tmp_path / "go"
    code = LIVE_WRITER.format(tests=str(Path(__file__).parent), out=str(out), ready=str(ready), go=str(go))
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "SLC_PROGRESS": "0"}, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (tmp,) = [p for p in tmp_path.iterdir() if p.name.startswith(".a.tmp-")]
        assert f"-{child.pid}-" in tmp.name
        assert atomic.owner_alive(tmp.name) is True
        assert atomic.clean_stale(out) == [] and tmp.is_dir()  # the writer runs: its folder stays
        with pytest.raises(ArtifactError, match=f"being written by another slc process \\(pid {child.pid}\\)"):
            write_artifact(out, **_inputs(tiny))
        assert tmp.is_dir()
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert atomic.owner_alive(tmp.name) is False
        assert atomic.clean_stale(out) == [tmp] and not tmp.exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    verify(write_artifact(out, **_inputs(tiny)))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".a")] == []


def test_owner_identity_decides_and_names_of_other_outputs_are_left_alone(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = int(done.stdout)
    me, start, boot = os.getpid(), atomic.start_time(os.getpid()), atomic.boot_id()
    names = {
        f".a.tmp-{boot}-{me}-{start}-0123abcd": True,  # this very process
        f".a.tmp-{boot}-{me}-{start + 1}-0123abcd": False,  # our pid, another start time: a reused pid
        f".a.tmp-{boot}-{dead}-{start}-0123abcd": False,
        f".a.tmp-{'f' * 8 if boot != 'f' * 8 else 'e' * 8}-{me}-{start}-0123abcd": False,  # another boot
        f".a.tmp-{me}-0123abcd": True,  # slc 0.1.0's name: the pid alone
        f".a.tmp-{dead}-0123abcd": False,
        f".a.old-{boot}-{dead}-{start}-0123abcd": False,  # a forced replace's old copy, owner gone
    }
    for name, alive in names.items():
        (tmp_path / name).mkdir()
        assert atomic.owner_alive(name) is alive, name
    (tmp_path / f".b.tmp-{dead}-0123abcd").mkdir()  # another output's
    (tmp_path / ".a.tmp-notes").mkdir()  # not a temp folder slc names
    removed = atomic.clean_stale(tmp_path / "a")
    assert sorted(p.name for p in removed) == sorted(n for n, alive in names.items() if not alive)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([*(n for n, alive in names.items() if alive), f".b.tmp-{dead}-0123abcd", ".a.tmp-notes"])
