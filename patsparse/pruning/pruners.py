"""Pruners with an optimizer-like lifecycle (after torch.ao.pruning).

``pruner.prepare(model)`` resolves the plan and sets up state; ``pruner.step()`` advances the
algorithm; ``pruner.squash_mask()`` bakes masks into plain weights and returns them.

- :class:`MagnitudePruner`: one-shot; ``step()`` projects each layer's weight onto its
  scheme and attaches the mask (fast evaluation, and the baseline ADMM must beat).
- :class:`ADMMPruner`: paper 002 §5. Training adds :meth:`ADMMPruner.penalty`
  (rho/2 · ‖W − Z + U‖²_F, squared Frobenius norm) to the loss; ``step()`` is the
  Z-update (projection of W + U) and U-update (U += W − Z) plus the rho schedule;
  :meth:`ADMMPruner.hard_prune` fixes the masks for masked retraining.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from patsparse.core.errors import PatsparseError
from patsparse.core.patterns import PatternLibrary
from patsparse.pruning.masks import attach_mask, collect_masks, original_weight, squash_masks
from patsparse.pruning.selection import PatternSelector
from patsparse.schemes.base import Scheme, keep_count, topk_mask
from patsparse.schemes.pattern import (
    PatternConnectivityScheme,
    PatternScheme,
    masks_for_ids,
    pattern_energies,
)
from patsparse.schemes.plan import LayerDecision, PruningPlan, prunable_layers


class PrunerStateError(PatsparseError, RuntimeError):
    """A lifecycle method was called out of order."""


class BasePruner(ABC):
    """Common lifecycle: plan resolution, masks, squash."""

    def __init__(self, plan: PruningPlan) -> None:
        self.plan = plan
        self.model: nn.Module | None = None
        self.decisions: dict[str, LayerDecision] = {}
        self.modules: dict[str, nn.Module] = {}

    def prepare(self, model: nn.Module) -> None:
        """Bind to ``model``: resolve the plan (raising on bad names) and set up state."""
        self.decisions = self.plan.resolve(model)
        layers = prunable_layers(model)
        self.modules = {n: layers[n] for n, d in self.decisions.items() if d.scheme is not None}
        self.model = model

    def _require_model(self) -> nn.Module:
        if self.model is None:
            raise PrunerStateError(f"{type(self).__name__}: call prepare(model) first")
        return self.model

    def scheme(self, name: str) -> Scheme:
        s = self.decisions[name].scheme
        assert s is not None
        return s

    @abstractmethod
    def step(self) -> None:
        """Advance the pruning algorithm by one step."""

    def masks(self) -> dict[str, torch.Tensor]:
        return collect_masks(self._require_model())

    def squash_mask(self) -> dict[str, torch.Tensor]:
        """Bake masks into weights (remove parametrizations); returns the masks."""
        return squash_masks(self._require_model())


class MagnitudePruner(BasePruner):
    """One-shot projection of every planned layer onto its scheme."""

    def step(self) -> None:
        self._require_model()
        for name, module in self.modules.items():
            attach_mask(module, self.scheme(name).mask(original_weight(module)))


@dataclass(frozen=True)
class ADMMSettings:
    """ADMM penalty schedule and pattern selection options."""

    rho: float = 0.05
    rho_growth: float = 1.5
    rho_max: float = 5.0
    #: primal-proximal pattern selection for per-kernel pattern schemes
    pattern_selection: bool = True
    selection_step: float = 1.0

    def __post_init__(self) -> None:
        if not self.rho > 0 or not self.rho_max >= self.rho or not self.rho_growth >= 1:
            raise ValueError(
                f"ADMM needs rho > 0, rho_max >= rho and rho_growth >= 1; got rho={self.rho}, "
                f"rho_max={self.rho_max}, rho_growth={self.rho_growth}"
            )


class ADMMPruner(BasePruner):
    """ADMM pruning: penalty during training, projection + dual update at each ``step()``."""

    def __init__(self, plan: PruningPlan, settings: ADMMSettings | None = None) -> None:
        super().__init__(plan)
        self.settings = settings or ADMMSettings()
        self.rho = self.settings.rho
        self.Z: dict[str, torch.Tensor] = {}
        self.U: dict[str, torch.Tensor] = {}
        self.selectors: dict[str, PatternSelector] = {}
        self.hard_pruned = False
        self.history: list[dict[str, float]] = []

    def prepare(self, model: nn.Module) -> None:
        super().prepare(model)
        self.rho = self.settings.rho
        self.hard_pruned = False
        for name, module in self.modules.items():
            w = original_weight(module).detach()
            scheme = self.scheme(name)
            if self.settings.pattern_selection and isinstance(
                scheme, PatternScheme | PatternConnectivityScheme
            ):
                self.selectors[name] = PatternSelector(
                    scheme.library, tuple(w.shape[:2]), step=self.settings.selection_step
                )
            self.Z[name] = self._project(name, w)
            self.U[name] = torch.zeros_like(w)

    def _project(self, name: str, v: torch.Tensor) -> torch.Tensor:
        """Z-update projection; pattern schemes route through the selector when enabled."""
        return v * self._mask(name, v).to(v.dtype)

    def _mask(self, name: str, v: torch.Tensor) -> torch.Tensor:
        scheme = self.scheme(name)
        selector = self.selectors.get(name)
        if selector is None:
            return scheme.mask(v)
        assert isinstance(scheme, PatternScheme | PatternConnectivityScheme)
        ids = selector.update(v)
        mask = masks_for_ids(ids, scheme.library)
        if isinstance(scheme, PatternConnectivityScheme):
            kept = pattern_energies(v, scheme.library).gather(-1, ids[..., None])[..., 0]
            if scheme.balanced:
                keep = topk_mask(kept, keep_count(scheme.kernel_density, kept.shape[1]), dim=1)
            else:
                keep = topk_mask(
                    kept.reshape(-1), keep_count(scheme.kernel_density, kept.numel())
                ).reshape(kept.shape)
            mask = mask & keep[:, :, None, None]
        return mask

    def penalty(self) -> torch.Tensor:
        """Sum over layers of rho/2 · ‖W − Z + U‖²_F (differentiable in W)."""
        model = self._require_model()
        total = torch.zeros((), device=next(model.parameters()).device)
        if self.hard_pruned:
            return total
        for name, module in self.modules.items():
            diff = original_weight(module) - self.Z[name] + self.U[name]
            total = total + 0.5 * self.rho * diff.pow(2).sum()
        return total

    @torch.no_grad()
    def step(self) -> None:
        """Z ← Π(W + U); U ← U + W − Z; rho ← min(rho · growth, rho_max), U rescaled."""
        self._require_model()
        if self.hard_pruned:
            raise PrunerStateError("ADMM step() after hard_prune(): retrain with masks instead")
        record: dict[str, float] = {"rho": self.rho}
        for name, module in self.modules.items():
            w = original_weight(module).detach()
            self.Z[name] = self._project(name, w + self.U[name])
            self.U[name] = self.U[name] + w - self.Z[name]
        record["residual"] = self.residual()
        self.history.append(record)
        new_rho = min(self.rho * self.settings.rho_growth, self.settings.rho_max)
        # U is the dual scaled by 1/rho: keep the unscaled dual fixed when rho changes.
        for name in self.U:
            self.U[name] *= self.rho / new_rho
        self.rho = new_rho

    @torch.no_grad()
    def residual(self) -> float:
        """Relative primal residual ‖W − Z‖ / ‖W‖ over all pruned layers."""
        num, den = 0.0, 0.0
        for name, module in self.modules.items():
            w = original_weight(module).detach()
            num += float((w - self.Z[name]).pow(2).sum())
            den += float(w.pow(2).sum())
        return (num / max(den, 1e-30)) ** 0.5

    @torch.no_grad()
    def hard_prune(self) -> dict[str, torch.Tensor]:
        """Project W onto each scheme (selected patterns kept) and fix those masks."""
        self._require_model()
        masks = {}
        for name, module in self.modules.items():
            w = original_weight(module).detach()
            if name in self.selectors:
                # Binarise the selection made so far (paper eq. 29) rather than re-deciding.
                self.selectors[name].step = 0.0
            masks[name] = self._mask(name, w)
            attach_mask(module, masks[name])
        self.hard_pruned = True
        return masks

    def selected_libraries(self) -> dict[str, PatternLibrary]:
        return {n: s.library for n, s in self.selectors.items()}
