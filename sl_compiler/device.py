"""Device selection and the CUDA fast path (bf16 autocast, channels_last) behind one switch.

Code elsewhere calls these helpers and stays device-agnostic: on the CPU they are no-ops.
"""

from __future__ import annotations

import contextlib

import torch

from .errors import SlcError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; ``cuda:N`` must exist."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise SlcError(f"unknown device {spec!r}", "use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SlcError(f"device {spec!r} asked for but CUDA is not available", "use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            have = ", ".join(f"cuda:{i}" for i in range(count))
            raise SlcError(
                f"device {spec!r} does not exist: this machine has {count} CUDA device{'s' if count != 1 else ''} ({have})",
                f"pass --device {'cuda' if count == 1 else f'cuda:0 to cuda:{count - 1}'} or auto",
            )
    elif device.type != "cpu":
        raise SlcError(f"unsupported device {spec!r}", "use auto, cpu, cuda or cuda:N")
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op elsewhere (this CPU has no fast bf16)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device) -> torch.memory_format:
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a model to ``device``, channels_last on CUDA."""
    return model.to(device=device, memory_format=memory_format(device))


def prepare_batch(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move an image batch to ``device``, channels_last on CUDA for 4-d tensors."""
    x = x.to(device, non_blocking=True)
    if x.dim() == 4 and device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def describe(device: torch.device) -> str:
    """A human-readable device name for tables and JSON."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"
