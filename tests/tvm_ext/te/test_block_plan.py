"""The block layers' column plan: patterns as equal columns, or one padded column each."""

from __future__ import annotations

from tvm_ext.layout import analyze_conv_weight


def test_many_columns_fall_back_to_one_padded_column_per_pattern(h, monkeypatch):
    from tvm_ext.te import block_plan

    w = h.pattern_weight(16, 24, density=0.3, block=16, seed=5)
    lay = analyze_conv_weight(w, block=16)
    counts = [int(v.shape[1]) for v in lay.values]
    monkeypatch.setattr(block_plan, "MAX_COLUMNS", 0)
    cols, slots = block_plan.block_columns(lay)
    assert cols == tuple((p, 0) for p in range(lay.patterns)) and slots == max(counts)
    assert block_plan.merged_block_arrays(lay)[0].shape[1:3] == (lay.patterns, max(counts))
