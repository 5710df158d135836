"""How a block's buffer accesses move along one of its iterators (the leftover rules use it
to tell contiguous and broadcast reads from strided ones and gathers)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from tvm_ext._compat import Analyzer, tirx

#: fields holding the sub-expressions of TIR nodes (binary ops, casts, selects, stores)
CHILDREN = ("a", "b", "value", "condition", "true_value", "false_value")
#: class names of a buffer load (``TensorLoad`` in 0.27, where ``tirx.BufferLoad`` is a
#: function making one)
LOADS = ("BufferLoad", "TensorLoad")
#: fields holding lists of them (call arguments, statement sequences)
LISTS = ("args", "seq")


def accesses(block: Any) -> tuple[list[Any], list[Any]]:
    """The ``BufferLoad``\\ s and ``BufferStore``\\ s of a block's body, with their real
    indices (a block's read *regions* widen a non-affine index to the whole axis)."""
    loads: list[Any] = []
    stores: list[Any] = []

    def visit(node: Any) -> None:
        if type(node).__name__ in LOADS:
            loads.append(node)
        elif isinstance(node, tirx.BufferStore):
            stores.append(node)
        for field in CHILDREN:
            child = getattr(node, field, None)
            if hasattr(child, "same_as"):  # a TVM node, not a plain number
                visit(child)
        for field in LISTS:
            for child in getattr(node, field, None) or []:
                if hasattr(child, "same_as"):
                    visit(child)

    visit(block.body)
    return loads, stores


def flat_offset(access: Any, values: dict[Any, int]) -> int | None:
    """Row-major element offset of ``access`` (a load or store) with the variables at
    ``values``; ``None`` when it is not a constant."""
    analyzer = Analyzer()
    for var, value in values.items():
        analyzer.bind(var, value)
    offset = 0
    buffer = access.buffer if hasattr(access, "buffer") else access.source
    for dim, index in zip(buffer.shape, access.indices, strict=True):
        value = analyzer.simplify(index)
        if not isinstance(value, tirx.IntImm) or not isinstance(dim, tirx.IntImm):
            return None
        offset = offset * int(dim) + int(value)
    return offset


def stride_along(access: Any, var: Any, others: list[Any], *, steps: int = 1) -> int | None:
    """The constant element distance ``access`` moves per step of ``var`` (the ``others``
    at 0), checked over ``steps`` steps from 0; ``None`` when it is not one constant (a
    gather such as a resize's ``x // 2``)."""
    base = dict.fromkeys(others, 0)
    offsets = [flat_offset(access, {**base, var: v}) for v in range(steps + 1)]
    if any(o is None for o in offsets):
        return None
    diffs = {b - a for a, b in pairwise(offsets)}  # type: ignore[operator]
    return diffs.pop() if len(diffs) == 1 else None
