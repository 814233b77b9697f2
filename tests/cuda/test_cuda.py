"""The CUDA path, on a GPU (skipped without one): pytest -m cuda, or benchmarks/gpu_suite.py.

bf16 autocast and channels_last are on; batched students equal sequential ones within a derived
tolerance; no step synchronises with the host; streamed and resident test sets score the same;
``slc compile`` on CUDA is byte-identical run to run and labels in fp32; ``--device cuda:1`` is a
clear error on a one-GPU machine.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TINY = "synthetic:classes=4,size=16,train=12,test=6"
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("SLC_PROGRESS", "0")


@pytest.fixture
def fp32(monkeypatch):
    """True fp32 on CUDA: no bf16 autocast in the students, no TF32 in convolutions or matmuls."""
    from sl_compiler.evaluate import students

    monkeypatch.setattr(students, "autocast", lambda device: contextlib.nullcontext())
    conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm


def _train_set(regime="hl", n=None, spec=TINY, **kw):
    from sl_compiler.data import load_dataset
    from sl_compiler.evaluate.regimes import training_set

    train = load_dataset(spec, split="train")
    n = n or len(train)
    return training_set(regime, train.pixels[:n], train.targets[:n], train.num_classes, train.mean, train.std, CUDA, **kw)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An expert store with one convnet_d3 teacher for the tiny set, its logits scaled to about 10.

    Near-uniform logits would hide a bf16 labeller: at |logit| ~ 0.1, bf16's 2^-8 relative
    rounding moves a probability by ~4e-4, inside fp16's own rounding. Scaled x20 (|logit| up to
    ~10), bf16 moves them by ~4e-2 and TF32 (2^-11 relative) by ~5e-3, far outside the tolerance below.
    """
    from sl_compiler.data import load_dataset
    from sl_compiler.evaluate.students import init_student
    from sl_compiler.experts import ExpertStore

    train = load_dataset(TINY, split="train")
    model = init_student("convnet_d3", 4, train.shape, 0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["classifier.weight"] *= 20
    root = tmp_path_factory.mktemp("cuda-store")
    ExpertStore(root).add_checkpoint(state, dataset_info=train.info(), arch="convnet_d3", epoch=1, seed=0)
    return root


# ---- the fast path is on --------------------------------------------------------------------------


def test_students_run_in_bf16_and_channels_last():
    from sl_compiler.evaluate.students import StudentGroup

    seen = {}

    def hook(name):
        def record(module, inputs, output):
            seen[name] = (inputs[0].is_contiguous(memory_format=torch.channels_last), output.dtype)

        return record

    one = StudentGroup("convnet_d3", 4, (3, 16, 16), [0], CUDA)
    first_conv = one.module.features[0]
    handle = first_conv.register_forward_hook(hook("one"))
    one.forward(torch.randn(1, 8, 3, 16, 16, device=CUDA))
    handle.remove()
    assert seen["one"] == (True, torch.bfloat16)  # channels_last input, bf16 convolution
    many = StudentGroup("convnet_d3", 4, (3, 16, 16), [0, 1, 2], CUDA)
    assert many.forward(torch.randn(3, 8, 3, 16, 16, device=CUDA)).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in many.params.values())  # master weights stay fp32


# ---- batched == sequential --------------------------------------------------------------------------


@pytest.mark.parametrize("augment", ["dsa", "rrc+flip+cutmix"])
def test_batched_students_equal_sequential_in_fp32(fp32, augment):
    """Tolerance: the batches are bit-identical (integer-hash draws); only the forward and backward
    differ, by the order of fp32 sums (vmap's grouped convolution vs one convolution). A gradient
    entry sums n = B*H*W = 8*16*16 = 2048 products, so its rounding differs by about
    sqrt(n) * 2^-24 ~ 3e-6 relative; 6 SGD steps of lr 0.01 move a weight by ~0.05 in all,
    so weights agree to ~1e-6 absolute. We allow 1e-5 + 1e-4 relative: 10x that, still 100x below
    what a wrong batch (another student's images) gives after one step (~1e-3)."""
    from sl_compiler.evaluate import Protocol
    from sl_compiler.evaluate.trainer import train_group

    data = _train_set(n=16)
    p = Protocol(epochs=3, batch_size=8, seeds=(0, 1, 2), augment=augment)
    _, group = train_group(data, p, [0, 1, 2], [0.01] * 3, CUDA, {})
    batched = group.state_dicts()
    for k in range(3):
        alone = train_group(data, p, [k], [0.01], CUDA, {})[1].state_dicts()[0]
        for name, w in alone.items():
            assert torch.allclose(batched[k][name], w, atol=1e-5, rtol=1e-4), f"student {k} {name}"


def test_batched_logits_equal_single_in_bf16():
    """In bf16 (the default), one forward pass: inputs and weights are rounded to 8 significant bits
    (relative error <= 2^-9 each), a product to <= 2^-8, and three conv layers plus the head compound
    it to about 4 * 2^-8 ~ 2^-6 of the largest logit; batched and single runs round differently.
    We allow 2^-5 of max |logit|."""
    from sl_compiler.evaluate.students import StudentGroup

    x = torch.randn(3, 8, 3, 16, 16, device=CUDA)
    many = StudentGroup("convnet_d3", 4, (3, 16, 16), [0, 1, 2], CUDA).forward(x).float()
    for k in range(3):
        one = StudentGroup("convnet_d3", 4, (3, 16, 16), [k], CUDA).forward(x[k : k + 1]).float()[0]
        assert (one - many[k]).abs().max() <= 2**-5 * one.abs().max()


# ---- no host sync ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["hl-dsa", "sl-views", "slkd-cutmix"])
def test_no_step_synchronises_with_the_host(tmp_path, store, case):
    """torch.cuda.set_sync_debug_mode("error") inside every training step (not around epoch setup or scoring)."""
    from sl_compiler.artifact import load
    from sl_compiler.compile import compile_artifact
    from sl_compiler.evaluate import Protocol
    from sl_compiler.evaluate import trainer as trainer_mod
    from sl_compiler.evaluate.regimes import training_set
    from sl_compiler.recipe import Recipe

    p = Protocol(epochs=2, batch_size=8, augment="dsa")
    if case == "hl-dsa":
        data = _train_set(n=16)
    elif case == "sl-views":
        path = compile_artifact(Recipe(dataset=TINY, ipc=2, teacher="convnet_d3@1#0", views=3, augment="cutmix+rrc", topk=2), experts=store, device="cuda", out=tmp_path / "views")
        art = load(path)
        data = training_set("sl", art.images, art.targets, art.num_classes, art.mean, art.std, CUDA, labels=art.labels, views=art.views, fill=art.manifest["labels"]["fill"])
        p = p.override(augment="rrc+flip+cutmix", optimizer="adamw", schedule="cosine")
    else:
        teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4)).to(CUDA)
        data = _train_set("slkd", n=16, teacher=teacher)
        p = p.override(augment="cutmix", loss="kl", temperature=2.0)
    real = trainer_mod.StudentTrainer.step
    steps = []

    def strict(self, epoch, step):
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            real(self, epoch, step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        steps.append(step)

    trainer_mod.StudentTrainer.step = strict
    try:
        trainer_mod.train_group(data, p, [0, 1], [0.01, 0.02], CUDA, {})
    finally:
        trainer_mod.StudentTrainer.step = real
    assert len(steps) == p.epochs * -(-len(data) // min(p.batch_size, len(data)))


# ---- test sets -------------------------------------------------------------------------------------------


def test_streamed_and_resident_test_sets_score_the_same(tmp_path, monkeypatch):
    """A file-backed test split streamed through workers with pinned memory scores as when resident on the device."""
    import numpy as np
    from PIL import Image

    from sl_compiler.data import load_dataset
    from sl_compiler.evaluate import data as data_mod
    from sl_compiler.evaluate.students import StudentGroup, score

    rng = np.random.default_rng(0)
    for c in range(4):
        for split, count in (("train", 2), ("test", 40)):
            folder = tmp_path / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    test = load_dataset(f"imagefolder:{tmp_path}", split="test", in_memory=False)
    group = StudentGroup("convnet_d3", 4, (3, 16, 16), [0, 1], CUDA)
    resident = data_mod.eval_set(test, None, test.mean, test.std, CUDA, workers=2)
    monkeypatch.setattr(data_mod, "RESIDENT_BYTES", 0)
    streamed = data_mod.eval_set(test, None, test.mean, test.std, CUDA, workers=2)
    assert resident.resident and not streamed.resident
    assert score([group], resident, 32) == score([group], streamed, 32)


# ---- slc compile on CUDA ---------------------------------------------------------------------------------


def _tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def test_compile_on_cuda_is_byte_identical_run_to_run(tmp_path, store):
    from sl_compiler.compile import compile_artifact
    from sl_compiler.recipe import Recipe

    recipe = Recipe(dataset=TINY, ipc=3, teacher="convnet_d3@1#0", views=4, augment="cutmix+rrc", temperature=2.0)
    a = compile_artifact(recipe, experts=store, device="cuda", out=tmp_path / "a")
    b = compile_artifact(recipe, experts=store, device="cuda", out=tmp_path / "b")
    assert _tree_digest(a) == _tree_digest(b)


@pytest.mark.parametrize("views", [1, 4])
def test_compiled_labels_are_fp32_teacher_labels(tmp_path, store, views):
    """The artifact's fp16 labels equal the teacher's fp32 softmax (computed here on the CPU) within fp16 rounding.

    Tolerance per probability p: fp16 rounding, half an ulp, <= 2^-11 * p for normals (2^-25
    absolute below 2^-14); plus fp32 differences between the GPU's and the CPU's summation order:
    a conv output sums 1152 products, ~sqrt(1152) * 2^-24 ~ 2e-6 relative, ~2e-5 on a logit of 10,
    moving p by ~4e-5 * p; we allow 2e-4 * p. A labeller under bf16 autocast (2^-8 per product)
    or with TF32 convolutions (2^-11) is off by 5e-3 to 4e-2 * p: far outside.
    """
    from sl_compiler.artifact import load
    from sl_compiler.compile import compile_artifact
    from sl_compiler.data import normalize
    from sl_compiler.experts import resolve
    from sl_compiler.label import AugmentedViews
    from sl_compiler.recipe import Recipe

    recipe = Recipe(dataset=TINY, ipc=3, teacher="convnet_d3@1#0", **({"views": views, "augment": "cutmix+rrc"} if views > 1 else {}))
    art = load(compile_artifact(recipe, experts=store, device="cuda", out=tmp_path / f"v{views}"))
    teacher = resolve("convnet_d3@1#0", store, art.manifest["dataset"])[0].load("cpu")
    images = art.images if views == 1 else AugmentedViews(art.images, art.views)[0 : len(art) * views]
    with torch.no_grad():
        ref = F.softmax(teacher(normalize(images, art.mean, art.std)).double(), -1).view(len(art), views, -1)
    stored = art.dense_labels().double()
    bound = ref * (2**-11 + 2e-4) + 2**-25
    assert ((stored - ref).abs() <= bound).all(), f"max excess {float(((stored - ref).abs() - bound).max()):.2e}"
    assert float(ref.max(-1).values.mean()) > 0.6  # the scaled teacher is confident: the check has teeth


# ---- --device cuda:N -----------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.device_count() > 1, reason="checks the one-GPU case")
def test_a_missing_gpu_index_is_a_clear_error(tmp_path, store, capsys):
    from cli.main import main
    from sl_compiler.compile import compile_artifact
    from sl_compiler.device import resolve_device
    from sl_compiler.errors import SlcError
    from sl_compiler.recipe import Recipe

    with pytest.raises(SlcError, match=r"'cuda:1' does not exist: this machine has 1 CUDA device \(cuda:0\)"):
        resolve_device("cuda:1")
    art = compile_artifact(Recipe(dataset=TINY, ipc=1, teacher="convnet_d3@1#0"), experts=store, device="cpu", out=tmp_path / "a")
    assert main(["evaluate", str(art), "--device", "cuda:1", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cuda:1" in errors[0] and "does not exist" in errors[0] and "Traceback" not in err


# ---- torch.compile -------------------------------------------------------------------------------------


def test_compiled_students_train_like_eager_ones():
    """--compile (inductor) in bf16: the same students within bf16 training noise after a few steps."""
    from sl_compiler.evaluate import Protocol
    from sl_compiler.evaluate.trainer import train_group

    data = _train_set(n=16)
    p = Protocol(epochs=2, batch_size=8, augment="dsa")
    eager = train_group(data, p, [0, 1], [0.01, 0.01], CUDA, {})[1].state_dicts()
    compiled = train_group(data, p, [0, 1], [0.01, 0.01], CUDA, {}, compile=True)[1].state_dicts()
    # 4 steps of lr 0.01 move weights by ~1e-2 in all; fused bf16 kernels may round each update differently by 2^-8 of it
    assert all(torch.allclose(eager[k][n], compiled[k][n], atol=1e-3, rtol=1e-2) for k in range(2) for n in eager[k])
