"""The knowledge-data scaling law: ``acc = (a * IPC / b)^c - d``, one ``a`` per label curve.

In that form ``a`` and ``b`` are not separately identifiable on one curve (only ``(a/b)^c`` is),
so the law is read as the paper reads its Figure 6: the curves are one power law in IPC shifted
along the IPC axis. ``b, c, d`` are shared by every curve, hard labels have ``a = 1``, and a soft
curve's ``a`` is its data-size factor: that curve at IPC n scores what hard labels score at
``a * n`` images per class. The fit is least squares on the accuracies (Levenberg-Marquardt in
float64, analytic Jacobian), started from a log-linear fit of the hard curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

HARD = "hard"
# bounds of (log b, c, d, log a...): past them the points do not determine the law
LOWER = (-30.0, 1e-4, -1e6, -15.0)
UPPER = (30.0, 20.0, 1e6, 15.0)


@dataclass
class PowerLaw:
    b: float
    c: float
    d: float
    a: dict[str, float]  # per curve; a[HARD] == 1
    r2: float
    r2_curves: dict[str, float]
    points: int

    def predict(self, curve: str, ipc) -> torch.Tensor:
        x = torch.as_tensor(ipc, dtype=torch.float64)
        return (self.a[curve] * x / self.b) ** self.c - self.d

    def ipc_reaching(self, curve: str, accuracy: float) -> float | None:
        """The IPC at which ``curve`` reaches ``accuracy`` (None if the law never does)."""
        if accuracy + self.d <= 0 or self.c <= 0:
            return None
        return self.b / self.a[curve] * (accuracy + self.d) ** (1 / self.c)

    def to_json(self) -> dict:
        return {"form": "acc = (a * IPC / b)^c - d", "b": self.b, "c": self.c, "d": self.d, "a": dict(sorted(self.a.items())), "r2": self.r2, "r2_curves": dict(sorted(self.r2_curves.items())), "points": self.points}


def fit_power_law(curves: dict[str, list[tuple[float, float]]], iterations: int = 500) -> PowerLaw:
    """Fit ``curves[name] = [(ipc, accuracy), ...]``; ``curves[HARD]`` anchors ``a = 1`` and needs three IPCs."""
    if len({x for x, _ in curves.get(HARD, [])}) < 3:
        raise ValueError("the scaling fit needs hard-label accuracies at three or more IPCs")
    names = [n for n in sorted(curves) if n != HARD]
    x, y, which = [], [], []
    for j, name in enumerate([HARD, *names]):
        for ipc, acc in curves[name]:
            x.append(math.log(ipc))
            y.append(acc)
            which.append(j)
    logx, y, which = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64), torch.tensor(which)
    theta = _start(logx, y, which, len(names))
    theta = _levenberg_marquardt(theta, logx, y, which, iterations)
    low, high = _bounds(len(theta))
    if bool(((theta - low).abs() < 1e-9).any() | ((theta - high).abs() < 1e-9).any()):
        raise ValueError("the points do not determine the law (a parameter ran to its bound: flat or non-monotone curves)")
    logb, c, d = (float(v) for v in theta[:3])
    a = {HARD: 1.0, **{n: math.exp(float(theta[3 + j])) for j, n in enumerate(names)}}
    residual = y - _model(theta, logx, which)
    return PowerLaw(b=math.exp(logb), c=c, d=d, a=a, r2=_r2(y, residual), r2_curves={n: _r2(y[which == j], residual[which == j]) for j, n in enumerate([HARD, *names])}, points=len(y))


def _model(theta: torch.Tensor, logx: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    loga = torch.cat([theta.new_zeros(1), theta[3:]])[which]
    return torch.exp(theta[1] * (loga + logx - theta[0])) - theta[2]


def _jacobian(theta: torch.Tensor, logx: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    loga = torch.cat([theta.new_zeros(1), theta[3:]])[which]
    z = loga + logx - theta[0]
    e = torch.exp(theta[1] * z)
    jac = torch.zeros(len(logx), len(theta), dtype=torch.float64)
    jac[:, 0], jac[:, 1], jac[:, 2] = -theta[1] * e, e * z, -1.0
    soft = which > 0
    jac[soft.nonzero().reshape(-1), 2 + which[soft]] = theta[1] * e[soft]
    return jac


def _start(logx, y, which, soft: int) -> torch.Tensor:
    """d = 0, c and b from the hard curve's log-log line, each log a from its curve's mean shift."""
    d = max(0.0, 1e-6 - float(y.min()))
    ly = torch.log(y + d + 1e-6)
    hard = which == 0
    design = torch.stack([logx[hard], torch.ones_like(logx[hard])], 1)
    slope, intercept = torch.linalg.lstsq(design, ly[hard].unsqueeze(1)).solution.reshape(-1).tolist()
    c = slope if slope > 1e-3 else 0.1
    logb = -intercept / c
    loga = [float((ly[which == j] / c - logx[which == j] + logb).mean()) for j in range(1, soft + 1)]
    return torch.tensor([logb, c, d, *loga], dtype=torch.float64)


def _bounds(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor([*LOWER[:3], *[LOWER[3]] * (n - 3)], dtype=torch.float64), torch.tensor([*UPPER[:3], *[UPPER[3]] * (n - 3)], dtype=torch.float64))


def _levenberg_marquardt(theta, logx, y, which, iterations: int) -> torch.Tensor:
    lam = 1e-3
    low, high = _bounds(len(theta))
    theta = torch.maximum(torch.minimum(theta, high), low)
    residual = y - _model(theta, logx, which)
    cost = float(residual @ residual)
    for _ in range(iterations):
        jac = _jacobian(theta, logx, which)
        jtj, jtr = jac.T @ jac, jac.T @ residual
        step = torch.linalg.solve(jtj + lam * torch.diag(torch.diagonal(jtj).clamp_min(1e-12)), jtr)
        trial = torch.maximum(torch.minimum(theta + step, high), low)
        r_trial = y - _model(trial, logx, which)
        new = float(r_trial @ r_trial)
        if math.isfinite(new) and new < cost:
            converged = cost - new <= 1e-15 * max(cost, 1e-30) or float(step.abs().max()) < 1e-13
            theta, residual, cost, lam = trial, r_trial, new, max(lam / 10, 1e-12)
            if converged:
                break
        else:
            lam *= 10
            if lam > 1e12:
                break
    return theta


def _r2(y: torch.Tensor, residual: torch.Tensor) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float((residual**2).sum()) / total if total > 0 else float("nan")
