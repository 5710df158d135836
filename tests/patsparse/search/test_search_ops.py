"""Phase 1: activation replacement (modules and functional calls) and the fine-tune report."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from patsparse.search import replace_and_finetune, replace_ops


class _Act(nn.Module):
    """Linear -> SiLU -> Linear -> GELU -> Sigmoid: every default module replacement."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 6), nn.Linear(6, 3)
        self.body = nn.Sequential(self.fc1, nn.SiLU(), self.fc2, nn.GELU(), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Functional(nn.Module):
    """A hand-written swish (``x * torch.sigmoid(x)``), ``F.gelu`` and ``Tensor.sigmoid``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h = h * torch.sigmoid(h)
        return F.gelu(h).sigmoid()


def test_module_replacement_numerics():
    torch.manual_seed(0)
    model = _Act().eval()
    new, replaced = replace_ops(model)
    assert [r[1:] for r in replaced] == [
        ("SiLU", "Hardswish"),
        ("GELU", "Hardswish"),
        ("Sigmoid", "Hardsigmoid"),
    ]
    assert isinstance(model.body[1], nn.SiLU)  # the input model is untouched
    x = torch.randn(64, 6) * 3
    expected = F.hardsigmoid(F.hardswish(model.fc2(F.hardswish(model.fc1(x)))))
    torch.testing.assert_close(new(x), expected)
    # hard-swish approximates swish to within ~0.15 (max gap of the two curves)
    h = model.fc1(x).detach()
    assert float((F.hardswish(h) - F.silu(h)).abs().max()) < 0.16


def test_functional_replacement_numerics():
    torch.manual_seed(0)
    model = _Functional().eval()
    new, replaced = replace_ops(model, functional=True)
    kinds = [r[2].rsplit(".", 1)[-1] for r in replaced]
    assert kinds == ["hardsigmoid", "hardswish", "hardsigmoid"]
    x = torch.randn(32, 5) * 3
    h = model.fc(x)
    expected = F.hardsigmoid(F.hardswish(h * F.hardsigmoid(h)))
    torch.testing.assert_close(new(x), expected)
    assert not torch.allclose(new(x), model(x))


def test_nothing_to_replace_leaves_the_model_as_is(trained_digits, search_splits):
    model, _ = trained_digits
    new, report = replace_and_finetune(model, *search_splits, epochs=1)
    assert report.replaced == [] and report.finetune_epochs == 0
    assert report.accuracy_before == report.accuracy_after_finetune
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(new(x), model.eval()(x))


def test_replace_and_finetune_reports_accuracy(trained_digits, search_splits):
    model, _ = trained_digits
    # make the digits CNN mobile-unfriendly: its ReLUs become SiLUs
    for i in (2, 5, 9):
        model.features[i] = nn.SiLU()
    new, report = replace_and_finetune(model, *search_splits, epochs=1)
    assert len(report.replaced) == 3 and report.finetune_epochs == 1
    assert all(isinstance(new.features[i], nn.Hardswish) for i in (2, 5, 9))
    for acc in (report.accuracy_before, report.accuracy_after_replace):
        assert acc is not None and 0 <= acc <= 100
    assert report.accuracy_after_finetune is not None and report.accuracy_after_finetune > 80
    assert report.to_dict()["replaced"][0] == ["features.2", "SiLU", "Hardswish"]
