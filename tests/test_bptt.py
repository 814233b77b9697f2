"""Labels learned by truncated BPTT: the gradient, the truncation, learning, the artifact, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from cli.main import main
from sl_compiler.artifact import load, verify
from sl_compiler.compile import compile_artifact
from sl_compiler.data import load_dataset
from sl_compiler.errors import ModelError, RecipeError
from sl_compiler.label.bptt import initial_logits, label_gradient, learn_labels, soft_cross_entropy, student, unroll
from sl_compiler.models import available_models, register
from sl_compiler.recipe import Recipe
from sl_compiler.select import random_per_class

TINY = "synthetic:classes=4,size=16,train=12,test=6"  # tests/conftest.py TINY
ROOT = Path(__file__).resolve().parents[1]
SEPARABLE = "synthetic:classes=3,size=8,train=24,test=6"
MLP = "bptt_test_mlp"  # a student small enough that a test unrolls it in milliseconds

if MLP not in available_models():

    @register(MLP)
    def _mlp(num_classes: int, channels: int = 3, resolution: int = 32) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * resolution * resolution, 16), nn.Tanh(), nn.Linear(16, num_classes))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))


def bptt(**kw) -> Recipe:
    fields = dict(dataset=TINY, ipc=2, labeler="bptt", bptt_model=MLP, bptt_steps=4, bptt_window=2, bptt_lr=0.1, bptt_label_lr=0.05, bptt_outer_steps=5, bptt_batch=16)
    return Recipe(**{**fields, **kw})


def problem64(seed: int = 0):
    """A tiny float64 problem: an MLP, 6 distilled rows of 5 features (3 classes), 8 real rows, random label logits."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    params = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) * 0.5 for k, v in model.named_parameters()}
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    z = torch.randn(6, 3, generator=g, dtype=torch.float64)
    rx = torch.randn(8, 5, generator=g, dtype=torch.float64)
    ry = torch.randint(0, 3, (8,), generator=g)
    return model, params, x, z, rx, ry


def outer(model, params, x, z, rx, ry, steps, window, lr=0.5):
    final = unroll(model, params, {}, x, torch.softmax(z, -1), steps=steps, window=window, lr=lr)
    return F.cross_entropy(functional_call(model, final, (rx,)), ry)


def central_differences(f, z: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    grad = torch.zeros_like(z)
    for i in range(z.numel()):
        e = torch.zeros_like(z).view(-1)
        e[i] = h
        e = e.view_as(z)
        with torch.no_grad():
            grad.view(-1)[i] = (f(z + e) - f(z - e)) / (2 * h)
    return grad


# Float64 central differences with h = 1e-5: truncation error ~h^2 |f'''| ~ 1e-10 and rounding
# ~eps |f| / h ~ 1e-11 for these O(1) losses; 1e-7 leaves three orders of margin and is far below
# the size of the gradients (~1e-2), so the check is insensitive to this CPU's last bits.
FD_TOL = dict(rtol=1e-6, atol=1e-7)


def test_full_unroll_gradient_matches_finite_differences():
    model, params, x, z, rx, ry = problem64()
    _, grad = label_gradient(model, params, {}, x, z, rx, ry, steps=4, window=4, lr=0.5)
    numeric = central_differences(lambda zz: outer(model, params, x, zz, rx, ry, 4, 4), z)
    assert grad.abs().max() > 1e-3  # a real signal, not two zeros agreeing
    torch.testing.assert_close(grad, numeric, **FD_TOL)


def test_truncated_gradient_is_the_derivative_through_the_last_window_only():
    """With M < T the gradient is exactly that of the last M steps, started where the first T - M (at fixed labels) left off."""
    model, params, x, z, rx, ry = problem64(1)
    steps, window = 5, 2
    _, grad = label_gradient(model, params, {}, x, z, rx, ry, steps=steps, window=window, lr=0.5)
    mid = {k: v.detach() for k, v in unroll(model, params, {}, x, torch.softmax(z, -1), steps=steps - window, window=1, lr=0.5).items()}
    numeric = central_differences(lambda zz: outer(model, mid, x, zz, rx, ry, window, window), z)
    torch.testing.assert_close(grad, numeric, **FD_TOL)
    full = central_differences(lambda zz: outer(model, params, x, zz, rx, ry, steps, steps), z)
    assert (grad - full).abs().max() > 1e3 * FD_TOL["atol"]  # truncation really drops the first steps' share


def manual_full_unroll_gradient(model, params, x, z, rx, ry, steps, lr=0.5):
    """The textbook unroll: every step differentiable, no detaching anywhere."""
    z = z.detach().requires_grad_()
    probs = torch.softmax(z, -1)
    p = {k: v.detach().requires_grad_() for k, v in params.items()}
    for _ in range(steps):
        loss = soft_cross_entropy(functional_call(model, p, (x,)), probs)
        grads = torch.autograd.grad(loss, list(p.values()), create_graph=True)
        p = {k: v - lr * g for (k, v), g in zip(p.items(), grads)}
    (grad,) = torch.autograd.grad(F.cross_entropy(functional_call(model, p, (rx,)), ry), z)
    return grad


def graph_size(loss: torch.Tensor) -> int:
    seen, todo = set(), [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo.extend(n for n, _ in node.next_functions)
    return len(seen)


def test_window_equal_to_steps_is_the_full_unroll_and_a_shorter_window_keeps_a_smaller_graph():
    model, params, x, z, rx, ry = problem64(2)
    _, grad = label_gradient(model, params, {}, x, z, rx, ry, steps=6, window=6, lr=0.5)
    torch.testing.assert_close(grad, manual_full_unroll_gradient(model, params, x, z, rx, ry, 6), rtol=1e-10, atol=1e-12)
    _, short = label_gradient(model, params, {}, x, z, rx, ry, steps=6, window=2, lr=0.5)
    assert not torch.allclose(short, grad, rtol=1e-3, atol=1e-6)
    zz = z.detach().requires_grad_()
    sizes = {m: graph_size(outer(model, params, x, zz, rx, ry, 6, m)) for m in (1, 2, 6)}
    assert sizes[1] < sizes[2] < sizes[6] and sizes[6] - sizes[2] == (6 - 2) * (sizes[2] - sizes[1])  # the same per kept step
    assert graph_size(outer(model, params, x, zz, rx, ry, 3, 2)) == sizes[2]  # the graph grows with M, not with T


def test_initial_logits_are_hard_labels():
    probs = torch.softmax(initial_logits(torch.tensor([0, 2, 1]), 3), -1)
    assert torch.equal(probs.argmax(1), torch.tensor([0, 2, 1]))
    torch.testing.assert_close(probs.max(1).values, torch.full((3,), 0.9))


def test_a_fresh_student_depends_only_on_seed_and_step():
    torch.manual_seed(123)
    _, a, _ = student(MLP, 3, (3, 8, 8), 0, 4, torch.device("cpu"))
    torch.manual_seed(456)
    _, b, _ = student(MLP, 3, (3, 8, 8), 0, 4, torch.device("cpu"))
    _, c, _ = student(MLP, 3, (3, 8, 8), 0, 5, torch.device("cpu"))
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)


def objective(recipe: Recipe, logits: torch.Tensor, images: torch.Tensor, data, students: int = 16) -> float:
    """The mean outer loss over a fixed set of fresh students and real batches: what the outer steps minimise."""
    from sl_compiler.data import normalize

    x = normalize(images, data.mean, data.std)
    rx, ry = normalize(data.pixels, data.mean, data.std), data.targets
    total = 0.0
    for s in range(students):
        model, params, buffers = student(recipe.bptt_model, data.num_classes, data.shape, 10_000 + s, 0, torch.device("cpu"))
        loss, _ = label_gradient(model, params, buffers, x, logits, rx, ry, steps=recipe.bptt_steps, window=recipe.bptt_window, lr=recipe.bptt_lr)
        total += float(loss)
    return total / students


def test_the_outer_loss_goes_down_on_a_separable_set():
    recipe = bptt(dataset=SEPARABLE, ipc=1, bptt_steps=8, bptt_window=4, bptt_lr=1.0, bptt_label_lr=0.1, bptt_outer_steps=40, bptt_batch=32)
    data = load_dataset(SEPARABLE, None, "train")
    idx = random_per_class(data.targets, data.classes, 1, 0)
    learned = learn_labels(recipe, data.pixels[idx], data.targets[idx], data, torch.device("cpu"), workers=0)
    start = initial_logits(data.targets[idx], data.num_classes)
    assert objective(recipe, learned.logits, data.pixels[idx], data) < objective(recipe, start, data.pixels[idx], data)
    third = len(learned.losses) // 3
    assert learned.losses[-third:].mean() < learned.losses[:third].mean()
    assert torch.isfinite(learned.losses).all() and learned.losses.shape == (40,)


def test_compile_records_the_settings_and_rebuilds_byte_identically(tmp_path):
    recipe = bptt(bptt_syn_batch=5)  # 8 distilled images, 5 per inner step: the inner batches are drawn too
    a = compile_artifact(recipe, out=tmp_path / "a", device="cpu")
    b = compile_artifact(recipe, out=tmp_path / "b", device="cpu")
    verify(a)
    art, other = load(a), load(b)
    assert art.content_hash == other.content_hash
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    m = art.manifest
    assert m["teachers"] == [] and m["labels"]["teacher"] is None and m["labels"]["labeler"] == "bptt"
    s = m["labels"]["bptt"]
    assert (s["inner_steps"], s["window"], s["inner_lr"], s["label_lr"], s["outer_steps"], s["real_batch"], s["syn_batch"], s["seed"]) == (4, 2, 0.1, 0.05, 5, 16, 5, 0)
    assert s["model"] == MLP and s["clip_norm"] == 1.0 and "outer_loss_first" in s
    assert m["recipe"]["labeler"] == "bptt" and m["recipe"]["bptt_steps"] == 4 and "teacher" not in m["recipe"]
    labels = art.dense_labels()
    assert labels.shape == (8, 1, 4) and torch.allclose(labels.sum(-1), torch.ones(8, 1), atol=5e-3)
    assert torch.equal(art.targets, labels[:, 0].argmax(-1))  # a few small steps keep each label on its class
    data = load_dataset(TINY, None, "train")
    assert m["selection"]["source_indices"] == random_per_class(data.targets, data.classes, 2, 0).tolist()  # the same images as teacher labels at this seed
    c = compile_artifact(recipe.replace(seed=1), out=tmp_path / "c", device="cpu")
    assert load(c).content_hash != art.content_hash


def test_topk_labels_and_the_default_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = compile_artifact(bptt(topk=2), device="cpu")
    art = load(path)
    assert art.manifest["labels"]["kind"] == "topk" and art.manifest["labels"]["k"] == 2
    assert path.name.startswith("synthetic-classes-4-size-16-train-12-test-6-ipc2-bptt-1.0.0-")


def test_recipe_round_trips_and_teacher_recipes_keep_their_keys(tmp_path):
    r = bptt()
    assert Recipe.from_toml(r.write(tmp_path / "r.toml")) == r
    assert Recipe(dataset=TINY, ipc=1, labeler="bptt").bptt_steps == 50  # defaults filled in and recorded
    teacher = Recipe(dataset=TINY, ipc=1, teacher="convnet_d3@1", labeler="teacher")
    assert teacher.to_dict() == Recipe(dataset=TINY, ipc=1, teacher="convnet_d3@1").to_dict()
    assert not any(k.startswith("bptt") or k == "labeler" for k in teacher.to_dict())


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(bptt_window=5), "more than bptt_steps"),
        (dict(bptt_steps=0, bptt_window=0), "bptt_steps must be at least 1"),
        (dict(bptt_window=0), "bptt_window must be at least 1"),
        (dict(bptt_outer_steps=0), "bptt_outer_steps must be at least 1"),
        (dict(bptt_lr=0.0), "bptt_lr must be a positive number"),
        (dict(bptt_label_lr=-1.0), "bptt_label_lr must be a positive number"),
        (dict(bptt_clip=float("nan")), "bptt_clip must be a positive number"),
        (dict(teacher="convnet_d3@1"), "so --teacher cannot apply"),
        (dict(temperature=2.0), "--temperature"),
        (dict(views=2, augment="rrc"), "--views/--augment"),
        (dict(select="ce-quantile", quantile=0), "--select ce-quantile"),
        (dict(labeler="nope"), "unknown labeler 'nope'"),
    ],
)
def test_bad_settings_are_one_line_errors(changes, words):
    with pytest.raises(RecipeError, match=words) as info:
        bptt(**changes)
    assert "\n" not in str(info.value) and info.value.fix


def test_bptt_keys_without_the_labeler_and_no_teacher_are_errors():
    with pytest.raises(RecipeError, match="apply only to --labeler bptt"):
        Recipe(dataset=TINY, ipc=1, teacher="convnet_d3@1", bptt_steps=3)
    with pytest.raises(RecipeError, match="--labeler bptt"):
        Recipe(dataset=TINY, ipc=1)


def test_an_unknown_or_unfit_student_fails_before_any_work(tmp_path, monkeypatch):
    import sl_compiler.label.bptt as module

    monkeypatch.setattr(module, "learn_labels", lambda *a, **k: pytest.fail("learned before checking"))
    with pytest.raises(ModelError, match="unknown model"):
        compile_artifact(bptt(bptt_model="nope"), out=tmp_path / "x", device="cpu")
    with pytest.raises(ModelError, match="needs at least 16 px"):
        compile_artifact(bptt(dataset=SEPARABLE, bptt_model="convnet_d4"), out=tmp_path / "x", device="cpu")
    with pytest.raises(RecipeError, match="--skip-bad"):
        compile_artifact(bptt(), out=tmp_path / "x", device="cpu", skip_bad=True)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--teacher", "convnet_d3@1"], "--teacher cannot apply"),
        (["--experts", "somewhere"], "--experts cannot apply"),
        (["--bptt-steps", "2", "--bptt-window", "3"], "bptt_window 3 is more than bptt_steps 2"),
        (["--bptt-lr", "0"], "bptt_lr must be a positive number"),
    ],
)
def test_cli_bad_input_is_one_line(extra, words, tmp_path, capsys):
    argv = ["compile", "--dataset", TINY, "--ipc", "1", "--labeler", "bptt", "--bptt-model", MLP, "--device", "cpu", "--out", str(tmp_path / "x"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and err[0].startswith("error:")
    assert not (tmp_path / "x").exists()


def test_cli_unknown_labeler_names_the_choices(tmp_path, capsys):
    assert main(["compile", "--dataset", TINY, "--ipc", "1", "--labeler", "nope"]) == 2
    err = capsys.readouterr().err
    assert "'teacher'" in err and "'bptt'" in err


def test_cli_compiles_and_evaluate_skips_random_sl_with_the_reason(tmp_path, capsys):
    from sl_compiler.evaluate import Protocol, evaluate

    out = tmp_path / "cli"
    argv = ["compile", "--dataset", TINY, "--ipc", "1", "--labeler", "bptt", "--bptt-model", MLP, "--bptt-steps", "3", "--bptt-window", "1", "--bptt-outer-steps", "2", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"content hash: {manifest['content_hash']}" in capsys.readouterr().out
    p = Protocol(epochs=1, batch_size=8, seeds=(0,), regimes=("sl", "hl"), baselines=("random-hl", "random-sl"), augment="dsa")
    row = evaluate([out], p, device="cpu")["artifacts"][0]
    assert set(row["cells"]) == {"sl", "hl", "random-hl"}
    assert "records no teacher" in row["skipped"]["random-sl"]


def benchmark():
    """benchmarks/bptt_cifar10.py as a module (benchmarks/ is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bptt_cifar10", ROOT / "benchmarks" / "bptt_cifar10.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_cifar10_benchmark_runs_end_to_end_on_tiny_data(tmp_path, monkeypatch, capsys):
    bench = benchmark()
    quick = {"bptt": {"bptt_model": MLP, "bptt_steps": 3, "bptt_window": 2, "bptt_outer_steps": 3, "bptt_batch": 16}, "student_epochs": 1, "seeds": [0]}
    monkeypatch.setitem(bench.SETTINGS, "quick", quick)
    results = tmp_path / "bptt.json"
    argv = ["--quick", "--dataset", TINY, "--ipcs", "1,2", "--protocol", str(ROOT / "recipes" / "eval" / "synthetic.toml"), "--out", str(tmp_path / "work"), "--results", str(results), "--device", "cpu"]
    assert bench.main(argv) == 0
    result = json.loads(results.read_text())
    assert set(result["ipc"]) == {"1", "2"} and set(result["held"]) == {"1", "2"}
    row = result["ipc"]["1"]
    assert row["gain_points"] == pytest.approx(row["bptt_labels"]["mean"] - row["hard_labels"]["mean"], abs=0.02)
    assert [f["target"] for f in result["figures"]] == ["> 0", "> 0"]
    assert "| 1 |" in capsys.readouterr().out
    assert bench.main(argv) == 0  # a rerun reuses the artifacts


def test_the_benchmark_times_one_outer_step(tmp_path, monkeypatch, capsys):
    bench = benchmark()
    monkeypatch.setitem(bench.SETTINGS, "quick", {"bptt": {"bptt_model": MLP, "bptt_steps": 3, "bptt_window": 2, "bptt_batch": 16, "bptt_syn_batch": 3}, "student_epochs": 1, "seeds": [0]})
    assert bench.main(["--quick", "--time-step", "--dataset", TINY, "--ipcs", "1,2", "--device", "cpu"]) == 0
    rows = json.loads(capsys.readouterr().out)["one_outer_step"]
    assert set(rows) == {"1", "2"} and all(r["cpu_s"] >= 0 and r["peak_rss_gb"] > 0 for r in rows.values())
