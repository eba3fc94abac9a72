"""Fixtures for the mpserver conformance tests; self-contained (no project helpers).

Run it on its own interpreter with ``--confcutdir=tests/mpserver`` so the project's
root ``tests/conftest.py`` (which needs the project's test dependencies) is not loaded.
"""

from __future__ import annotations

import types

import pytest

from ._target import MODULE_NAME, mp as _mp


def pytest_report_header(config: pytest.Config) -> str:
    return f"mpserver module under test: {MODULE_NAME} ({getattr(_mp, '__file__', '?')})"


@pytest.fixture
def mp() -> types.ModuleType:
    """The module under test (``mosec.mpserver`` or ``mpservice.mpserver``)."""
    return _mp
