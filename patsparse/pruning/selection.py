"""Primal-proximal pattern selection (paper 002 §5.1, eqs. 19-29).

Each kernel carries probabilistic selection variables ``a`` over the library's patterns,
relaxed from one-hot to the probability simplex. Every ADMM round takes a proximal step
towards the patterns that keep the most of the kernel's energy, projects back onto the
simplex (the threshold ``tau`` solves ``sum(max(v - tau, 0)) = 1``, eqs. 25-26) and
binarises by the largest probability (eq. 29). A small step smooths the choice across
rounds, so a kernel changes pattern only when another one is consistently better.
"""

from __future__ import annotations

import torch

from patsparse.core.patterns import PatternLibrary


def project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row (last dim) of ``v`` onto the probability simplex."""
    n = v.shape[-1]
    u = torch.sort(v, dim=-1, descending=True).values
    css = u.cumsum(-1) - 1.0
    idx = torch.arange(1, n + 1, device=v.device, dtype=v.dtype)
    cond = u - css / idx > 0
    rho = cond.to(torch.int64).cumsum(-1).argmax(-1, keepdim=True)  # last True
    tau = css.gather(-1, rho) / (rho + 1).to(v.dtype)
    return (v - tau).clamp_min(0.0)


class PatternSelector:
    """Continuous pattern-selection variables for a ``(K, C)`` grid of 3x3 kernels."""

    def __init__(self, library: PatternLibrary, shape: tuple[int, ...], *, step: float = 1.0):
        self.library = library
        self.step = float(step)
        p = len(library)
        self.a = torch.full((*shape, p), 1.0 / p)
        self._masks = torch.from_numpy(library.masks()).reshape(p, 9)

    def scores(self, v: torch.Tensor) -> torch.Tensor:
        """Fraction of each kernel's energy each pattern keeps, in [0, 1]."""
        sq = v.detach().float().reshape(*v.shape[:2], 9) ** 2
        energy = sq @ self._masks.T.to(sq.device)
        return energy / sq.sum(-1, keepdim=True).clamp_min(1e-30)

    @torch.no_grad()
    def update(self, v: torch.Tensor) -> torch.Tensor:
        """Proximal step on ``a`` from ``v`` (W + U), then the binarised ids ``(K, C)``."""
        if self.step > 0:
            self.a = project_simplex(self.a + self.step * self.scores(v))
        # Ties (e.g. all-zero kernels) resolve to the lowest id.
        return self.a.argmax(-1)

    def ids(self) -> torch.Tensor:
        return self.a.argmax(-1)
