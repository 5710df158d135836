"""Non-destructive masks: a weight parametrization that multiplies by a stored 0/1 mask.

The original weight stays in ``module.parametrizations.weight.original`` (so training can
revive nothing the mask hides: gradients through the product are zero where the mask is);
:func:`squash_masks` bakes the product into a plain weight, as torch.ao.pruning's
``squash_mask`` does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


class WeightMask(nn.Module):
    """Parametrization ``weight -> weight * mask`` with the mask as a buffer."""

    mask: torch.Tensor

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.shape != self.mask.shape:
            raise RuntimeError(
                f"mask shape {tuple(self.mask.shape)} does not match weight {tuple(weight.shape)}"
            )
        return weight * self.mask.to(weight.dtype)


def _mask_param(module: nn.Module) -> WeightMask | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations["weight"]:  # type: ignore[index]
        if isinstance(p, WeightMask):
            return p
    return None


def attach_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Mask ``module.weight`` (replacing an earlier mask of ours)."""
    existing = _mask_param(module)
    if existing is not None:
        existing.mask.copy_(mask.to(torch.bool))
        return
    parametrize.register_parametrization(module, "weight", WeightMask(mask))


def get_mask(module: nn.Module) -> torch.Tensor | None:
    p = _mask_param(module)
    return None if p is None else p.mask


def original_weight(module: nn.Module) -> torch.Tensor:
    """The unmasked weight parameter (``module.weight`` if not masked)."""
    if parametrize.is_parametrized(module, "weight"):
        orig = module.parametrizations["weight"].original  # type: ignore[union-attr,index]
        assert isinstance(orig, torch.Tensor)
        return orig
    w = module.weight
    assert isinstance(w, torch.Tensor)
    return w


def squash_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Bake every mask of ours into its weight and drop the parametrization.

    Returns the masks that were removed, by module name.
    """
    removed: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        p = _mask_param(module)
        if p is None:
            continue
        removed[name] = p.mask.clone()
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return removed


def collect_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Masks currently attached, by module name."""
    out = {}
    for name, module in model.named_modules():
        m = get_mask(module)
        if m is not None:
            out[name] = m.clone()
    return out
