"""``patsparse.compiler.engines``: conv kernel timings merged across runs."""

from __future__ import annotations

import pytest

from patsparse.compiler.engines import KernelCall, more_runs
from patsparse.core.errors import PatsparseError


def test_kernel_runs_merge_only_when_the_calls_match():
    first = [KernelCall("conv_a", (1,), (1,), 9, [1.0]), KernelCall("conv_b", (1,), (1,), 9, [2.0])]
    again = [KernelCall("conv_a", (1,), (1,), 9, [3.0]), KernelCall("conv_b", (1,), (1,), 9, [4.0])]
    merged = more_runs(more_runs(None, first), again)
    assert [k.times for k in merged] == [[1.0, 3.0], [2.0, 4.0]]
    with pytest.raises(PatsparseError, match="differ between runs"):
        more_runs(merged, again[::-1])
