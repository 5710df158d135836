"""Pattern-based schemes for 3x3 convolutions: pattern, connectivity, both, and block-pattern.

- ``pattern``: every kernel keeps the library pattern that retains the most energy.
- ``connectivity``: whole kernels removed by L2 norm (paper 002 eq. 30), optionally the same
  number per filter (load balance across threads).
- ``pattern+connectivity``: both; the kernel score is the energy its best pattern keeps, which
  makes the mask the exact Euclidean projection onto the intersection.
- ``block-pattern``: filters are clustered into blocks of ``block_size`` (the papers' filter
  reorder, done before projection); each block keeps the same input channels and one pattern
  per kept channel, weight values free per filter. This is the structure a CPU runs at dense
  speed when vectorised over the block's output channels (see ``sparse_kernel_probe.md``);
  ``block_size`` defaults to the fp32 vector width of the host (16 AVX-512, 8 AVX2, 4 NEON).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from patsparse.core.errors import PatternLibraryError
from patsparse.core.patterns import (
    DESIGNED_8,
    KERNEL_SIZE,
    NUM_POSITIONS,
    PatternLibrary,
    get_library,
)
from patsparse.schemes.base import Scheme, check_density, keep_count, topk_mask
from patsparse.schemes.hardware import default_block_size


def _as_library(value: PatternLibrary | str | dict[str, Any]) -> PatternLibrary:
    if isinstance(value, dict):
        return PatternLibrary.from_dict(value)
    return get_library(value)


def kernel_codes(weight: torch.Tensor) -> torch.Tensor:
    """Pattern code of every 3x3 kernel of a ``(K, C, 3, 3)`` weight (0 for pruned kernels)."""
    if weight.dim() != 4 or tuple(weight.shape[-2:]) != (KERNEL_SIZE, KERNEL_SIZE):
        raise PatternLibraryError(
            f"kernel_codes needs a (K, C, 3, 3) weight, got shape {tuple(weight.shape)}"
        )
    bits = (weight.detach() != 0).reshape(*weight.shape[:2], NUM_POSITIONS).to(torch.int64)
    powers = 2 ** torch.arange(NUM_POSITIONS, dtype=torch.int64, device=weight.device)
    return (bits * powers).sum(-1)


def pattern_energies(weight: torch.Tensor, library: PatternLibrary) -> torch.Tensor:
    """``(K, C, P)``: squared weight each library pattern would keep, per kernel."""
    sq = weight.reshape(*weight.shape[:2], NUM_POSITIONS).float() ** 2
    masks = torch.from_numpy(library.masks()).reshape(len(library), NUM_POSITIONS).to(sq.device)
    return sq @ masks.T


def best_patterns(
    weight: torch.Tensor, library: PatternLibrary
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per kernel: (best pattern id, energy it keeps). Ties go to the lower id."""
    energy = pattern_energies(weight, library)
    # argmax returns the first maximum, which keeps the result deterministic.
    ids = energy.argmax(dim=-1)
    return ids, energy.gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def masks_for_ids(ids: torch.Tensor, library: PatternLibrary) -> torch.Tensor:
    """``(..., 3, 3)`` boolean masks for a tensor of pattern ids."""
    masks = torch.from_numpy(library.masks(dtype=bool)).to(ids.device)
    return masks[ids]


def _pattern_reason(scheme: str, shape: tuple[int, ...]) -> str | None:
    if len(shape) != 4:
        return (
            f"{scheme} prunes 3x3 conv weights (K, C, 3, 3), got shape {shape}; use 'block' "
            f"or 'unstructured' for linear layers"
        )
    if tuple(shape[2:]) != (KERNEL_SIZE, KERNEL_SIZE):
        return (
            f"{scheme} needs 3x3 kernels, got {shape[2]}x{shape[3]} (weight shape {shape}); "
            f"patterns are defined for 3x3 only: use 'connectivity', 'block' or 'unstructured' "
            f"for 1x1/5x5/7x7 kernels, or leave the layer dense"
        )
    return None


@dataclass(frozen=True)
class PatternScheme(Scheme):
    """Every kernel keeps exactly one library pattern (no kernel removed)."""

    name: ClassVar[str] = "pattern"
    library: PatternLibrary = DESIGNED_8

    def __post_init__(self) -> None:
        object.__setattr__(self, "library", _as_library(self.library))

    def unsupported_reason(self, shape: tuple[int, ...]) -> str | None:
        return _pattern_reason(self.name, shape)

    def _mask(self, weight: torch.Tensor) -> torch.Tensor:
        ids, _ = best_patterns(weight, self.library)
        return masks_for_ids(ids, self.library)

    def assign(self, weight: torch.Tensor) -> torch.Tensor:
        """``(K, C)`` pattern id each kernel gets."""
        self.check(weight)
        return best_patterns(weight.detach(), self.library)[0]

    @property
    def target_density(self) -> float:
        return self.library.nonzeros / NUM_POSITIONS


@dataclass(frozen=True)
class ConnectivityScheme(Scheme):
    """Remove whole kernels with the smallest L2 norm; ``density`` = fraction of kernels kept."""

    name: ClassVar[str] = "connectivity"
    ranks: ClassVar[tuple[int, ...]] = (4,)
    density: float = 0.5
    balanced: bool = False

    def __post_init__(self) -> None:
        check_density(self.density, scheme=self.name)

    def _mask(self, weight: torch.Tensor) -> torch.Tensor:
        score = weight.reshape(*weight.shape[:2], -1).pow(2).sum(-1)
        keep = _keep_kernels(score, self.density, balanced=self.balanced)
        return keep[:, :, None, None].expand_as(weight).clone()


def _keep_kernels(score: torch.Tensor, kernel_density: float, *, balanced: bool) -> torch.Tensor:
    """``(K, C)`` kernels to keep: top by score over the layer, or per filter if balanced."""
    k, c = score.shape
    if balanced:
        return topk_mask(score, keep_count(kernel_density, c), dim=1)
    flat = topk_mask(score.reshape(-1), keep_count(kernel_density, k * c))
    return flat.reshape(k, c)


class _PatternBudget(Scheme):
    """Shared by the schemes that combine patterns with a kernel budget (``density``)."""

    name: ClassVar[str]
    density: float
    library: PatternLibrary

    def _init_pattern_budget(self) -> None:
        object.__setattr__(self, "library", _as_library(self.library))
        check_density(self.density, scheme=self.name, maximum=self.pattern_density)

    @property
    def pattern_density(self) -> float:
        """Density of pattern pruning alone (4/9 for 4-weight patterns)."""
        return self.library.nonzeros / NUM_POSITIONS

    @property
    def kernel_density(self) -> float:
        """Fraction of kernels kept so that the weight density is ``density``."""
        return min(1.0, self.density / self.pattern_density)

    def unsupported_reason(self, shape: tuple[int, ...]) -> str | None:
        return _pattern_reason(self.name, shape)


@dataclass(frozen=True)
class PatternConnectivityScheme(_PatternBudget):
    """Pattern pruning plus connectivity pruning; ``density`` is over all weights.

    With 4-weight patterns the kernel keep fraction is ``density * 9 / 4``: density 0.125
    (8x) keeps 28% of the kernels.
    """

    name: ClassVar[str] = "pattern+connectivity"
    density: float = 0.125
    library: PatternLibrary = DESIGNED_8
    balanced: bool = False

    def __post_init__(self) -> None:
        self._init_pattern_budget()

    def _mask(self, weight: torch.Tensor) -> torch.Tensor:
        ids, energy = best_patterns(weight, self.library)
        keep = _keep_kernels(energy, self.kernel_density, balanced=self.balanced)
        return masks_for_ids(ids, self.library) & keep[:, :, None, None]


def cluster_filters(weight: torch.Tensor, block_size: int) -> torch.Tensor:
    """Order filters so each run of ``block_size`` holds filters with similar kernels.

    Greedy and deterministic: filters with an identical sparse support fill whole blocks
    first; then seeds are taken by descending norm and each gathers the unassigned filters
    most similar to it, first by Jaccard overlap of their supports (so an
    already block-structured weight regroups exactly into its blocks), then by cosine
    similarity of their absolute values. Returns a permutation of ``range(K)``.
    """
    k = weight.shape[0]
    flat = weight.reshape(k, -1).float()
    mag = flat.abs()
    unit = mag / mag.norm(dim=1, keepdim=True).clamp_min(1e-30)
    cos = unit @ unit.T
    sup = (flat != 0).float()
    inter = sup @ sup.T
    union = sup.sum(1, keepdim=True) + sup.sum(1)[None, :] - inter
    jac = inter / union.clamp_min(1.0)
    # Jaccard dominates: differences of Jaccard ≥ ~1/numel outweigh any cosine difference.
    score = jac * 4.0 + cos
    norms = flat.norm(dim=1)
    seeds = torch.sort(-norms, stable=True).indices.tolist()
    assigned = torch.zeros(k, dtype=torch.bool)
    order: list[int] = []
    # Filters that already share a sparse support form whole blocks first, so projecting an
    # already projected weight changes nothing (a dense weight skips this: nothing is zero).
    groups: dict[bytes, list[int]] = {}
    for f in seeds:
        if not bool(sup[f].all()):
            groups.setdefault(bytes(sup[f].to(torch.uint8).tolist()), []).append(f)
    for members in groups.values():
        for start in range(0, len(members) - block_size + 1, block_size):
            chunk = members[start : start + block_size]
            order += chunk
            assigned[chunk] = True
    for s in seeds:
        if assigned[s]:
            continue
        assigned[s] = True
        members = [s]
        need = min(block_size, k - len(order)) - 1
        if need > 0:
            cand = score[s].clone()
            cand[assigned] = float("-inf")
            pick = torch.sort(-cand, stable=True).indices[:need].tolist()
            members += pick
            assigned[pick] = True
        order += members
    return torch.tensor(order, dtype=torch.long)


@dataclass(frozen=True)
class BlockPatternScheme(_PatternBudget):
    """Blocks of ``block_size`` filters share kept input channels and their patterns.

    ``balanced`` (default) fixes how many kept channels of a block use each pattern, the same
    counts in every block of the layer: ``kept // patterns`` each, one more for the
    ``kept % patterns`` patterns with the most kept energy over the layer. The compiled
    kernel computes the same slots for every block, so uneven use wastes multiply-adds
    (measured 2.3x on random 256-channel layers at 8x without a cap; with a per-block cap of
    ``ceil(kept / patterns)``, the former rule, still 1.33x whenever ``kept`` is not a
    multiple of the library size, e.g. 64 channels at 12x or 8x). The choice is greedy by
    kept energy (an approximate projection); ``balanced=False`` gives every kept channel its
    best pattern (the exact projection).
    """

    name: ClassVar[str] = "block-pattern"
    density: float = 0.125
    block_size: int = field(default_factory=default_block_size)
    library: PatternLibrary = DESIGNED_8
    balanced: bool = True

    def __post_init__(self) -> None:
        self._init_pattern_budget()
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(
                f"block-pattern: block_size must be a positive int, got {self.block_size!r}; "
                "use the target's fp32 vector width (16 AVX-512, 8 AVX2, 4 NEON)"
            )

    def layout(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(filter order, per-block kept channel mask ``(B, C)``, per-block pattern ids ``(B, C)``).

        Block ``b`` holds filters ``order[b * block_size:(b + 1) * block_size]``.
        """
        self.check(weight)
        w = weight.detach().float()
        k, c = w.shape[:2]
        order = cluster_filters(w, self.block_size)
        energy = pattern_energies(w, self.library)  # (K, C, P)
        nblocks = -(-k // self.block_size)
        keep_c = keep_count(self.kernel_density, c)
        keeps, ids, energies = [], [], []
        for b in range(nblocks):
            members = order[b * self.block_size : (b + 1) * self.block_size]
            block_energy = energy[members].sum(0)  # (C, P)
            best = block_energy.argmax(-1)
            score = block_energy.gather(-1, best[:, None]).squeeze(-1)
            keeps.append(topk_mask(score, keep_c))
            ids.append(best)
            energies.append(block_energy)
        if self.balanced:
            caps = layer_pattern_counts(torch.stack(energies), torch.stack(keeps))
            ids = [balanced_patterns(e, k, caps=caps) for e, k in zip(energies, keeps, strict=True)]
        return order, torch.stack(keeps), torch.stack(ids)

    def _mask(self, weight: torch.Tensor) -> torch.Tensor:
        order, keep, ids = self.layout(weight)
        mask = torch.zeros(weight.shape, dtype=torch.bool)
        pat = masks_for_ids(ids, self.library) & keep[:, :, None, None]  # (B, C, 3, 3)
        for b in range(keep.shape[0]):
            members = order[b * self.block_size : (b + 1) * self.block_size]
            mask[members] = pat[b]
        return mask


def layer_pattern_counts(energy: torch.Tensor, keep: torch.Tensor) -> list[int]:
    """How many kept channels of every block use each pattern (``energy``: ``(B, C, P)``,
    ``keep``: ``(B, C)``, the same count of kept channels per block): ``kept // P`` each,
    plus one for the ``kept % P`` patterns that are the best choice of the most kept
    channels over the layer (ties: more energy on the channels they are best for, then lower
    index). The counts sum to ``kept``. On a weight this scheme already projected, every
    kept channel's best pattern is its own, so the same patterns are favoured again (the
    projection is idempotent)."""
    npat = energy.shape[-1]
    kept = int(keep[0].sum()) if keep.shape[0] else 0
    base, extra = divmod(kept, npat)
    best_energy, best = energy.max(-1)  # (B, C)
    votes = torch.bincount(best[keep], minlength=npat).tolist()
    mass = torch.zeros(npat, dtype=energy.dtype).index_add_(0, best[keep], best_energy[keep])
    order = sorted(range(npat), key=lambda p: (-votes[p], -float(mass[p]), p))
    favoured = set(order[:extra])
    return [base + (1 if p in favoured else 0) for p in range(npat)]


def balanced_patterns(energy: torch.Tensor, keep: torch.Tensor, *, caps: list[int]) -> torch.Tensor:
    """Pattern id per channel (``energy``: ``(C, P)``) such that pattern ``p`` serves at most
    ``caps[p]`` of the ``keep``-ed channels (:func:`layer_pattern_counts`); greedy by energy,
    ties to lower indices. Caps summing to the kept count are met exactly.

    Pruned channels keep their best pattern (it is masked out anyway).
    """
    ids = energy.argmax(-1).clone()
    kept = torch.nonzero(keep).flatten()
    npat = energy.shape[1]
    if len(caps) != npat or sum(caps) < kept.numel():
        raise ValueError(
            f"caps {caps} must have one entry per pattern ({npat}) and sum to at least the "
            f"{kept.numel()} kept channels"
        )
    if kept.numel() == 0:
        return ids
    sub = energy[kept]  # (kept, P)
    # Stable descending order over (channel, pattern) pairs.
    order = torch.sort(-sub.flatten(), stable=True).indices.tolist()
    used = [0] * npat
    done = [False] * int(kept.numel())
    left = int(kept.numel())
    for flat in order:
        ch, pat = divmod(flat, npat)
        if done[ch] or used[pat] >= caps[pat]:
            continue
        ids[kept[ch]] = pat
        done[ch] = True
        used[pat] += 1
        left -= 1
        if not left:
            break
    return ids


def with_options(scheme: Scheme, **changes: Any) -> Scheme:
    """A copy of ``scheme`` with some options changed (schemes are frozen)."""
    return dataclasses.replace(scheme, **changes)  # type: ignore[type-var]
