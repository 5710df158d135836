"""The application registry."""

from __future__ import annotations

import pytest

from patsparse.apps import APP_NAMES, APPS, App, get_app
from patsparse.core.errors import UnknownNameError


def test_every_registered_app_is_an_app_under_its_name():
    assert "sr" in APP_NAMES
    for name in APP_NAMES:
        app = APPS[name]
        assert isinstance(app, App) and app.name == name
        assert app.metrics and app.schemes
    assert get_app("sr") is APPS["sr"]


def test_unknown_app_names_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'sr'") as err:
        get_app("srr")
    assert "use one of" in (err.value.fix or "")
