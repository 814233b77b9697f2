"""benchmarks/: run_all's discovery, runner and README table; the storage arithmetic; the fidelity and JPEG-cost scripts end to end on tiny data."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = "synthetic:classes=4,size=16,train=12,test=6"


def script(name: str):
    """Import benchmarks/<name>.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_all = script("run_all")
storage = script("storage")
fidelity = script("fidelity_cifar10")
jpeg_cost = script("jpeg_cost")


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "slc-cache"))


def test_discover_skips_itself_and_helpers(tmp_path):
    for name in ("run_all.py", "_common.py", "b.py", "a.py", "notes.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in run_all.discover(tmp_path)] == ["a.py", "b.py"]
    assert "run_all.py" not in [p.name for p in run_all.discover()]


def test_accepts_quick_reads_the_source(tmp_path):
    (tmp_path / "q.py").write_text('parser.add_argument("--quick", action="store_true")\n')
    (tmp_path / "p.py").write_text("# runs with --quicker settings elsewhere\n")
    assert run_all.accepts_quick(tmp_path / "q.py") and not run_all.accepts_quick(tmp_path / "p.py")
    assert all(run_all.accepts_quick(p) for p in (BENCHMARKS / "storage.py", BENCHMARKS / "fidelity_cifar10.py"))


def test_run_script_passes_quick_only_where_declared(tmp_path):
    (tmp_path / "q.py").write_text('import sys, pathlib\nFLAG = "--quick"\npathlib.Path("argv.json").write_text(__import__("json").dumps(sys.argv[1:]))\n')
    (tmp_path / "plain.py").write_text('import sys, pathlib\npathlib.Path("plain.json").write_text(__import__("json").dumps(sys.argv[1:]))\n')
    (tmp_path / "bad.py").write_text("raise SystemExit(3)\n")
    assert run_all.run_script(tmp_path / "q.py", quick=True, timeout=60, cwd=tmp_path)["status"] == "ok"
    assert json.loads((tmp_path / "argv.json").read_text()) == ["--quick"]
    run = run_all.run_script(tmp_path / "plain.py", quick=True, timeout=60, cwd=tmp_path)
    assert run["command"] == "plain.py" and json.loads((tmp_path / "plain.json").read_text()) == []
    assert run_all.run_script(tmp_path / "bad.py", quick=False, timeout=60, cwd=tmp_path)["status"] == "failed (exit 3)"


def test_figures_from_list_or_top_level_ratios():
    listed = {"figures": [{"name": "x", "value": 1.5, "unit": "x", "target": ">= 0.9"}, {"bad": 1}]}
    assert run_all.figures(listed) == [listed["figures"][0]]
    flat = {"ratio": 0.95, "target": ">= 0.9", "speed_ratio": 2.0, "speed_ratio_target": ">= 3", "img_s": 100, "nested": {"ratio": 1}}
    assert run_all.figures(flat) == [
        {"name": "ratio", "value": 0.95, "unit": "x", "target": ">= 0.9"},
        {"name": "speed_ratio", "value": 2.0, "unit": "x", "target": ">= 3"},
    ]


@pytest.mark.parametrize(
    "value, target, met",
    [(0.95, ">= 0.9", "yes"), (0.85, ">= 0.9", "no"), (3, "<= 5 GiB", "yes"), (6, "< 5", "no"), (1.0, 0.9, "yes"), (1.0, "paper 21.1", ""), (1.0, None, ""), ("n/a", ">= 1", "")],
)
def test_meets(value, target, met):
    assert run_all.meets(value, target) == met


def test_table_rows_and_failed_runs():
    results = {"b": {"figures": [{"name": "speed", "value": 0.93, "unit": "x", "target": ">= 0.9"}]}, "a": {"figures": [{"name": "acc", "value": 46.25, "unit": "%", "target": "paper 46.3"}]}}
    text = run_all.table(results, {"c": {"status": "timed out after 5 s", "command": "c.py", "wall_s": 5.0}})
    lines = text.splitlines()
    assert lines[2] == "| a | not recorded | acc | 46.2 | % | paper 46.3 |  |"
    assert lines[3] == "| b | not recorded | speed | 0.93 | x | >= 0.9 | yes |"
    assert lines[4] == "| c | `python c.py` | run | timed out after 5 s | | | no |"


def test_update_readme_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nintro\n")
    run_all.update_readme("first\n", readme)
    assert readme.read_text() == f"# Benchmarks\n\nintro\n\n{run_all.BEGIN}\nfirst\n{run_all.END}\n"
    readme.write_text(readme.read_text() + "\n## After\nkept\n")
    run_all.update_readme("second\n", readme)
    text = readme.read_text()
    assert "first" not in text and f"{run_all.BEGIN}\nsecond\n{run_all.END}" in text
    assert text.startswith("# Benchmarks\n\nintro\n") and text.endswith("## After\nkept\n")


def test_main_no_run_writes_readme_table(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "x.json").write_text(json.dumps({"figures": [{"name": "ratio", "value": 0.97, "unit": "x", "target": ">= 0.9"}]}))
    (results / "broken.json").write_text("{")
    monkeypatch.setattr(run_all, "RESULTS", results)
    monkeypatch.setattr(run_all, "README", tmp_path / "README.md")
    assert run_all.main(["--no-run"]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "| x | not recorded | ratio | 0.97 | x | >= 0.9 | yes |" in text
    assert "| broken | not recorded | result file | unreadable" in text
    assert "Command: `python benchmarks/run_all.py --no-run`" in text and "torch " in text


def test_storage_arithmetic():
    assert storage.scheme_bytes(10, 20, None, storage.FP32) == {"per_view": 40, "per_image": 800}
    assert storage.scheme_bytes(10, 20, None, storage.FP16) == {"per_view": 20, "per_image": 400}
    assert storage.scheme_bytes(10, 20, 5, storage.FP16, index_bytes=2) == {"per_view": 20, "per_image": 400}
    assert storage.scheme_bytes(1000, 300, 2, storage.FP16, index_bytes=2) == {"per_view": 8, "per_image": 2400}
    sre = storage.sre2l(20)
    assert sre["bytes_per_image"] == 1000 * 2 * 20 and sre["bytes_per_view"] == 2000
    assert sre["imagenet_ipc50"]["bytes"] == 50_000 * 300 * 1000 * 2 and sre["imagenet_ipc50"]["gib"] == 27.9


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from sl_compiler.experts.train import train_trajectories

    root = tmp_path_factory.mktemp("experts")
    train_trajectories(TINY, "convnet_d3", [0, 1], epochs=1, every=1, store=root, device="cpu")
    return str(root)


def test_storage_counts_the_stored_tensors(tiny_store, tmp_path, capsys):
    argv = ["--dataset", TINY, "--experts", tiny_store, "--teacher", "convnet_d3@1#0", "--ipc", "2", "--views", "3", "--topk", "1,2",
            "--no-accuracy", "--out", str(tmp_path / "w"), "--results", str(tmp_path / "r"), "--device", "cpu"]
    assert storage.main(argv) == 0
    result = json.loads((tmp_path / "r" / "storage.json").read_text())
    by_name = {s["scheme"]: s for s in result["schemes"]}
    assert list(by_name) == ["dense fp32", "dense fp16", "top-1 fp16", "top-2 fp16"]
    assert by_name["dense fp32"]["per_image"] == 3 * 4 * 4 and by_name["dense fp16"]["per_image"] == 3 * 4 * 2
    assert by_name["top-1 fp16"]["stored"]["labels_per_image"] == 3 * 1 * (2 + 2)
    assert by_name["dense fp16"]["stored"]["view_params_per_image"] > 0
    assert result["setting"]["images"] == 8 and result["setting"]["index_dtype"] == "int16"
    assert "| SRe2L dense fp16, 1000 classes | 2,000 | 6,000 |" in capsys.readouterr().out
    first = (tmp_path / "r" / "storage.json").read_bytes()
    assert storage.main(argv) == 0 and (tmp_path / "r" / "storage.json").read_bytes() == first  # reproducible bytes


def test_fidelity_settings_errors(tmp_path):
    from sl_compiler.errors import RecipeError

    for name in ("cifar10-quick.toml", "cifar10-full.toml"):
        settings = fidelity.load_settings(BENCHMARKS.parent / "recipes" / "fidelity" / name)
        assert settings["teacher_arch"] == "convnet_d3" and len(settings["expert_seeds"]) >= 2
    bad = tmp_path / "bad.toml"
    bad.write_text('mode = "x"\ncolour = 1\n')
    with pytest.raises(RecipeError, match="unknown key.*colour.*missing dataset"):
        fidelity.load_settings(bad)
    with pytest.raises(RecipeError, match="do not exist"):
        fidelity.load_settings(tmp_path / "absent.toml")
    per_ipc = tmp_path / "per_ipc.toml"
    text = (BENCHMARKS.parent / "recipes" / "fidelity" / "cifar10-quick.toml").read_text()
    per_ipc.write_text(text.replace("10 = [0.5, 1, 2]", "5 = [0.5]"))
    with pytest.raises(RecipeError, match="sweep_epochs has no entry for IPC 10"):
        fidelity.load_settings(per_ipc)
    per_ipc.write_text(text.replace("50 = 100", "5 = 100"))
    with pytest.raises(RecipeError, match="student_epochs has no entry for IPC 50"):
        fidelity.load_settings(per_ipc)
    quick = fidelity.load_settings(BENCHMARKS.parent / "recipes" / "fidelity" / "cifar10-quick.toml")
    assert quick["ipcs"] == [1, 10, 50]
    assert fidelity.sweep_epochs(quick, 1) == [0.25, 0.5, 1, 1.5, 2] and fidelity.sweep_epochs(quick, 10) == [0.5, 1, 2]
    assert [fidelity.per_ipc_setting(quick, "student_epochs", i) for i in (1, 10, 50)] == [300, 300, 100]
    full = fidelity.load_settings(BENCHMARKS.parent / "recipes" / "fidelity" / "cifar10-full.toml")
    assert fidelity.per_ipc_setting(full, "student_epochs", 50) == 1000 and fidelity.sweep_epochs(full, 50)[-1] == 50


def test_fidelity_end_to_end_on_tiny_data(tiny_store, tmp_path, capsys):
    settings = tmp_path / "tiny.toml"
    settings.write_text(
        f'mode = "test"\ndataset = "{TINY}"\nteacher_arch = "convnet_d3"\nexpert_seeds = [0, 1]\nexpert_epochs = 1\nexpert_every = 1\n'
        "sweep_epochs = [0, 1]\nipcs = [1]\nstudent_epochs = 2\neval_seeds = [0, 1]\n"
    )
    argv = ["--settings", str(settings), "--out", str(tmp_path / "w"), "--experts", tiny_store, "--results", str(tmp_path / "r"), "--device", "cpu"]
    assert fidelity.main(argv) == 0
    result = json.loads((tmp_path / "r" / "fidelity_cifar10.json").read_text())
    row = result["ipc"]["1"]
    for key in ("random_hard", "soft_baseline", "ensemble"):
        assert set(row[key]) >= {"mean", "std"} and len(row[key]["accuracies"]) == 2
    assert row["best_epoch"] in (0.0, 1.0) and set(row["sweep"]) == {"0", "1"}
    # both selections: the held-out slice (the default, what soft_baseline reports) and test (the paper's way)
    held, on_test = row["by_selection"]["holdout"], row["by_selection"]["test"]
    sweep = {float(e): c for e, c in row["sweep"].items()}
    assert held["epoch"] == row["best_epoch"] and held["accuracies"] == row["soft_baseline"]["accuracies"]
    assert held["epoch"] == max(sorted(sweep), key=lambda e: (sweep[e]["holdout_mean"], -e))
    assert on_test["epoch"] == max(sorted(sweep), key=lambda e: (sweep[e]["mean"], -e))
    assert row["holdout"]["size"] > 0 and row["holdout"]["seed"] == 0
    assert row["ensemble"]["teacher"] == f"convnet_d3@{fidelity.format_epoch(row['best_epoch'])}#0,1"
    assert row["paper_soft_baseline"] == 21.1 and row["usual_random_hard"] == 14.4
    assert result["protocol"]["mode"] == "test" and result["protocol"]["student_epochs"] == {"1": 2} and result["protocol"]["seeds"] == [0, 1]
    assert "epochs" not in result["protocol"] and row["student_epochs"] == 2
    assert result["protocol"]["complete"] is True and result["protocol"]["ipcs"] == [1]
    assert (tmp_path / "r" / "fidelity_cifar10.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "| 1 |" in out and "soft baseline (ours; epoch on test)" in out
    first = (tmp_path / "r" / "fidelity_cifar10.json").read_bytes()
    assert fidelity.main(argv) == 0 and (tmp_path / "r" / "fidelity_cifar10.json").read_bytes() == first


@pytest.mark.parametrize("quality", [30, 75, 90])
def test_jpeg_quality_is_read_back_from_the_quantisation_tables(quality):
    import io

    from PIL import Image

    pixels = (_random_image() * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    assert jpeg_cost.estimate_quality(buffer.getvalue()) == quality


def _random_image():
    import numpy as np

    return np.random.default_rng(0).random((32, 32, 3))


def test_jpeg_round_trip_is_lossy_and_keeps_the_layout():
    import torch

    pixels = (torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    low, high = jpeg_cost.jpeg_round_trip(pixels, 20), jpeg_cost.jpeg_round_trip(pixels, 95)
    assert low.shape == pixels.shape and low.dtype == torch.uint8 and not torch.equal(low, pixels)
    assert jpeg_cost.psnr(pixels, high) > jpeg_cost.psnr(pixels, low) > 0
    assert jpeg_cost.psnr(pixels, pixels) == float("inf")


def test_jpeg_cost_end_to_end_on_tiny_data(tmp_path, capsys):
    argv = ["--dataset", TINY, "--quality", "50", "--epochs", "1", "--seeds", "2", "--out", str(tmp_path / "w"), "--results", str(tmp_path / "r"), "--device", "cpu"]
    assert jpeg_cost.main(argv) == 0
    result = json.loads((tmp_path / "r" / "jpeg_cost.json").read_text())
    assert result["quality"] == 50 and result["quality_source"] == "--quality" and 0 < result["psnr_db"]["train"] < 60
    assert set(result["accuracy"]) == {f"{a}_train_{b}_test" for a in ("original", "jpeg") for b in ("original", "jpeg")}
    acc = result["accuracy"]
    pairs = [x - y for x, y in zip(acc["original_train_original_test"]["accuracies"], acc["jpeg_train_jpeg_test"]["accuracies"])]
    assert result["cost_points"]["jpeg_train_jpeg_test"]["mean"] == pytest.approx(sum(pairs) / 2, abs=0.01)
    assert [f["unit"] for f in result["figures"]] == ["points", "points"]
    # the two variants train separate trajectories from the same seeds
    stores = sorted(p.name for p in (tmp_path / "w" / "experts").iterdir())
    assert len(stores) == 2 and any("jpeg50" in name for name in stores)
    assert "| jpeg |" in capsys.readouterr().out


def test_jpeg_cost_without_the_cifar_copy_asks_for_a_quality(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(jpeg_cost, "CIFAR_TAR", tmp_path / "absent.tar")
    argv = ["--dataset", TINY, "--epochs", "1", "--seeds", "1", "--out", str(tmp_path / "w"), "--results", str(tmp_path / "r"), "--device", "cpu"]
    assert jpeg_cost.main(argv) == 2
    assert "pass --quality Q" in capsys.readouterr().err and not (tmp_path / "r").exists()


# ---- the GPU suite and the bare loops ------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


def test_bare_loops_use_no_slc_code():
    """The loops slc is measured against are written without slc (issue 10: bare loops must not call slc's code)."""
    assert not any(n.startswith("sl_compiler") for n in _imports(BENCHMARKS / "_bare.py"))
    for name in ("eval_throughput", "gpu_suite"):
        source = (BENCHMARKS / f"{name}.py").read_text()
        assert "_bare.student_loop(" in source, f"{name} measures against its own bare loop"
        # slc's augmentation, models and labeller are never imported into the bare side
        assert "from sl_compiler.augment" not in source and "init_student(model_name" not in source
    assert "_bare.teacher_loop(" in (BENCHMARKS / "gpu_suite.py").read_text()


def test_gpu_suite_tiny_runs_every_section_and_resumes(tmp_path):
    """gpu_suite.py --tiny: the GPU suite's code on the CPU (cuda tests skip), its JSON's shape, and a second call reusing the first."""
    gpu_suite = script("gpu_suite")
    work, out = tmp_path / "work", tmp_path / "gpu_suite.json"
    # a budget no loaded CI machine reaches: this checks the sections' code, not the time they take
    result = gpu_suite.main(["--tiny", "--budget", "1800", "--work", str(work), "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["mode"] == "tiny" and result["environment"]["device"] == "cpu" and result["budget_s"] == 1800
    sections = result["sections"]
    assert list(sections) == list(gpu_suite.SECTIONS)
    assert all(s["status"] in ("done", "partial") for s in sections.values()), {n: s.get("error") for n, s in sections.items()}
    tests = sections["cuda_tests"]["result"]
    assert tests["ok"] and tests["tests"] == tests["skipped"] > 0  # collected, and all skipped without CUDA
    rows = sections["students_per_hour"]["result"]["rows"]
    assert [r["ipc"] for r in rows] == [1, 2] and all(r["batched_students_per_hour"] > 0 and r["sequential_students_per_hour"] > 0 for r in rows)
    bare = sections["student_vs_bare"]["result"]
    assert bare["ratio"] > 0 and bare["settings"]["bare_loop"].startswith("benchmarks/_bare.py")
    label = sections["labelling"]["result"]["rows"][0]
    assert label["max_abs_logit_difference"] <= 1e-4 * max(1.0, label["max_abs_logit"])  # slc labels in fp32, like the bare forward
    repro = sections["cifar10_reproduction"]["result"]
    assert repro["complete"] and {c["ipc"] for c in repro["cells"]} == {1, 2} and set(repro["best"]) == {"1", "2"}
    assert all(len(c["accuracy"]) == 2 and 0 <= c["mean"] <= 100 for c in repro["cells"])
    names = [f["name"] for f in result["figures"]]
    assert any("batched / one at a time" in n for n in names) and any("slc / bare loop" in n for n in names)
    assert all({"name", "value", "unit", "target"} <= set(f) for f in result["figures"])
    again = gpu_suite.main(["--tiny", "--budget", "1800", "--work", str(work), "--out", str(out), "--only", "labelling,cifar10_reproduction"])
    assert again["sections"]["labelling"]["cached"] and set(again["sections"]) == {"labelling", "cifar10_reproduction"}
    assert all(c["cached"] for c in again["sections"]["cifar10_reproduction"]["result"]["cells"])  # students not retrained


def test_gpu_suite_refuses_a_cpu_without_tiny(capsys):
    gpu_suite = script("gpu_suite")
    if gpu_suite.torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(SystemExit) as exc:
        gpu_suite.main([])
    assert exc.value.code == 2 and "--tiny" in capsys.readouterr().err


def test_gpu_suite_stops_at_once_when_slc_cannot_import(tmp_path, monkeypatch, capsys):
    """The GPU image has no tomli_w: the suite says so in its JSON (and how to fix it) instead of failing every section."""
    gpu_suite = script("gpu_suite")
    monkeypatch.setattr(gpu_suite, "REQUIRED_MODULES", ("tomli_w", "no_such_module_for_slc"))
    with pytest.raises(SystemExit) as exc:
        gpu_suite.main(["--tiny", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "out.json")])
    saved = json.loads((tmp_path / "out.json").read_text())
    assert exc.value.code == 3 and saved["environment"]["missing_modules"] == ["no_such_module_for_slc"]
    assert "wheels" in saved["error"] and "no_such_module_for_slc" in capsys.readouterr().err


def test_cifar10_pieces_carried_over_two_calls_are_joined_and_checked(tmp_path):
    import hashlib

    gpu_suite = script("gpu_suite")
    blobs = {"train": b"t" * 1000 + b"x", "test": b"y" * 10}
    first, second = tmp_path / "carry" / "a", tmp_path / "carry" / "b"
    first.mkdir(parents=True)
    second.mkdir()
    (first / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(b).hexdigest()}  cifar10-{s}.tar\n" for s, b in blobs.items()))
    (first / "cifar10-test.tar").write_bytes(blobs["test"])  # small enough to travel whole
    pieces = [blobs["train"][i : i + 400] for i in range(0, len(blobs["train"]), 400)]
    (first / "cifar10-train.tar.part-00").write_bytes(pieces[0])
    with pytest.raises(gpu_suite.IncompleteData, match="do not join"):  # the first call: one piece of three
        gpu_suite.find_cifar10(str(tmp_path / "carry"), tmp_path / "work")
    for i, piece in enumerate(pieces[1:], 1):
        (second / f"cifar10-train.tar.part-{i:02d}").write_bytes(piece)
    found = gpu_suite.find_cifar10(str(tmp_path / "carry"), tmp_path / "work")
    assert found == tmp_path / "work" / "data" / "cifar10"
    assert all((found / f"cifar10-{s}.tar").read_bytes() == b for s, b in blobs.items())
    assert gpu_suite.find_cifar10(str(tmp_path / "carry"), tmp_path / "work") == found  # later calls use the joined copy
    (second / "cifar10-train.tar.part-01").write_bytes(b"z" * 400)
    with pytest.raises(gpu_suite.IncompleteData):
        gpu_suite.find_cifar10(str(tmp_path / "carry"), tmp_path / "work2")


def test_the_memory_measure_sees_the_whole_process_tree():
    """benchmarks/_memory.py: a child's pages are in the tree's PSS, and a gone process counts nothing."""
    import importlib.util
    import os
    import subprocess

    spec = importlib.util.spec_from_file_location("_memory", BENCHMARKS / "_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    fill = "import time; b = b'x' * (64 << 20); print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", fill], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"  # its 64 MiB are written
        assert child.pid in bench.process_tree(os.getpid())
        pss, rss = bench.memory(child.pid)
        assert 60 << 20 < pss <= rss
    finally:
        child.kill()
        child.wait()
    assert bench.memory(child.pid) == (0, 0)
    run = bench.peak_memory([sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', " + repr(fill.replace("time.sleep(60)", "time.sleep(1)")) + "])"])
    assert run["returncode"] == 0 and run["processes"] >= 2 and run["tree_pss_bytes"] > 60 << 20


def test_imagenet_projection_arithmetic():
    projection = script("imagenet_projection")
    rates = {"forward": 100.0, "train": 50.0}
    cpu = projection.project(rates, decode_per_worker=10.0, cores=2, gpu=False)
    gpu = projection.project(rates, decode_per_worker=10.0, cores=5, gpu=True)
    scoring = "CE scoring of the training split (compile --select ce-quantile), one teacher"
    assert cpu[scoring] == round(projection.TRAIN * (1 / 20 + 1 / 100) / 3600, 2)  # decode shares the 2 cores with the model
    assert gpu[scoring] == round(projection.TRAIN * max(1 / 40, 1 / 100) / 3600, 2)  # 4 workers overlap the device
    student = "one student, IPC 10, 300 epochs (images resident: no decode) + one val pass"
    assert cpu[student] == round((10_000 * 300 / 50 + projection.VAL * (1 / 20 + 1 / 100)) / 3600, 2)


def test_imagenet_projection_runs_and_names_missing_inputs(tmp_path, monkeypatch, capsys):
    projection = script("imagenet_projection")
    out = tmp_path / "projection.json"
    result = projection.main(["--device", "cpu", "--batch", "2", "--steps", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["rates_img_s"]["forward"] > 0 and result["rates_img_s"]["train"] > 0
    assert set(result["hours"]) == set(projection.project(result["rates_img_s"], 1.0, 2, False))
    monkeypatch.setattr(projection, "RESULTS", tmp_path / "empty")
    with pytest.raises(SystemExit, match="decode_throughput.json is missing"):
        projection.main(["--device", "cpu", "--out", str(tmp_path / "x.json")])


def test_imagenet_projection_of_an_assumed_gpu_times_nothing(tmp_path, monkeypatch):
    projection = script("imagenet_projection")
    monkeypatch.setattr(projection, "time_resnet18", lambda *a: pytest.fail("--assume must not time the model"))
    result = projection.main(["--assume", "100,50,5", "--out", str(tmp_path / "gpu.json")])
    decode = projection.read_result("decode_throughput")["slc_1_worker_img_per_s"]
    assert result["rates"] == "assumed" and result["hours"] == projection.project({"forward": 100.0, "train": 50.0}, decode, 5, True)
    with pytest.raises(SystemExit, match="--assume takes"):
        projection.main(["--assume", "100", "--out", str(tmp_path / "bad.json")])
