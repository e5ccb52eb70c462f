"""Inception Score (Salimans et al., 2016): exp(E_x KL(p(y|x) || p(y))) from classifier logits.

Samples are split into ``splits`` groups (10, the usual choice); within each group p(y) is the mean of
the groups' softmax outputs. The score is the mean over groups and its spread their standard
deviation. Rows are shuffled first with a fixed seed, as torch-fidelity does, so groups do not follow
the order of generation (e.g. class-balanced labels). Computed in float64.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["inception_score"]


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """(mean, std) of the Inception Score of ``logits`` [N, classes] over ``splits`` groups."""
    if logits.ndim != 2 or logits.shape[0] < splits:
        raise ValueError(f"the Inception Score needs logits [N, classes] with N >= {splits}, got {tuple(logits.shape)}")
    n = logits.shape[0]
    logits = logits.detach().cpu().double()[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    log_p = logits.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        chunk = log_p[i * n // splits : (i + 1) * n // splits]
        p = chunk.exp()
        log_marginal = p.mean(dim=0).log()
        terms = torch.where(p > 0, p * (chunk - log_marginal), torch.zeros_like(p))  # 0 log 0 = 0
        kl = terms.sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
