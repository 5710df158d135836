"""The conv stages' building blocks: the block stage's tap offsets."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tvm_ext._compat import Analyzer, host_target, te, tensor, tirx, tvm


def _offset_table(tap_offset, taps, which):
    """``tap_offset`` evaluated (compiled and run) at every (column, tap)."""
    table = te.compute((len(taps), 4), lambda p, t: tap_offset(taps, p, t, which))
    out = tensor(np.zeros((len(taps), 4), "int32"), tvm.cpu())
    tvm.compile(te.create_prim_func([table]), target=host_target())["main"](out)
    return out.numpy()


@pytest.mark.parametrize("bits", [4, 40])  # packed per column / one select per (column, tap)
def test_tap_offset_gives_every_columns_taps_and_folds(monkeypatch, bits):
    """The block kernel's tap offset is an expression of the column and tap loop variables
    over constants: evaluated it gives each tap's row / column; with both variables fixed (as
    unrolling fixes them) no select is left. Packed, it holds one select per column, not
    one per (column, tap)."""
    from tvm_ext.te import conv_stages

    monkeypatch.setattr(conv_stages, "TAP_BITS", bits)
    taps = [((0, 1), (1, 2), (2, 0), (1, 1)), ((2, 2), (0, 0), (1, 0), (0, 2)), ((1, 1), (2, 1))]
    for which in (0, 1):
        p, t = tirx.Var("p", "int32"), tirx.Var("t", "int32")
        expr = conv_stages._tap_offset(taps, p, t, which)
        selects = str(expr).count("if_then_else")
        assert selects == (len(taps) - 1 if bits == 4 else sum(map(len, taps)) - 1)
        for pp, tt in ((0, 0), (1, 3), (2, 1)):
            ana = Analyzer()
            ana.bind(p, tirx.const(pp, "int32"))
            ana.bind(t, tirx.const(tt, "int32"))
            folded = str(ana.simplify(expr))
            assert "if_then_else" not in folded and not re.search(r"\b[pt]\b", folded), folded
        got = _offset_table(conv_stages._tap_offset, taps, which)
        for pp, col in enumerate(taps):
            assert [int(v) for v in got[pp, : len(col)]] == [tap[which] for tap in col]
