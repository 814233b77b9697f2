"""The compile pipeline end to end on tiny synthetic data: reproducible, atomic, labels that check out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli.main import main
from lazyset import add_teachers, corrupt, write_folder
from sl_compiler.artifact import load, verify
from sl_compiler.artifact.diff import diff_artifacts
from sl_compiler.compile import compile_artifact
from sl_compiler.data import ImageSet, load_dataset, normalize
from sl_compiler.errors import ArtifactError, DataError, ExpertError, RecipeError
from sl_compiler.experts import ExpertStore, resolve
from sl_compiler.experts.recipe import ExpertRecipe
from sl_compiler.experts.train import train_trajectories
from sl_compiler.label import replay
from sl_compiler.recipe import Recipe
from sl_compiler.select import random_per_class

TINY = "synthetic:classes=4,size=16,train=12,test=6"  # tests/conftest.py TINY
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("experts")
    train_trajectories(TINY, "convnet_d3", [0, 1], recipe=ExpertRecipe(epochs=1, batch_size=16), store=root, device="cpu")
    return root


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))


def recipe(**changes) -> Recipe:
    return Recipe(**{"dataset": TINY, "ipc": 3, "teacher": "convnet_d3@1#0-1", "name": "tiny", **changes})


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_compiles_are_byte_identical(store, tmp_path):
    r = recipe(views=3, augment="cutmix+rrc", topk=2, temperature=2.0, seed=5)
    a = compile_artifact(r, experts=store, device="cpu", out=tmp_path / "a")
    b = compile_artifact(r, experts=store, device="cpu", out=tmp_path / "b")
    fa, fb = files(a), files(b)
    assert set(fa) >= {"manifest.json", "README.md", "data/train-000000.tar"}
    assert fa == fb
    verify(a)


def test_manifest_records_recipe_teachers_selection_and_labels(store, tmp_path):
    r = recipe(temperature=2.0, seed=4, data_root=str(tmp_path / "somewhere"))
    art = load(compile_artifact(r, experts=store, device="cpu", out=tmp_path / "a"))
    m = art.manifest
    assert str(tmp_path) not in (tmp_path / "a" / "manifest.json").read_text()  # no machine paths
    assert m["recipe"] == {k: v for k, v in r.to_dict().items() if k != "data_root"} and m["name"] == "tiny" and m["version"] == "1.0.0" and m["ipc"] == 3
    data = load_dataset(TINY, split="train")
    expected = random_per_class(data.targets, data.classes, 3, seed=4)
    assert m["selection"]["strategy"] == "random" and m["selection"]["seed"] == 4
    assert m["selection"]["source_indices"] == expected.tolist()
    assert m["selection"]["source_ids"] == [str(i) for i in expected.tolist()]
    assert [t["reference"] for t in m["teachers"]] == ["convnet_d3@1#0", "convnet_d3@1#1"]
    assert all(len(t["sha256"]) == 64 for t in m["teachers"])
    labels = m["labels"]
    assert labels["kind"] == "dense" and labels["views"] == 1 and labels["temperature"] == 2.0 and labels["teacher"] == "convnet_d3@1#0,1"
    assert m["provenance"]["device"] == "cpu" and m["provenance"]["torch"] == torch.__version__
    assert torch.equal(art.images, data.pixels[expected]) and torch.equal(art.targets, data.targets[expected])


def test_dense_labels_are_the_ensemble_softmax_and_topk_matches_them(store, tmp_path):
    dense = load(compile_artifact(recipe(temperature=2.0), experts=store, device="cpu", out=tmp_path / "dense"))
    probs = dense.dense_labels()
    assert probs.shape == (12, 1, 4)
    torch.testing.assert_close(probs.sum(-1), torch.ones(12, 1), atol=2e-3, rtol=0)
    data = load_dataset(TINY, split="train")
    teachers = resolve("convnet_d3@1#0-1", store, data.info())
    with torch.no_grad():
        x = normalize(dense.images, data.mean, data.std)
        logits = sum(t.load("cpu")(x) for t in teachers) / 2
    torch.testing.assert_close(probs[:, 0], torch.softmax(logits / 2.0, -1), atol=1e-3, rtol=0)

    top = load(compile_artifact(recipe(temperature=2.0, topk=2), experts=store, device="cpu", out=tmp_path / "top"))
    assert top.manifest["labels"]["k"] == 2 and top.manifest["labels"]["fill"] == "uniform"
    rebuilt = top.dense_labels()
    torch.testing.assert_close(rebuilt.sum(-1), torch.ones(12, 1), atol=2e-3, rtol=0)
    stored_top = probs.topk(2, -1)
    torch.testing.assert_close(rebuilt.gather(-1, stored_top.indices), stored_top.values, atol=1e-3, rtol=0)


@pytest.mark.parametrize("kind", ["cutmix", "cutmix+rrc"])
def test_a_stored_cutmix_view_rebuilt_from_its_parameters_gets_its_label_back(store, tmp_path, kind):
    art = load(compile_artifact(recipe(views=4, augment=kind, seed=1), experts=store, device="cpu", out=tmp_path / "v"))
    assert art.manifest["labels"]["views"] == 4 and set(art.views) >= {"cut", "partner"}
    labels = art.dense_labels()  # (N, V, C)
    assert labels.shape == (12, 4, 4)
    data = load_dataset(TINY, split="train")
    teachers = resolve("convnet_d3@1#0-1", store, data.info())
    sample, view = torch.tensor([0, 5, 11]), torch.tensor([3, 0, 2])
    rows = {name: p[sample, view] for name, p in art.views.items()}
    x = replay(art.images, sample, rows)
    assert not torch.equal(x, art.images[sample])  # the views really are mixed
    with torch.no_grad():
        logits = sum(t.load("cpu")(normalize(x, art.mean, art.std)) for t in teachers) / 2
    torch.testing.assert_close(torch.softmax(logits, -1), labels[sample, view], atol=1e-3, rtol=0)


def test_existing_output_is_refused_unless_forced_or_versioned(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = compile_artifact(recipe(), experts=store, device="cpu")
    assert first.parent == Path("artifacts") and first.name.startswith("tiny-1.0.0-")  # + the recipe's hash
    before = files(first)
    with pytest.raises(ArtifactError, match="already exists"):
        compile_artifact(recipe(), experts=store, device="cpu")
    assert files(first) == before
    assert compile_artifact(recipe(version="1.1.0"), experts=store, device="cpu").name.startswith("tiny-1.1.0-")
    compile_artifact(recipe(seed=9), experts=store, device="cpu", out=first, force=True)
    assert files(first) != before
    verify(first)


def test_bad_inputs_fail_with_nothing_written(store, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RecipeError, match="larger than the smallest class"):
        compile_artifact(recipe(ipc=13), experts=store, device="cpu", out=out)
    with pytest.raises(ExpertError, match="no checkpoint convnet_d3@7"):
        compile_artifact(recipe(teacher="convnet_d3@7"), experts=store, device="cpu", out=out)
    # a teacher trained on another dataset (here: another class count filed under this dataset's key)
    other = "synthetic:classes=3,size=16,train=12,test=6"
    mixed = tmp_path / "mixed"
    train_trajectories(other, "convnet_d3", [0], recipe=ExpertRecipe(epochs=1, batch_size=16), store=mixed, device="cpu")
    (mixed / "synthetic:classes=3,size=16,train=12,test=6").rename(mixed / "synthetic:classes=4,size=16,train=12,test=6")
    with pytest.raises(ExpertError, match=r"was trained on other data \(.*4 classes vs 3"):
        compile_artifact(recipe(teacher="convnet_d3@1"), experts=mixed, device="cpu", out=out)
    with pytest.raises(ExpertError, match="no experts for synthetic:classes=3"):
        compile_artifact(recipe(dataset=other, teacher="convnet_d3@1"), experts=store, device="cpu", out=out)
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_corrupt_checkpoint_and_nan_weights_are_errors(store, tmp_path):
    broken = tmp_path / "broken"
    data = load_dataset(TINY, split="train")
    teacher = resolve("convnet_d3@1", store, data.info())[0]
    state = {k: v.clone() for k, v in teacher.load("cpu").state_dict().items()}
    state["classifier.weight"].fill_(float("nan"))
    ExpertStore(broken).add_checkpoint(state, dataset_info=data.info(), arch="convnet_d3", epoch=2, seed=0)
    with pytest.raises(ExpertError, match="teacher convnet_d3@2#0 gives non-finite"):
        compile_artifact(recipe(teacher="convnet_d3@2"), experts=broken, device="cpu", out=tmp_path / "a")
    ckpt = next(broken.rglob("epoch-2.safetensors"))
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(ExpertError, match="corrupt"):
        compile_artifact(recipe(teacher="convnet_d3@2"), experts=broken, device="cpu", out=tmp_path / "a")
    assert not (tmp_path / "a").exists()


KILL_SCRIPT = """
import os, signal, sys
import sl_compiler.artifact.writer as writer
from sl_compiler.compile import compile_artifact
from sl_compiler.recipe import Recipe
real, calls = writer._encode_image, []
def encode_then_die(*args):
    calls.append(1)
    if len(calls) == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args)
writer._encode_image = encode_then_die
recipe = Recipe(dataset=sys.argv[1], ipc=3, teacher="convnet_d3@1", name="tiny")
compile_artifact(recipe, experts=sys.argv[2], device="cpu", out=sys.argv[3])
"""


def test_a_compile_killed_midway_leaves_no_artifact_and_the_next_run_succeeds(store, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "SLC_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, TINY, str(store), str(out)], env=env, cwd=ROOT, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not out.exists()  # at most a hidden .killed.tmp-* folder, never something that looks like an artifact
    assert list(tmp_path.glob(".killed.tmp-*"))
    compile_artifact(Recipe(dataset=TINY, ipc=3, teacher="convnet_d3@1", name="tiny"), experts=store, device="cpu", out=out)
    verify(out)


def test_ce_quantile_compile_records_its_decile(store, tmp_path):
    art = load(compile_artifact(recipe(ipc=1, select="ce-quantile", quantile=9), experts=store, device="cpu", out=tmp_path / "q"))
    sel = art.manifest["selection"]
    assert sel["strategy"] == "ce-quantile" and sel["quantile"] == 9 and len(sel["source_indices"]) == 4
    assert list((tmp_path / "cache" / "scores").glob("*.safetensors"))


def test_cli_compile_prints_path_and_content_hash(store, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["compile", "--dataset", TINY, "--ipc", "2", "--teacher", "convnet_d3@1", "--experts", str(store), "--views", "2", "--augment", "rrc", "--topk", "3", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"artifact: {out}" in printed and f"content hash: {manifest['content_hash']}" in printed
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]


def test_throughput_benchmark_runs_and_writes_its_figures(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("compile_throughput", ROOT / "benchmarks" / "compile_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "result.json"
    argv = ["--dataset", TINY, "--ipc", "2", "--views", "2", "--topk", "2", "--folder-images", "20", "--folder-resolution", "16", "--repeats", "1", "--device", "cpu", "--out", str(out)]
    result = bench.main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [r["images"] for r in result["labelling"]] == [8, 16]
    assert result["streamed_scoring"]["images"] == 20 and result["streamed_scoring"]["workers"] == 2
    assert all(r["ratio"] > 0 for r in [*result["labelling"], result["streamed_scoring"]]) and len(result["compile"]) == 3
    assert {f["target"] for f in result["figures"]} == {">= 0.9", None}


def test_the_bare_loops_of_the_throughput_benchmark_call_no_slc_code():
    import ast

    tree = ast.parse((ROOT / "benchmarks" / "compile_throughput.py").read_text())
    functions = {node.name: node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sl_compiler") for alias in node.names}
    bare = [name for name in functions if name.startswith(("bare", "Bare"))]
    assert {"bare_label", "bare_scores", "bare_cutmix", "BareFolder"} <= set(bare)
    for name in bare:
        used = {n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name)}
        assert not used & imported, f"{name} uses slc's {sorted(used & imported)}"


@pytest.mark.real
def test_compile_real_cifar10_keeps_the_source_jpeg_bytes(tmp_path):
    root = ROOT.parent / "shared" / "data" / "cifar10"
    if not root.is_dir():
        pytest.skip("no ../shared/data/cifar10")
    data = load_dataset("cifar10", root, "train")
    torch.manual_seed(0)
    from sl_compiler.models import create_model

    model = create_model("convnet_d3", 10, 3, 32)
    ExpertStore(tmp_path / "experts").add_checkpoint(model.state_dict(), dataset_info=data.info(), arch="convnet_d3", epoch=0, seed=0)
    r = Recipe(dataset="cifar10", data_root=str(root), ipc=1, teacher="convnet_d3@0", views=2, augment="cutmix+rrc")
    art = load(compile_artifact(r, experts=tmp_path / "experts", device="cpu", out=tmp_path / "c10"))
    verify(art.path)
    picked = art.manifest["selection"]["source_indices"]
    assert art.manifest["selection"]["source_ids"] == [data.source_id(i) for i in picked]
    assert art.manifest["bytes"]["images"] == sum(len(data.encoded(i)[0]) for i in picked)


# ---- datasets of files (ImageNet-like): streamed, flat in memory, independent of batching ---------


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A lazy ImageFolder (3 classes x 6 JPEGs, decoded at 20 px) and a store with two teachers for it.

    The in-memory limit is 0, as for ImageNet (far above it), so that compile loads it lazily too.
    """
    monkeypatch.setattr("sl_compiler.data.encoded.IN_MEMORY_LIMIT", 0)
    root = write_folder(tmp_path / "root")
    data = load_dataset(f"imagefolder:{root}", split="train")
    assert data.pixels is None and data.shape == (3, 20, 20)
    add_teachers(tmp_path / "experts", data, seeds=(0, 1))
    return f"imagefolder:{root}", data, tmp_path / "experts"


def count_decodes(monkeypatch) -> list[int]:
    """Indices decoded in this process from now on (workers=0 decodes in-process)."""
    decoded = []
    real = ImageSet.decode_batch
    monkeypatch.setattr(ImageSet, "decode_batch", lambda self, idx, skip_bad=False: (decoded.extend(idx), real(self, idx, skip_bad))[1])
    return decoded


@pytest.mark.parametrize("select", ["random", "ce-quantile"])
def test_a_lazy_compile_decodes_once_what_it_needs_whatever_the_batch_and_workers(folder, tmp_path, monkeypatch, select):
    spec, data, experts = folder
    quantile = {"random": None, "ce-quantile": 0}[select]  # deciles of 6 images hold 1 each
    r = Recipe(dataset=spec, ipc=2 if quantile is None else 1, teacher="convnet_d3@0#0-1", name="lazy", views=3, augment="cutmix+rrc", topk=2, select=select, quantile=quantile)
    decoded = count_decodes(monkeypatch)
    a = compile_artifact(r, experts=experts, device="cpu", out=tmp_path / "a", batch_size=3, workers=0)
    picked = load(a).manifest["selection"]["source_indices"]
    # random reads only its picks; ce-quantile scores every image once for both teachers, then decodes its picks
    expected = sorted(picked) if select == "random" else sorted([*range(len(data)), *picked])
    assert sorted(decoded) == expected
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "other-cache"))  # score and label again, in worker processes
    b = compile_artifact(r, experts=experts, device="cpu", out=tmp_path / "b", batch_size=3, workers=2)
    assert files(a) == files(b)
    # other batches: a CPU's kernels may sum in another order for another batch shape, so the
    # float16 labels may move by an ulp; the selection and the images may not
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "third-cache"))
    c = compile_artifact(r, experts=experts, device="cpu", out=tmp_path / "c", batch_size=7, workers=2)
    assert diff_artifacts(a, c, tolerance_ulps=1).match
    assert load(c).manifest["selection"] == load(a).manifest["selection"]
    m = load(a).manifest
    assert m["labels"]["precision"] == "float32"
    assert m["labels"]["preprocess"] == {"resize": 20, "crop": [20, 20], "interpolation": "bilinear", "mean": data.info()["mean"], "std": data.info()["std"]}
    assert m["bytes"]["images"] == sum(len(data.encoded(i)[0]) for i in picked)  # the source's own bytes
    verify(a)


@pytest.mark.parametrize("select", ["random", "ce-quantile"])
def test_skip_bad_records_undecodable_files_and_never_selects_them(folder, tmp_path, monkeypatch, capsys, select):
    spec, data, experts = folder
    ipc, quantile = {"random": (2, None), "ce-quantile": (1, 0)}[select]
    r = Recipe(dataset=spec, ipc=ipc, teacher="convnet_d3@0", name="skip", select=select, quantile=quantile)
    first = load(compile_artifact(r, experts=experts, device="cpu", out=tmp_path / "clean", workers=0)).manifest["selection"]
    bad = first["source_indices"][ipc]  # a pick (of class 1), so that it must be replaced
    sid = corrupt(data, bad)
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "fresh"))
    out = tmp_path / "out"
    with pytest.raises(DataError, match=f"cannot decode image {sid}"):
        compile_artifact(r, experts=experts, device="cpu", out=out, workers=0)
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    argv = ["compile", "--dataset", spec, "--ipc", str(ipc), "--teacher", "convnet_d3@0", "--experts", str(experts), "--name", "skip", "--select", select]
    argv += ["--quantile", "0"] if quantile is not None else []
    assert main([*argv, "--device", "cpu", "--out", str(out), "--workers", "0", "--skip-bad"]) == 0
    assert f"skipped {sid}: cannot decode image {sid}" in capsys.readouterr().err
    sel = load(out).manifest["selection"]
    assert [s["source"] for s in sel["skipped"]] == [sid] and sid in sel["skipped"][0]["problem"]
    assert bad not in sel["source_indices"] and sid not in sel["source_ids"]
    assert torch.bincount(data.targets[sel["source_indices"]], minlength=3).tolist() == [ipc] * 3
    assert len(set(sel["source_indices"]) & set(first["source_indices"])) == 3 * ipc - 1  # only the bad pick is replaced
    verify(out)


def test_compile_decodes_at_the_teachers_preprocess_and_one_ensemble_shares_one(folder, tmp_path):
    spec, data, _ = folder
    small = load_dataset(spec, split="train", resolution=16)
    experts = add_teachers(tmp_path / "small-experts", small)
    art = load(compile_artifact(Recipe(dataset=spec, ipc=1, teacher="convnet_d3@0", name="small"), experts=experts, device="cpu", out=tmp_path / "a", workers=0))
    assert art.manifest["dataset"]["resolution"] == [16, 16] and art.manifest["labels"]["preprocess"]["crop"] == [16, 16]
    picked = art.manifest["selection"]["source_indices"]
    assert torch.equal(art.images, small.images(picked))  # the stored JPEGs decode to what the teacher labelled
    add_teachers(experts, data, seeds=(1,))  # seed 1 saw 20 px inputs
    with pytest.raises(ExpertError, match=r"convnet_d3@0#0,1 were trained on differently preprocessed inputs \(convnet_d3#0: resize 16, crop 16x16.*convnet_d3#1: resize 20, crop 20x20"):
        compile_artifact(Recipe(dataset=spec, ipc=1, teacher="convnet_d3@0#0-1", name="mixed"), experts=experts, device="cpu", out=tmp_path / "b")
    assert not (tmp_path / "b").exists()
