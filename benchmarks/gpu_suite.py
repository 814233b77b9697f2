"""The GPU suite: one command, one results JSON, at most 8 minutes on one H100/H200.

    python3 benchmarks/gpu_suite.py                  # on the GPU: writes benchmarks/results/gpu_suite.json
    python3 benchmarks/gpu_suite.py                  # again, on the same machine: finishes what the first left
    python3 benchmarks/gpu_suite.py --tiny           # the same code on the CPU in about a minute (a test runs it)

Sections, in order, each time-boxed (``--budget`` seconds in all, default 480, the shares scaled with it; what a section had
no time for is listed under ``skipped``):

1. ``cuda_tests``: ``pytest -m cuda tests/cuda`` in a subprocess; counts and failures.
2. ``students_per_hour``: 25 ConvNet-D3 students at IPC 1, 10 and 50 (10 classes, 32 px,
   DSA, batch 256), batched in one group against one at a time, as students per hour at the
   protocol's 1000 epochs; the seconds of one 1000-epoch IPC 10 student; batched with
   ``--compile`` at IPC 10. Steady state: each measurement runs warm-up epochs first.
3. ``student_vs_bare``: one student's img/s in slc's trainer against benchmarks/_bare.py's plain
   PyTorch loop (no slc code; same model, DSA, SGD, bf16 and channels_last), alternating.
4. ``labelling``: slc's ``teacher_logits`` img/s against a bare fp32 teacher forward over the
   same uint8 batches (ResNet-18 at 224 px, ConvNet-D3 at 32 px), and the largest logit
   difference between the two (fp32 labelling: ~1e-5; bf16 would be ~1e-1).
5. ``cifar10_reproduction``: the paper's CIFAR-10 soft-label baseline at IPC 1 and 10: one
   ConvNet-D3 expert trained on the device with the paper's recipe
   (recipes/experts/cifar10-convnet_d3.toml), random images labelled at expert epochs 1, 2, 5,
   10 and 20, 5 student seeds under recipes/eval/cifar10.toml (1000 epochs), and random images
   with hard labels; the best epoch per IPC against the paper's Table 2 (21.1, 46.3). Experts,
   artifacts and student results are cached in the work folder, so a second call resumes.

Everything lives in the repository and ``--data-root`` (CIFAR-10 as the JPEG tars of
../shared/data/cifar10; or pieces ``cifar10-train.tar.part-*`` from ``split -d`` anywhere under
.slc-work/data, joined and checked against SHA256SUMS, for transports with a size limit: see
:func:`find_cifar10`). Nothing is installed or downloaded. The
work folder (``--work``, default ``.slc-work/gpu_suite``, git-ignored) keeps the caches between
calls; finished sections are reused while the code, torch and the device are the same
(``--fresh`` reruns them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _bare  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# third-party modules slc imports at module level (webdataset and h5py only lazily): the GPU image lacks tomli_w
REQUIRED_MODULES = ("safetensors", "tomli_w", "click", "tqdm", "PIL", "numpy", "torchvision", "matplotlib", "huggingface_hub", "pytest")
SECTIONS = ("cuda_tests", "students_per_hour", "student_vs_bare", "labelling", "cifar10_reproduction")
PAPER_SOFT = {1: 21.1, 10: 46.3}  # Qin, Deng, Alvarez-Melis (NeurIPS 2024), Table 2, CIFAR-10 soft-label baseline
USUAL_RANDOM_HARD = {1: 14.4, 10: 26.0}  # random real images, hard labels, as DC/DSA/MTT tables report them

MODES = {
    "full": {
        "budget": 480,
        "shares": {"cuda_tests": 150, "students_per_hour": 90, "student_vs_bare": 30, "labelling": 30},
        "data": {"size": 32, "per_class": 50, "batch": 256},  # CIFAR-like synthetic images for the speed sections
        "sph_ipcs": (1, 10, 50),
        "students": 25,
        "sph_epochs": {1: 40, 10: 20, 50: 4},  # measured epochs per point (after warm-up)
        "protocol_epochs": 1000,
        "sequential_measured": 2,  # students timed one at a time; students/hour scales from them
        "bare_steps": 60,
        "label": [("resnet18", 224, 1000, 8192), ("convnet_d3", 32, 10, 32768)],  # 1.2 GB / 100 MB of uint8 on the host
        "label_batch": 256,
        "repro": {
            "dataset": "cifar10",
            "arch": "convnet_d3",
            "expert_recipe": "recipes/experts/cifar10-convnet_d3.toml",
            "expert_seed": 0,
            "every": 1.0,
            "expert_chunk": 5.0,
            "epochs": (1.0, 2.0, 5.0, 10.0, 20.0),
            "ipcs": (1, 10),
            "protocol": "recipes/eval/cifar10.toml",
            "eval_seeds": (0, 1, 2, 3, 4),
            "student_epochs": None,  # the protocol's 1000
        },
    },
    "tiny": {
        "budget": 90,
        "shares": {"cuda_tests": 30, "students_per_hour": 16, "student_vs_bare": 8, "labelling": 6},
        "data": {"size": 16, "per_class": 8, "batch": 16},
        "sph_ipcs": (1, 2),
        "students": 3,
        "sph_epochs": {1: 1, 2: 1},
        "protocol_epochs": 1000,
        "sequential_measured": 1,
        "bare_steps": 2,
        "label": [("convnet_d3", 16, 4, 64)],
        "label_batch": 32,
        "repro": {
            "dataset": "synthetic:classes=4,size=16,train=12,test=6",
            "arch": "convnet_d3",
            "expert_recipe": "recipes/experts/synthetic.toml",
            "expert_seed": 0,
            "every": 1.0,
            "expert_chunk": 1.0,
            "epochs": (1.0, 2.0),
            "ipcs": (1, 2),
            "protocol": "recipes/eval/synthetic.toml",
            "eval_seeds": (0, 1),
            "student_epochs": 2,
        },
    },
}


class Clock:
    """The suite's deadline and each section's share of it."""

    def __init__(self, budget: float):
        self.start, self.budget = time.perf_counter(), budget

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed()

    def section(self, share: float | None) -> float:
        """The deadline (perf_counter time) of a section given ``share`` seconds (None: all that is left)."""
        return time.perf_counter() + (self.left() if share is None else min(share, self.left()))


def _left(deadline: float) -> float:
    return deadline - time.perf_counter()


# ---- 1. CUDA tests ---------------------------------------------------------------------------------


def cuda_tests(deadline: float, work: Path, device, skipped: list) -> dict:
    """``pytest -m cuda tests/cuda`` as a subprocess with the section's time as its timeout; counts from its JUnit XML."""
    report = work / "cuda-tests.xml"
    report.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    timeout = max(5.0, _left(deadline))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep), "SLC_PROGRESS": "0"}
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        exit_code, tail = proc.returncode, (proc.stdout + proc.stderr)[-2000:]
    except subprocess.TimeoutExpired as exc:
        printed = exc.stdout.decode("utf-8", "replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        exit_code, tail = None, f"timed out after {timeout:.0f} s\n{printed[-1500:]}"
        skipped.append(f"cuda_tests: the tests still running after {timeout:.0f} s (the next call reruns them)")
    out = {"command": " ".join(cmd[1:]), "exit_code": exit_code, "wall_s": round(time.perf_counter() - started, 1), "output_tail": tail, "complete": exit_code is not None}
    if report.exists():
        out.update(_junit(report))
    out["ok"] = exit_code == 0 or (exit_code == 5 and out.get("tests") == 0)
    if device.type != "cuda":
        out["note"] = "no CUDA here: every test skips"
    return out


def _junit(path: Path) -> dict:
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = []
    for case in suite.iter("testcase"):
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                message = (node.get("message") or node.text or "").strip().splitlines()
                failed.append({"test": f"{case.get('classname')}::{case.get('name')}", "kind": tag, "message": message[0][:300] if message else ""})
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"], "failed": failed}


# ---- 2. students per hour ----------------------------------------------------------------------------


def _synthetic(cfg: dict):
    from sl_compiler.data import load_dataset

    d = cfg["data"]
    return load_dataset(f"synthetic:classes=10,size={d['size']},train={d['per_class']},test=1", split="train")


def _subset(train, ipc: int):
    idx = torch.cat([torch.nonzero(train.targets == c).flatten()[:ipc] for c in range(train.num_classes)])
    return train.pixels[idx], train.targets[idx]


def seconds_per_epoch(data, protocol, seeds: list[int], device, epochs: int, compile: bool = False, warm: int = 1) -> tuple[float, float]:
    """(seconds per epoch after ``warm`` warm-up epochs, seconds of the warm-up) of one group of ``seeds`` on ``data``."""
    from sl_compiler.evaluate.trainer import StudentTrainer

    trainer = StudentTrainer(data, protocol, seeds, [protocol.lr] * len(seeds), device, compile=compile)
    trainer.group.train(True)

    def run(first: int, count: int) -> float:
        _bare.sync(device)
        start = time.perf_counter()
        for epoch in range(first, first + count):
            trainer.start_epoch(epoch)
            for step in range(trainer.steps_per_epoch):
                trainer.step(epoch, step)
        _bare.sync(device)
        return time.perf_counter() - start

    warm_s = run(0, warm)
    return run(warm, epochs) / epochs, warm_s


def students_per_hour(cfg: dict, deadline: float, device, skipped: list) -> dict:
    from sl_compiler.evaluate.protocol import Protocol
    from sl_compiler.evaluate.regimes import training_set

    train = _synthetic(cfg)
    protocol = Protocol(model="convnet_d3", batch_size=cfg["data"]["batch"], lr=0.01, augment="dsa", epochs=cfg["protocol_epochs"])
    k, total = cfg["students"], cfg["protocol_epochs"]
    rows = []
    for ipc in cfg["sph_ipcs"]:
        if _left(deadline) < 5:
            skipped.append(f"students_per_hour: IPC {ipc} (out of time)")
            continue
        pixels, targets = _subset(train, ipc)
        data = training_set("hl", pixels, targets, 10, train.mean, train.std, device)
        epochs = cfg["sph_epochs"][ipc]
        batched, _ = seconds_per_epoch(data, protocol, list(range(k)), device, epochs)
        alone = [seconds_per_epoch(data, protocol, [s], device, epochs)[0] for s in range(cfg["sequential_measured"])]
        single = sum(alone) / len(alone)
        rows.append(
            {
                "ipc": ipc,
                "students": k,
                "epochs_measured": epochs,
                "sequential_students_timed": len(alone),
                "batched_s_per_epoch": round(batched, 5),
                "single_s_per_epoch": round(single, 5),
                "batched_students_per_hour": round(k * 3600 / (batched * total), 2),
                "sequential_students_per_hour": round(3600 / (single * total), 2),
                "speedup": round(single * k / batched, 2),
                f"one_student_{total}_epochs_s": round(single * total, 2),
                f"batched_per_student_{total}_epochs_s": round(batched * total / k, 3),
            }
        )
    out = {"settings": {"model": "convnet_d3", "classes": 10, "size": cfg["data"]["size"], "batch_size": cfg["data"]["batch"], "augment": "dsa", "optimizer": "sgd lr 0.01 momentum 0.9 wd 5e-4", "protocol_epochs": total, "students": k}, "rows": rows}
    ipc = 10 if 10 in cfg["sph_ipcs"] else cfg["sph_ipcs"][-1]
    if _left(deadline) < (30 if device.type == "cuda" else 8):
        skipped.append(f"students_per_hour: IPC {ipc} batched with --compile (out of time)")
        return out
    from sl_compiler.evaluate import students as students_mod

    pixels, targets = _subset(train, ipc)
    data = training_set("hl", pixels, targets, 10, train.mean, train.std, device)
    backend = students_mod.COMPILE_BACKEND if device.type == "cuda" else "aot_eager"  # the CPU check: graph capture without a C++ build
    previous, students_mod.COMPILE_BACKEND = students_mod.COMPILE_BACKEND, backend
    try:
        compiled, warm = seconds_per_epoch(data, protocol, list(range(k)), device, cfg["sph_epochs"][ipc], compile=True)
        out["compiled"] = {"ipc": ipc, "students": k, "backend": backend, "batched_s_per_epoch": round(compiled, 5), "compile_and_first_epoch_s": round(warm, 1), "batched_students_per_hour": round(k * 3600 / (compiled * total), 2)}
    except Exception as exc:  # a backend that cannot compile here: measured as such, not fatal
        out["compiled"] = {"backend": backend, "error": _last_line(exc)}
    finally:
        students_mod.COMPILE_BACKEND = previous
    return out


# ---- 3. student vs bare loop -------------------------------------------------------------------------


def student_vs_bare(cfg: dict, deadline: float, device, skipped: list) -> dict:
    from sl_compiler.evaluate.protocol import Protocol
    from sl_compiler.evaluate.regimes import training_set

    train = _synthetic(cfg)  # full: 10 classes x IPC 50 = 500 images, 2 steps of 256 per epoch
    batch = cfg["data"]["batch"]
    per_epoch = math.ceil(len(train) / batch)
    epochs = max(1, cfg["bare_steps"] // per_epoch)
    steps = epochs * per_epoch
    protocol = Protocol(model="convnet_d3", batch_size=batch, lr=0.01, augment="dsa", epochs=epochs)
    data = training_set("hl", train.pixels, train.targets, 10, train.mean, train.std, device)
    pixels, targets = train.pixels.to(device), train.targets.to(device)
    _bare.student_loop(pixels, targets, 10, per_epoch, batch, device)  # warm-up: kernels, cuDNN autotuning
    seconds_per_epoch(data, protocol, [0], device, 1)
    bare, slc = [], []
    for _ in range(2):
        if bare and _left(deadline) < 2 * (bare[-1] + slc[-1]):
            skipped.append("student_vs_bare: second repeat (out of time)")
            break
        bare.append(_bare.student_loop(pixels, targets, 10, steps, batch, device))
        slc.append(seconds_per_epoch(data, protocol, [0], device, epochs, warm=0)[0] * epochs)
    images = epochs * len(train)  # both loops walk whole epochs of the same batches
    return {
        "settings": {"model": "convnet_d3", "size": cfg["data"]["size"], "batch_size": batch, "images": len(train), "steps": steps, "augment": "dsa", "repeats": len(bare), "bare_loop": "benchmarks/_bare.py student_loop"},
        "bare_img_per_s": round(images / min(bare), 1),
        "slc_img_per_s": round(images / min(slc), 1),
        "ratio": round(min(bare) / min(slc), 3),
    }


# ---- 4. labelling --------------------------------------------------------------------------------------


def labelling(cfg: dict, deadline: float, device, work: Path, skipped: list) -> dict:
    import torchvision

    from sl_compiler.evaluate.students import init_student
    from sl_compiler.experts import ExpertStore, resolve
    from sl_compiler.label import teacher_logits

    rows = []
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for arch, size, classes, n in cfg["label"]:
        if _left(deadline) < 3:
            skipped.append(f"labelling: {arch} at {size} px (out of time)")
            continue
        info = {"name": f"labelbench-{arch}-{size}", "split": "train", "classes": [f"c{i}" for i in range(classes)], "num_classes": classes, "channels": 3, "resolution": [size, size], "mean": list(mean), "std": list(std), "size": n}
        model = init_student(arch, classes, (3, size, size), 0)
        store = ExpertStore(work / "label-store")
        if store.find(info["name"], arch, 0) is None:
            store.add_checkpoint(model.state_dict(), dataset_info=info, arch=arch, epoch=1, seed=0)
        teachers = resolve(f"{arch}@1#0", store, info)
        images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        bare_model = torchvision.models.resnet18(num_classes=classes) if arch == "resnet18" and size > 64 else _bare.convnet(classes, 3, size)
        bare_model.load_state_dict(model.state_dict() if arch == "resnet18" else _as_sequential(model.state_dict()))
        teacher_logits(teachers, images[: cfg["label_batch"]], mean, std, device, cfg["label_batch"])  # warm-up
        _bare.teacher_loop(bare_model, images[: cfg["label_batch"]], mean, std, cfg["label_batch"], device)
        _bare.sync(device)
        start = time.perf_counter()
        ours = teacher_logits(teachers, images, mean, std, device, cfg["label_batch"])
        _bare.sync(device)
        slc_s = time.perf_counter() - start
        bare_s, theirs = _bare.teacher_loop(bare_model, images, mean, std, cfg["label_batch"], device)
        _bare.sync(device)
        start = time.perf_counter()
        teachers[0].load(device)  # what teacher_logits pays once per teacher: read, sha256, build
        _bare.sync(device)
        load_s = time.perf_counter() - start
        rows.append(
            {
                "arch": arch,
                "size": size,
                "classes": classes,
                "images": n,
                "batch": cfg["label_batch"],
                "slc_img_per_s": round(n / slc_s, 1),
                "bare_img_per_s": round(n / bare_s, 1),
                "ratio": round(bare_s / slc_s, 3),
                "teacher_load_s": round(load_s, 3),
                "ratio_without_load": round(bare_s / max(slc_s - load_s, 1e-9), 3),
                "max_abs_logit_difference": float((ours - theirs).abs().max()),
                "max_abs_logit": float(theirs.abs().max()),
            }
        )
    return {"settings": {"labeller": "sl_compiler.label.teacher_logits", "bare": "benchmarks/_bare.py teacher_loop (fp32, TF32 off)", "images": "random uint8 on the host, moved per batch"}, "rows": rows}


def _as_sequential(state: dict) -> dict:
    """slc's ConvNet state_dict (features.N / classifier) in _bare.convnet's nn.Sequential numbering."""
    out = {}
    for name, t in state.items():
        head, _, rest = name.partition(".")
        out[name[len("features.") :] if head == "features" else f"13.{rest}"] = t
    return out


# ---- 5. the CIFAR-10 reproduction -----------------------------------------------------------------------


class IncompleteData(Exception):
    """Split CIFAR-10 parts that do not (yet) join into the files SHA256SUMS names."""


def find_cifar10(arg: str | None, work: Path) -> Path | None:
    """A folder with cifar10-train.tar and cifar10-test.tar, or None.

    Looked for in ``arg`` (``--data-root``) alone when given, else in $SLC_CIFAR10,
    ../shared/data/cifar10 and shared/data/cifar10; in the work folder's joined copy; then as split
    pieces (``cifar10-train.tar.part-00``, ... from ``split -d``, anywhere below ``arg`` or
    .slc-work/data, with a SHA256SUMS), which are joined into the work folder and checked: a
    transport with a size limit can carry them over several calls. Pieces that do not join into
    the recorded sha256 yet raise :class:`IncompleteData`.
    """
    joined = work / "data" / "cifar10"
    if arg:  # only where the caller said
        whole, pieces = [arg, joined], [arg]
    else:
        whole = [os.environ.get("SLC_CIFAR10"), ROOT.parent / "shared" / "data" / "cifar10", ROOT / "shared" / "data" / "cifar10", joined]
        pieces = [ROOT / ".slc-work" / "data"]
    for c in whole:
        if c and all((Path(c) / f"cifar10-{s}.tar").is_file() for s in ("train", "test")):
            return Path(c)
    for c in pieces:
        if Path(c).is_dir() and any(Path(c).rglob("cifar10-*.tar.part-*")):
            return _join_parts(Path(c), joined)
    return None


def _join_parts(folder: Path, out: Path) -> Path:
    """Join ``<name>.part-*`` pieces found below ``folder`` (in piece order) into ``out``, each checked against SHA256SUMS."""
    sums = {}
    for path in folder.rglob("SHA256SUMS"):
        for line in path.read_text().splitlines():
            if line.strip():
                digest, name = line.split(maxsplit=1)
                sums[name.strip().lstrip("*")] = digest
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        name = f"cifar10-{split}.tar"
        if (out / name).is_file():
            continue
        if name not in sums:
            raise IncompleteData(f"no SHA256SUMS entry for {name} below {folder}")
        pieces = sorted(folder.rglob(f"{name}.part-*"), key=lambda p: p.name) or sorted(folder.rglob(name))
        h, tmp = hashlib.sha256(), out / f".{name}.tmp"
        with tmp.open("wb") as f:
            for piece in pieces:
                data = piece.read_bytes()
                h.update(data)
                f.write(data)
        if h.hexdigest() != sums[name]:
            tmp.unlink()
            raise IncompleteData(f"the {len(pieces)} piece(s) of {name} below {folder} do not join into its SHA256SUMS digest (some not carried yet, or damaged)")
        tmp.replace(out / name)
    return out


def reproduction(cfg: dict, deadline: float, device, work: Path, data_root: str | None, skipped: list) -> dict:
    from sl_compiler.evaluate.protocol import Protocol
    from sl_compiler.experts import ExpertStore
    from sl_compiler.experts.recipe import ExpertRecipe
    from sl_compiler.experts.train import train_trajectories
    from sl_compiler.recipe import Recipe
    from sl_compiler.sweep import compile_cached, cached_accuracies, digest, format_epoch, mean_std

    r = cfg["repro"]
    root = None
    if not r["dataset"].startswith("synthetic"):
        try:
            root = find_cifar10(data_root, work)
        except IncompleteData as exc:
            skipped.append(f"cifar10_reproduction: {exc}")
            return {"status": "waiting for data", "complete": False}
        if root is None:
            skipped.append("cifar10_reproduction: no CIFAR-10 JPEG tars (pass --data-root, or carry cifar10-*.tar or their .part-* pieces under .slc-work/data)")
            return {"status": "no data", "complete": False}
        root = str(root)
    store = ExpertStore(work / "experts")
    recipe = ExpertRecipe.from_toml(ROOT / r["expert_recipe"])
    target = max(r["epochs"])
    from sl_compiler.data import dataset_key

    key = dataset_key(r["dataset"])

    def trained() -> float:
        t = store.find(key, r["arch"], r["expert_seed"])
        return max(t.epochs(), default=0.0) if t is not None else 0.0

    chunk_s = None
    while trained() < target - 1e-9:
        if chunk_s is not None and _left(deadline) < 1.5 * chunk_s + 10:
            skipped.append(f"cifar10_reproduction: expert training beyond epoch {format_epoch(trained())} (out of time; the next call resumes)")
            break
        start, before = time.perf_counter(), trained()
        stop = min(target, before + r["expert_chunk"])
        train_trajectories(r["dataset"], r["arch"], [r["expert_seed"]], data_root=root, recipe=recipe, epochs=stop, every=r["every"], store=store, device=device)
        chunk_s = time.perf_counter() - start
        if trained() <= before:
            raise RuntimeError(f"expert training to epoch {format_epoch(stop)} made no progress (stuck at {format_epoch(before)})")
    expert = store.find(key, r["arch"], r["expert_seed"])
    checkpoints = {format_epoch(c.epoch): c.test_accuracy for c in expert.checkpoints} if expert else {}
    protocol = Protocol.from_toml(ROOT / r["protocol"]).override(seeds=r["eval_seeds"], epochs=r["student_epochs"], baselines=())
    sl, hl = protocol.override(regimes=("sl",)), protocol.override(regimes=("hl",))
    cells, cell_s = [], None
    for ipc in r["ipcs"]:
        for epoch in r["epochs"]:
            label = f"IPC {ipc} expert epoch {format_epoch(epoch)}"
            if epoch > trained() + 1e-9:
                skipped.append(f"cifar10_reproduction: {label} (expert not trained that far yet)")
                continue
            if cell_s is not None and _left(deadline) < 1.2 * cell_s + 5:
                skipped.append(f"cifar10_reproduction: {label} (out of time; the next call resumes)")
                continue
            start = time.perf_counter()
            teacher = f"{r['arch']}@{format_epoch(epoch)}#{r['expert_seed']}"
            compile_recipe = Recipe(dataset=r["dataset"], data_root=root, ipc=ipc, teacher=teacher, select="random", seed=0, name=f"gpu-suite-ipc{ipc}")
            folder = work / "artifacts" / f"ipc{ipc}-e{format_epoch(epoch)}-{digest(compile_recipe.to_dict())[:10]}"
            art = compile_cached(compile_recipe, folder, str(store.root), str(device))
            acc, cached = cached_accuracies(art, sl, str(device), work / "results", root)
            cell = {"ipc": ipc, "expert_epoch": epoch, "teacher": teacher, "content_hash": art.content_hash, "accuracy": acc, "cached": cached}
            cell["mean"], cell["std"] = mean_std(acc)
            if not any(c["ipc"] == ipc and "hard" in c for c in cells):
                hard, _ = cached_accuracies(art, hl, str(device), work / "results", root)
                cell["hard"] = {"accuracy": hard, "mean": mean_std(hard)[0], "std": mean_std(hard)[1]}
            cells.append(cell)
            if not cached:
                cell_s = time.perf_counter() - start
    best = {}
    for ipc in r["ipcs"]:
        mine = [c for c in cells if c["ipc"] == ipc]
        if mine:
            top = max(mine, key=lambda c: (c["mean"], -c["expert_epoch"]))
            hard = next((c["hard"] for c in mine if "hard" in c), None)
            cifar = r["dataset"] == "cifar10"
            best[str(ipc)] = {
                "expert_epoch": top["expert_epoch"],
                "accuracy": top["accuracy"],
                "mean": top["mean"],
                "std": top["std"],
                "paper": PAPER_SOFT.get(ipc) if cifar else None,
                "random_hard": hard and {"mean": hard["mean"], "std": hard["std"]},
                "usual_random_hard": USUAL_RANDOM_HARD.get(ipc) if cifar else None,
            }
    complete = trained() >= target - 1e-9 and len(cells) == len(r["ipcs"]) * len(r["epochs"])
    return {
        "settings": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()}, "data_root": root, "protocol_resolved": protocol.to_dict()},
        "expert": {"trained_to_epoch": trained(), "test_accuracy": checkpoints},
        "cells": cells,
        "best": best,
        "complete": complete,
    }


# ---- the suite -----------------------------------------------------------------------------------------


def _last_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"[:500]


def code_key(mode: str, device) -> str:
    """What a finished section's result depends on: the code, torch, the device and the mode."""
    h = hashlib.sha256(f"{mode}|{torch.__version__}|{_device_name(device)}".encode())
    for path in sorted([*ROOT.glob("sl_compiler/**/*.py"), ROOT / "benchmarks" / "gpu_suite.py", ROOT / "benchmarks" / "_bare.py", *ROOT.glob("tests/cuda/*.py")]):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def missing_modules() -> list[str]:
    """The :data:`REQUIRED_MODULES` this Python cannot import (found without importing them)."""
    import importlib.util

    return [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]


def _device_name(device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()


def environment(device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device), "device_name": _device_name(device), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update({"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "gpu_memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count})
    return env


def figures(sections: dict) -> list[dict]:
    """The headline numbers, with the issue's targets, for benchmarks/README.md's table (run_all.py)."""
    out = []
    sph = sections.get("students_per_hour", {}).get("result") or {}
    for row in sph.get("rows", []):
        target = ">= 10" if row["ipc"] <= 10 else "GPU: measured"
        out.append({"name": f"students/hour IPC {row['ipc']}, {row['students']} batched / one at a time", "value": row["speedup"], "unit": "x", "target": target})
        if row["ipc"] == 10:
            out.append({"name": "an IPC 10 student of 1000 epochs, one at a time", "value": row.get("one_student_1000_epochs_s"), "unit": "s", "target": "<= 10"})
    bare = sections.get("student_vs_bare", {}).get("result") or {}
    if "ratio" in bare:
        st = bare["settings"]
        out.append({"name": f"student img/s, slc / bare loop (convnet_d3, {st['size']} px, batch {st['batch_size']}, DSA)", "value": bare["ratio"], "unit": "x", "target": ">= 0.9"})
    for row in (sections.get("labelling", {}).get("result") or {}).get("rows", []):
        out.append({"name": f"labelling img/s, slc / bare fp32 forward ({row['arch']} {row['size']} px)", "value": row["ratio"], "unit": "x", "target": ">= 0.9"})
    repro = sections.get("cifar10_reproduction", {}).get("result") or {}
    dataset = (repro.get("settings") or {}).get("dataset", "cifar10")
    for ipc, best in (repro.get("best") or {}).items():
        paper = best.get("paper") if dataset == "cifar10" else None
        out.append({"name": f"{dataset} IPC {ipc} soft-label baseline (expert epoch {best['expert_epoch']:g}, {len(best.get('accuracy', [])) or 'all'} seeds)", "value": round(best["mean"], 2), "unit": "%", "target": f"paper {paper}" if paper else None})
    tests = sections.get("cuda_tests", {}).get("result") or {}
    if "tests" in tests:
        out.append({"name": "CUDA tests passed", "value": tests["passed"], "unit": f"of {tests['tests']}", "target": None})
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", "--quick", dest="tiny", action="store_true", help="the same code on the CPU in about a minute, on tiny synthetic data (default off)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole suite; each section's share scales with it (default 480; --tiny 90)")
    ap.add_argument("--only", default=None, help=f"comma list of sections to run (default all: {','.join(SECTIONS)})")
    ap.add_argument("--data-root", default=None, help="CIFAR-10 JPEG tars (default: $SLC_CIFAR10, ../shared/data/cifar10, shared/data/cifar10)")
    ap.add_argument("--work", default=None, help="work folder kept between calls (default .slc-work/gpu_suite; --tiny .slc-work/gpu_suite-tiny)")
    ap.add_argument("--out", default=None, help="results JSON (default benchmarks/results/gpu_suite.json; --tiny <work>/gpu_suite.json)")
    ap.add_argument("--fresh", action="store_true", help="rerun finished sections instead of reusing them (caches of experts and students stay)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cuda or cuda:N; --tiny runs on the CPU")
    args = ap.parse_args(argv)

    from sl_compiler.device import resolve_device

    mode = "tiny" if args.tiny else "full"
    cfg = MODES[mode]
    device = torch.device("cpu") if args.tiny else resolve_device(args.device)
    if not args.tiny and device.type != "cuda":
        print("gpu_suite: no CUDA GPU here; run with --tiny for the CPU check", file=sys.stderr)
        raise SystemExit(2)
    work = Path(args.work or ROOT / ".slc-work" / ("gpu_suite" if mode == "full" else "gpu_suite-tiny")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SLC_CACHE", str(work / "slc-cache"))
    os.environ.setdefault("SLC_PROGRESS", "0")
    out_path = Path(args.out) if args.out else (RESULTS / "gpu_suite.json" if mode == "full" else work / "gpu_suite.json")
    only = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; use {', '.join(SECTIONS)}")
    clock = Clock(args.budget or cfg["budget"])
    missing = missing_modules()
    if missing:
        result = {"benchmark": "gpu_suite", "mode": mode, "environment": {**environment(device), "missing_modules": missing}, "sections": {}, "figures": [], "skipped": list(SECTIONS)}
        result["error"] = f"this Python lacks {', '.join(missing)}, which slc imports; carry them as wheels (pip download --no-deps) and put them on PYTHONPATH"
        _write_json(out_path, result)
        print(f"gpu_suite: {result['error']}", file=sys.stderr)
        raise SystemExit(3)
    key = code_key(mode, device)
    skipped: list[str] = []
    sections: dict[str, dict] = {}
    for name in SECTIONS:
        if name not in only:
            continue
        cached = work / "sections" / f"{name}.json"
        if name != "cifar10_reproduction" and not args.fresh and cached.is_file():
            saved = json.loads(cached.read_text())
            if saved.get("key") == key and saved.get("status") == "done":
                sections[name] = {**saved, "cached": True}
                continue
        if clock.left() < 3:
            sections[name] = {"status": "skipped", "reason": "out of time"}
            skipped.append(f"{name} (out of time)")
            continue
        share = cfg["shares"].get(name)
        deadline = clock.section(None if share is None else share * clock.budget / cfg["budget"])  # shares scale with --budget
        started, before = time.perf_counter(), len(skipped)
        try:
            if name == "cuda_tests":
                result = cuda_tests(deadline, work, device, skipped)
            elif name == "students_per_hour":
                result = students_per_hour(cfg, deadline, device, skipped)
            elif name == "student_vs_bare":
                result = student_vs_bare(cfg, deadline, device, skipped)
            elif name == "labelling":
                result = labelling(cfg, deadline, device, work, skipped)
            else:
                result = reproduction(cfg, deadline, device, work, args.data_root, skipped)
            status = "partial" if len(skipped) > before or result.get("complete") is False else "done"
            entry = {"status": status, "wall_s": round(time.perf_counter() - started, 1), "result": result}
        except Exception as exc:  # one broken section must not lose the others' results
            entry = {"status": "failed", "wall_s": round(time.perf_counter() - started, 1), "error": _last_line(exc), "traceback": traceback.format_exc()[-3000:]}
        entry.update({"key": key, "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cached": False})
        sections[name] = entry
        (work / "sections").mkdir(exist_ok=True)
        _write_json(work / "sections" / f"{name}.json", entry)
    result = {
        "benchmark": "gpu_suite",
        "mode": mode,
        "command": "python3 benchmarks/gpu_suite.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": environment(device),
        "budget_s": clock.budget,
        "wall_s": round(clock.elapsed(), 1),
        "work": str(work),
        "sections": sections,
        "skipped": skipped,
        "figures": figures(sections),
    }
    _write_json(out_path, result)
    print(f"gpu_suite ({mode}, {result['environment']['device_name']}): {result['wall_s']} s of {clock.budget:.0f}; wrote {out_path}")
    for name, entry in sections.items():
        print(f"  {name}: {entry['status']}{' (cached)' if entry.get('cached') else ''}{' ' + entry['error'] if 'error' in entry else ''}")
    for fig in result["figures"]:
        print(f"  {fig['name']}: {fig['value']} {fig['unit']} (target {fig['target']})")
    for item in skipped:
        print(f"  skipped: {item}")
    return result


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    main()
