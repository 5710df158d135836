"""Tests for patsparse.models: shapes, parameter counts, export, registry errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from patsparse.core.errors import UnknownNameError
from patsparse.models import (
    MODEL_NAMES,
    BasicBlock,
    DigitsCNN,
    MobileNetV2,
    ResNet,
    SRNet,
    build_model,
    default_input_shape,
    resnet18,
)

CIFAR_NAMES = [n for n in MODEL_NAMES if n.endswith("-cifar")]
IMAGENET_NAMES = [n for n in MODEL_NAMES if n.endswith("-imagenet")]

# torchvision's published counts: resnet18 11,689,512; resnet50 25,557,032;
# vgg16_bn 138,365,992; mobilenet_v2 3,504,872.
IMAGENET_PARAMS = {
    "resnet18-imagenet": 11.69e6,
    "resnet50-imagenet": 25.56e6,
    "vgg16-imagenet": 138.37e6,
    "mobilenetv2-imagenet": 3.50e6,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_model_names_exact() -> None:
    assert MODEL_NAMES == (
        "digits-cnn",
        "vgg16-cifar",
        "vgg16-imagenet",
        "resnet18-cifar",
        "resnet18-imagenet",
        "resnet50-cifar",
        "resnet50-imagenet",
        "mobilenetv2-cifar",
        "mobilenetv2-imagenet",
        "sr-net",
    )


def test_default_input_shapes() -> None:
    assert default_input_shape("digits-cnn") == (1, 1, 8, 8)
    assert default_input_shape("sr-net") == (1, 1, 32, 32)
    for n in CIFAR_NAMES:
        assert default_input_shape(n) == (1, 3, 32, 32)
    for n in IMAGENET_NAMES:
        assert default_input_shape(n) == (1, 3, 224, 224)


def test_unknown_name_raises_with_suggestion() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_model("resnet18_cifar")
    msg = str(info.value)
    assert "'resnet18_cifar'" in msg
    assert "Did you mean 'resnet18-cifar'" in msg
    for n in MODEL_NAMES:
        assert n in msg
    with pytest.raises(KeyError):  # UnknownNameError is also a KeyError
        default_input_shape("alexnet")


def test_variant_is_fixed_by_name_and_checked() -> None:
    with pytest.raises(TypeError, match="variant"):
        build_model("vgg16-cifar", variant="imagenet")
    with pytest.raises(UnknownNameError, match=r"'imagenett'.*'imagenet'"):
        resnet18(variant="imagenett")


def test_digits_cnn_structure_and_forward() -> None:
    model = DigitsCNN()
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs == ["features.0", "features.3", "features.7"]
    assert isinstance(model.classifier, nn.Linear)
    assert model.classifier.in_features == 64 * 4
    out = model(torch.randn(4, 1, 8, 8))
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert DigitsCNN(num_classes=3, width=8)(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    # Deterministic names: two builds have identical state_dict keys.
    assert list(DigitsCNN().state_dict()) == list(model.state_dict())


def _first_conv_weight() -> torch.Tensor:
    return DigitsCNN().state_dict()["features.0.weight"].clone()


def test_construction_does_not_reseed() -> None:
    torch.manual_seed(0)
    a = _first_conv_weight()
    torch.manual_seed(0)
    b = _first_conv_weight()
    c = _first_conv_weight()
    assert torch.equal(a, b)
    assert not torch.equal(b, c)


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_models_forward_train_mode(name: str) -> None:
    model = build_model(name).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", IMAGENET_NAMES)
def test_imagenet_models_forward_and_param_count(name: str) -> None:
    model = build_model(name).eval()
    assert n_params(model) == pytest.approx(IMAGENET_PARAMS[name], rel=0.01)
    with torch.no_grad():
        out = model(torch.randn(default_input_shape(name)))
    assert out.shape == (1, 1000)


def test_num_classes_override() -> None:
    assert build_model("resnet18-cifar", num_classes=100)(torch.randn(2, 3, 32, 32)).shape == (
        2,
        100,
    )


def test_resnet_residual_is_plain_add() -> None:
    block = BasicBlock(8, 8).eval()
    assert block.downsample is None
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(block(x), F.relu(x))
    down = BasicBlock(8, 16, stride=2)
    assert down.downsample is not None
    conv = down.downsample[0]
    assert isinstance(conv, nn.Conv2d)
    assert conv.kernel_size == (1, 1) and conv.stride == (2, 2)
    assert down(x).shape == (2, 16, 3, 3)


def test_resnet_stems() -> None:
    cifar = build_model("resnet18-cifar")
    imagenet = build_model("resnet18-imagenet")
    assert isinstance(cifar, ResNet) and isinstance(imagenet, ResNet)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, nn.MaxPool2d)
    convs3 = [m for m in cifar.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs3) == 17  # stem + 8 blocks x 2


def test_mobilenet_depthwise_and_width() -> None:
    model = build_model("mobilenetv2-cifar")
    assert isinstance(model, MobileNetV2)
    dw = [
        m
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
    ]
    assert len(dw) == 17
    assert all(m.kernel_size == (3, 3) for m in dw)
    assert any(isinstance(m, nn.ReLU6) for m in model.modules())
    half = build_model("mobilenetv2-cifar", width_mult=0.5)
    assert n_params(half) < n_params(model)
    assert half(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vgg16_has_13_convs() -> None:
    model = build_model("vgg16-cifar")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    assert all(m.kernel_size == (3, 3) for m in convs)
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 512


@pytest.mark.parametrize("scale", [2, 3])
def test_srnet_shapes_and_starts_near_nearest(scale: int) -> None:
    model = SRNet(scale=scale, channels=16, num_blocks=2)
    x = torch.rand(2, 1, 10, 12)
    y = model(x)
    assert y.shape == (2, 1, 10 * scale, 12 * scale)
    nearest = F.interpolate(x, scale_factor=scale, mode="nearest")
    assert (y - nearest).abs().mean() < 0.05
    plain = SRNet(scale=scale, residual=False)
    assert plain(x).shape == y.shape


def test_srnet_multichannel_residual_is_nearest_upsample() -> None:
    model = SRNet(scale=2, channels=8, num_blocks=1, in_channels=3)
    nn.init.zeros_(model.tail.weight)
    assert model.tail.bias is not None
    nn.init.zeros_(model.tail.bias)
    x = torch.rand(1, 3, 4, 5)
    assert torch.equal(model(x), F.interpolate(x, scale_factor=2, mode="nearest"))


@pytest.mark.parametrize("name", ["digits-cnn", "resnet18-cifar", "vgg16-cifar", "sr-net"])
def test_torch_export(name: str) -> None:
    model = build_model(name).eval()
    x = torch.randn(default_input_shape(name))
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        expected = model(x)
        got = exported.module()(x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)
