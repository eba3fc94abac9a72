"""Fixtures for the mpserver conformance tests; self-contained (no project helpers).

Run it on its own interpreter with ``--confcutdir=tests/mpserver`` so the project's
root ``tests/conftest.py`` (which needs the project's test dependencies) is not loaded.
"""

from __future__ import annotations

import gc
import types

import pytest

from ._target import MODULE_NAME
from ._target import mp as _mp


def pytest_report_header(config: pytest.Config) -> str:
    return f"mpserver module under test: {MODULE_NAME} ({getattr(_mp, '__file__', '?')})"


@pytest.fixture
def mp() -> types.ModuleType:
    """The module under test (``mosec.mpserver`` or ``mpservice.mpserver``)."""
    return _mp


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Run pending finalizers before pytest formats a failure.

    mpservice leaves orphaned asyncio futures holding exceptions; their finalizer logs a
    formatted traceback (CPython 3.11 calls ``ast.parse`` for the carets). If garbage
    collection runs that finalizer inside pytest's own ``ast.parse`` of the failing
    source, the session dies with "SystemError: AST constructor recursion depth
    mismatch". Collecting first keeps the report path free of such re-entry.
    """
    if call.excinfo is not None:
        gc.collect()
    yield
