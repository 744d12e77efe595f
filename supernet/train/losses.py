"""Losses of supernet training: distillation against soft targets (KL, AlphaNet's alpha-divergence)
and the explicit L2 penalty used when only the max subnet is regularised.

Imports: torch only.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

__all__ = ["soft_ce", "alpha_div", "l2_penalty"]


def soft_ce(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (equals KL(soft || student) up to a constant)."""
    return -(soft * F.log_softmax(logits, 1)).sum(1).mean()


def alpha_div(
    logits: torch.Tensor, soft: torch.Tensor, alphas: tuple[float, float] = (-1.0, 1.0), clip: float | None = 5.0
) -> torch.Tensor:
    """AlphaNet-style loss: the larger of two alpha-divergences D_a(teacher || student), a in alphas.

    The value is the divergence itself. For a outside {0, 1} the gradient, `-(1/a) sum_i w_i dq_i`
    with the importance weight `w_i = (p_i / q_i)^a`, takes each `w_i` clipped at `clip` (AlphaNet's
    importance-weight clipping): with a = -1, `w = q / p` is unbounded where the teacher gives a
    class almost no mass, and unclipped steps are then dominated by those classes (a plain KL
    loss's gradient through the softmax, `q - p`, is bounded). `clip=None` keeps the exact gradient.
    """
    logq = F.log_softmax(logits, 1)
    logp = soft.clamp_min(1e-8).log()
    vals, losses = [], []
    for a in alphas:
        if abs(a - 1.0) < 1e-6:  # the a -> 1 limit is KL(p || q)
            v = loss = (soft * (logp - logq)).sum(1).mean()
        elif abs(a) < 1e-6:  # the a -> 0 limit is KL(q || p)
            v = loss = (logq.exp() * (logq - logp)).sum(1).mean()
        else:
            v = loss = ((torch.exp(a * logp + (1 - a) * logq).sum(1) - 1) / (a * (a - 1))).mean()
            if clip is not None:
                w = torch.exp(a * (logp - logq)).detach().clamp(max=clip)
                surrogate = (-(w * logq.exp()).sum(1) / a).mean()  # gradient: the clipped one above
                loss = v.detach() + surrogate - surrogate.detach()
        vals.append(v)
        losses.append(loss)
    pick = 0 if vals[0].detach() >= vals[1].detach() else 1
    return losses[pick]


def l2_penalty(params: Iterable[torch.Tensor], weight_decay: float) -> torch.Tensor:
    """`weight_decay / 2 * sum ||p||^2`: its gradient is SGD's `weight_decay * p`, so adding it to one
    task's loss puts weight decay on that task alone (BigNAS: regularise only the biggest child)."""
    total = sum((p.pow(2).sum() for p in params), torch.zeros(()))
    return 0.5 * weight_decay * total
