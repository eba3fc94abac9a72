"""Every IPC mixin carries every case it supports through a real two-stage pipeline, bit-exact.

The mixins and cases are listed in ``ipc_targets.py``; one server per mixin
(``servers/ipc_pipeline.py``) serves every case of that mixin. Stage 1 builds the case's object
from its name, stage 2 answers a digest of what it received (exact type, dtype with byte order,
shape, SHA-256 of the bytes; containers item by item), compared with the digest of the same
object built here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import ipc_targets
import pytest
from server_util import Server, run_server

#: Per-request bound: the 256 MiB case crosses two processes and the engine.
REQUEST_TIMEOUT_S = 60.0


def _params() -> list[pytest.param]:
    return [
        pytest.param(target.name, case.name, id=f"{target.name}-{case.name}")
        for target in ipc_targets.TARGETS
        for case in ipc_targets.CASES.values()
        if target.carries(case)
    ]


class _Servers:
    """One running server per target, started on first use and kept for the module."""

    def __init__(
        self,
        stack: contextlib.ExitStack,
        request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> None:
        self.stack = stack
        self.request = request
        self.tmp_path_factory = tmp_path_factory
        self.running: dict[str, Server] = {}
        self.current: str | None = None

    def get(self, name: str) -> Server:
        if name not in self.running:
            # Parameters are grouped by target, so the previous target's server is done.
            if self.current is not None:
                self.running.pop(self.current).close()
            target = ipc_targets.target(name)
            env = {ipc_targets.TARGET_ENV: name}
            for fixture in target.fixtures:
                env.update(self.request.getfixturevalue(fixture))
            log_dir = self.tmp_path_factory.mktemp(f"ipc-{name}")
            self.running[name] = self.stack.enter_context(
                run_server(
                    "ipc_pipeline.py",
                    "--timeout",
                    str(int(REQUEST_TIMEOUT_S * 1000)),
                    *target.server_args,
                    log_dir=log_dir,
                    env=env,
                )
            )
            self.current = name
        return self.running[name]


@pytest.fixture(scope="module")
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Servers]:
    """The servers of the targets, each stopped by PID at the end (or when the next starts)."""
    with contextlib.ExitStack() as stack:
        yield _Servers(stack, request, tmp_path_factory)


@pytest.mark.parametrize(("target_name", "case_name"), _params())
def test_case_crosses_two_stages_bit_exact(
    servers: _Servers, target_name: str, case_name: str
) -> None:
    target = ipc_targets.target(target_name)
    case = ipc_targets.CASES[case_name]
    server = servers.get(target_name)
    before = server.metric("mosec_service_ipc_bytes_total", carried="reference")
    response = server.post(json={"case": case_name}, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 200, response.text
    expected = ipc_targets.describe(case.build())
    assert response.json() == expected
    if target.counts_reference_bytes and case.reference_bytes:
        moved = server.metric("mosec_service_ipc_bytes_total", carried="reference") - before
        assert moved >= case.reference_bytes, (
            f"{case_name}: {case.reference_bytes} bytes of arrays should cross by reference, "
            f"the engine counted {moved}"
        )
