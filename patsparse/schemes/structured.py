"""Structured and unstructured schemes for conv and linear weights.

Views used below: a conv weight ``(K, C, kh, kw)`` is the GEMM matrix ``(K, C*kh*kw)`` whose
rows are filters and whose columns are (channel, kernel position) pairs; a linear weight
``(out, in)`` is already that matrix.

- ``filter``: whole rows (output channels).
- ``channel``: whole input channels (all kernels of one input channel; columns of a linear).
- ``column``: whole GEMM columns, i.e. the same (channel, position) removed from every filter.
- ``block``: block-based pruning (paper 003 Fig. 1c): rows are cut into blocks of
  ``block_rows``; inside each block whole columns are removed, so a block's rows share kept
  columns (the structure a CPU vectorises over output channels).
- ``unstructured``: individual weights by magnitude (the baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from patsparse.schemes.base import Scheme, check_density, keep_count, topk_mask
from patsparse.schemes.hardware import default_block_size


def _gemm(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(weight.shape[0], -1)


@dataclass(frozen=True)
class FilterScheme(Scheme):
    """Remove whole filters (output channels) by L2 norm."""

    name: ClassVar[str] = "filter"
    density: float = 0.5

    def __post_init__(self) -> None:
        check_density(self.density, scheme=self.name)

    def _mask(self, weight: torch.Tensor) -> torch.Tensor:
        score = _gemm(weight).pow(2).sum(1)
        keep = topk_mask(score, keep_count(self.density, score.numel()))
        return keep.reshape(-1, *([1] * (weight.dim() - 1))).expand_as(weight).clone()


@dataclass(frozen=True)
class ChannelScheme(Scheme):
    """Remove whole input channels by L2 norm over all filters."""

    name: ClassVar[str] = "channel"
    density: float = 0.5

    def __post_init__(self) -> None:
        check_density(self.density, scheme=self.name)

    def _mask(self, weight: torch.Tensor) -> torch.Tensor:
        dims = [d for d in range(weight.dim()) if d != 1]
        score = weight.pow(2).sum(dim=dims)
        keep = topk_mask(score, keep_count(self.density, score.numel()))
        shape = [1, -1] + [1] * (weight.dim() - 2)
        return keep.reshape(shape).expand_as(weight).clone()


@dataclass(frozen=True)
class ColumnScheme(Scheme):
    """Remove whole GEMM columns: the same (channel, position) across every filter."""

    name: ClassVar[str] = "column"
    density: float = 0.5

    def __post_init__(self) -> None:
        check_density(self.density, scheme=self.name)

    def _mask(self, weight: torch.Tensor) -> torch.Tensor:
        score = _gemm(weight).pow(2).sum(0)
        keep = topk_mask(score, keep_count(self.density, score.numel()))
        return keep[None, :].expand(weight.shape[0], -1).reshape(weight.shape).clone()


@dataclass(frozen=True)
class BlockScheme(Scheme):
    """Block-based column pruning: each block of ``block_rows`` rows keeps the same columns."""

    name: ClassVar[str] = "block"
    density: float = 0.25
    block_rows: int = field(default_factory=default_block_size)

    def __post_init__(self) -> None:
        check_density(self.density, scheme=self.name)
        if not isinstance(self.block_rows, int) or self.block_rows < 1:
            raise ValueError(f"block: block_rows must be a positive int, got {self.block_rows!r}")

    def _mask(self, weight: torch.Tensor) -> torch.Tensor:
        g = _gemm(weight)
        rows, cols = g.shape
        keep_cols = keep_count(self.density, cols)
        out = torch.zeros_like(g, dtype=torch.bool)
        for start in range(0, rows, self.block_rows):
            block = g[start : start + self.block_rows]
            out[start : start + self.block_rows] = topk_mask(block.pow(2).sum(0), keep_cols)[None]
        return out.reshape(weight.shape)


@dataclass(frozen=True)
class UnstructuredScheme(Scheme):
    """Keep the largest-magnitude individual weights."""

    name: ClassVar[str] = "unstructured"
    density: float = 0.25

    def __post_init__(self) -> None:
        check_density(self.density, scheme=self.name)

    def _mask(self, weight: torch.Tensor) -> torch.Tensor:
        flat = weight.reshape(-1).abs()
        return topk_mask(flat, keep_count(self.density, flat.numel())).reshape(weight.shape)
