"""slc import: third-party formats written with torch.save as their code does, imported, loaded back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import main
from sl_compiler.artifact import load
from sl_compiler.data import load_dataset, normalize
from sl_compiler.errors import ImporterError
from sl_compiler.importers import h5_arrays, import_dc, import_h5, import_imagefolder, import_mtt, import_tensor, target_dataset

TINY = "synthetic:classes=4,size=16,train=12,test=6"
QUANT = 0.5 / 255


@pytest.fixture(scope="module")
def target():
    return target_dataset(TINY)


def pixels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def normalised(u8: torch.Tensor, target) -> torch.Tensor:
    """What a distillation codebase holds: float32 images in normalised space."""
    return normalize(u8, target.mean, target.std).float()


def save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mtt_hard_labels_round_trip_exactly(tmp_path, target):
    u8 = pixels(8)
    labels = torch.arange(4).repeat_interleave(2)
    images = save(normalised(u8, target), tmp_path / "images_best.pt")
    lab = save(labels, tmp_path / "labels_best.pt")
    lr = save(torch.tensor(0.0123), tmp_path / "lr_best.pt")
    out = import_mtt(images, lab, lr_file=lr, dataset=TINY, out=tmp_path / "art")
    art = load(out, verify=True)
    assert torch.equal(art.images, u8)  # float32 normalisation is far below the quantisation step
    assert torch.equal(art.targets, labels) and art.label_kind == "hard"
    m = art.manifest
    assert m["recipe"] == {"importer": "mtt", "lr": pytest.approx(0.0123)}
    assert m["dataset"]["mean"] == list(target.mean) and m["dataset"]["std"] == list(target.std)
    assert m["dataset"]["fingerprint"] == load_dataset(TINY).fingerprint()
    prov = m["provenance"]
    assert [(f["file"], f["role"], f["sha256"]) for f in prov["files"]] == [
        ("images_best.pt", "images", sha256(images)), ("labels_best.pt", "labels", sha256(lab)), ("lr_best.pt", "lr", sha256(lr))]
    x = torch.load(images, weights_only=True)
    assert prov["images_tensor"] == {"shape": [8, 3, 16, 16], "dtype": "float32", "sha256": hashlib.sha256(x.numpy().tobytes()).hexdigest()}
    assert prov["normalisation"] == {"mean": list(target.mean), "std": list(target.std), "source": "dataset"}
    assert prov["quantisation"]["clipped_fraction"] == 0 and prov["quantisation"]["max_abs_error"] < 1e-6
    assert art.source_ids[:2] == ["images_best.pt#0", "images_best.pt#1"]


def test_quantisation_error_is_bounded_and_clipping_recorded(tmp_path, target):
    x = 5 * torch.randn(12, 3, 16, 16, generator=torch.Generator().manual_seed(1))  # overshoots [0, 1] often
    out = import_tensor(save(x, tmp_path / "x.pt"), save(torch.arange(4).repeat(3), tmp_path / "y.pt"), dataset=TINY, out=tmp_path / "art")
    art = load(out)
    mean = torch.tensor(target.mean).view(1, 3, 1, 1).double()
    std = torch.tensor(target.std).view(1, 3, 1, 1).double()
    true = x.double() * std + mean
    err = (art.images.double() / 255 - true.clamp(0, 1)).abs()
    assert float(err.max()) <= QUANT + 1e-9
    q = art.manifest["provenance"]["quantisation"]
    outside = float(((true < -QUANT) | (true > 1 + QUANT)).double().mean())
    assert 0.05 < outside and q["clipped_fraction"] == pytest.approx(outside, abs=1e-7)
    assert q["max_abs_error_in_range"] == pytest.approx(float(err.max()), abs=1e-7)
    # the importer works in float32: its error of a few units is exact to a float32 ulp or two (2**-22 relative)
    assert q["max_abs_error"] == pytest.approx(float((art.images.double() / 255 - true).abs().max()), rel=2**-22, abs=1e-7)


def test_datm_soft_labels_are_detected_as_logits_or_probabilities(tmp_path, target):
    u8 = pixels(8, seed=2)
    images = save(normalised(u8, target), tmp_path / "images_best.pt")
    logits = 3 * torch.randn(8, 4, generator=torch.Generator().manual_seed(3))
    out = import_mtt(images, save(logits, tmp_path / "labels_best.pt"), dataset=TINY, out=tmp_path / "a")
    art = load(out, verify=True)
    assert art.label_kind == "dense" and art.manifest["provenance"]["labels_given"] == "logits"
    assert torch.allclose(art.dense_labels()[:, 0], torch.softmax(logits, 1), atol=1e-3)
    assert torch.equal(art.targets, logits.argmax(1))
    probs = torch.softmax(logits, 1)
    art = load(import_mtt(images, save(probs, tmp_path / "p.pt"), dataset=TINY, out=tmp_path / "b"))
    assert art.manifest["provenance"]["labels_given"] == "probabilities"
    assert torch.allclose(art.dense_labels()[:, 0], probs, atol=1e-3)
    onehot = torch.nn.functional.one_hot(torch.tensor([3, 2, 1, 0, 0, 1, 2, 3]), 4).float()
    art = load(import_mtt(images, save(onehot, tmp_path / "o.pt"), dataset=TINY, out=tmp_path / "c"))
    assert art.label_kind == "hard" and art.manifest["provenance"]["labels_given"] == "one-hot"
    assert art.targets.tolist() == [3, 2, 1, 0, 0, 1, 2, 3]


def test_dc_result_file_picks_an_experiment(tmp_path, target):
    runs = [(pixels(4, seed=s), torch.tensor([0, 1, 2, 3])) for s in (4, 5)]
    res = {"data": [[normalised(u, target), y] for u, y in runs], "accs_all_exps": {"ConvNet": [np.float64(0.41), np.float64(0.43)]}}
    path = save(res, tmp_path / "res_DC_synthetic_ConvNet_1ipc.pt")  # numpy floats, as DC saves them
    art = load(import_dc(path, dataset=TINY, experiment=1, out=tmp_path / "art"), verify=True)
    assert torch.equal(art.images, runs[1][0]) and art.targets.tolist() == [0, 1, 2, 3]
    prov = art.manifest["provenance"]
    assert prov["experiments"] == 2 and prov["accuracies"] == {"ConvNet": [0.41, 0.43]} and prov["files"][0]["sha256"] == sha256(path)
    assert art.manifest["name"] == "dc-synthetic-classes-4-size-16-train-12-test-6-ipc1"
    with pytest.raises(ImporterError, match="no experiment 2"):
        import_dc(path, dataset=TINY, experiment=2, out=tmp_path / "bad")
    with pytest.raises(ImporterError, match="no 'data' list"):
        import_dc(save({"images": 1}, tmp_path / "other.pt"), dataset=TINY, out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_the_same_inputs_give_byte_identical_artifacts(tmp_path, target):
    images = save(normalised(pixels(8, seed=6), target), tmp_path / "x.pt")
    labels = save(torch.randn(8, 4, generator=torch.Generator().manual_seed(7)), tmp_path / "y.pt")
    a = import_tensor(images, labels, dataset=TINY, out=tmp_path / "a", name="same", version="2.0.0")
    b = import_tensor(images, labels, dataset=TINY, out=tmp_path / "b", name="same", version="2.0.0")
    files = lambda root: {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}  # noqa: E731
    assert files(a) == files(b) and len(files(a)) == 4  # manifest, card, grid, shard


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (torch.zeros(8, 3, 32, 32), torch.arange(8) % 4, r"images are \(3, 32, 32\) but synthetic.* images are \(3, 16, 16\)"),
        (torch.zeros(8, 1, 16, 16), torch.arange(8) % 4, r"images are \(1, 16, 16\)"),
        (torch.zeros(8, 3, 16, 16), torch.randn(8, 5), "labels have 5 classes but the dataset has 4"),
        (torch.zeros(8, 3, 16, 16), torch.arange(8), "labels run 0..7 but the dataset has 4 classes"),
        (torch.zeros(8, 3, 16, 16), torch.arange(6) % 4, r"\(6,\) labels for 8 images"),
        (torch.full((8, 3, 16, 16), float("nan")), torch.arange(8) % 4, "NaN or inf"),
        (torch.zeros(8, 3, 16), torch.arange(8) % 4, r"shape \(8, 3, 16\)"),
    ],
)
def test_shape_and_class_mismatches_are_importer_errors(tmp_path, images, labels, message):
    x, y = save(images, tmp_path / "x.pt"), save(labels, tmp_path / "y.pt")
    with pytest.raises(ImporterError, match=message):
        import_tensor(x, y, dataset=TINY, out=tmp_path / "art")
    assert not (tmp_path / "art").exists() and not list(tmp_path.glob(".art*"))


class Payload:
    """A pickle that runs code when loaded without weights_only: it would create a file."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    canary = tmp_path / "pwned"
    bad = save({"images": Payload(str(canary))}, tmp_path / "images_best.pt")
    labels = save(torch.arange(4), tmp_path / "labels_best.pt")
    with pytest.raises(ImporterError, match="weights_only=True"):
        import_mtt(bad, labels, dataset=TINY, out=tmp_path / "art")
    assert not canary.exists()


def test_known_datasets_use_their_conventions_and_flags_override(tmp_path):
    cifar = target_dataset("cifar10")
    assert cifar.info["classes"][:2] == ["airplane", "automobile"] and cifar.shape == (3, 32, 32)
    assert cifar.mean == (0.4914, 0.4822, 0.4465) and cifar.normalisation_source == "convention"
    flagged = target_dataset("cifar100", mean=[0.5] * 3, std=[0.25] * 3)
    assert flagged.mean == (0.5,) * 3 and flagged.info["std"] == [0.25] * 3 and len(flagged.info["classes"]) == 100
    with pytest.raises(ImporterError, match="go together"):
        target_dataset("cifar10", mean=[0.5] * 3)
    with pytest.raises(ImporterError, match="do not fit 3-channel"):
        target_dataset("cifar10", mean=[0.5], std=[0.2])
    with pytest.raises(ImporterError, match="needs --data-root"):
        target_dataset("tinyimagenet")


def test_h5_layout_flat_rows_and_implicit_class_order(target):
    u8 = pixels(8, seed=8)
    flat = normalised(u8, target).reshape(8, -1).numpy()
    x, y, implicit = h5_arrays({"data": flat}, target, "IPC_2.h5")
    assert x.shape == (8, 3, 16, 16) and torch.equal(x, torch.from_numpy(flat).reshape(8, 3, 16, 16))
    assert implicit and y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    soft = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    _, y, implicit = h5_arrays({"data": flat, "label": soft}, target, "f.h5")
    assert not implicit and np.array_equal(y.numpy(), soft)
    with pytest.raises(ImporterError, match="do not fit"):
        h5_arrays({"data": flat[:, :100]}, target, "f.h5")
    with pytest.raises(ImporterError, match="not a whole number per class"):
        h5_arrays({"data": flat[:7]}, target, "f.h5")
    with pytest.raises(ImporterError, match="no 'data' dataset"):
        h5_arrays({"images": flat}, target, "f.h5")


def test_h5_file_import(tmp_path, target):
    try:
        import h5py
    except ImportError:
        with pytest.raises(ImporterError, match="needs the h5py package"):
            import_h5(tmp_path / "IPC_1.h5", dataset=TINY, out=tmp_path / "art")
        return
    u8 = pixels(4, seed=9)
    with h5py.File(tmp_path / "IPC_1.h5", "w") as f:
        f["data"] = normalised(u8, target).reshape(4, -1).numpy()
    art = load(import_h5(tmp_path / "IPC_1.h5", dataset=TINY, out=tmp_path / "art"), verify=True)
    assert torch.equal(art.images, u8) and art.targets.tolist() == [0, 1, 2, 3]
    (tmp_path / "broken.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ImporterError, match="broken.h5 is not a readable HDF5 file"):
        import_h5(tmp_path / "broken.h5", dataset=TINY, out=tmp_path / "art2")
    assert not (tmp_path / "art2").exists()


@pytest.fixture(scope="module")
def expert_store(tmp_path_factory):
    """A store holding one (untrained, seeded) convnet_d3 expert for the tiny dataset."""
    from sl_compiler.experts import ExpertStore
    from sl_compiler.models import create_model

    torch.manual_seed(0)
    model = create_model("convnet_d3", 4, 3, 16)
    store = ExpertStore(tmp_path_factory.mktemp("experts"))
    store.add_checkpoint(model.state_dict(), dataset_info=load_dataset(TINY).info(), arch="convnet_d3", epoch=1, seed=0)
    return store.root


def test_imagefolder_keeps_source_bytes_and_is_labelled_by_the_teacher(tmp_path, expert_store):
    from PIL import Image

    from sl_compiler.data import decode_image
    from sl_compiler.experts import default_store, resolve

    folder = tmp_path / "syn_data"
    written = {}
    for c in range(4):
        (folder / f"new{c:03d}").mkdir(parents=True)
        for i in range(2):
            arr = pixels(1, seed=10 + 2 * c + i)[0].permute(1, 2, 0).numpy()
            size = 20 if i else 16  # one image off-size: decoded exactly as a reader decodes it
            img = Image.fromarray(arr).resize((size, size))
            name = f"new{c:03d}/class{c:03d}_id{i:03d}.{'jpg' if i else 'png'}"
            img.save(folder / name)
            written[name] = (folder / name).read_bytes()
    out = import_imagefolder(folder, dataset=TINY, teacher="convnet_d3@1#0", experts=expert_store, device="cpu", out=tmp_path / "art")
    art = load(out, verify=True)
    assert art.source_ids == sorted(written) and art.targets.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [art.encoded(i)[0] for i in range(8)] == [written[s] for s in art.source_ids]
    decoded = torch.stack([decode_image(written[s], (3, 16, 16)) for s in art.source_ids])
    assert torch.equal(art.images, decoded)
    (teacher,) = resolve("convnet_d3@1#0", default_store(expert_store), load_dataset(TINY).info())
    with torch.no_grad():
        expected = torch.softmax(teacher.load("cpu")(normalize(decoded, teacher.mean, teacher.std)), 1)
    assert torch.allclose(art.dense_labels()[:, 0], expected, atol=1e-3)
    m = art.manifest
    assert m["teachers"][0]["sha256"] == teacher.sha256 and m["provenance"]["mapped_by"] == "index"
    assert m["labels"]["teacher"] == "convnet_d3@1#0" and m["labels"]["temperature"] == 1.0


def test_imagefolder_folders_that_match_no_class_are_an_error(tmp_path, expert_store):
    for name in ("cats", "dogs"):
        (tmp_path / "f" / name).mkdir(parents=True)
    with pytest.raises(ImporterError, match="cannot map the 2 class folders"):
        import_imagefolder(tmp_path / "f", dataset=TINY, teacher="convnet_d3@1#0", experts=expert_store, out=tmp_path / "art")


def test_cli_import_prints_the_artifact_and_errors_in_one_line(tmp_path, target, capsys):
    images = save(normalised(pixels(4, seed=11), target), tmp_path / "images_best.pt")
    labels = save(torch.arange(4), tmp_path / "labels_best.pt")
    out = tmp_path / "art"
    assert main(["import", "mtt", str(images), str(labels), "--dataset", TINY, "--out", str(out), "--name", "mtt-tiny"]) == 0
    stdout = capsys.readouterr().out.splitlines()
    assert stdout[0] == "imported mtt-tiny 1.0.0: 4 images, hard labels (given as hard)"
    assert stdout[-1] == str(out) and json.loads((out / "manifest.json").read_text())["name"] == "mtt-tiny"
    mean = ",".join(str(m) for m in target.mean)
    assert main(["import", "tensor", str(images), str(labels), "--dataset", TINY, "--mean", mean, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --mean and --std go together")


def test_tensor_soft_labels_are_class_major_by_default_as_dd_ranking_writes_them(tmp_path, target, capsys):
    images = save(normalised(pixels(8, seed=12), target), tmp_path / "x.pt")
    probs = torch.softmax(torch.randn(8, 4, generator=torch.Generator().manual_seed(13)), 1)
    probs[:, 3] += 5.0  # every soft label's argmax is class 3: the argmax rule would put all 8 images in one class
    probs = probs / probs.sum(1, keepdim=True)
    labels = save(probs, tmp_path / "y.pt")
    art = load(import_tensor(images, labels, dataset=TINY, out=tmp_path / "a"), verify=True)
    assert art.targets.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and art.ipc == 2
    assert art.manifest["provenance"]["targets"]["rule"] == "class-major"
    art = load(import_tensor(images, labels, dataset=TINY, targets="argmax", out=tmp_path / "b"))
    assert art.targets.tolist() == [3] * 8 and art.manifest["provenance"]["targets"]["rule"] == "argmax"
    order = torch.tensor([1, 0, 3, 2, 1, 0, 3, 2])
    for path in (save(order, tmp_path / "t.pt"), tmp_path / "t.npy"):
        np.save(tmp_path / "t.npy", order.numpy())
        art = load(import_tensor(images, labels, dataset=TINY, targets=path, out=tmp_path / path.suffix[1:]), verify=True)
        assert art.targets.tolist() == order.tolist()
        rec = art.manifest["provenance"]["targets"]
        assert rec == {"rule": "file", "file": path.name, "sha256": sha256(path)} and path.name in [f["file"] for f in art.manifest["provenance"]["files"]]
    assert main(["import", "tensor", str(images), str(labels), "--dataset", TINY, "--targets", "argmax", "--out", str(tmp_path / "cli")]) == 0
    assert "classes: argmax (each soft label's most likely class)" in capsys.readouterr().out


def test_tensor_targets_that_cannot_be_known_or_do_not_fit_are_errors(tmp_path, target):
    images = save(normalised(pixels(6, seed=14), target), tmp_path / "x.pt")
    soft = save(torch.softmax(torch.randn(6, 4), 1), tmp_path / "y.pt")
    with pytest.raises(ImporterError, match="6 soft labels for 4 classes is not a whole number per class.*--targets FILE.*--targets argmax"):
        import_tensor(images, soft, dataset=TINY, out=tmp_path / "a")
    with pytest.raises(ImporterError, match="t.pt: targets are torch.int64 \\(5,\\)"):
        import_tensor(images, soft, dataset=TINY, targets=save(torch.zeros(5, dtype=torch.long), tmp_path / "t.pt"), out=tmp_path / "a")
    with pytest.raises(ImporterError, match="targets run 4..9 but the dataset has 4 classes"):
        import_tensor(images, soft, dataset=TINY, targets=save(torch.arange(6) + 4, tmp_path / "t.pt"), out=tmp_path / "a")
    np.save(tmp_path / "t.npy", np.array([object()] * 6, dtype=object), allow_pickle=True)
    with pytest.raises(ImporterError, match="not a plain .npy array"):
        import_tensor(images, soft, dataset=TINY, targets=tmp_path / "t.npy", out=tmp_path / "a")
    hard = save(torch.tensor([0, 1, 2, 3, 0, 1]), tmp_path / "h.pt")
    assert load(import_tensor(images, hard, dataset=TINY, out=tmp_path / "h")).manifest["provenance"]["targets"]["rule"] == "labels"
    with pytest.raises(ImporterError, match="image 1 has hard label 1 but --targets gives class 0"):
        import_tensor(images, hard, dataset=TINY, targets=save(torch.zeros(6, dtype=torch.long), tmp_path / "t.pt"), out=tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_a_recorded_location_gives_the_target_its_classes_and_fingerprint(tmp_path):
    from sl_compiler.data.fake import FakeSpec, write_fake
    from sl_compiler.data.locations import add_location

    assert "fingerprint" not in target_dataset("cifar10").info  # no files: the convention's class names only
    add_location("cifar10", write_fake(tmp_path / "c10", "imagefolder", FakeSpec(classes=10, per_class=1, val_per_class=1, min_size=32, max_size=32)))
    found = target_dataset("cifar10")
    assert found.info["fingerprint"] and found.info["classes"] == sorted(found.info["classes"]) and found.normalisation_source == "convention"
