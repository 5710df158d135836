"""The fixed random feature network and the relative content/style losses built on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.apps.features import FeatureConfig, PerceptualLoss, RandomFeatures, gram
from patsparse.apps.photos import center_crop, load_photo
from patsparse.core.errors import DataError

SMALL = FeatureConfig(widths=(6, 8, 12), content_layer=1)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]


def test_same_seed_same_network_other_seed_other_network():
    a, b = RandomFeatures(SMALL), RandomFeatures(SMALL)
    c = RandomFeatures(FeatureConfig(widths=SMALL.widths, seed=7, content_layer=1))
    for (_, pa), (_, pb), (_, _pc) in zip(
        a.state_dict().items(), b.state_dict().items(), c.state_dict().items(), strict=True
    ):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.first[0].weight, c.first[0].weight)


def test_frozen_and_multi_scale():
    f = RandomFeatures(SMALL)
    f.train()
    assert not f.training and not any(p.requires_grad for p in f.parameters())
    assert [c.kernel_size for c in f.first] == [(3, 3), (5, 5), (7, 7)]
    maps = f(torch.rand(1, 3, 32, 32))
    assert [tuple(m.shape) for m in maps] == [(1, 6, 32, 32), (1, 8, 16, 16), (1, 12, 8, 8)]


def test_gram_is_ffT_over_pixels():
    x = torch.randn(2, 3, 4, 5)
    g = gram(x)
    f = x.reshape(2, 3, 20)
    torch.testing.assert_close(g, torch.einsum("nci,ndi->ncd", f, f) / 20)
    torch.testing.assert_close(g, g.transpose(1, 2))


def test_content_loss_is_zero_on_the_content_and_style_loss_zero_on_the_style():
    style = torch.rand(1, 3, 32, 32)
    loss = PerceptualLoss(style, SMALL)
    content, style_loss = loss.parts(style, style)
    assert float(content) == 0.0 and float(style_loss) < 1e-10
    content, _ = loss.parts(torch.rand(1, 3, 32, 32), style)
    assert float(content) > 0.01


def test_gradients_reach_the_output():
    loss = PerceptualLoss(torch.rand(1, 3, 32, 32), SMALL)
    y = torch.rand(2, 3, 32, 32, requires_grad=True)
    c, s = loss.parts(y, torch.rand(2, 3, 32, 32))
    (c + s).backward()
    assert y.grad is not None and float(y.grad.abs().sum()) > 0


def test_style_loss_carries_texture_statistics():
    """Another crop of the same texture (tissue) is much closer in style than a crop of
    an unrelated photo (astronaut): the random features' Gram matrices tell textures apart
    (with the default, shipped feature network)."""
    tissue = load_photo("immunohistochemistry")
    loss = PerceptualLoss(_t(tissue[:128, :128]))
    same = float(loss.style_loss(_t(tissue[300:428, 300:428])))
    other = float(loss.style_loss(_t(center_crop(load_photo("astronaut"), 128))))
    assert same < 0.5 * other


@pytest.mark.parametrize("shape", [(16, 16), (1, 16, 16), (1, 1, 16, 16), (2, 3, 16, 16)])
def test_bad_style_is_a_data_error(shape):
    with pytest.raises(DataError):
        PerceptualLoss(torch.rand(shape), SMALL)


def test_features_refuse_grey_input():
    with pytest.raises(DataError):
        RandomFeatures(SMALL)(torch.rand(1, 1, 16, 16))


@pytest.mark.parametrize(
    "kwargs", [{"widths": ()}, {"widths": (4, 8)}, {"widths": (6, 8), "content_layer": 2}]
)
def test_bad_config_is_a_value_error(kwargs):
    with pytest.raises(ValueError):
        FeatureConfig(**kwargs)
