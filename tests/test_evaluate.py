"""slc evaluate: augmentation, losses, optimizer, batched students, regimes, lr selection, baselines, tables."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from sl_compiler.augment import DSA, cutmix
from sl_compiler.augment import dsa as dsa_ops
from sl_compiler.data import load_dataset, normalize
from sl_compiler.errors import EvaluateError, RecipeError, SlcError
from sl_compiler.evaluate import Protocol, evaluate, load_results, markdown_table, report, report_markdown
from sl_compiler.evaluate import run as run_mod
from sl_compiler.evaluate import trainer as trainer_mod
from sl_compiler.evaluate.losses import kl_divergence, soft_cross_entropy
from sl_compiler.evaluate.metrics import row_metrics
from sl_compiler.evaluate.optim import StackedOptimizer, schedule_factor
from sl_compiler.evaluate.regimes import training_set
from sl_compiler.evaluate.data import eval_set
from sl_compiler.evaluate.trainer import train_group

CPU = torch.device("cpu")
TINY_SPEC = "synthetic:classes=4,size=16,train=12,test=6"  # conftest.TINY
FAST = dict(epochs=3, batch_size=8, seeds=(0, 1), regimes=("sl",), baselines=(), augment="dsa")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions run faster on one thread than on two contended ones (a shared 2-core CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def splits():
    from conftest import TINY

    return load_dataset(TINY, split="train"), load_dataset(TINY, split="test")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, splits):
    """A briefly trained teacher in an expert store and two compiled artifacts (IPC 2 and 3)."""
    from sl_compiler.compile import compile_artifact
    from sl_compiler.experts import ExpertStore
    from sl_compiler.recipe import Recipe
    from conftest import TINY

    train, _ = splits
    root = tmp_path_factory.mktemp("evaluate")
    data = training_set("hl", train.pixels, train.targets, train.num_classes, train.mean, train.std, CPU)
    _, group = train_group(data, Protocol(epochs=3, batch_size=16, seeds=(0,), augment="none"), [0], [0.01], CPU, {})
    ExpertStore(root / "experts").add_checkpoint(group.state_dicts()[0], dataset_info=train.info(), arch="convnet_d3", epoch=1, seed=0)
    arts = {ipc: compile_artifact(Recipe(dataset=TINY, ipc=ipc, teacher="convnet_d3@1#0"), experts=root / "experts", device="cpu", out=root / f"ipc{ipc}") for ipc in (2, 3)}
    return root, arts


# ---- augmentation -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", dsa_ops.FAMILIES)
def test_dsa_family_shape_and_determinism(family):
    x = torch.randn(6, 3, 16, 16)
    aug = DSA(family)
    a, b, c = aug(x, _gen(1)), aug(x, _gen(1)), aug(x, _gen(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # a different generator draws different parameters


def test_dsa_ops_do_what_they_say():
    x = torch.rand(4, 3, 16, 16) + 1.0  # strictly positive, so zeros mark filled pixels
    p = dsa_ops.DSAParams(prob_flip=1.0)
    assert torch.equal(dsa_ops.flip(x, p, _gen()), x.flip(3))
    holes = dsa_ops.cutout(x, dsa_ops.DSAParams(), _gen()) == 0
    per_image = holes[:, 0].sum((1, 2))
    assert (per_image > 0).all() and (per_image <= 8 * 8).all()  # ratio 0.5 of 16 px, clipped at edges
    shifted = dsa_ops.crop(x, dsa_ops.DSAParams(), _gen(3))
    kept = shifted != 0
    assert torch.isin(shifted[kept], x).all()  # pixels move, never change value
    assert torch.allclose(dsa_ops.scale(x, dsa_ops.DSAParams(ratio_scale=1.0), _gen()), x, atol=1e-5)
    assert torch.allclose(dsa_ops.rotate(x, dsa_ops.DSAParams(ratio_rotate=0.0), _gen()), x, atol=1e-5)


def test_dsa_rejects_unknown_family():
    with pytest.raises(RecipeError, match="unknown DSA"):
        DSA("color_blur")


def test_cutmix_mixes_targets_by_pasted_area():
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(6)])
    y = F.one_hot(torch.arange(6), 6).float()
    mixed, target = cutmix(x, y, _gen(4))
    assert mixed.shape == x.shape and torch.allclose(target.sum(1), torch.ones(6))
    own = (mixed == x).flatten(1).float().mean(1)  # images hold distinct constants
    assert torch.allclose(target[torch.arange(6), torch.arange(6)], own, atol=1e-6)
    assert torch.equal(cutmix(x, y, _gen(4))[0], mixed)
    assert cutmix(x, None, _gen(4))[1] is None


# ---- losses and optimizer -----------------------------------------------------------------------


def test_losses():
    logits = torch.randn(2, 5, 4)
    hard = torch.randint(4, (2, 5))
    ce = soft_cross_entropy(logits, F.one_hot(hard, 4).float())
    assert ce.shape == (2,)
    assert torch.allclose(ce[0], F.cross_entropy(logits[0], hard[0]), atol=1e-6)
    target = F.softmax(logits / 3.0, -1)
    assert torch.allclose(kl_divergence(logits, target, 3.0), torch.zeros(2), atol=1e-5)
    assert (kl_divergence(logits, F.softmax(torch.randn(2, 5, 4), -1), 3.0) > 0).all()


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_stacked_optimizer_matches_torch(kind):
    torch.manual_seed(0)
    w = torch.randn(3, 4)
    ours = w.clone().unsqueeze(0)
    ref = torch.nn.Parameter(w.clone())
    wd = 5e-4 if kind == "sgd" else 0.01
    opt = StackedOptimizer([ours], torch.tensor([0.1]), kind, 0.9, wd)
    torch_opt = torch.optim.SGD([ref], lr=0.1, momentum=0.9, weight_decay=wd) if kind == "sgd" else torch.optim.AdamW([ref], lr=0.1, weight_decay=wd)
    for _ in range(4):
        g = torch.randn(3, 4)
        opt.step([g.unsqueeze(0)], 1.0)
        ref.grad = g
        torch_opt.step()
    assert torch.allclose(ours[0], ref.detach(), atol=1e-6)


def test_schedules():
    assert schedule_factor("step", 0, 100, 1, 100) == 1.0 and schedule_factor("step", 50, 100, 1, 100) == 0.1
    assert schedule_factor("cosine", 0, 100, 1, 100) == 1.0 and schedule_factor("cosine", 100, 100, 1, 100) < 1e-9
    assert schedule_factor("constant", 99, 100, 1, 100) == 1.0


# ---- students -----------------------------------------------------------------------------------


def _data(splits, regime="hl", n=None, **kw):
    train, _ = splits
    idx = slice(None) if n is None else slice(0, n)
    return training_set(regime, train.pixels[idx], train.targets[idx], train.num_classes, train.mean, train.std, CPU, **kw)


def _test_set(splits):
    train, test = splits
    return eval_set(test, None, train.mean, train.std, CPU)


@pytest.mark.parametrize("augment", ["dsa", "cutmix", "rrc+flip+cutmix"])
def test_batched_equals_sequential(splits, augment):
    data = _data(splits, n=16)
    p = Protocol(**{**FAST, "epochs": 2, "augment": augment})
    evals = {"test": _test_set(splits)}
    acc, group = train_group(data, p, [0, 1], [0.01, 0.03], CPU, evals)
    for k, (seed, lr) in enumerate([(0, 0.01), (1, 0.03)]):
        one_acc, one = train_group(data, p, [seed], [lr], CPU, evals)
        assert one_acc["test"][0] == pytest.approx(acc["test"][k], abs=1 / len(evals["test"].targets) + 1e-9)
        batched, single = group.state_dicts()[k], one.state_dicts()[0]
        assert all(torch.allclose(batched[n], single[n], atol=1e-4, rtol=1e-4) for n in single), f"student {k} differs"
    again = train_group(data, p, [0, 1], [0.01, 0.03], CPU, evals)[1].state_dicts()
    assert all(torch.equal(again[0][n], group.state_dicts()[0][n]) for n in again[0])  # same seeds, same bytes
    assert not torch.equal(group.state_dicts()[0]["classifier.weight"], group.state_dicts()[1]["classifier.weight"])


def test_regimes_learn_above_chance():
    # the synthetic images mix every class's template (own weight 0.45): 40 per class are needed to learn in seconds
    spec = "synthetic:classes=4,size=16,train=40,test=10"
    splits = load_dataset(spec, split="train"), load_dataset(spec, split="test")
    train, _ = splits
    p = Protocol(**{**FAST, "epochs": 6, "batch_size": 32, "seeds": (0,), "augment": "none"})
    soft = (0.7 * F.one_hot(train.targets, 4).float() + 0.075).unsqueeze(1)  # a smoothed "teacher"
    for regime, kw in (("hl", {}), ("sl", {"labels": soft})):
        acc, _ = train_group(_data(splits, regime, **kw), p, [0], [0.01], CPU, {"test": _test_set(splits)})
        assert acc["test"][0] >= 0.4, f"{regime} did not learn (chance is 0.25; 0.4 of 40 images is 3 sigma above it)"


def test_slkd_learns_from_the_teacher_in_the_loop(splits):
    class AlwaysClassTwo(torch.nn.Module):
        def forward(self, x):
            return F.one_hot(torch.full((len(x),), 2), 4).float() * 20

    data = _data(splits, "slkd", teacher=AlwaysClassTwo())
    _, group = train_group(data, Protocol(**{**FAST, "epochs": 4, "seeds": (0,), "augment": "none"}), [0], [0.03], CPU, {})
    _, test = splits
    preds = group.forward(normalize(test.pixels, test.mean, test.std), shared=True).argmax(-1)
    assert (preds == 2).float().mean() > 0.9  # the student follows the teacher, not the hard labels


# ---- full evaluations ---------------------------------------------------------------------------


def test_evaluate_writes_tables_and_files(pipeline, tmp_path):
    root, arts = pipeline
    p = Protocol(**{**FAST, "regimes": ("sl", "hl"), "baselines": ("random-hl", "random-sl")})
    result = evaluate([arts[2]], p, experts=str(root / "experts"), device="cpu", out=tmp_path / "run")
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved == json.loads(json.dumps(result))
    row = saved["artifacts"][0]
    manifest = json.loads((arts[2] / "manifest.json").read_text())
    assert row["content_hash"] == manifest["content_hash"] and row["ipc"] == 2
    assert set(row["cells"]) == {"sl", "hl", "random-hl", "random-sl"}
    for cell in row["cells"].values():
        assert cell["seeds"] == [0, 1] and len(cell["accuracy"]) == 2 and cell["lr"] == 0.01
        assert cell["mean"] == pytest.approx(sum(cell["accuracy"]) / 2)
    base = row["baselines"]["random-hl"]["source_indices"]
    assert len(base) == 8 and not set(base) & set(manifest["selection"]["source_indices"])  # never the artifact's own images
    assert row["metrics"]["ior"]["mean"] == pytest.approx(row["cells"]["sl"]["mean"] - row["cells"]["random-sl"]["mean"])
    assert row["metrics"]["hlr"] is None  # no full-data accuracy given: absent, not guessed
    assert saved["protocol"]["seeds"] == [0, 1] and saved["device"] == "cpu" and saved["wall_s"] > 0
    csv_lines = (tmp_path / "run.csv").read_text().splitlines()
    assert csv_lines[0].startswith("artifact,version,content_hash") and len(csv_lines) == 5
    table = markdown_table(result)
    assert "| artifact | ipc | sl | hl | random-hl | random-sl | IOR |" in table and manifest["content_hash"][:8] in table


def test_holdout_scores_add_the_slice_and_change_no_test_number(pipeline):
    """slc sweep chooses the expert epoch on the held-out slice: the same students, scored there too, at a fixed lr."""
    root, arts = pipeline
    p = Protocol(**{**FAST, "seeds": (0, 1), "baselines": ()})
    plain = evaluate([arts[2]], p, device="cpu")["artifacts"][0]
    held = evaluate([arts[2]], p, device="cpu", holdout_scores=True)["artifacts"][0]
    assert "holdout_accuracy" not in plain["cells"]["sl"] and plain["holdout"] is None
    assert len(held["cells"]["sl"]["holdout_accuracy"]) == 2 and held["holdout"]["size"] == 1 * 4
    assert held["cells"]["sl"]["accuracy"] == plain["cells"]["sl"]["accuracy"]  # scoring on the slice trains nothing


def test_lr_is_chosen_on_held_out_training_images(pipeline, splits, monkeypatch):
    root, arts = pipeline
    train, test = splits
    seen = []
    real = run_mod.train_groups

    def spy(data, protocol, groups, device, evalset, desc="students", compile=False, holdout=None):
        if desc.endswith(" lr"):  # the lr candidates' students, one per candidate
            seen.append((evalset, groups))
        return real(data, protocol, groups, device, evalset, desc, compile, holdout=holdout)

    monkeypatch.setattr(run_mod, "train_groups", spy)
    p = Protocol(**{**FAST, "seeds": (0,), "lr": None, "lr_grid": (0.01, 0.05)})
    row = evaluate([arts[2]], p, device="cpu")["artifacts"][0]
    assert len(seen) == 1 and sorted(lr for _, lrs in seen[0][1] for lr in lrs) == [0.01, 0.05]
    assert row["cells"]["sl"]["lr"] in (0.01, 0.05)
    seen = [evalset for evalset, _ in seen]
    assert set(row["cells"]["sl"]["lr_selection"]) == {"0.01", "0.05"} and row["holdout"]["size"] == 1 * 4
    held = seen[0].pixels.flatten(1)  # uint8, kept as stored: compared exactly
    found_in = lambda pixels: (held[:, None] == pixels.flatten(1)[None]).all(-1).any(1)  # noqa: E731
    assert found_in(train.pixels).all()  # from the training split
    assert not found_in(test.pixels).any()  # never the test set
    own = json.loads((arts[2] / "manifest.json").read_text())["selection"]["source_indices"]
    assert not found_in(train.pixels[own]).any()  # nor the artifact's own images


def test_report_merges_runs_into_ipc_rows(pipeline, tmp_path):
    root, arts = pipeline
    p = Protocol(**{**FAST, "seeds": (0,), "epochs": 1, "baselines": ("random-hl",)})
    for ipc in (2, 3):
        evaluate([arts[ipc]], p, device="cpu", out=tmp_path / f"ipc{ipc}")
    grids = report(load_results([tmp_path / "ipc3.json", tmp_path / "ipc2.json"]))
    (dataset, grid), = grids.items()
    assert list(grid["rows"]) == ["2", "3"]
    assert grid["columns"] == ["random-hl", "slc convnet_d3@1#0 (sl)"]
    assert all(set(r) == set(grid["columns"]) for r in grid["rows"].values())
    text = report_markdown(grids)
    assert "| IPC | random-hl | slc convnet_d3@1#0 (sl) |" in text and "\n| 3 |" in text
    with pytest.raises(EvaluateError, match="not an slc evaluate result"):
        (tmp_path / "bad.json").write_text("{}")
        load_results([tmp_path / "bad.json"])


def test_class_mismatch_is_an_error(pipeline):
    _, arts = pipeline
    with pytest.raises(EvaluateError, match="classes"):
        evaluate([arts[2]], Protocol(**FAST), dataset="synthetic:classes=5,size=16,train=12,test=6", device="cpu")


def test_slkd_without_a_teacher_is_an_error(tmp_path, splits):
    from sl_compiler.artifact import write_artifact

    train, _ = splits
    art = write_artifact(tmp_path / "hard", name="hard", version="1.0.0", dataset=train.info(), images=train.pixels[:8], targets=train.targets[:8], source_ids=list(range(8)), labels=None)
    with pytest.raises(EvaluateError, match="slkd needs a teacher"):
        evaluate([art], Protocol(**{**FAST, "regimes": ("slkd",)}), device="cpu")


def test_metrics_are_paired_and_absent_when_unmeasured():
    cell = lambda accs: {"seeds": [0, 1], "accuracy": accs, "mean": sum(accs) / 2, "std": 0.0}  # noqa: E731
    cells = {"sl": cell([0.5, 0.7]), "hl": cell([0.3, 0.3]), "random-hl": cell([0.2, 0.4])}
    m = row_metrics(cells, ["sl", "hl"], ["random-hl"], full_data_accuracy=0.8)
    assert m["gain"]["sl"]["random-hl"] == {"mean": pytest.approx(0.3), "std": pytest.approx(0.0), "paired": True}
    assert m["hlr"]["mean"] == pytest.approx(0.5) and m["ior"] is None
    assert row_metrics(cells, ["sl"], ["random-hl"], None)["hlr"] is None


def test_protocol_validation_and_overrides(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "convnet_d3"\nlearning_rate = 0.1\n')
    with pytest.raises(RecipeError, match="unknown protocol key"):
        Protocol.from_toml(bad)
    with pytest.raises(RecipeError, match="optimizer"):
        Protocol(optimizer="lbfgs")
    p = Protocol(lr=None, lr_grid=(0.01, 0.1)).override(lr=0.05, seeds=[3, 4])
    assert p.lr == 0.05 and p.lr_grid == () and p.seeds == (3, 4)
    assert Protocol().override(lr_grid=(0.1,)).lr is None


def test_cli_evaluate_and_report(pipeline, tmp_path):
    from cli.main import main

    _, arts = pipeline
    out = tmp_path / "cli"
    argv = ["evaluate", str(arts[2]), "--epochs", "1", "--seeds", "0", "--baselines", "none", "--batch-size", "8", "--sequential", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    assert json.loads(out.with_suffix(".json").read_text())["protocol"]["name"] == "synthetic"
    assert main(["report", str(out.with_suffix(".json"))]) == 0
    assert main(["evaluate", str(arts[2]), "--regime", "sl,soft"]) == 2
    assert main(["evaluate", str(arts[2]), "--lr", "0.1", "--lr-grid", "0.1,0.2"]) == 2


def test_per_view_labels_replay_the_view_the_teacher_labelled(pipeline):
    from conftest import TINY
    from sl_compiler.artifact import load
    from sl_compiler.compile import compile_artifact
    from sl_compiler.experts import resolve
    from sl_compiler.recipe import Recipe

    root, _ = pipeline
    path = compile_artifact(Recipe(dataset=TINY, ipc=2, teacher="convnet_d3@1#0", views=3, augment="cutmix+rrc"), experts=root / "experts", device="cpu", out=root / "views")
    art = load(path)
    data = training_set("sl", art.images, art.targets, art.num_classes, art.mean, art.std, CPU, labels=art.labels, views=art.views)
    x, y = data.batch(torch.arange(len(art)), torch.randint(3, (len(art),), generator=_gen(5)))
    teacher = resolve("convnet_d3@1#0", root / "experts", art.manifest["dataset"])[0].load("cpu")
    with torch.no_grad():
        relabelled = F.softmax(teacher(x), -1)
    assert torch.allclose(relabelled, y, atol=2e-3)  # the stored label of exactly this view
    assert not torch.equal(x, normalize(art.images, art.mean, art.std))  # views, not the plain images
    row = evaluate([path], Protocol(**{**FAST, "seeds": (0,), "epochs": 1, "baselines": ("random-sl",)}), experts=str(root / "experts"), device="cpu")["artifacts"][0]
    assert row["labels"]["views"] == 3 and 0 <= row["cells"]["random-sl"]["mean"] <= 1


# ---- the GPU path, checked on the CPU: no host sync in a step, stores on the host, compile -------


def _forbidden(name):
    def raise_(*args, **kwargs):
        raise AssertionError(f"Tensor.{name} inside a training step: a host sync on CUDA")

    return raise_


SYNCS = ("item", "tolist", "__bool__", "__float__", "__int__", "numpy", "cpu")


@pytest.mark.parametrize("case", ["hl-dsa", "sl-views-sre2l", "slkd-cutmix-kl"])
def test_a_training_step_never_waits_for_the_device(pipeline, splits, monkeypatch, case):
    """What would stall a GPU (.item(), .tolist(), bool/float/int of a tensor, a host copy) raises inside StudentTrainer.step."""
    from sl_compiler.artifact import load
    from sl_compiler.compile import compile_artifact
    from sl_compiler.recipe import Recipe
    from conftest import TINY

    real_step = trainer_mod.StudentTrainer.step
    steps = []

    def guarded(self, epoch, step):
        with monkeypatch.context() as m:
            for name in SYNCS:
                m.setattr(torch.Tensor, name, _forbidden(name))
            real_step(self, epoch, step)
        steps.append((epoch, step))

    monkeypatch.setattr(trainer_mod.StudentTrainer, "step", guarded)
    root, _ = pipeline
    if case == "hl-dsa":
        data, p = _data(splits, n=16), Protocol(**FAST)
    elif case == "sl-views-sre2l":
        path = root / "views-sync"
        if not path.exists():
            compile_artifact(Recipe(dataset=TINY, ipc=2, teacher="convnet_d3@1#0", views=3, augment="cutmix+rrc"), experts=root / "experts", device="cpu", out=path)
        art = load(path)
        data = training_set("sl", art.images, art.targets, art.num_classes, art.mean, art.std, CPU, labels=art.labels, views=art.views)
        p = Protocol(**{**FAST, "augment": "rrc+flip+cutmix", "optimizer": "adamw", "schedule": "cosine", "augment_views": True})
    else:
        teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
        data = _data(splits, "slkd", n=16, teacher=teacher)
        p = Protocol(**{**FAST, "augment": "cutmix", "loss": "kl", "temperature": 2.0})
    trainer_mod.train_group(data, p, [0, 1], [0.01, 0.02], CPU, {})
    assert len(steps) == p.epochs * math.ceil(len(data) / min(p.batch_size, len(data)))


def test_the_audit_catches_a_sync(splits, monkeypatch):
    """The audit above is live: a step that reads a loss with .item() fails it."""
    real_step = trainer_mod.StudentTrainer.step

    def leaky(self, epoch, step):
        torch.zeros(1).item()
        real_step(self, epoch, step)

    def guarded(self, epoch, step):
        with monkeypatch.context() as m:
            for name in SYNCS:
                m.setattr(torch.Tensor, name, _forbidden(name))
            leaky(self, epoch, step)

    monkeypatch.setattr(trainer_mod.StudentTrainer, "step", guarded)
    with pytest.raises(AssertionError, match="host sync"):
        trainer_mod.train_group(_data(splits, n=8), Protocol(**FAST), [0], [0.01], CPU, {})


@pytest.mark.parametrize("views", [False, True])
def test_stores_on_the_host_train_exactly_as_on_the_device(pipeline, splits, views):
    """A set too large for the GPU stays in host memory, indexed with host copies of the order: same students."""
    from sl_compiler.artifact import load

    root, arts = pipeline
    p = Protocol(**{**FAST, "epochs": 2})
    if views:
        from sl_compiler.compile import compile_artifact
        from sl_compiler.recipe import Recipe
        from conftest import TINY

        path = root / "views-host"
        if not path.exists():
            compile_artifact(Recipe(dataset=TINY, ipc=2, teacher="convnet_d3@1#0", views=3, augment="cutmix+rrc", topk=2), experts=root / "experts", device="cpu", out=path)
        art = load(path)
        make = lambda on: training_set("sl", art.images, art.targets, art.num_classes, art.mean, art.std, CPU, labels=art.labels, views=art.views, fill=art.manifest["labels"]["fill"], on_device=on)  # noqa: E731
    else:
        make = lambda on: _data(splits, n=16, on_device=on)  # noqa: E731
    host, dev = make(False), make(True)
    assert host.needs_host and not dev.needs_host
    a = train_group(host, p, [0, 1], [0.01, 0.01], CPU, {})[1].state_dicts()
    b = train_group(dev, p, [0, 1], [0.01, 0.01], CPU, {})[1].state_dicts()
    assert all(torch.equal(a[k][n], b[k][n]) for k in range(2) for n in a[k])


def test_labels_stay_in_stored_form(pipeline, monkeypatch):
    """Top-k labels are densified per batch: never the whole (N, V, C) float32 tensor."""
    from sl_compiler.artifact import Artifact, load
    from sl_compiler.compile import compile_artifact
    from sl_compiler.evaluate.regimes import StoredLabels
    from sl_compiler.recipe import Recipe
    from conftest import TINY

    root, _ = pipeline
    path = root / "topk-views"
    if not path.exists():
        compile_artifact(Recipe(dataset=TINY, ipc=2, teacher="convnet_d3@1#0", views=2, augment="rrc", topk=2), experts=root / "experts", device="cpu", out=path)
    art = load(path)
    dense = art.dense_labels()
    stored = StoredLabels(art.labels, art.num_classes, CPU, art.manifest["labels"]["fill"])
    idx, view = torch.tensor([0, 3, 5, 5]), torch.tensor([1, 0, 1, 0])
    assert torch.equal(stored.take(idx, view), dense[idx, view])
    assert stored.nbytes <= dense.nbytes / 2  # fp16 values + int16 indices of 2 of 4 classes vs float32 of 4
    monkeypatch.setattr(Artifact, "dense_labels", _forbidden("dense_labels"))
    row = evaluate([art], Protocol(**{**FAST, "seeds": (0,), "epochs": 1, "baselines": ()}), device="cpu")["artifacts"][0]
    assert 0 <= row["cells"]["sl"]["mean"] <= 1


def test_compile_option_runs_the_same_training(splits, monkeypatch):
    """--compile: the loss through torch.compile (aot_eager here: the same graph capture without a C++ build) trains the same students."""
    from sl_compiler.evaluate import students as students_mod

    monkeypatch.setattr(students_mod, "COMPILE_BACKEND", "aot_eager")
    data, p = _data(splits, n=16), Protocol(**{**FAST, "epochs": 2})
    eager = train_group(data, p, [0, 1], [0.01, 0.01], CPU, {})[1].state_dicts()
    compiled = train_group(data, p, [0, 1], [0.01, 0.01], CPU, {}, compile=True)[1].state_dicts()
    # aot_eager runs the same ATen ops, but decomposed: rounding may differ, by ~1e-7 per step
    assert all(torch.allclose(eager[k][n], compiled[k][n], atol=1e-4, rtol=1e-4) for k in range(2) for n in eager[k])


# ---- file-backed test splits, imported sets, preconditions ---------------------------------------


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    """An ImageFolder of JPEGs (4 classes, 16 px): train 6 per class, test 3 per class; loaded lazily it is file-backed."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 3)):
        for c in range(4):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                base = np.zeros((16, 16, 3), dtype=np.uint8) + np.array([60 * c, 255 - 60 * c, 40], dtype=np.uint8)
                noise = rng.integers(0, 50, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(base + noise).save(folder / f"{i}.jpg", quality=90)
    return root


def _hard_artifact(root, out, per_class=None, name="imported"):
    """An artifact as an importer writes it: hard labels, no teacher, from the lazily loaded JPEG folder's train split."""
    from sl_compiler.artifact import write_artifact

    train = load_dataset(f"imagefolder:{root}", split="train", in_memory=False)
    assert train.pixels is None  # file-backed
    idx = torch.cat([torch.nonzero(train.targets == c).flatten()[: (per_class or [2] * 4)[c]] for c in range(4)])
    return write_artifact(out, name=name, version="1.0.0", dataset=train.info(), images=train.images(idx), targets=train.targets[idx], source_ids=idx.tolist(), labels=None)


def test_a_file_backed_test_split_is_streamed_or_kept_and_scores_the_same(jpeg_folder, tmp_path, monkeypatch):
    from sl_compiler.evaluate import data as data_mod

    art = _hard_artifact(jpeg_folder, tmp_path / "hard")
    p = Protocol(**{**FAST, "seeds": (0, 1), "epochs": 2, "regimes": ("hl",), "baselines": (), "eval_batch_size": 4})
    kept = evaluate([art], p, dataset=f"imagefolder:{jpeg_folder}", device="cpu", workers=0)["artifacts"][0]
    streams = []
    real_stream = data_mod.stream
    monkeypatch.setattr(data_mod, "stream", lambda *a, **k: streams.append(k) or real_stream(*a, **k))
    monkeypatch.setattr(data_mod, "RESIDENT_BYTES", 0)
    streamed = evaluate([art], p, dataset=f"imagefolder:{jpeg_folder}", device="cpu", workers=2, batched=False)["artifacts"][0]
    assert kept["test_set"]["resident"] and not streamed["test_set"]["resident"]
    assert streams and all(k["workers"] == 2 for k in streams)  # decoded by worker processes, batch by batch
    assert len(streams) == 1  # two students one at a time, one pass over the test split
    assert streamed["cells"]["hl"]["accuracy"] == kept["cells"]["hl"]["accuracy"]
    assert streamed["test_set"]["size"] == kept["test_set"]["size"] == 12


def test_an_imported_set_without_a_teacher_runs_the_baselines_it_can(jpeg_folder, tmp_path, capsys):
    from cli.main import main

    art = _hard_artifact(jpeg_folder, tmp_path / "hard")
    p = Protocol(**{**FAST, "seeds": (0,), "epochs": 1, "baselines": ("random-hl", "random-sl")})
    result = evaluate([art], p, dataset=f"imagefolder:{jpeg_folder}", device="cpu", workers=0, out=tmp_path / "run")
    row = result["artifacts"][0]
    assert set(row["cells"]) == {"sl", "random-hl"}
    assert "records no teacher" in row["skipped"]["random-sl"] and "--teacher" in row["skipped"]["random-sl"]
    assert json.loads((tmp_path / "run.json").read_text())["artifacts"][0]["skipped"] == row["skipped"]
    table = markdown_table(result)
    assert "| skipped |" in table and "skipped random-sl" in table
    argv = ["evaluate", str(art), "--dataset", f"imagefolder:{jpeg_folder}", "--epochs", "1", "--seeds", "0", "--batch-size", "8", "--workers", "0", "--device", "cpu"]
    assert main(argv) == 0 and "skipped random-sl" in capsys.readouterr().out


def test_unequal_class_counts_skip_the_random_baselines_before_training(jpeg_folder, tmp_path, monkeypatch):
    art = _hard_artifact(jpeg_folder, tmp_path / "unequal", per_class=[1, 2, 2, 2])
    row = evaluate([art], Protocol(**{**FAST, "seeds": (0,), "epochs": 1, "baselines": ("random-hl",)}), dataset=f"imagefolder:{jpeg_folder}", device="cpu", workers=0)["artifacts"][0]
    assert row["ipc"] is None and set(row["cells"]) == {"sl"} and "unequal class counts" in row["skipped"]["random-hl"]


@pytest.mark.parametrize("problem", ["slkd-no-teacher", "classes", "model", "lr-grid-pool", "out", "teacher-file"])
def test_every_precondition_is_checked_before_the_first_student(pipeline, jpeg_folder, tmp_path, monkeypatch, problem):
    """A bad second artifact (or setting) fails before the first artifact's students train."""
    from sl_compiler.artifact import write_artifact

    root, arts = pipeline
    runs = []
    monkeypatch.setattr(trainer_mod.StudentTrainer, "run", lambda self, desc="": runs.append(desc))
    good = arts[2]
    p = Protocol(**{**FAST, "seeds": (0,), "epochs": 1})
    kwargs = {"device": "cpu", "experts": str(root / "experts")}
    if problem == "slkd-no-teacher":
        train = load_dataset(TINY_SPEC, split="train")
        bad = write_artifact(tmp_path / "hard", name="hard", version="1.0.0", dataset=train.info(), images=train.pixels[:8], targets=train.targets[:8], source_ids=list(range(8)), labels=None)
        items, p, err = [good, bad], p.override(regimes=("sl", "slkd")), "slkd needs a teacher"
    elif problem == "classes":
        items, kwargs["dataset"], err = [good], "synthetic:classes=5,size=16,train=12,test=6", "classes"
    elif problem == "model":
        items, p, err = [good], p.override(model="resnet99"), "unknown model"
    elif problem == "lr-grid-pool":
        items, p, err = [good, arts[3]], p.override(lr_grid=(0.01, 0.1), holdout_fraction=0.9, baselines=("random-hl",)), "too few training images"
    elif problem == "out":
        (tmp_path / "file").write_text("")
        items, kwargs["out"], err = [good], tmp_path / "file" / "run", "cannot write results"
    else:  # the teacher's checkpoint changed on disk after the artifact was compiled
        import shutil

        shutil.copytree(root / "experts", tmp_path / "experts")
        checkpoint = next((tmp_path / "experts").rglob("epoch-1.safetensors"))
        checkpoint.write_bytes(checkpoint.read_bytes()[:-8] + b"corrupt!")
        items, kwargs["experts"], err = [good], str(tmp_path / "experts"), "sha256|differs"
        p = p.override(baselines=("random-sl",))
    with pytest.raises(SlcError, match=err):
        evaluate(items, p, **kwargs)
    assert runs == []


@pytest.mark.parametrize("name", ["../../etc/x", "/etc/passwd", "cifar10/../../x", "a\x00b", "syn thetic", "synthetic:classes=bad", "imagefolder:../../x", "", "CIFAR-10/.."])
def test_a_crafted_dataset_name_never_becomes_a_path(name, monkeypatch):
    from sl_compiler.evaluate import protocol as protocol_mod

    opened = []
    real = protocol_mod.Protocol.from_toml.__func__
    monkeypatch.setattr(protocol_mod.Protocol, "from_toml", classmethod(lambda cls, path: opened.append(path) or real(cls, path)))
    assert protocol_mod.protocol_key(name) is None
    assert protocol_mod.default_protocol(name).name == "default" and opened == []


def test_a_name_pointing_at_a_real_file_outside_the_recipes_is_not_read():
    import os
    import tempfile
    from pathlib import Path

    from sl_compiler.evaluate.protocol import RECIPES, default_protocol

    # a folder name that survives dataset_key's normalisation (lowercase, no '-'), so the path is real
    with tempfile.TemporaryDirectory(prefix="slc_evil_") as folder:
        evil = Path(folder) / "evil"
        evil.with_suffix(".toml").write_text('model = "convnet_d3"\nepochs = 1\n')
        for name in (os.path.relpath(evil, RECIPES), str(evil)):
            assert name == name.lower() and "-" not in name
            assert default_protocol(name).name == "default"


def test_known_dataset_names_pick_their_protocol():
    from sl_compiler.evaluate.protocol import default_protocol, protocol_key

    assert protocol_key("CIFAR-10") is None  # not a registered spelling ("cifar-10" -> "cifar_10")
    assert protocol_key("cifar10") == "cifar10" and default_protocol("CIFAR10").name == "cifar10"
    assert default_protocol("synthetic:classes=4,size=16").name == "synthetic"
    assert default_protocol("mnist").name == "default"  # known, but no protocol file


def test_named_protocols_and_the_sre2l_protocol(pipeline):
    from sl_compiler.evaluate import load_protocol
    from sl_compiler.artifact import load
    from sl_compiler.compile import compile_artifact
    from sl_compiler.recipe import Recipe
    from conftest import TINY

    p = load_protocol("imagenet-sre2l")
    # SRe2L's validate/train_FKD.py settings (cited in the file)
    assert (p.model, p.optimizer, p.lr, p.weight_decay, p.schedule, p.epochs, p.batch_size) == ("resnet18", "adamw", 0.001, 0.01, "cosine", 300, 1024)
    assert (p.augment, p.augment_views, p.loss, p.temperature) == ("rrc+flip+cutmix", False, "kl", 20.0)
    root, _ = pipeline
    path = root / "views-sre2l"
    if not path.exists():
        compile_artifact(Recipe(dataset=TINY, ipc=2, teacher="convnet_d3@1#0", views=3, augment="cutmix+rrc", temperature=20.0), experts=root / "experts", device="cpu", out=path)
    small = p.override(model="convnet_d3", epochs=1, batch_size=8, seeds=[0], baselines=(), regimes=("sl", "slkd"))
    row = evaluate([load(path)], small, experts=str(root / "experts"), device="cpu")["artifacts"][0]
    assert set(row["cells"]) == {"sl", "slkd"} and row["slkd_teacher"] == "convnet_d3@1#0"
    with pytest.raises(RecipeError, match="augment"):
        p.override(augment="rrc+blur")


def test_one_seed_shows_no_spread(pipeline, tmp_path):
    from sl_compiler.evaluate.tables import csv_text, pct

    _, arts = pipeline
    result = evaluate([arts[2]], Protocol(**{**FAST, "seeds": (0,), "epochs": 1, "baselines": ("random-hl",)}), device="cpu", out=tmp_path / "one")
    cell = result["artifacts"][0]["cells"]["sl"]
    assert cell["std"] is None and pct(cell).endswith("(n/a)")
    assert "(n/a)" in markdown_table(result) and "(0.00)" not in markdown_table(result)
    assert result["artifacts"][0]["metrics"]["gain"]["sl"]["random-hl"]["std"] is None
    rows = csv_text(result).splitlines()[1:]
    assert all(r.split(",")[6] == "n/a" for r in rows)
    assert "(n/a)" in report_markdown(report(load_results([tmp_path / "one.json"])))
    assert pct({"mean": 0.5, "std": 0.0}) == "50.00 (0.00)"  # a measured zero spread still prints


def test_the_test_split_is_decoded_with_the_artifacts_preprocess(pipeline):
    from sl_compiler.artifact import load
    from sl_compiler.evaluate.run import decode_options, preprocess

    _, arts = pipeline
    art = load(arts[2])
    assert preprocess(art) == art.manifest["dataset"]["preprocess"]  # recorded by compile
    del art.manifest["dataset"]["preprocess"]
    fallback = preprocess(art)  # an older artifact: built from the manifest's resolution, mean and std
    assert fallback == {"resize": 16, "crop": [16, 16], "interpolation": "bilinear", "mean": list(art.mean), "std": list(art.std)}
    art.manifest["dataset"]["preprocess"] = {"resize": 256, "crop": [224, 224], "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.25] * 3}
    assert preprocess(art)["resize"] == 256
    assert decode_options("imagenet", preprocess(art)) == {"in_memory": False, "resolution": 224, "resize": 256}
    assert decode_options("imagefolder:/data/x", fallback) == {"in_memory": False, "resolution": 16, "resize": 16}
    assert decode_options("synthetic:classes=4", fallback) == {} and decode_options("mnist", fallback) == {}
