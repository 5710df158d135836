"""Phase-2 settings refuse what cannot be searched."""

from __future__ import annotations

import pytest

from patsparse.core.errors import SearchConfigError
from patsparse.search import SearchConfig


def test_search_config_validation():
    with pytest.raises(SearchConfigError, match="exactly one latency constraint"):
        SearchConfig()
    with pytest.raises(SearchConfigError, match="budget"):
        SearchConfig(latency_ms=1.0, budget=0)
