"""Temperature scaling: one number that makes the validation split's probabilities honest.

A network trained with label smoothing, or selected for accuracy, is often over- or
under-confident. Dividing its logits by a temperature ``T`` fitted to minimise the
validation log-loss changes no prediction (the ranking of the classes is kept) and
calibrates the probabilities (Guo et al., 2017).
"""

from __future__ import annotations

import math

import torch

MIN_LOG_T, MAX_LOG_T = math.log(0.05), math.log(20.0)
# A Gaussian prior on log T (standard deviation 0.5) keeps a small validation split from
# driving T to an extreme: with every validation row right, the log-loss alone keeps
# falling as T -> 0. Its weight shrinks as 1/rows, so a large split decides by itself.
PRIOR_STD = 0.5


def fit_temperature(member_logits: torch.Tensor, y: torch.Tensor, steps: int = 40) -> float:
    """The temperature minimising the log-loss of the members' mean tempered probability,
    plus a prior that pulls ``log T`` towards 0 on small splits.

    Parameters
    ----------
    member_logits:
        ``(members, rows, classes)`` logits of the validation rows.
    y:
        Their class codes.
    steps:
        Golden-section steps over ``log T`` in [log 0.05, log 20]; deterministic.

    Returns
    -------
    ``T`` as a float (1.0 when there are no rows).
    """
    if len(y) == 0:
        return 1.0
    logits = member_logits.double()
    k = logits.shape[0]
    prior = 1 / (2 * PRIOR_STD**2 * len(y))

    def loss(log_t: float) -> float:
        log_p = torch.log_softmax(logits / math.exp(log_t), dim=-1)
        mean = torch.logsumexp(log_p, dim=0) - math.log(k)
        return float(torch.nn.functional.nll_loss(mean, y)) + prior * log_t**2

    ratio = (math.sqrt(5) - 1) / 2
    low, high = MIN_LOG_T, MAX_LOG_T
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(steps):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    best = (low + high) / 2
    # Never worse than leaving the probabilities as they are.
    return math.exp(best) if loss(best) < loss(0.0) else 1.0
