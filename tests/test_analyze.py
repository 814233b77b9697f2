"""slc analyze: the label transforms and JSD exactly, the scaling fit, and each analysis end to end on a tiny synthetic set."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cli.main import main as slc
from sl_compiler.analyze import AnalysisSpec, run_analysis
from sl_compiler.analyze.cells import derive
from sl_compiler.analyze.classes import mean_label_per_class
from sl_compiler.analyze.fit import HARD, fit_power_law
from sl_compiler.analyze.scaling import default_ks
from sl_compiler.analyze.transforms import entropy, hard, js_distance, keep_topk, remove_image, remove_label, swap_ith
from sl_compiler.errors import RecipeError

TINY = "synthetic:classes=4,size=16,train=12,test=6"
FILES = ("json", "csv", "md", "png")

# two images, four classes; every value distinct so that each rank is unambiguous
LABELS = torch.tensor([[0.15, 0.6, 0.2, 0.05], [0.4, 0.05, 0.25, 0.3]])


# ---- transforms, exact on hand-built labels -------------------------------------------------


def test_swap_ith_trades_the_ith_largest_with_the_smallest():
    assert swap_ith(LABELS, 1).tolist() == torch.tensor([[0.15, 0.05, 0.2, 0.6], [0.05, 0.4, 0.25, 0.3]]).tolist()
    assert swap_ith(LABELS, 2).tolist() == torch.tensor([[0.15, 0.6, 0.05, 0.2], [0.4, 0.3, 0.25, 0.05]]).tolist()
    assert swap_ith(LABELS, 3).tolist() == torch.tensor([[0.05, 0.6, 0.2, 0.15], [0.4, 0.25, 0.05, 0.3]]).tolist()
    assert torch.equal(swap_ith(LABELS.unsqueeze(1), 1)[:, 0], swap_ith(LABELS, 1))  # (N, V, C) as (N, C)


def test_keep_topk_zeroes_the_rest_without_renormalising():
    assert keep_topk(LABELS, 2).tolist() == torch.tensor([[0.0, 0.6, 0.2, 0.0], [0.4, 0.0, 0.0, 0.3]]).tolist()
    renormalised = keep_topk(LABELS, 2, renormalize=True)
    assert torch.allclose(renormalised, torch.tensor([[0.0, 0.75, 0.25, 0.0], [4 / 7, 0.0, 0.0, 3 / 7]]), atol=1e-7)
    assert torch.equal(keep_topk(LABELS, 4), LABELS)


def test_remove_label_zeroes_the_class_in_other_images_only():
    targets = torch.tensor([1, 0])
    out = remove_label(LABELS, targets, removed=1)
    assert out.tolist() == torch.tensor([[0.15, 0.6, 0.2, 0.05], [0.4, 0.0, 0.25, 0.3]]).tolist()  # image 0 is class 1: kept whole
    renorm = remove_label(LABELS, targets, removed=1, renormalize=True)
    assert torch.equal(renorm[0], LABELS[0]) and torch.allclose(renorm[1], torch.tensor([0.4, 0.0, 0.25, 0.3]) / 0.95)
    views = remove_label(LABELS.unsqueeze(1).repeat(1, 3, 1), targets, removed=1)
    assert torch.equal(views[:, 2], out)


def test_remove_image_and_hard_labels():
    targets = torch.tensor([0, 1, 0, 2])
    assert remove_image(targets, 0).tolist() == [1, 3]
    assert hard(torch.tensor([2, 0]), 3).tolist() == [[[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]]]


def test_js_distance_exact_cases_and_formula():
    p = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    assert js_distance(p, p).tolist() == [0.0, 0.0, 0.0]
    assert js_distance(torch.eye(3), torch.eye(3).roll(1, 0)).tolist() == [1.0, 1.0, 1.0]  # disjoint one-hots, log base 2
    q = torch.tensor([[0.0, 1.0, 0.0], [0.25, 0.25, 0.5], [0.4, 0.4, 0.2]]).double()
    pd, m = p.double(), (p.double() + q) / 2

    def kl(a, b):
        return sum(float(x) * math.log2(float(x) / float(y)) for x, y in zip(a, b) if x > 0)

    direct = [math.sqrt((kl(pd[i], m[i]) + kl(q[i], m[i])) / 2) for i in range(3)]
    assert js_distance(p, q).tolist() == pytest.approx(direct, abs=1e-12)
    assert js_distance(p, q).tolist() == pytest.approx(js_distance(q, p).tolist(), abs=1e-15)


def test_entropy_and_mean_label_per_class():
    assert entropy(torch.tensor([[1.0, 0.0], [0.5, 0.5]])).tolist() == pytest.approx([0.0, math.log(2)], abs=1e-15)
    matrix = mean_label_per_class(LABELS.unsqueeze(1), torch.tensor([1, 1]), 4)
    assert matrix[1].tolist() == pytest.approx(LABELS.double().mean(0).tolist(), abs=1e-15) and matrix[0].tolist() == [0.0] * 4


# ---- the scaling law fit ---------------------------------------------------------------------


def law_points(b, c, d, factors, ipcs):
    return {name: [(x, (a * x / b) ** c - d) for x in ipcs] for name, a in {HARD: 1.0, **factors}.items()}


def test_scaling_fit_recovers_the_generating_law():
    # noise-free points: least squares in float64 ends at rounding level (~1e-13 here), so the
    # parameters come back to far better than 1e-6 relative
    truth = {"b": 3.0, "c": 0.35, "d": -12.0, "factors": {"top-2": 2.5, "top-10": 6.0}}
    law = fit_power_law(law_points(truth["b"], truth["c"], truth["d"], truth["factors"], [1, 2, 4, 8, 16, 40]))
    assert law.b == pytest.approx(3.0, rel=1e-6) and law.c == pytest.approx(0.35, rel=1e-6) and law.d == pytest.approx(-12.0, rel=1e-6)
    assert law.a == pytest.approx({HARD: 1.0, "top-2": 2.5, "top-10": 6.0}, rel=1e-6)
    assert law.r2 == pytest.approx(1.0, abs=1e-9) and law.points == 18
    target = float(law.predict("top-10", 7.0))
    assert law.ipc_reaching("top-10", target) == pytest.approx(7.0, rel=1e-6)
    assert law.ipc_reaching(HARD, target) == pytest.approx(42.0, rel=1e-6)  # hard labels need a = 6 times the images


def test_scaling_fit_refuses_what_it_cannot_determine():
    with pytest.raises(ValueError, match="three or more IPCs"):
        fit_power_law({HARD: [(1, 10.0), (2, 20.0)]})
    with pytest.raises(ValueError, match="do not determine"):
        fit_power_law({HARD: [(1, 30.0), (2, 20.0), (3, 30.0)], "top-4": [(1, 40.0), (2, 40.0), (3, 40.0)]})


def test_default_ks():
    assert default_ks(10) == [1, 2, 4, 8, 10] and default_ks(4) == [1, 2, 4] and default_ks(200)[-2:] == [128, 200]


# ---- the analyses end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from sl_compiler.experts.train import train_trajectories

    root = tmp_path_factory.mktemp("experts")
    train_trajectories(TINY, "convnet_d3", [0, 1], epochs=1, every=1, batch_size=16, store=root, device="cpu")
    return str(root)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One work folder for the analyses' end-to-end runs: they share artifacts and cells, as analyses given one --out do."""
    return tmp_path_factory.mktemp("analyze")


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "slc-cache"))


@pytest.fixture
def no_training(monkeypatch):
    """Any student training fails the test: for reruns and for bad input that must stop before training."""

    def refuse(*args, **kwargs):
        raise AssertionError("a student trained")

    monkeypatch.setattr("sl_compiler.evaluate.run.train_groups", refuse)


def spec(store, **changes) -> AnalysisSpec:
    base = dict(dataset=TINY, teacher_arch="convnet_d3", ipcs=(1,), epochs=(1.0,), eval_seeds=(0,), student_epochs=1, experts=store, device="cpu")
    return AnalysisSpec(**{**base, **changes})


def compiled(store, tmp_path):
    from sl_compiler.analyze.cells import Grid

    grid = Grid(spec(store), tmp_path / "base")
    return grid.base(grid.cells()[0])


def check_swap(r):
    [cell] = r.data["cells"]
    got = cell["swaps"]["1"]
    assert got["relative"] == pytest.approx(100.0 * got["mean"] / cell["control"]["mean"])
    assert set(cell["swaps"]) == {"1", "3"} and len(r.rows) == 2


def check_zeroshot(r):
    treated = r.data["cells"][0]["classes"]["2"]
    assert set(treated) == {"control", "remove image", "remove label"}
    assert all(0 <= t["removed"] <= 100 and 0 <= t["rest"] <= 100 for t in treated.values())
    assert len(r.rows) == 3 and "| 2 class_2 |" in r.markdown


def check_scaling(r):
    assert set(r.data["fits"]) == {"0", "1"} and all(f == {"fitted": False, "reason": "the scaling fit needs hard-label accuracies at three or more IPCs"} for f in r.data["fits"].values())
    assert [p["ipc"] for p in r.data["pareto"]["points"]] == [1, 2] and r.data["pareto"]["fit"]["fitted"] is False
    assert len(r.data["hard"]) == 2  # hard labels once per IPC, not per epoch
    assert "No fit: the scaling fit needs hard-label accuracies at three or more IPCs." in r.markdown


def check_temperature(r):
    assert [c["temperature"] for c in r.data["cells"]] == [1.0, 2.0] and set(r.data["best"]) == {"1"}


def check_entropy(r):
    cells = r.data["cells"]
    assert [c["epoch"] for c in cells] == [0.0, 1.0] and all(0 < c["entropy"] <= math.log(4) + 1e-9 and c["student"] for c in cells)
    assert all(0 <= c["expert_accuracy"] <= 100 for c in cells)


def check_classes(r):
    matrix = torch.tensor(r.data["mean_label"], dtype=torch.float64)
    assert matrix.shape == (4, 4) and torch.allclose(matrix.sum(1), torch.ones(4, dtype=torch.float64), atol=1e-2)


CASES = {
    "swap": ({}, {"indices": [1, 3]}, check_swap),
    "temperature": ({}, {"temperatures": [1.0, 2.0]}, check_temperature),
    "scaling": ({"ipcs": (1, 2), "epochs": (0.0, 1.0)}, {"ks": [4]}, check_scaling),
    "zeroshot": ({}, {"classes": [2]}, check_zeroshot),
    "entropy": ({"epochs": (0.0, 1.0)}, {"train": True}, check_entropy),
    "classes": ({}, {}, check_classes),
}


@pytest.mark.parametrize("name", list(CASES))
def test_analysis_writes_caches_and_reruns_identically(name, store, work, monkeypatch):
    changes, options, check = CASES[name]
    out = work
    first = run_analysis(name, spec(store, **changes), out, **options)
    check(first)
    for ext in FILES:
        assert (out / f"{name}.{ext}").stat().st_size > 0
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / f"{name}.json").read_text())
    assert data["kind"] == f"slc-analyze-{name}/1" and data["settings"]["protocol"]["epochs"] == 1
    before = {ext: (out / f"{name}.{ext}").read_bytes() for ext in FILES}
    monkeypatch.setattr("sl_compiler.evaluate.run.train_groups", lambda *a, **k: pytest.fail("a rerun trained a student"))
    again = run_analysis(name, spec(store, **changes), out, **options)
    assert again.counts["computed"] == 0 and again.counts["cached"] == first.counts["cached"] + first.counts["computed"]
    assert {ext: (out / f"{name}.{ext}").read_bytes() for ext in FILES} == before  # deterministic: the same bytes


def test_jsd_against_the_experts(store, tmp_path):
    art = compiled(store, tmp_path)
    r = run_analysis("jsd", spec(store, seeds=(0, 1), epochs=(0.0, 1.0)), tmp_path / "j", artifact=art)
    epochs = r.data["epochs"]
    assert [e["epoch"] for e in epochs] == [0.0, 1.0] and sum(e["closest_images"] for e in epochs) == len(art)
    assert all(0 <= e["raw"] <= 1 and 0 <= e["normalised"] <= 1 and e["expert_vs_expert"]["pairs"] == 1 for e in epochs)
    same = run_analysis("jsd", spec(store, seeds=(0,), epochs=(1.0,)), tmp_path / "j0", artifact=art)
    assert same.data["epochs"][0]["raw"] == pytest.approx(0.0, abs=2e-3)  # its own teacher: only fp16 storage apart
    assert same.data["best"]["within_expert_range"] is None  # one seed: no reference
    for ext in FILES:
        assert (tmp_path / "j" / f"jsd.{ext}").exists()


def test_derived_artifact_drops_images_and_keys_its_cache(store, tmp_path):
    art = compiled(store, tmp_path)
    keep = remove_image(art.targets, 0)
    a, b = derive(art, {"remove_image": 0}, keep=keep), derive(art, {"remove_image": 0}, keep=keep)
    assert a.content_hash == b.content_hash != art.content_hash
    assert derive(art, {"remove_image": 1}, keep=remove_image(art.targets, 1)).content_hash != a.content_hash
    assert len(a.targets) == len(art) - 1 and a.manifest["ipc"] is None and a.images.shape[0] == len(a.targets)
    assert a.manifest["selection"]["source_indices"] == [art.manifest["selection"]["source_indices"][i] for i in keep.tolist()]
    assert art.labels["probs"].shape[0] == len(art)  # the base is unchanged


@pytest.mark.parametrize(
    "name, options, words",
    [
        ("scaling", {"ks": [5]}, "top-k 5 is larger than the 4 classes"),
        ("zeroshot", {"classes": [4]}, "--class 4 is not a class index of the 4 classes"),
        ("swap", {"indices": [4]}, "swap index 4 is beyond the 4 classes"),
        ("temperature", {"temperatures": [0.0]}, "bad temperature"),
    ],
)
def test_bad_input_stops_before_any_work(name, options, words, store, tmp_path, no_training):
    with pytest.raises(RecipeError, match=words):
        run_analysis(name, spec(store), tmp_path / "bad", **options)
    assert not (tmp_path / "bad" / "artifacts").exists()  # nothing compiled


def test_grid_over_budget_needs_yes(store, tmp_path, no_training):
    with pytest.raises(RecipeError, match=r"swap grid is 4 cells x 1 seeds = 4 student runs .* over --budget 3; pass --yes"):
        run_analysis("swap", spec(store, budget=3), tmp_path / "big", indices=[1, 2, 3])
    assert not (tmp_path / "big").exists()


def test_cli_analyze(store, tmp_path, capsys):
    base = ["analyze", "swap", "--dataset", TINY, "--teacher-arch", "convnet_d3", "--experts", store, "--ipc", "1", "--epochs", "1",
            "--eval-seeds", "0", "--student-epochs", "1", "--device", "cpu", "--out", str(tmp_path / "cli")]
    assert slc([*base, "--index", "1"]) == 0
    assert "0 cells cached, 2 computed" in capsys.readouterr().out
    assert slc([*base, "--index", "7"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: swap index 7 is beyond the 4 classes") and err.count("\n") == 1
    assert slc([*base, "--index", "1,2,3", "--budget", "2"]) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert slc([*base, "--index", "1,2", "--budget", "2", "--yes"]) == 0
    assert "2 cells cached, 1 computed" in capsys.readouterr().out


def test_slc_report_renders_real_analyses(store, tmp_path):
    """swap and classes as slc analyze writes them, through slc report's page: curves per IPC and the heat map's numbers."""
    from sl_compiler.report import load_inputs

    out = tmp_path / "an"
    run_analysis("swap", spec(store), out, indices=[1, 3])
    classes = run_analysis("classes", spec(store), out)
    page = tmp_path / "r.html"
    assert slc(["report", str(out / "swap.json"), str(out / "classes.json"), "--html", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert "IPC 1, expert epoch 1" in text and "slc-analyze-swap/1" in text and "Mean soft label per class" in text
    assert f"{classes.data['mean_label'][0][0]:.4g}" in text
    [swap, heat] = load_inputs([out / "swap.json", out / "classes.json"])
    assert [p[0] for p in swap.data["figures"][0]["series"][0]["points"]] == [1, 3]
    assert heat.data["heatmaps"][0]["values"] == classes.data["mean_label"]
