from __future__ import annotations

import json

import torch
from torch import nn

from patsparse.cli import main
from patsparse.compiler.op_profile import (
    OpCall,
    TorchOp,
    format_profile,
    match_ops,
    profile_model,
    slow_op_warnings,
)


def _t(module, kind, shape, ms):
    return TorchOp(module, kind, shape, [ms, ms])


def _c(name, shape, ms):
    return OpCall(name, shape, [ms, ms, ms])


def test_fused_elementwise_ops_join_the_call_a_norm_keeps_its_own():
    s1, s2 = (1, 8, 4, 4), (1, 8, 2, 2)
    torch_ops = [
        _t("conv1", "Conv2d", s1, 1.0),
        _t("bn1", "BatchNorm2d", s1, 0.2),
        _t("relu1", "ReLU", s1, 0.1),
        _t("conv2", "Conv2d", s1, 1.0),
        _t("norm", "InstanceNorm2d", s1, 0.5),
        _t("act", "ReLU", s1, 0.1),
        _t("pool", "MaxPool2d", s2, 0.3),
    ]
    calls = [
        _c("blocked_conv2d_0", s1, 0.4),
        _c("blocked_conv2d_1", s1, 0.5),
        _c("fused_instance_norm_relu", s1, 1.0),
        _c("reshape", (1, 32), 0.01),  # no PyTorch op made this shape
        _c("max_pool2d", s2, 0.1),
    ]
    rows = match_ops(calls, torch_ops)
    assert [r.torch_ops for r in rows] == [
        ["conv1", "bn1", "relu1"],
        ["conv2"],
        ["norm", "act"],
        [],
        ["pool"],
    ]
    assert rows[0].torch_ms == 1.3 and rows[0].kind == "conv (patsparse)"
    assert rows[2].kind == "InstanceNorm2d+ReLU" and rows[2].ratio == 0.6
    assert rows[3].torch_ms is None and rows[3].ratio is None
    assert [r.op for r in rows if r.slower_than_pytorch] == ["fused_instance_norm_relu"]
    (warning,) = slow_op_warnings(rows)
    assert "fused_instance_norm_relu" in warning and "0.60x" in warning
    assert "1 slower than PyTorch" in format_profile(rows)


def test_calls_without_a_module_stay_unmatched_and_do_not_unpair_the_rest():
    img, feat = (1, 3, 8, 8), (1, 8, 8, 8)
    torch_ops = [
        _t("pad", "ReflectionPad2d", (1, 3, 10, 10), 0.1),
        _t("conv1", "Conv2d", feat, 1.0),
        _t("norm1", "InstanceNorm2d", feat, 0.5),
        _t("relu1", "ReLU", feat, 0.1),
        _t("conv2", "Conv2d", feat, 1.0),
        _t("norm2", "InstanceNorm2d", feat, 0.5),
        _t("out", "Conv2d", img, 2.0),
        _t("tanh", "Tanh", img, 0.1),
    ]
    calls = [
        _c("subtract", img, 0.01),  # x - 0.5 in forward: the image's shape, no module
        _c("blocked_conv2d_0", feat, 0.3),
        _c("add", feat, 0.01),  # the conv's bias, split off: not the norm after it
        _c("fused_instance_norm_relu", feat, 0.2),
        _c("take", (1, 5, 8, 8), 0.01),  # the kept channels of the next conv
        _c("blocked_conv2d_1", feat, 0.3),
        _c("add", feat, 0.01),
        _c("instance_norm", feat, 0.1),
        _c("fused_conv2d_tanh", img, 0.5),
    ]
    rows = match_ops(calls, torch_ops)
    assert [r.torch_ops for r in rows] == [
        [],
        ["pad", "conv1"],
        [],
        ["norm1", "relu1"],
        [],
        ["conv2"],
        [],
        ["norm2"],
        ["out", "tanh"],
    ]


def test_a_conv_narrowed_to_the_channels_read_still_finds_its_pytorch_op():
    # DropUnreadFilters left the expand conv computing 12 of its 96 channels
    wide, narrow, out = (1, 96, 8, 8), (1, 12, 8, 8), (1, 16, 8, 8)
    torch_ops = [
        _t("expand", "Conv2d", wide, 4.0),
        _t("act", "ReLU", wide, 0.5),
        _t("reduce", "Conv2d", out, 1.0),
    ]
    calls = [_c("pattern_sparse_conv2d_1", narrow, 0.5), _c("blocked_conv2d_0", out, 0.2)]
    assert match_ops(calls, torch_ops)[0].torch_ops == []  # 12 channels are not 96
    rows = match_ops(calls, torch_ops, narrowed=frozenset({(96, 12)}))
    assert [r.torch_ops for r in rows] == [["expand", "act"], ["reduce"]]
    assert rows[0].ratio == 9.0
    # another narrowing does not pair them
    other = match_ops(calls, torch_ops, narrowed=frozenset({(96, 8)}))
    assert other[0].torch_ops == []


def test_two_convs_of_one_shape_run_in_the_other_order_are_told_apart_by_their_input():
    # SR: PyTorch runs the tail conv (32 -> 4) and then the skip branch (pad, 1 -> 4 conv);
    # TVM runs the skip conv first and fuses the tail with the add of the two
    out = (1, 4, 8, 8)
    torch_ops = [
        TorchOp("tail", "Conv2d", out, [4.0, 4.0], in_channels=32),
        TorchOp("skip.0", "ReplicationPad2d", (1, 1, 12, 12), [0.1, 0.1]),
        TorchOp("skip.1", "Conv2d", out, [0.5, 0.5], in_channels=1),
        TorchOp("shuffle", "PixelShuffle", (1, 1, 16, 16), [0.3, 0.3]),
    ]
    calls = [
        OpCall("replicate_pad", (1, 1, 12, 12), [0.03] * 3, in_channels=1),
        OpCall("fused_conv2d1_add", out, [0.07] * 3, in_channels=1),
        OpCall("fused_conv2d_add_add1", out, [1.2] * 3, in_channels=32),
        OpCall("fused_reshape_transpose_reshape1", (1, 1, 16, 16), [0.05] * 3, in_channels=4),
    ]
    rows = match_ops(calls, torch_ops)
    # (the pad call does not jump the tail conv a later call stands for: the skip conv takes
    # the pad's time with its own)
    assert [r.torch_ops for r in rows] == [[], ["skip.0", "skip.1"], ["tail"], ["shuffle"]]
    assert not any(r.slower_than_pytorch for r in rows)
    # a conv reading a compacted input (its kept channels) still finds its module
    compacted = [OpCall("blocked_conv2d_0", out, [0.2] * 3, in_channels=12)]
    module = [TorchOp("conv", "Conv2d", out, [1.0, 1.0], in_channels=96)]
    assert match_ops(compacted, module)[0].torch_ops == []
    assert match_ops(compacted, module, reads=frozenset({(96, 12)}))[0].torch_ops == ["conv"]


def test_profile_of_a_compiled_model_covers_its_calls():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.InstanceNorm2d(16, affine=True),
        nn.ReLU(),
        nn.Conv2d(16, 8, 3, padding=2, dilation=2),
        nn.Upsample(scale_factor=2),
    ).eval()
    x = torch.randn(1, 3, 16, 16)
    compiled, rows = profile_model(model, x, threads=1, repeat=3)
    assert len(rows) == len([r for r in compiled.schedule_records])
    assert all(r.ms > 0 for r in rows)
    matched = [m for r in rows for m in r.torch_ops]
    assert {"0", "1", "3", "4"} <= set(matched)  # every conv, the norm and the upsample
    assert len(matched) == len(set(matched))  # each PyTorch op in one row at most


def test_profile_and_compile_profile_commands(capsys):
    assert main(["profile", "digits-cnn", "--compression", "4", "--repeat", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ops"] and {"op", "shape", "kind", "ms", "torch_ms", "ratio"} <= set(out["ops"][0])
    assert out["unscheduled"] == []
    assert len(out["core_round_trip_ns"]) == 2  # where the host had the CPUs, before and after
    assert main(["compile", "digits-cnn", "--compression", "4", "--profile", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["profile"] and out["unscheduled"] == [] and isinstance(out["warnings"], list)
    assert out["thin"] == []  # ThinSparseConv2D's records: digits maps are too small


def test_chained_convs_are_matched_by_their_logical_shape():
    # a chained conv writes a blocked, bordered layout (1x4x18x18x16 here): it must still
    # be paired with its own PyTorch conv, not with the next op of the same NCHW shape
    from patsparse.pruning.pruners import MagnitudePruner
    from patsparse.schemes import PruningPlan, make_scheme

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 32, 3, padding=1),
    ).eval()
    pruner = MagnitudePruner(PruningPlan(default=make_scheme("block-pattern", density=1 / 8)))
    pruner.prepare(model)
    pruner.step()
    pruner.squash_mask()
    compiled, rows = profile_model(model, torch.randn(1, 3, 16, 16), threads=1, repeat=3)
    chained = {r.function for r in compiled.chain_records if r.chained_output}
    assert chained, "the test needs chained convs"
    convs = [r for r in rows if r.kind == "conv (patsparse)"]
    assert [r.torch_ops[0] for r in convs] == ["0", "2", "4"]
    # the first conv computes only the filters the second reads (DropUnreadFilters)
    (first,) = [r.computed for r in compiled.drop_records if r.producer_shape == (32, 3, 3, 3)]
    assert [r.shape for r in convs] == [(1, first, 16, 16), (1, 64, 16, 16), (1, 32, 16, 16)]


def test_a_chained_norm_takes_the_upsample_and_pad_it_writes():
    """A chained norm writing its output mirrored and upsampled for the conv after it does
    PyTorch's Upsample and ReflectionPad2d: they are its ops, not the conv's."""
    s, up, padded, out = (1, 8, 4, 4), (1, 8, 8, 8), (1, 8, 10, 10), (1, 4, 8, 8)
    torch_ops = [
        _t("conv1", "Conv2d", s, 1.0),
        _t("norm", "InstanceNorm2d", s, 0.3),
        _t("act", "ReLU", s, 0.1),
        _t("up", "Upsample", up, 0.4),
        _t("pad", "ReflectionPad2d", padded, 0.2),
        _t("conv2", "Conv2d", out, 1.0),
    ]
    norm = OpCall("instance_norm_chained", s, [0.5] * 3, pad_mode="reflect", upsample=2)
    calls = [_c("blocked_conv2d_0", s, 0.2), norm, _c("blocked_conv2d_1", out, 0.3)]
    rows = match_ops(calls, torch_ops)
    assert [r.torch_ops for r in rows] == [["conv1"], ["norm", "act", "up", "pad"], ["conv2"]]
    assert rows[1].ratio == 2.0
    # the same norm writing NCHW (no border, no upsampling): the conv keeps them
    plain = OpCall("instance_norm_chained", s, [0.5] * 3)
    rows = match_ops([calls[0], plain, calls[2]], torch_ops)
    assert [r.torch_ops for r in rows] == [["conv1"], ["norm", "act"], ["up", "pad", "conv2"]]
