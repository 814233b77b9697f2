"""Issue 15, items 1-3: ZCA experts, students and third-party float sets, recorded end to end."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from cli.main import main
from sl_compiler.artifact import load
from sl_compiler.artifact.diff import diff_artifacts
from sl_compiler.artifact.verify import verify
from sl_compiler.compile import compile_artifact
from sl_compiler.data import load_dataset
from sl_compiler.data.zca import zca_for
from sl_compiler.errors import EvaluateError, ImporterError, VerifyError
from sl_compiler.evaluate import evaluate
from sl_compiler.evaluate.protocol import Protocol, load_protocol
from sl_compiler.evaluate.regimes import training_set
from sl_compiler.experts import ExpertStore
from sl_compiler.experts.train import train_trajectories
from sl_compiler.experts.recipe import ExpertRecipe
from sl_compiler.importers import import_mtt
from sl_compiler.recipe import Recipe

TINY = "synthetic:classes=4,size=16,train=12,test=6"
FAST = dict(epochs=1, batch_size=8, seeds=(0,), regimes=("sl",), baselines=(), augment="dsa")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def zca_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("experts")
    train_trajectories(TINY, "convnet_d3", [0], recipe=ExpertRecipe(epochs=1, batch_size=16, zca=True, augment="dsa"), store=root, device="cpu")
    return root


@pytest.fixture(scope="module")
def zca_artifact(zca_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "a"
    return compile_artifact(Recipe(dataset=TINY, ipc=2, teacher="convnet_d3@1#0", name="tiny"), experts=zca_store, device="cpu", out=out)


def test_a_zca_expert_records_its_fit_and_the_artifact_and_results_the_same(zca_store, zca_artifact):
    trajectory = ExpertStore(zca_store).trajectory(load_dataset(TINY).name, "convnet_d3", 0)
    record = trajectory.zca
    fit = zca_for(load_dataset(TINY, split="train"))
    assert record["id"] == fit.id and record["sha256"] == fit.sha256 and record["eps"] == 0.1
    m = load(zca_artifact).manifest
    assert m["labels"]["preprocess"]["zca"] == record  # in the label schema, so in the content hash
    assert m["teachers"][0]["zca"] == record
    row = evaluate([zca_artifact], Protocol(**FAST, zca=True), device="cpu")["artifacts"][0]
    assert row["zca"]["protocol"]["id"] == record["id"] and row["zca"]["protocol"]["sha256"] == record["sha256"]
    assert row["zca"]["labels"] == record and row["images"] is None


def test_a_zca_teacher_labels_in_zca_space(zca_store, zca_artifact):
    from sl_compiler.experts import resolve
    from sl_compiler.label import Ensemble, soft_labels

    art = load(zca_artifact)
    data = load_dataset(TINY)
    teachers = resolve("convnet_d3@1#0", zca_store, data.info())
    idx = torch.tensor([int(i) for i in art.manifest["selection"]["source_indices"]])
    whitened = Ensemble(teachers, data.mean, data.std, "cpu", zca_for(data))(data.pixels[idx])
    normalised = Ensemble(teachers, data.mean, data.std, "cpu")(data.pixels[idx])
    stored = art.labels["probs"][:, 0]
    assert torch.equal(soft_labels(whitened, 1.0, None)["probs"].half(), stored)
    assert not torch.equal(soft_labels(normalised, 1.0, None)["probs"].half(), stored)


def test_d_slkd_with_a_zca_teacher_under_a_protocol_without_zca_is_a_one_line_error(zca_store, zca_artifact):
    with pytest.raises(EvaluateError, match="ZCA-whitened inputs, but this run does not whiten") as exc:
        evaluate([zca_artifact], Protocol(**{**FAST, "regimes": ("slkd",)}), experts=str(zca_store), device="cpu")
    assert "\n" not in str(exc.value) and "zca = true" in str(exc.value)


def test_sl_on_zca_labels_without_zca_is_recorded_and_random_sl_labels_in_the_teachers_space(zca_store, zca_artifact, monkeypatch):
    import sl_compiler.evaluate.run as run

    seen = []
    real = run.teacher_labels
    monkeypatch.setattr(run, "teacher_labels", lambda *a, zca=None, **k: seen.append(zca) or real(*a, zca=zca, **k))
    row = evaluate([zca_artifact], Protocol(**{**FAST, "baselines": ("random-sl",)}), experts=str(zca_store), device="cpu")["artifacts"][0]
    assert row["zca"]["protocol"] is None and row["zca"]["labels"]["id"] == seen[0].id  # the choice, recorded
    assert set(row["cells"]) == {"sl", "random-sl"}


def test_d_zca_without_a_training_split_is_a_one_line_error(zca_artifact, monkeypatch):
    import sl_compiler.evaluate.run as run
    from sl_compiler.errors import DataError

    real = run.load_dataset

    def test_only(name, root=None, split="train", **options):  # a dataset published with its test split alone
        if split == "train":
            raise DataError(f"{name} has no train split", "give its train split")
        return real(name, root, split, **options)

    monkeypatch.setattr(run, "load_dataset", test_only)
    with pytest.raises(EvaluateError, match="needs a ZCA fitted on the training split") as exc:
        evaluate([zca_artifact], Protocol(**FAST, zca=True), device="cpu")
    assert "\n" not in str(exc.value) and "without zca" in str(exc.value)


@pytest.fixture(scope="module")
def mtt_files(tmp_path_factory):
    """An MTT --zca run's files: float32 images in ZCA space (values far outside [0, 1]), soft labels, syn_lr."""
    d = tmp_path_factory.mktemp("mtt")
    g = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 16, 16, generator=g) * 3.1
    labels = torch.softmax(torch.randn(8, 4, generator=g) * 2, 1)
    torch.save(images, d / "images_best.pt")
    torch.save(labels, d / "labels_best.pt")
    torch.save(torch.tensor(0.0123), d / "lr_best.pt")
    return d, images


def test_c_a_float_set_is_stored_bit_exactly_and_rebuilds_byte_identically(mtt_files, tmp_path):
    d, images = mtt_files
    args = (d / "images_best.pt", d / "labels_best.pt")
    a = import_mtt(*args, lr_file=d / "lr_best.pt", dataset=TINY, zca=0.1, out=tmp_path / "a")
    b = import_mtt(*args, lr_file=d / "lr_best.pt", dataset=TINY, zca=0.1, out=tmp_path / "b")
    assert subprocess.run(["diff", "-r", str(a), str(b)], capture_output=True).returncode == 0
    art = load(a)
    m = art.manifest
    assert m["format"] == "slc-artifact/1.1" and m["images"]["dtype"] == "float32"
    assert art.images.dtype == torch.float32 and torch.equal(art.images, images)  # bit-exact
    assert m["images"]["zca"]["eps"] == 0.1 and m["images"]["zca"]["id"] == zca_for(load_dataset(TINY)).id and m["images"]["normalize"] is None
    assert m["learned_lr"] == float(torch.tensor(0.0123)) == art.learned_lr
    assert m["provenance"]["quantisation"]["max_abs_error"] == 0
    verify(a)
    half = import_mtt(*args, dataset=TINY, precision="float16", out=tmp_path / "h")  # normalised space, fp16
    assert torch.equal(load(half).images, images.half())  # exact to fp16 rounding
    assert load(half).manifest["images"]["normalize"]["mean"] == load(half).manifest["dataset"]["mean"]
    report = diff_artifacts(a, half).to_dict()
    assert not report["match"] and "images" in report["differing"]
    assert "float32 ZCA (eps 0.1" in report["sections"]["images"]["summary"] and "float16 normalised" in report["sections"]["images"]["summary"]


def test_c_old_uint8_imports_keep_format_1_and_their_hash(mtt_files, tmp_path):
    d, _ = mtt_files
    a = import_mtt(d / "images_best.pt", d / "labels_best.pt", dataset=TINY, out=tmp_path / "u8")
    m = load(a).manifest
    assert m["format"] == "slc-artifact/1" and "images" not in m and "learned_lr" not in m
    verify(a)


def test_c_verify_catches_a_float_image_of_the_wrong_dtype(mtt_files, tmp_path):
    import json

    d, _ = mtt_files
    a = import_mtt(d / "images_best.pt", d / "labels_best.pt", dataset=TINY, zca=0.1, out=tmp_path / "a")
    manifest = json.loads((a / "manifest.json").read_text())
    manifest["images"]["dtype"] = "float16"
    from sl_compiler.artifact.format import dumps_manifest
    from sl_compiler.artifact.manifest import manifest_sha256

    manifest["content_hash"] = __import__("sl_compiler.artifact.format", fromlist=["content_hash"]).content_hash(manifest)
    manifest["manifest_sha256"] = manifest_sha256(manifest)
    (a / "manifest.json").write_bytes(dumps_manifest(manifest))
    with pytest.raises(VerifyError, match="float32, the manifest says float16"):
        verify(a)


def test_c_float_images_are_used_as_stored_never_whitened_again(mtt_files, tmp_path):
    d, images = mtt_files
    art = load(import_mtt(d / "images_best.pt", d / "labels_best.pt", dataset=TINY, zca=0.1, out=tmp_path / "a"))
    zca = zca_for(load_dataset(TINY))
    data = training_set("sl", art.images, art.targets, art.num_classes, art.mean, art.std, "cpu", labels=art.labels, zca=zca)
    x, _ = data.batch(torch.arange(8))
    assert torch.equal(x, images)
    u8 = training_set("hl", load_dataset(TINY).pixels[:8], art.targets, art.num_classes, art.mean, art.std, "cpu", zca=zca)
    assert torch.equal(u8.batch(torch.arange(8))[0], zca.apply(load_dataset(TINY).pixels[:8].float() / 255))  # uint8 sets are whitened


def test_c_evaluation_uses_the_learned_lr_when_the_protocol_says_so(mtt_files, tmp_path):
    d, _ = mtt_files
    a = import_mtt(d / "images_best.pt", d / "labels_best.pt", lr_file=d / "lr_best.pt", dataset=TINY, zca=0.1, out=tmp_path / "a")
    row = evaluate([a], Protocol(**FAST, zca=True, lr="artifact"), device="cpu")["artifacts"][0]
    assert row["cells"]["sl"]["lr"] == load(a).learned_lr and row["lr_source"] == "artifact"
    assert row["zca"]["images"]["eps"] == 0.1 and row["zca"]["protocol"]["id"] == row["zca"]["images"]["id"]
    plain = import_mtt(d / "images_best.pt", d / "labels_best.pt", dataset=TINY, zca=0.1, out=tmp_path / "b")
    with pytest.raises(EvaluateError, match='lr = "artifact".*records no learned lr'):
        evaluate([plain], Protocol(**FAST, zca=True, lr="artifact"), device="cpu")


def test_d_a_float_set_whose_space_disagrees_with_the_protocol_is_a_one_line_error(mtt_files, tmp_path):
    d, _ = mtt_files
    whitened = import_mtt(d / "images_best.pt", d / "labels_best.pt", dataset=TINY, zca=0.1, out=tmp_path / "z")
    with pytest.raises(EvaluateError, match="float images: ZCA-whitened inputs, but this run does not whiten them.*zca = true") as exc:
        evaluate([whitened], Protocol(**FAST), device="cpu")
    assert "\n" not in str(exc.value)
    normalised = import_mtt(d / "images_best.pt", d / "labels_best.pt", dataset=TINY, precision="float32", out=tmp_path / "n")
    with pytest.raises(EvaluateError, match="not whitened inputs, but this run whitens.*zca = false"):
        evaluate([normalised], Protocol(**FAST, zca=True), device="cpu")
    with pytest.raises(ImporterError, match="uint8 cannot hold them"):
        import_mtt(d / "images_best.pt", d / "labels_best.pt", dataset=TINY, zca=0.1, precision="uint8", out=tmp_path / "x")


def test_the_papers_protocol_and_expert_recipe_are_named_files():
    p = load_protocol("cifar10-nodistill")
    assert (p.zca, p.zca_eps, p.lr, p.epochs, p.augment, p.schedule) == (True, 0.1, 0.01, 3000, "dsa", "quarters")
    assert load_protocol("cifar10").epochs == 1000 and not load_protocol("cifar10").zca  # the DC/MTT one, unchanged
    r = ExpertRecipe.from_toml(Path(__file__).parents[1] / "recipes/experts/cifar10-convnet_d3-zca.toml")
    assert (r.zca, r.lr, r.momentum, r.milestones, r.augment) == (True, 0.001, 0.0, (), "dsa")


def test_cli_import_and_inspect_a_zca_set(mtt_files, tmp_path, capsys):
    d, _ = mtt_files
    out = tmp_path / "cli"
    argv = ["import", "mtt", str(d / "images_best.pt"), str(d / "labels_best.pt"), "--dataset", TINY, "--zca", "0.1", "--lr-file", str(d / "lr_best.pt"), "--out", str(out)]
    assert main(argv) == 0
    assert "stored as float32 in zca space" in capsys.readouterr().out
    assert main(["inspect", str(out)]) == 0
    assert "ZCA-whitened (eps 0.1" in capsys.readouterr().out
