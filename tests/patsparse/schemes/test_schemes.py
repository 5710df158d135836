"""Every scheme's mask is a Euclidean projection: idempotent, structured, largest-norm."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from patsparse.core.errors import InvalidRateError, UnknownNameError, UnsupportedLayerError
from patsparse.core.patterns import DESIGNED_8, mask_from_code
from patsparse.schemes import (
    BlockPatternScheme,
    BlockScheme,
    ChannelScheme,
    ColumnScheme,
    ConnectivityScheme,
    FilterScheme,
    PatternConnectivityScheme,
    PatternScheme,
    UnstructuredScheme,
    make_scheme,
    pattern_energies,
    scheme_from_dict,
    scheme_names,
)
from patsparse.schemes.pattern import kernel_codes

CONV_SCHEMES = [
    PatternScheme(),
    ConnectivityScheme(density=0.3),
    ConnectivityScheme(density=0.4, balanced=True),
    PatternConnectivityScheme(density=0.125),
    PatternConnectivityScheme(density=0.2, balanced=True),
    BlockPatternScheme(density=0.125, block_size=4),
    FilterScheme(density=0.5),
    ChannelScheme(density=0.5),
    ColumnScheme(density=0.3),
    BlockScheme(density=0.25, block_rows=4),
    UnstructuredScheme(density=0.2),
]
LINEAR_SCHEMES = [
    FilterScheme(density=0.5),
    ChannelScheme(density=0.3),
    ColumnScheme(density=0.3),
    BlockScheme(density=0.25, block_rows=4),
    UnstructuredScheme(density=0.1),
]

conv_weights = st.builds(
    lambda k, c, seed: torch.randn(k, c, 3, 3, generator=torch.Generator().manual_seed(seed)),
    st.integers(1, 12),
    st.integers(1, 9),
    st.integers(0, 2**16),
)


@pytest.mark.parametrize("scheme", CONV_SCHEMES, ids=lambda s: s.describe())
@settings(max_examples=15, deadline=None)
@given(w=conv_weights)
def test_projection_is_idempotent(scheme, w):
    p = scheme.project(w)
    assert torch.equal(scheme.project(p), p)
    # the projection's own mask covers every weight it kept
    assert not bool((p[~scheme.mask(p)] != 0).any())
    # projection never invents weights
    assert torch.equal(p[p != 0], w[p != 0])


@pytest.mark.parametrize("scheme", LINEAR_SCHEMES, ids=lambda s: s.describe())
def test_linear_projection_is_idempotent(scheme):
    w = torch.randn(24, 40)
    p = scheme.project(w)
    assert torch.equal(scheme.project(p), p)
    assert abs(float((p != 0).float().mean()) - scheme.target_density) < 0.05


def _kernels(mask):
    return mask.reshape(*mask.shape[:2], -1).any(-1)


def test_pattern_keeps_best_library_pattern():
    w = torch.randn(8, 6, 3, 3)
    mask = PatternScheme().mask(w)
    codes = kernel_codes(mask.float())
    assert set(codes.flatten().tolist()) <= set(DESIGNED_8.codes)
    kept = (w**2 * mask).sum((-1, -2))
    best = pattern_energies(w, DESIGNED_8).max(-1).values
    torch.testing.assert_close(kept, best)


def test_connectivity_keeps_largest_kernels():
    w = torch.randn(10, 8, 3, 3)
    mask = ConnectivityScheme(density=0.25).mask(w)
    keep = _kernels(mask)
    assert int(keep.sum()) == 20
    assert bool(mask.reshape(10, 8, 9).all(-1)[keep].all())  # whole kernels
    norms = w.pow(2).sum((-1, -2))
    assert norms[keep].min() >= norms[~keep].max()


def test_balanced_connectivity_keeps_same_count_per_filter():
    w = torch.randn(10, 8, 3, 3)
    keep = _kernels(ConnectivityScheme(density=0.25, balanced=True).mask(w))
    assert keep.sum(1).tolist() == [2] * 10


def test_pattern_connectivity_is_exact_projection_by_brute_force():
    # 1 filter, 3 channels, keep 1 kernel: try every (kernel, pattern) choice.
    w = torch.randn(1, 3, 3, 3)
    scheme = PatternConnectivityScheme(density=(1 / 3) * (4 / 9))
    p = scheme.project(w)
    best = None
    for ch, code in itertools.product(range(3), DESIGNED_8.codes):
        m = torch.zeros_like(w, dtype=torch.bool)
        m[0, ch] = torch.tensor(
            [[(code >> (r * 3 + c)) & 1 for c in range(3)] for r in range(3)], dtype=torch.bool
        )
        dist = float((w - w * m).norm())
        best = dist if best is None else min(best, dist)
    assert float((w - p).norm()) == pytest.approx(best)
    assert float((p != 0).sum()) == 4


def test_block_pattern_structure():
    torch.manual_seed(0)
    k, c, g = 16, 12, 4
    w = torch.randn(k, c, 3, 3)
    scheme = BlockPatternScheme(density=(4 / 9) * 0.25, block_size=g, balanced=False)
    order, keep, ids = scheme.layout(w)
    assert sorted(order.tolist()) == list(range(k))
    assert keep.shape == (k // g, c) and keep.sum(1).tolist() == [3] * (k // g)
    mask = scheme.mask(w)
    for b in range(k // g):
        members = order[b * g : (b + 1) * g]
        block = mask[members]
        # every filter of a block has exactly the block's support
        assert bool((block == block[0:1]).all())
        assert torch.equal(_kernels(block)[0], keep[b])
        # per kept channel, the pattern is the block's best; kept channels beat pruned ones
        energy = pattern_energies(w[members], DESIGNED_8).sum(0)
        assert torch.equal(ids[b], energy.argmax(-1))
        score = energy.max(-1).values
        assert score[keep[b]].min() >= score[~keep[b]].max()
    assert set(kernel_codes(mask.float()).unique().tolist()) <= {0, *DESIGNED_8.codes}


def test_block_pattern_balanced_caps_pattern_use():
    torch.manual_seed(3)
    k, c, g = 32, 64, 16
    # Skew the energy towards one pattern so the unbalanced choice is uneven.
    w = torch.randn(k, c, 3, 3)
    w[:, :, :2, :2] *= 3
    free = BlockPatternScheme(density=1 / 8, block_size=g, balanced=False)
    fair = BlockPatternScheme(density=1 / 8, block_size=g)
    order_f, keep_f, ids_f = free.layout(w)
    order_b, keep_b, ids_b = fair.layout(w)
    # Same filter blocks and kept channels; only the pattern choice changes.
    assert torch.equal(order_f, order_b) and torch.equal(keep_f, keep_b)
    kept = int(keep_b[0].sum())
    cap = -(-kept // len(DESIGNED_8))
    for b in range(k // g):
        counts_b = torch.bincount(ids_b[b][keep_b[b]], minlength=len(DESIGNED_8))
        counts_f = torch.bincount(ids_f[b][keep_f[b]], minlength=len(DESIGNED_8))
        assert int(counts_b.max()) <= cap < int(counts_f.max())
        assert int(counts_b.sum()) == kept
        # the same counts in every block of the layer (the kernel computes the same slots
        # for every block): kept // P each, one more for the layer's most used patterns
        assert torch.equal(counts_b, torch.bincount(ids_b[0][keep_b[0]], minlength=len(DESIGNED_8)))
        assert sorted(counts_b.tolist()) == sorted(
            [kept // len(DESIGNED_8) + (i < kept % len(DESIGNED_8)) for i in range(8)]
        )
    # Still a valid block-pattern mask with the same density, and every kept weight's
    # energy is at most what the free choice keeps.
    mask = fair.mask(w)
    assert int(mask.sum()) == int(free.mask(w).sum())
    assert float((w * mask).norm()) <= float((w * free.mask(w)).norm()) + 1e-6
    assert set(kernel_codes(mask.float()).unique().tolist()) <= {0, *DESIGNED_8.codes}


def test_block_pattern_reordering_groups_similar_filters():
    # Filters built from 4 disjoint channel groups, shuffled: clustering must recover them.
    torch.manual_seed(1)
    w = torch.zeros(16, 8, 3, 3)
    groups = torch.randperm(16).reshape(4, 4)
    for gi, members in enumerate(groups):
        w[members, 2 * gi : 2 * gi + 2] = torch.randn(4, 2, 3, 3)
    order, _, _ = BlockPatternScheme(density=0.1, block_size=4).layout(w)
    blocks = {frozenset(order[i : i + 4].tolist()) for i in range(0, 16, 4)}
    assert blocks == {frozenset(m.tolist()) for m in groups}


def test_structured_schemes_keep_largest_units():
    w = torch.randn(12, 6, 3, 3)
    g = w.reshape(12, -1)
    m = FilterScheme(density=0.5).mask(w).reshape(12, -1)
    rows = m.all(1)
    assert int(rows.sum()) == 6 and not bool(m[~rows].any())
    assert g[rows].norm(dim=1).min() >= g[~rows].norm(dim=1).max()

    m = ChannelScheme(density=0.5).mask(w)
    ch = m.all(0).reshape(6, -1).all(1)
    assert int(ch.sum()) == 3
    norms = w.pow(2).sum((0, 2, 3))
    assert norms[ch].min() >= norms[~ch].max()

    m = ColumnScheme(density=0.25).mask(w).reshape(12, -1)
    cols = m.all(0)
    assert bool((m == cols[None]).all())
    assert g[:, cols].norm(dim=0).min() >= g[:, ~cols].norm(dim=0).max()

    m = BlockScheme(density=0.25, block_rows=4).mask(w).reshape(12, -1)
    for start in range(0, 12, 4):
        blk = m[start : start + 4]
        assert bool((blk == blk[0:1]).all())
        n = g[start : start + 4].norm(dim=0)
        assert n[blk[0]].min() >= n[~blk[0]].max()

    m = UnstructuredScheme(density=0.1).mask(w)
    assert w.abs()[m].min() >= w.abs()[~m].max()


@pytest.mark.parametrize("scheme", CONV_SCHEMES + LINEAR_SCHEMES, ids=lambda s: s.describe())
def test_json_round_trip(scheme):
    again = scheme_from_dict(scheme.to_dict())
    assert again == scheme


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
@pytest.mark.parametrize("name", ["connectivity", "filter", "unstructured", "block"])
def test_density_outside_unit_interval_is_rejected(name, bad):
    with pytest.raises(InvalidRateError, match="outside"):
        make_scheme(name, density=bad)


def test_pattern_connectivity_density_above_pattern_density_is_rejected():
    with pytest.raises(InvalidRateError, match=r"at most 0\.4444"):
        PatternConnectivityScheme(density=0.5)


@pytest.mark.parametrize(
    "scheme", [PatternScheme(), PatternConnectivityScheme(), BlockPatternScheme(block_size=4)]
)
@pytest.mark.parametrize("shape", [(8, 4, 1, 1), (8, 4, 5, 5), (8, 16)])
def test_pattern_schemes_reject_non_3x3(scheme, shape):
    with pytest.raises(UnsupportedLayerError, match="3x3"):
        scheme.mask(torch.randn(shape))


def test_connectivity_rejects_linear():
    with pytest.raises(UnsupportedLayerError, match="conv"):
        ConnectivityScheme().mask(torch.randn(4, 4))


def test_unknown_scheme_and_option():
    with pytest.raises(UnknownNameError, match="pattern"):
        make_scheme("patern")
    with pytest.raises(TypeError, match="no option"):
        make_scheme("filter", rate=0.5)
    assert set(scheme_names()) >= {
        "pattern",
        "connectivity",
        "pattern+connectivity",
        "block-pattern",
        "filter",
        "channel",
        "column",
        "block",
        "unstructured",
    }


@pytest.mark.slow
@pytest.mark.parametrize("scheme", CONV_SCHEMES, ids=lambda s: s.describe())
@settings(max_examples=300, deadline=None)
@given(w=conv_weights)
def test_projection_is_idempotent_many_cases(scheme, w):
    p = scheme.project(w)
    assert torch.equal(scheme.project(p), p)


def test_balanced_patterns_rejects_caps_that_cannot_hold_the_kept_channels():
    from patsparse.schemes.pattern import balanced_patterns

    energy = torch.rand(6, 8)
    keep = torch.ones(6, dtype=torch.bool)
    with pytest.raises(ValueError, match="sum to at least the 6 kept"):
        balanced_patterns(energy, keep, caps=[0] * 7 + [5])
    ids = balanced_patterns(energy, keep, caps=[0] * 7 + [6])
    assert ids.tolist() == [7] * 6


def test_kernel_codes_reads_supports():
    w = torch.zeros(2, 3, 3, 3)
    w[0, 1] = torch.tensor(mask_from_code(DESIGNED_8.codes[2]), dtype=torch.float32) * 0.5
    codes = kernel_codes(w)
    assert codes.shape == (2, 3)
    assert int(codes[0, 1]) == DESIGNED_8.codes[2]
    assert int(codes.sum()) == DESIGNED_8.codes[2]  # pruned kernels have code 0
