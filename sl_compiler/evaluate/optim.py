"""SGD and AdamW over stacked student parameters (leading dim = student), each with its own lr.

One update serves a single student (K = 1) and a batched group alike, so the batched and the
one-at-a-time paths run the same arithmetic. The update rules are PyTorch's ``SGD`` (momentum,
coupled weight decay) and ``AdamW`` (decoupled weight decay).
"""

from __future__ import annotations

import math

import torch


def schedule_factor(kind: str, step: int, total_steps: int, steps_per_epoch: int, epochs: int) -> float:
    """The lr multiplier at ``step``: ``step`` x0.1 from half the epochs on (DC/DSA/MTT), ``quarters``
    x0.3 every ``epochs // 4`` epochs (no-distillation's ``StepLR(step_size=E // 4, gamma=0.3)``), ``cosine``, ``constant``."""
    if kind == "step":
        return 0.1 if epochs > 1 and step // steps_per_epoch >= epochs // 2 else 1.0
    if kind == "quarters":
        return 0.3 ** ((step // steps_per_epoch) // max(1, epochs // 4))
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    return 1.0


class StackedOptimizer:
    """``step(grads, factor)`` updates every student's parameters with lr = base_lr[k] * factor."""

    def __init__(self, params: list[torch.Tensor], lrs: torch.Tensor, kind: str, momentum: float, weight_decay: float):
        self.params, self.kind, self.momentum, self.wd = params, kind, momentum, weight_decay
        self.lrs = [lrs.view(-1, *([1] * (p.dim() - 1))).to(p) for p in params]
        self.state = [None] * len(params)  # SGD: momentum buffer; AdamW: (m, v)
        self.t = 0

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], factor: float) -> None:
        self.t += 1
        for i, (p, g, lr) in enumerate(zip(self.params, grads, self.lrs)):
            if self.kind == "sgd":
                d = g.add(p, alpha=self.wd) if self.wd else g
                if self.momentum:
                    buf = self.state[i]
                    self.state[i] = d.clone() if buf is None else buf.mul_(self.momentum).add_(d)
                    d = self.state[i]
                p.sub_(lr * factor * d)
            else:
                if self.state[i] is None:
                    self.state[i] = (torch.zeros_like(p), torch.zeros_like(p))
                m, v = self.state[i]
                p.mul_(1 - lr * factor * self.wd)
                m.lerp_(g, 1 - 0.9)
                v.mul_(0.999).addcmul_(g, g, value=1 - 0.999)
                denom = (v / (1 - 0.999**self.t)).sqrt_().add_(1e-8)
                p.sub_(lr * factor / (1 - 0.9**self.t) * m / denom)
