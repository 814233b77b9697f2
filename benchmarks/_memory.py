"""Peak memory of a command's whole process tree (the command and its DataLoader workers), from /proc.

The figure is the peak of the summed PSS (proportional set size, ``/proc/<pid>/smaps_rollup``):
a page that the main process shares with its forked decode workers counts once, split among
them. The summed RSS (shared pages counted in every process) and the largest single process's
own peak (``ru_maxrss``) are reported beside it.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from the parent ids in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])  # after "pid (comm) state"
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) bytes of one process; (0, 0) once it is gone."""
    pss = rss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:
        return 0, 0
    return pss or rss, rss


def peak_memory(cmd: list[str], *, env: dict | None = None, cwd: str | Path | None = None, interval: float = 0.02) -> dict:
    """Run ``cmd``; the peak of its tree's summed PSS and RSS (bytes), the most processes, exit code, wall time, output tail."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
        pss = rss = most = 0
        while proc.poll() is None:
            tree = process_tree(proc.pid)
            sizes = [memory(p) for p in tree]
            pss, rss, most = max(pss, sum(s[0] for s in sizes)), max(rss, sum(s[1] for s in sizes)), max(most, len(tree))
            time.sleep(interval)
        log.seek(0)
        output = log.read()[-3000:]
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {
        "tree_pss_bytes": pss,
        "tree_rss_bytes": rss,
        "largest_rss_bytes": largest if largest > before * 1024 else None,  # None: an earlier child was larger
        "processes": most,
        "returncode": proc.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "output": output,
    }
