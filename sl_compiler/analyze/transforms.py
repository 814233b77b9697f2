"""Label transforms of the paper's ablations, on dense labels ``(..., C)``; pure functions, exact.

Each keeps the tensor's dtype and works on the last dimension, so a set's (N, V, C) labels go
through in one call. The paper trains on the treated labels as they are: top-k and remove-label
leave rows that sum to less than one unless ``renormalize`` is asked for.
"""

from __future__ import annotations

import torch


def swap_ith(labels: torch.Tensor, i: int) -> torch.Tensor:
    """Swap each row's i-th largest value (1-based) with its smallest (Figure 4, ``ablation_k``).

    Ties are broken by ``torch.sort``'s stable order (the lower class index counts as larger), so
    the result is the same on every device.
    """
    order = torch.sort(labels, dim=-1, descending=True, stable=True).indices
    top, bottom = order[..., i - 1 : i], order[..., -1:]
    out = labels.clone()
    out.scatter_(-1, top, labels.gather(-1, bottom))
    out.scatter_(-1, bottom, labels.gather(-1, top))
    return out


def keep_topk(labels: torch.Tensor, k: int, renormalize: bool = False) -> torch.Tensor:
    """Keep each row's k largest values and zero the rest (Figure 6, ``data_knowledge_scaling``)."""
    values, indices = torch.sort(labels, dim=-1, descending=True, stable=True)
    out = torch.zeros_like(labels).scatter_(-1, indices[..., :k], values[..., :k])
    return _renormalized(out) if renormalize else out


def remove_label(labels: torch.Tensor, targets: torch.Tensor, removed: int, renormalize: bool = False) -> torch.Tensor:
    """Zero class ``removed`` in the label of every image of another class (Figure 7, remove label).

    The images of class ``removed`` keep their labels whole, as in the paper's code.
    """
    out = labels.clone()
    others = targets != removed
    out[others, ..., removed] = 0
    if renormalize:
        out[others] = _renormalized(out[others])
    return out


def remove_image(targets: torch.Tensor, removed: int) -> torch.Tensor:
    """The sample positions that remain when every image of class ``removed`` is dropped (remove image)."""
    return torch.nonzero(targets != removed).reshape(-1)


def hard(targets: torch.Tensor, num_classes: int, views: int = 1) -> torch.Tensor:
    """One-hot labels (N, views, C): the hard-label curve of the scaling law."""
    return torch.nn.functional.one_hot(targets, num_classes).float().unsqueeze(1).expand(-1, views, -1).contiguous()


def _renormalized(labels: torch.Tensor) -> torch.Tensor:
    return labels / labels.sum(-1, keepdim=True).clamp_min(torch.finfo(labels.dtype).tiny)


def js_distance(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon distance (the square root of the divergence, log base 2: in [0, 1]) of rows of p and q.

    Computed in float64; terms with zero probability contribute nothing (0 log 0 = 0).
    """
    p, q = p.double(), q.double()
    m = (p + q) / 2

    def kl(a):
        return torch.where(a > 0, a * (torch.log2(a.clamp_min(1e-300)) - torch.log2(m.clamp_min(1e-300))), 0.0).sum(-1)

    return ((kl(p) + kl(q)) / 2).clamp_min(0).sqrt()


def entropy(labels: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats of each row (0 log 0 = 0), in float64."""
    p = labels.double()
    return -torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), 0.0).sum(-1)
