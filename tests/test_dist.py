"""Distributed runs under torchrun, gloo on the CPU: the artifacts, results and trajectories of one process.

A torchrun launch costs seconds (every rank imports torch), so one launch runs a chain of slc
commands against inputs this module made, and each test compares one of its results with the
same command run here in one process. The launched script is this file: run as a script, it
runs ``slc`` commands separated by ``::`` (each optionally preceded by ``NAME=VALUE`` settings for
that command alone) and prints each command's exit code per rank.

Every rank and the one-process reference run on one thread (float reductions then split alike),
with the tiny sets' score chunks cut to 4 images and file-backed sets kept lazy, so that the
small inputs still spread over several chunks, label batches and ranks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = "synthetic:classes=4,size=16,train=12,test=6"
SCORE_CHUNK = 4  # images per score chunk in these tests: 18 images -> 5 chunks
RECIPE = """lr = 0.05
momentum = 0.9
weight_decay = 5e-4
batch_size = 47
epochs = 2
milestones = [0.5]
gamma = 0.1
augment = "crop_flip"
crop_padding = 2
"""  # 48 images: global batches of 47 and 1, so rank 1 has nothing in every second step


def _settings() -> None:
    """What every process of these tests runs with (the launched ranks and this one)."""
    import sl_compiler.data.encoded as encoded
    import sl_compiler.select.ce_quantile as ce

    torch.set_num_threads(1)
    encoded.IN_MEMORY_LIMIT = 0  # folders of JPEGs stream, as ImageNet does
    ce.SCORE_CHUNK = SCORE_CHUNK


def _chain(argv: list[str]) -> int:
    """Run ``slc`` commands split by ``::``; leading NAME=VALUE words set the environment of that command only."""
    from cli.main import main
    from sl_compiler import dist

    rank = dist.launched().rank
    steps, code = [[]], 0
    for word in argv:
        steps.append([]) if word == "::" else steps[-1].append(word)
    for i, words in enumerate(steps):
        env = dict(w.split("=", 1) for w in words if re.fullmatch(r"[A-Z_]+=.*", w))
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            code = main([w for w in words if not re.fullmatch(r"[A-Z_]+=.*", w)])
        finally:
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        print(f"slc-chain rank {rank} step {i} exit {code}", flush=True)
        if code:
            break
    return code


if __name__ == "__main__":  # a rank of a torchrun launch
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    _settings()
    sys.exit(_chain(sys.argv[1:]))


from cli.main import main as slc  # noqa: E402
from sl_compiler import dist  # noqa: E402
from sl_compiler.errors import SlcError  # noqa: E402


def torchrun(ranks: int, chain: list[list[str]], cache: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc-per-node RANKS tests/test_dist.py CHAIN`` on the CPU."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", dist.FAULT_ENV)}
    env.update(PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}", SLC_CACHE=str(cache), SLC_PROGRESS="0", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    argv = [w for i, step in enumerate(chain) for w in ([] if i == 0 else ["::"]) + [str(a) for a in step]]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks), __file__, *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def exits(proc: subprocess.CompletedProcess) -> dict[tuple[int, int], int]:
    """``{(rank, step): exit code}`` from the chain's report lines."""
    found = re.findall(r"slc-chain rank (\d+) step (\d+) exit (\d+)", proc.stdout)
    return {(int(r), int(s)): int(c) for r, s, c in found}


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_here(argv: list, cache: Path, monkeypatch) -> int:
    """One slc command in this process (a world of one), with its own cache."""
    monkeypatch.setenv("SLC_CACHE", str(cache))
    return slc([str(a) for a in argv])


# ---- the inputs, the commands and their one-process results ----------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Inputs (a lazy JPEG folder and random teachers for it; a trained synthetic expert and two artifacts of it), one-process results."""
    from lazyset import add_teachers, write_folder
    from sl_compiler.compile import compile_artifact
    from sl_compiler.data import load_dataset
    from sl_compiler.experts.train import train_trajectories
    from sl_compiler.recipe import Recipe

    before = torch.get_num_threads()
    root = tmp_path_factory.mktemp("dist")
    with pytest.MonkeyPatch.context() as mp:
        import sl_compiler.data.encoded as encoded
        import sl_compiler.select.ce_quantile as ce

        mp.setattr(encoded, "IN_MEMORY_LIMIT", 0)
        mp.setattr(ce, "SCORE_CHUNK", SCORE_CHUNK)
        torch.set_num_threads(1)
        mp.setenv("SLC_CACHE", str(root / "cache-inputs"))
        folder = write_folder(root / "jpegs")
        add_teachers(root / "teachers", load_dataset(f"imagefolder:{folder}", split="train"), seeds=(0, 1))
        train_trajectories(TINY, "convnet_d3", [0], epochs=1, every=1, batch_size=16, store=root / "experts", device="cpu")
        for ipc in (2, 3):
            compile_artifact(Recipe(dataset=TINY, ipc=ipc, teacher="convnet_d3@1#0"), experts=root / "experts", device="cpu", out=root / f"art{ipc}")
        (root / "expert.toml").write_text(RECIPE)
        w = Work(root, folder)
        w.reference(mp)
    torch.set_num_threads(before)
    return w


class Work:
    """The commands every test runs, and their one-process results under ``root/ref``."""

    def __init__(self, root: Path, folder: Path):
        self.root, self.folder = root, folder

    def experts(self, store, epochs) -> list:
        return ["experts", "train", "--dataset", TINY, "--recipe", self.root / "expert.toml", "--epochs", epochs, "--every", "0.5", "--experts", store, "--device", "cpu"]

    def compile_ce(self, out) -> list:
        return ["compile", "--dataset", f"imagefolder:{self.folder}", "--ipc", 1, "--select", "ce-quantile", "--quantile", 0, "--teacher", "convnet_d3@0#0-1",
                "--views", 3, "--augment", "cutmix+rrc", "--topk", 2, "--batch-size", 2, "--experts", self.root / "teachers", "--device", "cpu", "--workers", 0, "--out", out]  # fmt: skip

    def compile_random(self, out) -> list:
        return ["compile", "--dataset", f"imagefolder:{self.folder}", "--ipc", 2, "--teacher", "convnet_d3@0#0-1", "--views", 3, "--augment", "cutmix+rrc",
                "--batch-size", 2, "--experts", self.root / "teachers", "--device", "cpu", "--workers", 0, "--out", out]  # fmt: skip

    def evaluate(self, out) -> list:
        return ["evaluate", self.root / "art2", self.root / "art3", "--epochs", 2, "--batch-size", 8, "--seeds", "0-2", "--lr-grid", "0.01,0.05",
                "--regime", "sl,hl", "--baselines", "random-hl,random-sl", "--experts", self.root / "experts", "--device", "cpu", "--out", out]  # fmt: skip

    def sweep(self, out) -> list:
        return ["sweep", "--dataset", TINY, "--teacher-arch", "convnet_d3", "--ipc", "1,2", "--epochs", "0,1", "--eval-seeds", "0,1", "--student-epochs", 2,
                "--experts", self.root / "experts", "--device", "cpu", "--out", out]  # fmt: skip

    def reference(self, mp) -> None:
        ref = self.root / "ref"
        for argv in (self.experts(ref / "experts", 1), self.compile_ce(ref / "ce"), self.compile_random(ref / "random"), self.evaluate(ref / "eval"), self.sweep(ref / "sweep")):
            assert run_here(argv, ref / "cache", mp) == 0, argv


@pytest.fixture(scope="module")
def two(work):
    """One launch on 2 ranks: experts (stopped at 0.5, then resumed to 1), compile, evaluate, sweep, and a compile whose rank 1 fails."""
    out = work.root / "two"
    chain = [
        work.experts(out / "experts", 0.5),
        work.experts(out / "experts", 1),
        work.compile_ce(out / "ce"),
        work.evaluate(out / "eval"),
        work.sweep(out / "sweep"),
        [f"{dist.FAULT_ENV}=label:1:1:raise", *work.compile_random(out / "failed")],
    ]
    return out, torchrun(2, chain, out / "cache")


# ---- compile ------------------------------------------------------------------------------------


def test_compile_on_two_and_three_ranks_is_byte_identical_to_one_process(work, two):
    out, proc = two
    assert exits(proc)[(0, 2)] == exits(proc)[(1, 2)] == 0, proc.stderr[-3000:]
    reference = files(work.root / "ref" / "ce")
    assert files(out / "ce") == reference
    three = work.root / "three"
    proc3 = torchrun(3, [work.compile_ce(three / "ce")], three / "cache")
    assert proc3.returncode == 0, proc3.stderr[-3000:]
    assert files(three / "ce") == reference
    # scoring and labelling really were shared: 5 score chunks and 5 label batches over the ranks; their pieces are gone
    assert not list((three / "cache").glob("labels/*/*")) and not list((three / "cache").glob("scores/*.parts"))
    assert "artifact:" in proc3.stdout and proc3.stdout.count("content hash:") == 1  # rank 0 alone reports


def test_a_failure_in_one_ranks_code_stops_every_rank_and_rank_0_names_it(work, two):
    out, proc = two
    codes = exits(proc)
    assert codes[(0, 5)] == codes[(1, 5)] == 2 and proc.returncode != 0
    named = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert named == [f"error: rank 1 of 2 failed: fault injected at label #1 on rank 1 ({dist.FAULT_ENV}=label:1:1:raise); unset {dist.FAULT_ENV}"]
    assert not (out / "failed").exists()


def test_a_rank_killed_mid_labelling_leaves_no_artifact_and_the_rerun_resumes_to_the_same_bytes(work, monkeypatch):
    from sl_compiler.label import teacher

    killed = work.root / "killed"
    proc = torchrun(2, [[f"{dist.FAULT_ENV}=label:1:3", *work.compile_random(killed / "artifact")]], killed / "cache")
    assert proc.returncode != 0
    cause = proc.stderr.split("Root Cause")[-1]
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)", cause) and "SIGKILL" in cause, proc.stderr[-3000:]
    assert not (killed / "artifact").exists() and not [p for p in killed.iterdir() if p.name.startswith(".artifact")]
    pieces = list((killed / "cache").glob("labels/*/*.safetensors"))
    assert 2 <= len(pieces) < 9  # 18 label rows in batches of 2: rounds 0 and 1 finished before rank 1 died in round 2
    rows = []
    real = teacher.Ensemble.__call__
    monkeypatch.setattr(teacher.Ensemble, "__call__", lambda self, pixels: (rows.append(len(pixels)), real(self, pixels))[1])
    assert run_here(work.compile_random(killed / "artifact"), killed / "cache", monkeypatch) == 0
    assert sum(rows) == 18 - 2 * len(pieces)  # only the batches no piece held were labelled again
    assert files(killed / "artifact") == files(work.root / "ref" / "random")
    assert not list((killed / "cache").glob("labels/*/*"))


# ---- experts --------------------------------------------------------------------------------------


def _checkpoints(store: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    (folder,) = [p.parent for p in store.rglob("trajectory.json")]
    record = json.loads((folder / "trajectory.json").read_text())
    return record, {c["epoch"]: load_file(folder / c["file"]) for c in record["checkpoints"]}


def test_experts_trained_on_two_ranks_follow_the_one_process_trajectory_and_resume(work, two, monkeypatch):
    out, proc = two
    assert exits(proc)[(0, 0)] == exits(proc)[(0, 1)] == exits(proc)[(1, 1)] == 0, proc.stderr[-3000:]
    ref, ref_weights = _checkpoints(work.root / "ref" / "experts")
    got, weights = _checkpoints(out / "experts")
    assert got["world_size"] == 2 and got["global_batch"] == 47 and ref["world_size"] == 1
    assert "world_size_changes" not in got  # stopped at 0.5 and resumed on the same two ranks
    assert list(weights) == list(ref_weights) == [0, 0.5, 1]
    for epoch, state in weights.items():
        # the same global batches and augmentation: equal up to the order of float32 sums (1e-8 here;
        # a per-rank mean loss, or each rank drawing its own crops, moves weights by 1e-3 and more)
        assert all(torch.allclose(state[k], ref_weights[epoch][k], rtol=0, atol=1e-5) for k in state), epoch
    assert all(torch.equal(weights[0][k], ref_weights[0][k]) for k in weights[0])  # epoch 0: the seed's init
    one_image = 100 / 24
    assert all(abs(a["test_accuracy"] - b["test_accuracy"]) <= one_image for a, b in zip(got["checkpoints"], ref["checkpoints"]))
    assert proc.stdout.count("convnet_d3 seed 0: trained") == proc.stdout.count("convnet_d3 seed 0: resumed") == 1  # rank 0 reports
    # a later run on one process extends it and records the change of world size
    monkeypatch.setenv("SLC_CACHE", str(out / "cache"))
    from sl_compiler.experts.recipe import ExpertRecipe
    from sl_compiler.experts.train import train_trajectories

    (result,) = train_trajectories(TINY, "convnet_d3", [0], recipe=ExpertRecipe.from_toml(work.root / "expert.toml"), epochs=1.5, every=0.5, store=out / "experts", device="cpu")
    assert result.status == "resumed" and "on 1 rank after 2" in result.note
    assert result.trajectory.extra["world_size_changes"] == [{"step": 2, "epoch": 1.0, "world_size": 1}]


def test_batchnorm_models_are_refused_under_torchrun_on_the_cpu():
    from sl_compiler.experts.train import _distributable
    from sl_compiler.errors import ExpertError
    from sl_compiler.models import create_model

    plain = create_model("convnet_d3", 4, 3, 16)
    assert _distributable(plain, "convnet_d3", torch.device("cpu")) is plain
    with pytest.raises(ExpertError, match="SyncBatchNorm needs GPUs"):
        _distributable(create_model("resnet18", 4, 3, 16), "resnet18", torch.device("cpu"))


# ---- evaluate and sweep -----------------------------------------------------------------------------


def _without_run_fields(result):
    """A result without what depends on the run, not on the students: wall times and the world size."""
    if isinstance(result, dict):
        return {k: _without_run_fields(v) for k, v in result.items() if k not in ("wall_s", "world_size")}
    if isinstance(result, list):
        return [_without_run_fields(v) for v in result]
    return result


def test_evaluate_on_two_ranks_writes_the_one_process_json_and_csv(work, two):
    out, proc = two
    assert exits(proc)[(0, 3)] == exits(proc)[(1, 3)] == 0, proc.stderr[-3000:]
    ref = json.loads((work.root / "ref" / "eval.json").read_text())
    got = json.loads((out / "eval.json").read_text())
    assert got["world_size"] == 2 and ref["world_size"] == 1
    assert _without_run_fields(got) == _without_run_fields(ref)
    cells = got["artifacts"][0]["cells"]
    assert set(cells) == {"sl", "hl", "random-hl", "random-sl"} and cells["sl"]["lr_selection"] and len(cells["sl"]["accuracy"]) == 3
    assert (out / "eval.csv").read_bytes() == (work.root / "ref" / "eval.csv").read_bytes()
    assert proc.stdout.count("| artifact |") == 1  # rank 0 prints the table


def test_sweep_on_two_ranks_writes_the_one_process_reports(work, two):
    out, proc = two
    assert exits(proc)[(0, 4)] == exits(proc)[(1, 4)] == 0, proc.stderr[-3000:]
    ref = work.root / "ref" / "sweep"
    assert (out / "sweep" / "sweep.json").read_text().replace(str(out / "sweep"), "OUT") == (ref / "sweep.json").read_text().replace(str(ref), "OUT")
    assert (out / "sweep" / "sweep.md").read_bytes() == (ref / "sweep.md").read_bytes()
    assert len(list((out / "sweep" / "cache").glob("*.json"))) == 4 and not list((out / "sweep").glob(".slc-shared-*"))


# ---- commands that are not distributed, and the pieces of dist ----------------------------------------


NOT_DISTRIBUTED = [
    ["inspect", "A"], ["verify", "A"], ["diff", "A", "B"], ["publish", "A", "--repo", "u/x", "--tag", "v1"], ["pull", "u/x@v1"],
    ["import", "tensor", "x.pt", "--dataset", TINY, "--out", "o"], ["data", "add", "cifar10", "/nowhere"], ["data", "list"], ["demo"],
    ["report", "r.json"], ["experts", "list"], ["experts", "add", "c.pt", "--dataset", TINY, "--model", "convnet_d3", "--epoch", "1"],
]  # fmt: skip


@pytest.mark.parametrize("argv", NOT_DISTRIBUTED, ids=lambda a: " ".join(a[:2]))
def test_commands_that_are_not_distributed_refuse_to_run_on_every_rank(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        assert slc(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        command = " ".join(argv[:2]) if argv[0] in ("experts", "import", "data") else argv[0]
        expected = [f"error: slc {command} is not distributed: started by torchrun with WORLD_SIZE=2, it would run 2 times; run it as a plain command (only slc compile, slc evaluate, slc sweep, slc experts train split their work over ranks)"]
        assert captured.err.splitlines() == (expected if rank == 0 else [])
    assert list(tmp_path.iterdir()) == [] and not list(Path(os.environ["XDG_CONFIG_HOME"]).rglob("*.toml"))  # nothing ran


def test_a_world_of_one_shares_everything_with_no_process_group(monkeypatch):
    import torch.distributed as tdist

    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(dist, "_team", None)
    team = dist.team()
    assert team is dist.SOLO and team.main and not team.distributed and not tdist.is_initialized()
    assert team.share(list(range(5))) == team.rounds(list(range(5))) == [0, 1, 2, 3, 4]
    assert team.gather("x") == team.all_gather("x") == ["x"] and team.broadcast("y") == "y" and team.sum(3) == 3
    assert dist.workers(None) is None and dist.workers(3) == 3
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not dist.launched().distributed and dist.not_distributed("inspect") is None


def test_shares_and_rounds_cover_a_fixed_grid_whatever_the_world_size():
    items = list(range(7))
    for size in (1, 2, 3, 8):
        teams = [dist.Team(rank, size) for rank in range(size)]
        assert sorted(i for t in teams for i in t.share(items)) == items
        rounds = [t.rounds(items) for t in teams]
        assert len({len(r) for r in rounds}) == 1  # every rank takes part in every round, idle ones with None
        assert sorted(i for r in rounds for i in r if i is not None) == items


def test_bad_torchrun_settings_are_one_line_errors(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(dist.DistError, match="WORLD_SIZE='two' is not a whole number"):
        dist.launched()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(dist.DistError, match="RANK is not set"):
        dist.launched()
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(dist.DistError, match="do not fit WORLD_SIZE=2"):
        dist.launched()
    monkeypatch.setenv(dist.PATIENCE_ENV, "-5")
    with pytest.raises(dist.DistError, match="SLC_DIST_PATIENCE='-5' is not a positive number"):
        dist.timeout_s(dist.PATIENCE_ENV)
    monkeypatch.setenv("WORLD_SIZE", "x")
    assert slc(["inspect", "A"]) == 2  # cli.main says so in one line (checked by the guard test's path)


def test_the_fault_hook_counts_its_point_on_its_rank_only(monkeypatch):
    monkeypatch.setattr(dist, "_faults", {})
    monkeypatch.setenv(dist.FAULT_ENV, "label:0:2:raise")
    dist.fault("score")  # another point
    dist.fault("label")  # the first label: not yet
    with pytest.raises(dist.InjectedFault, match="fault injected at label #2 on rank 0"):
        dist.fault("label")
    monkeypatch.setenv(dist.FAULT_ENV, "label:1:1:raise")
    dist.fault("label")  # rank 1's fault does not fire on rank 0
    assert isinstance(dist.InjectedFault("x"), SlcError)


def test_the_scaling_benchmark_runs_every_configuration_and_writes_its_ratios(tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("dist_scaling", REPO / "benchmarks" / "dist_scaling.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "r.json"
    result = bench.main(["--quick", "--classes", "2", "--per-class", "6", "--ipc", "3", "--sides", "64", "96", "--data", str(tmp_path / "fake"), "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["settings"]["images_scored"] == 12 and result["settings"]["images_labelled"] == 6
    assert result["settings"]["score_chunk"] == 1 and result["settings"]["label_batch"] == 1  # 8 pieces per rank
    assert set(result["img_per_s"]) == {"one", "ranks", "one_workers"} and all(v > 0 for c in result["img_per_s"].values() for v in c.values())
    assert [f["target"] for f in result["figures"]] == [">= 1.6", ">= 1.6", None]
    best = {name: min(r["score"] for r in runs) for name, runs in result["seconds"].items()}  # seconds kept to 3 decimals
    assert result["ratio"]["score"] == pytest.approx(best["one"] / best["ranks"], abs=0.01 * best["one"] / best["ranks"] + 0.002)
