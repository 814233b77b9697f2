"""Bare PyTorch loops, written independently of slc, to measure slc against (never imports sl_compiler).

A benchmark's ratio means "slc's img/s / what a plain loop that does the same work gets in the
same run". So these loops are what a careful engineer writes without slc: a ConvNet-D3 in plain
``nn`` modules, DSA-style augmentation (one family per batch, per-image parameters, the DSA
paper's ranges), ``torch.optim.SGD``, bf16 autocast and channels_last on CUDA; and a teacher
forward in fp32 over uint8 batches. They share no code with slc's trainer, augmentation or
labeller (tests/test_benchmarks.py checks the imports).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def convnet(num_classes: int, channels: int = 3, size: int = 32, depth: int = 3, width: int = 128) -> nn.Module:
    """ConvNet-D3: (conv3x3 -> instance norm -> ReLU -> avg-pool 2) x depth -> linear."""
    layers, c = [], channels
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width), nn.ReLU(), nn.AvgPool2d(2)]
        c, size = width, size // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * size * size, num_classes))


def _affine(x, theta):
    return F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=True), align_corners=True)


def dsa(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One DSA family per batch (color, crop, cutout, flip, scale, rotate), random per image."""
    n, _, h, w = x.shape
    dev = x.device
    u = lambda *shape: torch.rand(*shape, device=dev, generator=g)  # noqa: E731
    family = int(torch.randint(6, (1,)))  # on the host, like DSA's own choice
    if family == 0:
        x = x + (u(n, 1, 1, 1) - 0.5)
        m = x.mean(1, keepdim=True)
        x = (x - m) * (u(n, 1, 1, 1) * 2) + m
        m = x.mean((1, 2, 3), keepdim=True)
        return (x - m) * (u(n, 1, 1, 1) + 0.5) + m
    if family == 1:  # shift by up to 1/8 of the size, zero fill
        pad, c = int(h * 0.125 + 0.5), x.shape[1]
        padded = F.pad(x, (pad, pad, pad, pad))
        oy, ox = (u(2, n) * (2 * pad + 1)).long()
        rows = (oy.view(n, 1) + torch.arange(h, device=dev)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
        cols = (ox.view(n, 1) + torch.arange(w, device=dev)).view(n, 1, 1, w).expand(n, c, h, w)
        return padded.gather(2, rows).gather(3, cols)
    if family == 2:  # zero a square of half the size
        s = h // 2
        oy, ox = (u(2, n, 1) * torch.tensor([h, w], device=dev).view(2, 1, 1)).long() - s // 2
        r, c = torch.arange(h, device=dev).view(1, h), torch.arange(w, device=dev).view(1, w)
        hole = ((r >= oy) & (r < oy + s))[:, None, :, None] & ((c >= ox) & (c < ox + s))[:, None, None, :]
        return x.masked_fill(hole, 0)
    if family == 3:
        return torch.where(u(n, 1, 1, 1) < 0.5, x.flip(3), x)
    theta = torch.zeros(n, 2, 3, device=dev)
    if family == 4:
        s = u(2, n) * (1.2 - 1 / 1.2) + 1 / 1.2
        theta[:, 0, 0], theta[:, 1, 1] = s[0], s[1]
    else:
        a = (u(n) - 0.5) * 2 * math.radians(15)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), a.sin(), -a.sin(), a.cos()
    return _affine(x, theta)


def student_loop(images: torch.Tensor, targets: torch.Tensor, num_classes: int, steps: int, batch: int, device: torch.device, seed: int = 0) -> float:
    """Seconds for ``steps`` SGD steps (lr 0.01, momentum 0.9, wd 5e-4) of one ConvNet-D3 on uint8 ``images`` on ``device``."""
    torch.manual_seed(seed)
    cuda = device.type == "cuda"
    model = convnet(num_classes, images.shape[1], images.shape[2]).to(device, memory_format=torch.channels_last if cuda else torch.contiguous_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    mean = images.float().mean((0, 2, 3), keepdim=True) / 255
    std = images.float().std((0, 2, 3), keepdim=True) / 255
    g = torch.Generator(device=device).manual_seed(seed)
    n = len(images)
    per_epoch = math.ceil(n / batch)
    sync(device)
    start = time.perf_counter()
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(n, device=device, generator=g)
        idx = order[(step % per_epoch) * batch : (step % per_epoch + 1) * batch]
        x = dsa((images[idx].float() / 255 - mean) / std, g)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x).float(), targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


@torch.no_grad()
def teacher_loop(model: nn.Module, images: torch.Tensor, mean, std, batch: int, device: torch.device) -> tuple[float, torch.Tensor]:
    """Seconds to run ``model`` in fp32 over uint8 CPU ``images`` batch by batch (moved, normalised, forward), and the logits.

    True fp32, as labels must be: TF32 convolutions and matmuls are off while it runs.
    """
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return _teacher_loop(model, images, mean, std, batch, device)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def _teacher_loop(model, images, mean, std, batch, device):
    model = model.to(device).eval()
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    out = torch.empty(len(images), model(torch.zeros(1, *images.shape[1:], device=device)).shape[1], device=device)
    sync(device)
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        x = (images[i : i + batch].to(device).float() / 255 - m) / s
        out[i : i + batch] = model(x).float()
    sync(device)
    return time.perf_counter() - start, out.cpu()
