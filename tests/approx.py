"""Tolerance comparisons that pytest.approx does not cover."""
from __future__ import annotations

import pytest


def assert_mapping_close(got: dict, want: dict, *, rel: float, abs: float = 0.0):
    """Same keys, None exactly where `want` has None, every number within the tolerance.

    pytest >= 9.2 refuses `approx` on a mapping holding None (a metric that does not apply, e.g. CLIP scores
    without a CLIP model), so None entries are compared for identity here.
    """
    assert got.keys() == want.keys()
    for key, value in want.items():
        if value is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(value, rel=rel, abs=abs), key
