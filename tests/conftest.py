"""Shared fixtures: a dense digits CNN trained once per session, and its data."""

from __future__ import annotations

import copy
import os

import pytest
import torch

# Two cores in CI: keep torch from oversubscribing when tests run side by side.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject's addopts): a worker per core, at most 4 (each holds torch and
    TVM, and most tests compile on one core)."""
    return max(1, min(4, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def digits_loaders():
    from patsparse.data import load_digits_split, make_loaders

    return make_loaders(*load_digits_split(seed=0), batch_size=64, seed=0)


@pytest.fixture(scope="session")
def _trained_digits(digits_loaders):
    from patsparse.models import build_model
    from patsparse.train import accuracy, fit

    torch.manual_seed(0)
    model = build_model("digits-cnn")
    fit(model, digits_loaders[0], epochs=15, lr=0.05)
    return model, accuracy(model, digits_loaders[1])


@pytest.fixture
def trained_digits(_trained_digits):
    """(a fresh copy of the trained dense digits CNN, its test accuracy)."""
    model, acc = _trained_digits
    return copy.deepcopy(model), acc
