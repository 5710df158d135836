"""Tasks: classification and super-resolution share the pruning / search code paths."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from patsparse.core.errors import DataError
from patsparse.models import build_model
from patsparse.tasks import CLASSIFICATION, SUPER_RESOLUTION, TASKS
from patsparse.train import make_optimizer, psnr
from patsparse.workflow import DataSpec, make_data


class _Shift(nn.Module):
    """Returns ``x + offset`` (an 'image model' with a known error)."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.offset


def _images(n=6, side=8):
    y = torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    return DataLoader(TensorDataset(y, y), batch_size=4)


def test_psnr_of_known_errors():
    loader = _images()
    assert psnr(_Shift(0.1), loader) == pytest.approx(20.0, abs=1e-3)  # MSE 0.01
    assert psnr(_Shift(0.01), loader) == pytest.approx(40.0, abs=1e-3)
    assert psnr(_Shift(0.0), loader) == pytest.approx(100.0)  # exact: MSE floor
    assert SUPER_RESOLUTION.evaluate(_Shift(0.1), loader) == pytest.approx(20.0, abs=1e-3)
    # outputs are clamped to the pixel range before scoring: +1 saturates at 1.0
    sat = psnr(_Shift(1.0), loader)
    y = torch.cat([b for b, _ in loader])
    want = float((10 * torch.log10(1 / ((1 - y) ** 2).flatten(1).mean(1))).mean())
    assert sat == pytest.approx(want, rel=1e-5) and math.isfinite(sat)
    with pytest.raises(ValueError, match="does not match the targets"):
        psnr(nn.Flatten(), loader)


def test_dataset_names_pick_their_task_and_sr_data_loads():
    assert DataSpec("digits").task is CLASSIFICATION
    assert DataSpec("sr").task is SUPER_RESOLUTION and set(TASKS) == {
        "classification",
        "super-resolution",
    }
    train, test = make_data(DataSpec("sr"))
    lr, hr = next(iter(train))
    assert lr.shape[1:] == (1, 16, 16) and hr.shape[1:] == (1, 32, 32)
    assert len(train.dataset) > len(test.dataset) > 0  # type: ignore[arg-type]
    assert SUPER_RESOLUTION.format(38.214) == "38.21 dB" and CLASSIFICATION.format(99.4) == (
        "99.40%"
    )


def test_check_model_rejects_a_model_that_does_not_fit_the_data():
    sr_train, _ = make_data(DataSpec("sr"))
    digits_train, _ = make_data(DataSpec("digits"))
    SUPER_RESOLUTION.check_model(build_model("sr-net"), sr_train, model_name="sr-net")
    CLASSIFICATION.check_model(build_model("digits-cnn"), digits_train, model_name="digits-cnn")
    with pytest.raises(DataError, match=r"cannot run on this dataset.*sr-net for --data sr"):
        SUPER_RESOLUTION.check_model(build_model("resnet18-cifar"), sr_train, model_name="r18")
    with pytest.raises(DataError, match=r"targets are \(1, 32, 32\).*sr-net for --data sr"):
        SUPER_RESOLUTION.check_model(nn.Conv2d(1, 1, 3, padding=1), sr_train, model_name="c")
    with pytest.raises(DataError, match="model 'digits'"):
        SUPER_RESOLUTION.check_model(build_model("digits-cnn"), sr_train, model_name="digits")
    with pytest.raises(DataError, match="use a classifier"):
        CLASSIFICATION.check_model(build_model("sr-net"), digits_train, model_name="sr-net")


def test_prune_config_and_optimizers_follow_the_task():
    cfg = SUPER_RESOLUTION.prune_config(method="magnitude", retrain_epochs=1)
    assert cfg.optimizer == "adam" and cfg.lr == cfg.retrain_lr == SUPER_RESOLUTION.finetune_lr
    assert CLASSIFICATION.prune_config().optimizer == "sgd"
    model = nn.Linear(2, 2)
    assert isinstance(make_optimizer(model, lr=1e-3, kind="adam"), torch.optim.Adam)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer(model, lr=1e-3, kind="rmsprop")
    with pytest.raises(ValueError, match="unknown optimizer"):
        SUPER_RESOLUTION.prune_config(optimizer="rmsprop")


def test_prune_job_on_sr_trains_and_reports_psnr(tmp_path):
    from patsparse.pruning.api import PruneConfig
    from patsparse.schemes import PatternConnectivityScheme, PruningPlan
    from patsparse.workflow import PruneJob, run_prune

    plan = PruningPlan(default=PatternConnectivityScheme(density=0.25), skip_first_conv=True)
    job = PruneJob(
        plan=plan,
        model="sr-net",
        model_kwargs={"channels": 8, "num_blocks": 1},
        data=DataSpec("sr"),
        dense_epochs=1,
        config=SUPER_RESOLUTION.prune_config(method="magnitude", retrain_epochs=1),
        out=str(tmp_path / "sr.pt"),
    )
    assert isinstance(job.config, PruneConfig)
    summary = run_prune(job, progress=False)
    assert summary["metric"] == "PSNR"
    # nearest-neighbour upsampling alone scores ~36 dB on these photos; training keeps it
    assert 30.0 < summary["dense_accuracy"] < 60.0
    assert 30.0 < summary["pruned_accuracy"] < 60.0
    assert summary["pattern_violations"] == 0 and (tmp_path / "sr.pt").exists()
