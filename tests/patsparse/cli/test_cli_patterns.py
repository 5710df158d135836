"""``patsparse patterns``."""

from __future__ import annotations

import json

from patsparse.cli import main


def test_patterns_json(capsys):
    assert main(["patterns", "--library", "gaussian-4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["interpolation"] == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
