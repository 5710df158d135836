"""Running an app with its compiled model: same pictures as PyTorch, one compile per
shape, output files for a picture or a folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.apps import get_app
from patsparse.apps.photos import load_photo, read_image, write_image
from patsparse.apps.run import CompiledApp, output_paths, run_app
from patsparse.core.errors import DataError


@pytest.fixture(scope="module")
def runner() -> CompiledApp:
    app = get_app("sr")
    torch.manual_seed(0)
    return CompiledApp(app, app.build())


def test_compiled_pictures_match_pytorch_and_compile_once_per_shape(runner, tmp_path):
    photo = load_photo("coffee")[100:116, 200:220]
    pic = runner(photo)
    ref = runner.app.picture(runner.model, photo)
    assert pic.shape == (32, 40, 3)
    np.testing.assert_allclose(pic, ref, atol=1e-4)
    src = tmp_path / "in"
    write_image(src / "a.png", photo)
    write_image(src / "sub" / "b.png", photo[::-1])
    records = run_app(runner, src, tmp_path / "out")
    assert len(runner.compiled) == 1  # both pictures reuse the first compile
    assert [r.compile_seconds for r in records] == [0.0, 0.0]
    assert read_image(tmp_path / "out" / "sub" / "b.png").shape == (32, 40, 3)


def test_output_paths(tmp_path):
    app = get_app("sr")
    f = write_image(tmp_path / "p.jpg", np.zeros((4, 4, 3)))
    assert output_paths(app, f, tmp_path / "o.png") == [(f, tmp_path / "o.png")]
    assert output_paths(app, f, tmp_path / "dir") == [(f, tmp_path / "dir" / "p_sr.png")]
    with pytest.raises(DataError, match="must be a folder"):
        output_paths(app, tmp_path, tmp_path / "o.png")
    with pytest.raises(DataError, match="does not exist"):
        output_paths(app, tmp_path / "nope.png", tmp_path / "o")
