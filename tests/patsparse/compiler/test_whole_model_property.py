"""Property test over whole models: random small CNNs (:mod:`random_models`: convs 1x1 to
9x9 with dilation, stride, groups and depthwise; batch / instance / group norm; ReLU,
hard-swish, sigmoid; pools, upsampling, pixel shuffle,
reflection padding, residual adds, concats, linear heads), pruned one-shot with random
schemes and rates, compile with ``compile_torch`` for the host CPU, match PyTorch on every
output, and leave no PrimFunc unscheduled.

Models are compiled :data:`BATCH` at a time as one module (one export, one build: the
per-build overhead dominates at this size); a failure prints the failing models as PyTorch
scripts (hypothesis shrinks each). CI runs a fixed (derandomized) set of 200 models;
``-m slow`` runs 1000 new ones.

``verify=False``: the per-layer checks would leave a wrong kernel dense and so hide it; the
test compares every output itself (:func:`tvm_ext.verify.check_outputs`, the bound
``compile_torch`` verifies with).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from random_models import (
    Concat,
    Conv,
    Layer,
    Models,
    ModelSpec,
    Norm,
    Residual,
    build,
    model_batches,
    model_specs,
    render,
)

from patsparse.compiler import compile_torch
from tvm_ext.verify import check_outputs

#: models compiled together
BATCH = 8
_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("patsparse-whole-models", max_examples=25, derandomize=True, **_COMMON)
settings.register_profile("patsparse-whole-models-slow", max_examples=125, **_COMMON)


def _scripts(specs: list[ModelSpec], indices: list[int]) -> str:
    return "\n".join(f"# ---- model {i} of the batch\n{render(specs[i])}" for i in indices)


def _failing_builds(built: list[tuple[torch.nn.Module, torch.Tensor]]) -> list[int]:
    """The models of a batch that fail to compile alone."""
    failing = []
    for i, (model, x) in enumerate(built):
        try:
            compile_torch(model, x, verify=False)
        except Exception:
            failing.append(i)
    return failing


def _check(specs: list[ModelSpec]) -> None:
    built = [build(spec) for spec in specs]
    x = built[0][1]  # every script's x: the same shape and seed
    models = Models([model for model, _ in built]).eval()
    with torch.no_grad():
        refs = [out.numpy() for out in models(x)]
    try:
        compiled = compile_torch(models, x, verify=False)
    except Exception as exc:
        pytest.fail(
            f"compiling failed: {type(exc).__name__}: {str(exc).splitlines()[-1]}\n"
            f"{_scripts(specs, _failing_builds(built) or list(range(len(specs))))}"
        )
    check = check_outputs(compiled.outputs(x.numpy()), refs)
    bad = [o.index for o in check.outputs if not o.passed]
    assert not bad, (
        "differs from PyTorch: "
        + "; ".join(check.outputs[i].describe() for i in bad)
        + f"\n{_scripts(specs, bad)}"
    )
    unscheduled = [r.name for r in compiled.schedule_records if r.schedule is None]
    everything = list(range(len(specs)))
    assert not unscheduled, f"unscheduled: {unscheduled}\n{_scripts(specs, everything)}"


@settings(settings.get_profile("patsparse-whole-models"))
@given(specs=model_batches(size=BATCH))
def test_random_models_match_pytorch(specs):
    _check(specs)


@pytest.mark.slow
@settings(settings.get_profile("patsparse-whole-models-slow"))
@given(specs=model_batches(size=BATCH))
def test_random_models_match_pytorch_many(specs):
    _check(specs)


def _kinds(layers: tuple[Layer, ...]) -> set[str]:
    kinds: set[str] = set()
    for layer in layers:
        kinds.add(type(layer).__name__)
        if isinstance(layer, Conv):
            kinds |= {f"conv{layer.kernel}x{layer.kernel}", f"stride{layer.stride}"}
            kinds |= {f"dilation{layer.dilation}"}
            if layer.groups > 1:
                kinds.add("depthwise" if layer.groups == layer.out else "grouped")
        elif isinstance(layer, Norm):
            kinds.add(f"{layer.kind}-norm")
        elif isinstance(layer, Residual):
            kinds |= _kinds(layer.body)
        elif isinstance(layer, Concat):
            kinds |= _kinds(layer.left) | _kinds(layer.right)
    return kinds


def test_generator_covers_the_layer_kinds_and_renders_runnable_models():
    """200 generated models (no compiling): every layer kind the docstring names occurs,
    and each rendered script builds a model whose output has the spec's shape."""
    seen: set[str] = set()

    @settings(max_examples=200, derandomize=True, database=None, **_COMMON)
    @given(spec=model_specs())
    def one(spec: ModelSpec) -> None:
        seen.update(_kinds(spec.layers), {f"head{spec.head is not None}"})
        seen.add(spec.prune.scheme if spec.prune else "dense")
        model, x = build(spec)
        with torch.no_grad():
            assert tuple(model(x).shape) == spec.out_shape, render(spec)

    one()
    wanted = {
        *(f"conv{k}x{k}" for k in range(1, 10)),
        "stride2",
        "dilation2",
        "dilation3",
        "depthwise",
        "grouped",
        "batch-norm",
        "instance-norm",
        "group-norm",
        "Act",
        "Pool",
        "Upsample",
        "PixelShuffle",
        "ReflectPad",
        "Residual",
        "Concat",
        "headTrue",
        "dense",
        "pattern+connectivity",
        "block-pattern",
        "filter",
    }
    assert wanted <= seen, sorted(wanted - seen)
