"""Import checkpoints trained elsewhere (torchvision's train.py, the paper's code) into the store.

Read safely: safetensors, or a PyTorch file through ``torch.load(weights_only=True)``, which
unpickles tensors and plain containers only, never code; a pickle that needs code gets slc's own
message saying how to convert it. An imported checkpoint carries its input preprocess (resize,
crop, mean, std; ``--preprocess torchvision`` for torchvision's ImageNet weights), recorded in the
trajectory and used for its test pass, which streams the test split like every other pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..augment.resized_crop import ResizeCenterCrop
from ..data.stats import IMAGENET
from ..device import prepare_model, resolve_device
from ..errors import ExpertError
from ..models import create_model
from .store import Checkpoint, ExpertStore, Trajectory, preprocess_of, sha256_file
from .train import EVAL_BATCH, Split, balanced_subset, evaluate_accuracy, load_splits

# where training scripts nest the weights: torchvision's train.py saves {"model": ..., "optimizer": ...}
NESTED_KEYS = ("model", "state_dict", "model_state_dict", "net")
# prefixes added by DistributedDataParallel and torch.compile
PREFIXES = ("module.", "_orig_mod.")
# torchvision's ImageNet classification weights: Resize(256), CenterCrop(224), bilinear, ImageNet mean/std
PRESETS = {"torchvision": {"resize": 256, "crop": [224, 224], "interpolation": "bilinear", "mean": list(IMAGENET[0]), "std": list(IMAGENET[1])}}
CONVERT = (
    "if you trust the file, load it yourself in Python (torch.load(path, weights_only=False)), build the model, "
    "and save its weights with safetensors: safetensors.torch.save_file(model.state_dict(), 'model.safetensors'); then add that file"
)


def read_external(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a safetensors file or a (possibly nested) PyTorch checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ExpertError(f"checkpoint {path} does not exist", "give the path of a .safetensors or .pth state_dict")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _unreadable(path, exc) from None
    for key in NESTED_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExpertError(f"{path} holds no state_dict of tensors", "save model.state_dict() (or torchvision's checkpoint with a 'model' entry)")
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _unreadable(path: Path, exc: Exception) -> ExpertError:
    """slc's message for a file torch.load(weights_only=True) refused: a pickle that needs code, or not a checkpoint."""
    with open(path, "rb") as f:
        head = f.read(4)
    pickled = head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"  # torch.save's zip archive, or a raw pickle
    if path.suffix != ".safetensors" and pickled:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        holds = f"a {found[1]} object" if found else "Python objects"
        return ExpertError(f"{path} is a pickle that holds {holds} besides tensors; slc reads tensors only and never unpickles code", CONVERT)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ExpertError(f"cannot read checkpoint {path}: {first}", "give a safetensors file or a state_dict saved with torch.save (tensors only)")


def resolve_preprocess(base: dict, preset: str | None = None, *, resize: int | None = None, crop: int | None = None, mean=None, std=None) -> dict:
    """The checkpoint's input transform: ``base`` (the dataset's), then the ``preset`` (a key of PRESETS), then each explicit value."""
    out = {**base, **(PRESETS[preset] if preset else {})}
    if crop is not None:
        out["crop"] = [int(crop), int(crop)]
    if resize is not None:
        out["resize"] = int(resize)
    for key, value in (("mean", mean), ("std", std)):
        if value is not None:
            out[key] = [float(v) for v in value]
    if not 0 < out["crop"][0] <= out["resize"]:
        raise ExpertError(f"preprocess crops {out['crop'][0]} px after resizing to {out['resize']} px", "give a --crop between 1 and --resize")
    if len(out["mean"]) != len(out["std"]) or any(s <= 0 for s in out["std"]):
        raise ExpertError(f"preprocess mean {out['mean']} and std {out['std']} do not match", "give one positive std per mean, one per channel")
    return out


def import_checkpoint(
    path: str | Path,
    *,
    dataset: str,
    arch: str,
    epoch: float,
    seed: int,
    data_root: str | Path | None = None,
    store: ExpertStore | str | Path = "experts",
    device: str | torch.device = "auto",
    force: bool = False,
    preprocess: str | None = None,
    resize: int | None = None,
    crop: int | None = None,
    mean=None,
    std=None,
    workers: int | None = None,
    val_subset: int | None = None,
    wait: bool = True,
    batch_size: int = EVAL_BATCH,
) -> tuple[Trajectory, Checkpoint, str]:
    """Add ``path`` to the store as ``arch@epoch#seed`` for ``dataset``; test accuracy when a test split exists.

    ``preprocess`` (a preset: ``torchvision``) and ``resize``/``crop``/``mean``/``std`` say how
    the checkpoint's inputs are made; default: the dataset's own. The test split streams through
    ``workers`` decoding processes, ``batch_size`` images at a time. Returns the trajectory, the
    new checkpoint and a note (empty, or why accuracy is missing).
    """
    store = store if isinstance(store, ExpertStore) else ExpertStore(store)
    device = resolve_device(device)
    if preprocess is not None and preprocess not in PRESETS:
        raise ExpertError(f"unknown preprocess preset {preprocess!r}", f"use one of: {', '.join(PRESETS)}, or give --resize/--crop/--mean/--std")
    state = read_external(path)
    wanted_crop = crop or (PRESETS[preprocess]["crop"][0] if preprocess else None)
    train, test, note = load_splits(dataset, data_root, resolution=wanted_crop)
    info = train.info()
    steps = resolve_preprocess(preprocess_of(info), preprocess, resize=resize, crop=crop, mean=mean, std=std)
    if len(steps["mean"]) != train.shape[0]:
        raise ExpertError(f"preprocess normalises {len(steps['mean'])} channels; {dataset} has {train.shape[0]}", "give one --mean and --std value per channel")
    model = create_model(arch, train.num_classes, train.shape[0], train.shape[1])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        raise ExpertError(
            f"{path} does not fit {arch} for {train.num_classes} classes of {train.shape[1]} px: {lines[1].strip() if len(lines) > 1 else exc}",
            "check --model and --dataset against how the checkpoint was trained",
        ) from None
    if val_subset is not None and test is None:
        raise ExpertError(f"--val-subset {val_subset} given but {dataset} has no test split", "drop --val-subset")
    accuracy = None
    if test is not None:
        indices = balanced_subset(test, val_subset) if val_subset is not None else None
        split = Split(test, device, workers)
        accuracy = evaluate_accuracy(prepare_model(model, device), split, indices, decode=_decoder(test, steps), mean=steps["mean"], std=steps["std"], batch_size=batch_size)
    source = {"file": Path(path).name, "sha256": sha256_file(path), "preprocess": steps}
    if val_subset is not None:
        source["test_subset"] = val_subset
    trajectory, checkpoint = store.add_checkpoint(
        model.state_dict(), dataset_info={**info, "preprocess": steps}, arch=arch, epoch=epoch, seed=seed, test_accuracy=accuracy, source=source, force=force, wait=wait
    )
    return trajectory, checkpoint, note


def _decoder(test, steps: dict):
    """A stream decoder when the checkpoint's resize/crop differ from how the test split decodes by itself, else None."""
    own = preprocess_of(test.info())
    if (own["resize"], list(own["crop"])) == (steps["resize"], list(steps["crop"])):
        return None
    if test.sources is None:
        raise ExpertError(
            f"{test.name}/{test.split} is held as decoded pixels without source files, so it cannot be decoded at resize {steps['resize']}, crop {steps['crop'][0]}",
            "drop --preprocess/--resize/--crop for this dataset",
        )
    return ResizeCenterCrop(steps["resize"], steps["crop"][0], test.shape[0], name=test.source_id)
