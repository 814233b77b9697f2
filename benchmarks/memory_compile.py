"""Peak memory of ``slc compile`` on a dataset of files of S and of 4S images: flat in the source's size.

    .venv/bin/python benchmarks/memory_compile.py --quick   # S = 300 JPEGs decoded at 112 px (a few minutes on 2 cores)
    .venv/bin/python benchmarks/memory_compile.py           # S = 2,000 JPEGs at 224 px, 100 classes (the issue's sizes; about an hour on 2 cores)

For each size a fake-ImageNet-like folder is written (JPEG sides 1.1-2.2x the crop) and a ResNet-18
teacher at its initial weights is stored for it (memory does not depend on the weights). Then
``slc compile`` runs in a subprocess per (size, selection): ``--select random`` and
``--select ce-quantile --quantile 0``, both with ``--views V --augment cutmix+rrc``, the same IPC at
both sizes (so the selected images, all that compile may hold, are the same number), an empty
scores cache, ``--workers W``.

Memory is measured over the whole process tree (the compile process and its DataLoader worker
processes), polled every 20 ms from ``/proc``: the sum over the tree of each process's PSS
(proportional set size, ``/proc/<pid>/smaps_rollup``: a page shared by several processes counts
once, split among them; the sum of VmRSS would count the pages each forked worker shares with its
parent once per worker). Also shown: the sum of VmRSS, and ``ru_maxrss`` from ``wait4`` (the
largest single process of the tree). Target: peak PSS at 4S / peak PSS at S <= 1.1. For scale, the
result states what holding the whole split decoded would add.

The measured process is slc's CLI with the in-memory limit at 0, so that the fake set stays a set
of files, as ImageNet (150 GB decoded) is far above that limit; at these small sizes the loader
would otherwise decode it into memory once. Writes benchmarks/results/memory_compile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _fake_imagenet import fake_imagenet  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
POLL_S = 0.02
# slc's CLI, the dataset loader's in-memory limit at 0 (see the module docstring)
PROGRAM = "import sys, sl_compiler.data.encoded as e; e.IN_MEMORY_LIMIT = 0; from cli.main import main; sys.exit(main(sys.argv[1:]))"


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant (``/proc/<pid>/task/<tid>/children``)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:  # gone meanwhile
            continue
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, VmRSS) of one process in KiB; (0, 0) once it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
    except OSError:
        pass
    return pss, rss


def measure(argv: list[str], env: dict) -> dict:
    """Run slc's CLI in a subprocess; peak tree PSS, peak tree RSS, the process count, wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak_pss = peak_rss = most = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        tree = process_tree(proc.pid)
        sizes = [memory_kib(p) for p in tree]
        peak_pss = max(peak_pss, sum(s[0] for s in sizes))
        peak_rss = max(peak_rss, sum(s[1] for s in sizes))
        most = max(most, len(tree))
        time.sleep(POLL_S)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"slc {' '.join(argv)} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return {
        "seconds": time.perf_counter() - start,
        "peak_tree_pss_mib": peak_pss / 1024,
        "peak_tree_rss_mib": peak_rss / 1024,
        "max_process_rss_mib": usage.ru_maxrss / 1024,
        "processes": most,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000, help="S: images of the smaller set (the larger has 4S)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=224, help="crop the teacher was trained at (and compile decodes to)")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--ipc", type=int, default=2)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="S = 300, 10 classes, 112 px")
    parser.add_argument("--out", default=str(RESULTS / "memory_compile.json"))
    args = parser.parse_args(argv)
    args.command = " ".join(["python benchmarks/memory_compile.py", *(sys.argv[1:] if argv is None else argv)])
    if args.quick:
        args.size, args.classes, args.resolution = 300, 10, 112
    work = Path(tempfile.mkdtemp(prefix="slc-memory-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> dict:
    import torch

    import sl_compiler.data.encoded as encoded
    from sl_compiler.data import load_dataset
    from sl_compiler.experts import ExpertStore
    from sl_compiler.models import create_model

    encoded.IN_MEMORY_LIMIT = 0  # the same loading as the measured process, so that fingerprints agree
    rows = []
    sizes = {"S": args.size, "4S": 4 * args.size}
    side = (args.resolution * 11 // 10, args.resolution * 22 // 10)
    for label, size in sizes.items():
        root = work / f"fake-{size}"
        fake_imagenet(root, args.classes, size // args.classes, side, seed=size)
        spec = f"imagefolder:{root}"
        data = load_dataset(spec, split="train", resolution=args.resolution)
        torch.manual_seed(0)
        model = create_model(args.model, data.num_classes, 3, args.resolution)
        ExpertStore(work / "experts").add_checkpoint(model.state_dict(), dataset_info=data.info(), arch=args.model, epoch=0, seed=0)
        decoded_mib = len(data) * 3 * args.resolution**2 / 2**20
        for select in ("random", "ce-quantile"):
            out = work / f"art-{size}-{select}"
            cli = ["compile", "--dataset", spec, "--ipc", str(args.ipc), "--teacher", f"{args.model}@0", "--experts", str(work / "experts"), "--views", str(args.views), "--augment", "cutmix+rrc"]
            cli += ["--select", select] + (["--quantile", "0"] if select == "ce-quantile" else [])
            cli += ["--name", "mem", "--device", "cpu", "--workers", str(args.workers), "--batch-size", str(args.batch_size), "--out", str(out)]
            env = {**os.environ, "PYTHONPATH": str(ROOT), "SLC_PROGRESS": "0", "SLC_CACHE": str(work / f"cache-{size}-{select}")}
            measured = measure(cli, env)
            rows.append({"set": label, "images": len(data), "select": select, "split_decoded_mib": decoded_mib, **measured})
            print(f"{label:>3} {len(data):>6} images  {select:<12}{measured['peak_tree_pss_mib']:>9.0f} MiB PSS{measured['peak_tree_rss_mib']:>9.0f} MiB RSS (tree of {measured['processes']}){measured['seconds']:>7.1f} s", flush=True)
            shutil.rmtree(out, ignore_errors=True)

    ratios = {}
    for select in ("random", "ce-quantile"):
        small, large = (next(r for r in rows if r["set"] == s and r["select"] == select) for s in sizes)
        ratios[select] = {
            "pss_ratio": large["peak_tree_pss_mib"] / small["peak_tree_pss_mib"],
            "rss_ratio": large["peak_tree_rss_mib"] / small["peak_tree_rss_mib"],
            "growth_mib": large["peak_tree_pss_mib"] - small["peak_tree_pss_mib"],
            "whole_split_growth_mib": large["split_decoded_mib"] - small["split_decoded_mib"],
        }
    result = {
        "benchmark": "memory_compile",
        "command": args.command,
        "settings": {k: getattr(args, k) for k in ("size", "classes", "resolution", "model", "ipc", "views", "workers", "batch_size")},
        "measure": "peak over the process tree (compile + DataLoader workers) of the sum of PSS from /proc/<pid>/smaps_rollup, polled every 20 ms",
        "torch": torch.__version__,
        "runs": rows,
        "ratios": ratios,
        "figures": [
            {"name": f"compile {select} with {args.views} views: peak memory 4S / S ({args.size} vs {4 * args.size} JPEGs at {args.resolution} px)", "value": round(r["pss_ratio"], 3), "unit": "x", "target": "<= 1.1"}
            for select, r in ratios.items()
        ],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    for select, r in ratios.items():
        print(f"{select:<12} 4S/S: PSS {r['pss_ratio']:.3f}, RSS {r['rss_ratio']:.3f}; grew {r['growth_mib']:.0f} MiB (holding the split decoded would add {r['whole_split_growth_mib']:.0f} MiB)")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
