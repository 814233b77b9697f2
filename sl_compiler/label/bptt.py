"""Labels learned by truncated back-propagation through time, without an expert.

Qin, Deng, Alvarez-Melis (NeurIPS 2024), Section 5.2, Algorithm 1, after Feng et al.'s RaT-BPTT
("Embarrassingly simple dataset distillation", ICLR 2024), with the images frozen: the distilled
set is N real images and their label logits ``Z`` (N, C), initialised as hard labels. Each outer
step builds a fresh student (its init seeded by (seed, step)), trains it T plain SGD steps on the
distilled set with the soft cross-entropy to softmax(Z), and scores it by the cross-entropy on a
batch of real training images. Only the last M inner steps keep their autograd graph (truncation:
the first T - M run detached, so the backward pass costs M steps, not T); the gradient of the
outer loss w.r.t. ``Z``, clipped to a maximum L2 norm, drives Adam on ``Z``.

The inner loop is functional (``torch.func.functional_call`` on parameters held as tensors), so
each step ``p - lr * grad`` is itself differentiable w.r.t. ``Z`` (``create_graph``). Everything
runs in float32 without autocast or TF32, like teacher labels (labels are data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..data import ImageSet, normalize, stream
from ..device import prepare_batch
from ..models import create_model
from ..progress import bar
from ..recipe import Recipe
from ..seeding import derive_seed, generator
from .teacher import full_precision

INIT_CONFIDENCE = 0.9  # softmax of the initial logits: this much on the image's class, the rest spread evenly


def initial_logits(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Hard labels as logits, float32 (N, C): a one-hot row needs infinite logits, so the class gets
    ``log(INIT_CONFIDENCE (C - 1) / (1 - INIT_CONFIDENCE))`` and the others 0 (softmax: 0.9 on the class)."""
    scale = math.log(INIT_CONFIDENCE * max(num_classes - 1, 1) / (1 - INIT_CONFIDENCE))
    return F.one_hot(targets.long(), num_classes).float() * scale


def soft_cross_entropy(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum(probs * log_softmax(logits))."""
    return -(probs * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


def unroll(model: torch.nn.Module, params: dict, buffers: dict, images: torch.Tensor, probs: torch.Tensor, *, steps: int, window: int, lr: float, batches: list | None = None) -> dict:
    """The student's parameters after ``steps`` SGD steps on ``(images, probs)``; only the last ``window`` are differentiable.

    The first ``steps - window`` steps see ``probs`` detached and hand on detached parameters, so
    no graph of them is kept. ``batches[t]`` (optional) are the rows of inner step t.
    """
    start = steps - window
    with torch.enable_grad():  # the inner steps need gradients even where the caller wants none
        for t in range(steps):
            keep = t >= start
            if t <= start:  # a fresh leaf: the graph of what follows starts here
                params = {k: v.detach().requires_grad_() for k, v in params.items()}
            rows = None if batches is None else batches[t]
            x, y = (images, probs) if rows is None else (images[rows], probs[rows])
            loss = soft_cross_entropy(functional_call(model, (params, buffers), (x,)), y if keep else y.detach())
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=keep)
            params = {k: v - lr * g for (k, v), g in zip(params.items(), grads)}
    return params


def label_gradient(model: torch.nn.Module, params: dict, buffers: dict, images: torch.Tensor, logits: torch.Tensor, real_x: torch.Tensor, real_y: torch.Tensor, *, steps: int, window: int, lr: float, batches: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(outer loss, d outer loss / d logits)``: the real-data cross-entropy of the student unrolled from ``params``."""
    logits = logits.detach().requires_grad_()
    final = unroll(model, params, buffers, images, torch.softmax(logits, dim=-1), steps=steps, window=window, lr=lr, batches=batches)
    loss = F.cross_entropy(functional_call(model, (final, buffers), (real_x,)), real_y)
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.detach(), grad


def student(arch: str, num_classes: int, shape: tuple, seed: int, step: int, device: torch.device) -> tuple[torch.nn.Module, dict, dict]:
    """A fresh student for outer step ``step``: its init depends only on (seed, step), not on the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("bptt", "student", seed, step))
        model = create_model(arch, num_classes, shape[0], shape[1])
    model = model.to(device).train()
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    return model, params, buffers


def real_batches(recipe: Recipe, size: int) -> list[list[int]]:
    """Training-split indices of each outer step's real batch: ``bptt_batch`` distinct images drawn from (seed, step)."""
    b = min(recipe.bptt_batch, size)
    return [torch.randperm(size, generator=generator("bptt", "real", recipe.seed, step))[:b].tolist() for step in range(recipe.bptt_outer_steps)]


def syn_batches(recipe: Recipe, n: int, step: int, device: torch.device) -> list | None:
    """Rows of the distilled set for each inner step of outer step ``step``; None when every step uses all ``n``."""
    if recipe.bptt_syn_batch >= n:
        return None
    return [torch.randperm(n, generator=generator("bptt", "syn", recipe.seed, step, t))[: recipe.bptt_syn_batch].to(device) for t in range(recipe.bptt_steps)]


@dataclass
class Learned:
    """The learned label logits, float32 (N, C) on the CPU, and each outer step's loss, float32 (outer_steps,)."""

    logits: torch.Tensor
    losses: torch.Tensor


def learn_labels(recipe: Recipe, pixels: torch.Tensor, targets: torch.Tensor, train: ImageSet, device: torch.device, *, workers: int | None = None) -> Learned:
    """Learn the labels of the uint8 distilled images ``pixels`` (N, C, H, W) of classes ``targets`` on ``train``'s real images.

    The distilled images stay on ``device`` (normalised once); the real batches are streamed as
    uint8 from ``train`` (decoding processes for splits of files) and normalised per batch.
    """
    shape, classes = train.shape, train.num_classes
    images = normalize(prepare_batch(pixels, device), train.mean, train.std)
    logits = initial_logits(targets, classes).to(device).requires_grad_()
    adam = torch.optim.Adam([logits], lr=recipe.bptt_label_lr)
    losses = []
    draws = real_batches(recipe, len(train))
    with full_precision(device, grad=True), bar(recipe.bptt_outer_steps, desc="bptt labels", unit="step") as progress:
        for step, batch in enumerate(stream(train, batches=draws, workers=workers)):
            model, params, buffers = student(recipe.bptt_model, classes, shape, recipe.seed, step, device)
            real_x = normalize(prepare_batch(batch.pixels, device), train.mean, train.std)
            real_y = train.targets[batch.indices].to(device)
            loss, grad = label_gradient(model, params, buffers, images, logits, real_x, real_y, steps=recipe.bptt_steps, window=recipe.bptt_window, lr=recipe.bptt_lr, batches=syn_batches(recipe, len(pixels), step, device))
            logits.grad = grad
            torch.nn.utils.clip_grad_norm_([logits], recipe.bptt_clip)
            adam.step()
            losses.append(loss)
            progress.update(1)
            progress.set_postfix_str(f"outer loss {float(loss):.4f}")  # one sync per outer step, none in the unroll
    return Learned(logits.detach().cpu(), torch.stack(losses).float().cpu())


def settings(recipe: Recipe, distilled: int, train_size: int, learned: Learned) -> dict:
    """What ``manifest.labels.bptt`` records: every setting as it ran, and the outer loss at the start and the end."""
    tail = learned.losses[-max(1, len(learned.losses) // 10) :]
    return {
        "algorithm": "truncated BPTT (Qin et al. 2024 Algorithm 1; Feng et al. 2024 RaT-BPTT), images frozen, labels learned",
        "model": recipe.bptt_model,
        "inner_steps": recipe.bptt_steps,
        "window": recipe.bptt_window,
        "inner_lr": recipe.bptt_lr,
        "inner_optimizer": "sgd, no momentum, no weight decay",
        "inner_loss": "soft cross-entropy to softmax(label logits)",
        "syn_batch": min(recipe.bptt_syn_batch, distilled),
        "outer_steps": recipe.bptt_outer_steps,
        "outer_loss": "cross-entropy of the unrolled student on real training images (hard labels)",
        "real_batch": min(recipe.bptt_batch, train_size),
        "label_lr": recipe.bptt_label_lr,
        "label_optimizer": "adam, betas (0.9, 0.999), eps 1e-08",
        "clip_norm": recipe.bptt_clip,
        "init": f"hard labels as logits: softmax {INIT_CONFIDENCE} on the class, the rest spread evenly",
        "seed": recipe.seed,
        "seeding": "student init derive_seed('bptt', 'student', seed, step); real batch and inner batches from generator('bptt', 'real'|'syn', seed, step[, t])",
        "outer_loss_first": round(float(learned.losses[0]), 6),
        "outer_loss_last_tenth": round(float(tail.mean()), 6),
    }
