"""Publishing a folder safely: owned temp folders, one writer per target, renames that never clobber.

An artifact is built in a hidden temp folder beside its target and renamed into place last. This
module owns the three rules that make that safe when writers crash or race (spec: Layout):

- ``OutLock(out)`` holds ``.<out>.lock`` (``flock``) while a writer works, so a second writer to
  the same ``out`` fails at once instead of racing.
- A temp folder's name records its owner (``.<out>.tmp-<boot>-<pid>-<start>-<random>``: this boot,
  the process id and the process's start time). ``clean_stale(out)``, called under the lock,
  removes the ones whose owner is gone (a killed writer's partial shards). A live slc writer holds
  the lock, so its folder is never a candidate; the owner check also keeps the folder of a writer
  that takes no lock (slc 0.1.0) while that process runs.
- ``publish(tmp, out, force)`` renames without replacing (``renameat2(RENAME_NOREPLACE)``; where
  that is missing, ``rename(2)``, which never replaces a non-empty folder): an artifact that
  appeared after the caller's check is kept and the write fails. With ``force`` the old artifact
  is swapped out in one step (``RENAME_EXCHANGE``) and removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
from pathlib import Path

from ..errors import ArtifactError
from .format import MANIFEST

_AT_FDCWD = -100
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
# .<out>.tmp-<boot>-<pid>-<start>-<hex> (slc >= 0.2) or .<out>.tmp-<pid>-<hex> (0.1.0); also .old-
_OWNED = re.compile(r"^\.(?P<out>.+)\.(?:tmp|old)-(?:(?P<boot>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)|(?P<oldpid>\d+))-[0-9a-f]{8}$")


def boot_id() -> str:
    """8 hex digits naming this boot of this machine (Linux); "00000000" where unknown."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return "0" * 8


def start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc/<pid>/stat``); None if it does not exist.

    Where /proc is missing, 0 for any live process: pid reuse then cannot be told apart, and a
    folder is kept whenever its pid runs, which errs on the safe side.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return 0 if _alive(pid) else None
    # field 22; the command name (field 2) may hold spaces and parentheses, so split after its last ')'
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owned_name(out: Path, kind: str = "tmp") -> Path:
    """A fresh sibling of ``out`` named after this process: ``.<out>.<kind>-<boot>-<pid>-<start>-<hex>``."""
    pid = os.getpid()
    return out.parent / f".{out.name}.{kind}-{boot_id()}-{pid}-{start_time(pid) or 0}-{secrets.token_hex(4)}"


def owner_alive(name: str) -> bool | None:
    """Whether the process that owns temp folder ``name`` still runs; None when ``name`` is not one."""
    m = _OWNED.match(name)
    if m is None:
        return None
    if m["oldpid"] is not None:  # slc 0.1.0 recorded the pid alone
        return _alive(int(m["oldpid"]))
    if m["boot"] != boot_id():
        return False  # written before this machine last booted
    started = start_time(int(m["pid"]))
    return started is not None and started in (int(m["start"]), 0)  # 0: no /proc, the pid alone decides


def clean_stale(out: Path) -> list[Path]:
    """Remove ``out``'s temp folders whose owner is gone; return what was removed."""
    removed = []
    if not out.parent.is_dir():
        return removed
    for entry in sorted(out.parent.iterdir()):
        m = _OWNED.match(entry.name)
        if m is None or m["out"] != out.name or owner_alive(entry.name) is not False:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


class OutLock:
    """An exclusive ``flock`` on ``.<out>.lock`` beside ``out``, taken without waiting; removed on release.

    A second writer gets an ArtifactError naming the holder's pid. The lock file is unlinked on
    release; an acquirer checks that the file it locked is still the one at the path, so two
    writers can never both hold it.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out.parent / f".{self.out.name}.lock"
        self.fd: int | None = None

    def __enter__(self) -> "OutLock":
        try:
            import fcntl
        except ImportError:  # no flock (Windows): the no-replace rename alone guards the target
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ArtifactError(f"cannot write in {self.out.parent} ({exc.strerror})", "pick an --out in a folder you can write to") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise ArtifactError(
                    f"{self.out} is being written by another slc process (pid {holder})",
                    "wait for it to finish, or pick another --out",
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous holder removed it after we opened it: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *_) -> None:
        if self.fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self.fd)
            self.fd = None


def _renameat2(src: Path, dst: Path, flags: int) -> int:
    """0 on success, else the errno; ENOSYS where the call does not exist."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return errno.ENOSYS
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return 0
    return ctypes.get_errno()


_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP)


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``; FileExistsError if ``dst`` exists (never replaced)."""
    err = _renameat2(src, dst, _RENAME_NOREPLACE)
    if err in _UNSUPPORTED:  # rename(2) replaces only an empty folder, never an artifact
        try:
            os.rename(src, dst)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise FileExistsError(errno.EEXIST, "exists", str(dst)) from None
            raise
        return
    if err == errno.EEXIST:
        raise FileExistsError(errno.EEXIST, "exists", str(dst))
    if err:
        raise OSError(err, os.strerror(err), str(dst))


def replaceable(path: Path) -> bool:
    """An slc artifact (a folder with a manifest) or an empty folder: what ``force`` may replace."""
    return path.is_dir() and not path.is_symlink() and ((path / MANIFEST).is_file() or not any(path.iterdir()))


def publish(tmp: Path, out: Path, force: bool) -> None:
    """Move the finished folder ``tmp`` to ``out``. Without ``force`` an existing ``out`` is never touched."""
    try:
        rename_noreplace(tmp, out)
        return
    except FileExistsError:
        if not force:
            raise ArtifactError(
                f"{out} appeared while this write ran (another process wrote it)", "pick another --out, or pass --force to replace it"
            ) from None
    if not replaceable(out):
        raise ArtifactError(f"{out} exists and is not an slc artifact; refusing to replace it", "pick another --out")
    err = _renameat2(tmp, out, _RENAME_EXCHANGE)
    if err == 0:  # tmp now holds what was at out
        if not replaceable(tmp):  # something else slipped in between the check and the swap: put it back
            _renameat2(tmp, out, _RENAME_EXCHANGE)
            raise ArtifactError(f"{out} changed while it was being replaced", "check what wrote it, then retry")
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if err == errno.ENOENT:  # out vanished meanwhile
        return publish(tmp, out, force=False)
    if err not in _UNSUPPORTED:
        raise OSError(err, os.strerror(err), str(out))
    old = owned_name(out, "old")
    os.rename(out, old)
    try:
        rename_noreplace(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries durable (where the OS allows opening a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
