"""The chained norm kernel: instance / group norm over a chained input, with the residual and
ReLU fused, written NCHW or chained (zero / mirrored / edge border, upsampled), scheduled,
against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_ext._compat import host_target, te, tensor, tvm
from tvm_ext.schedules.dispatch import SCHEDULED_ATTR, schedule_norm_primfunc
from tvm_ext.targets import make_target
from tvm_ext.te.chained_norm import ChainedNorm, NormOutput, norm_te, stat_chunks
from tvm_ext.te.conv_spec import BlockedActivation

_NUMPY_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}


def _reference(x, gamma, beta, *, group_size, relu, relu_first, residual):
    n, c, h, w = x.shape
    g = x.reshape(n, c // group_size, -1).astype("float64")
    normed = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5)
    y = normed.reshape(n, c, h, w) * gamma[None, :, None, None] + beta[None, :, None, None]
    if relu and relu_first:
        y = np.maximum(y, 0)
    if residual is not None:
        y = y + residual
    return np.maximum(y, 0) if relu and not relu_first else y


def _blocked(x, positions, rows, lanes, border):
    n, _, h, w = x.shape
    out = np.zeros((n, rows, h + 2 * border, w + 2 * border, lanes), "float32")
    for ch, p in enumerate(positions):
        out[:, p // lanes, border : border + h, border : border + w, p % lanes] = x[:, ch]
    return out


def _run(spec, args):
    func = te.create_prim_func(norm_te(spec))
    target = host_target()
    scheduled = schedule_norm_primfunc(func, target=target)
    assert scheduled is not None and int(scheduled.attrs[SCHEDULED_ATTR]) == 1
    lib = tvm.compile(tvm.IRModule({"main": scheduled}), target=target)
    dev = tvm.cpu()
    out = tensor(np.zeros(spec.out_shape(), "float32"), dev)
    lib["main"](*[tensor(a, dev) for a in args], out)
    return out.numpy()


CASES = [
    # (channels, h, w, group_size, relu, relu_first, residual, output)
    (24, 12, 10, 1, True, False, None, None),
    (32, 9, 7, 4, False, False, None, NormOutput(1, "zeros")),
    (20, 8, 6, 1, True, False, "nchw", NormOutput(2, "reflect")),
    (32, 6, 5, 2, True, True, "chained", NormOutput(1, "replicate", 2)),
    (16, 5, 6, 1, False, False, "chained", NormOutput(1, "reflect", 2)),
    (12, 7, 9, 3, True, False, "nchw", None),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[:7])))
def test_chained_norm_matches_numpy(case):
    c, h, w, gs, relu, relu_first, res, out = case
    rng = np.random.default_rng(c * h)
    lanes, border = 16, 1
    rows = -(-c // lanes)
    slots = rows * lanes
    positions = rng.permutation(slots)[:c]  # channel -> position, as a conv's filter order
    x = (3 * rng.standard_normal((2, c, h, w)) + 1).astype("float32")
    gamma, beta = rng.standard_normal(c).astype("float32"), rng.standard_normal(c).astype("float32")
    gp, bp = np.zeros(slots, "float32"), np.zeros(slots, "float32")
    gp[positions], bp[positions] = gamma, beta
    args = [_blocked(x, positions, rows, lanes, border), gp, bp]
    if gs > 1:
        members = np.repeat(np.arange(slots, dtype="int32")[:, None], gs, 1)
        members[positions] = np.repeat(positions.reshape(-1, gs), gs, axis=0)
        args.append(members)
    residual, layout = None, None
    if res is not None:
        residual = rng.standard_normal((2, c, h, w)).astype("float32")
        channel_of = np.zeros(slots, "int32")
        channel_of[positions] = np.arange(c)
        if res == "nchw":
            args += [residual, channel_of]
        else:  # stored by another layer in its own order, with its own border
            other = rng.permutation(c)
            layout = BlockedActivation(-(-c // 8), 8, 2)
            stored = _blocked(residual, other, layout.rows, 8, 2)
            args += [stored, other[channel_of].astype("int32")]
    if out is None:
        args.append(positions.astype("int32"))
    spec = ChainedNorm(
        (2, c, h, w),
        BlockedActivation(rows, lanes, border),
        1e-5,
        group_size=gs,
        relu=relu,
        relu_first=relu_first,
        residual=res is not None,
        residual_layout=layout,
        out=out,
    )
    got = _run(spec, args)
    want = _reference(
        x, gamma, beta, group_size=gs, relu=relu, relu_first=relu_first, residual=residual
    )
    if out is not None:
        s, b = out.upsample, out.border
        want = want.repeat(s, 2).repeat(s, 3)
        want = np.pad(want, ((0, 0), (0, 0), (b, b), (b, b)), mode=_NUMPY_PAD[out.pad_mode])
        assert got.shape == (2, rows, h * s + 2 * b, w * s + 2 * b, lanes)
        unused = np.setdiff1d(np.arange(slots), positions)
        if res is None:  # lanes no channel maps to: zeros (with a residual: never read)
            assert not got[:, unused // lanes, :, :, unused % lanes].any()
        got = np.stack([got[:, p // lanes, :, :, p % lanes] for p in positions], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_stat_chunks_divide_the_height():
    assert stat_chunks(256) == 8 and stat_chunks(9) == 3 and stat_chunks(7) == 7
    assert stat_chunks(13) == 1


def test_bad_specs_are_clear_errors():
    lay = BlockedActivation(1, 16, 0)
    with pytest.raises(ValueError, match="group_size"):
        ChainedNorm((1, 16, 8, 8), lay, 1e-5, group_size=0)
    with pytest.raises(ValueError, match="residual_layout given without a residual"):
        ChainedNorm((1, 16, 8, 8), lay, 1e-5, residual_layout=lay)
    with pytest.raises(ValueError, match="mirrored border of 8 needs a map larger"):
        ChainedNorm((1, 16, 4, 4), lay, 1e-5, out=NormOutput(8, "reflect", 2))
    with pytest.raises(ValueError, match="pad_mode"):
        NormOutput(1, "wrap")
    with pytest.raises(ValueError, match="upsample"):
        NormOutput(1, "zeros", 0)


def test_gpu_targets_get_no_cpu_schedule():
    spec = ChainedNorm((1, 16, 8, 8), BlockedActivation(1, 16, 0), 1e-5)
    func = te.create_prim_func(norm_te(spec))
    assert schedule_norm_primfunc(func, target=make_target("adreno")) is None
