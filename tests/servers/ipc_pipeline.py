"""Two stages joined by the IPC mixin that ``IPC_TARGET`` names (see ``tests/ipc_targets.py``).

``POST /inference`` with ``{"case": <name>}``: stage 1 builds that case's object and returns it
(so it crosses to stage 2 through the mixin's ``serialize_ipc``/``deserialize_ipc``); stage 2
answers :func:`ipc_targets.describe` of what it received, as JSON.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ipc_targets  # noqa: E402

from mosec import Server, ValidationError, Worker  # noqa: E402

MIXIN = ipc_targets.load_mixin(ipc_targets.env_target())
BASES = (Worker,) if MIXIN is None else (MIXIN, Worker)


class Produce(*BASES):  # type: ignore[misc]
    """Builds the requested case."""

    def forward(self, data):
        case = ipc_targets.CASES.get(data.get("case"))
        if case is None:
            raise ValidationError(f"no case {data.get('case')!r}")
        return case.build()


class Digest(*BASES):  # type: ignore[misc]
    """Digests what stage 1 sent."""

    def forward(self, data):
        return ipc_targets.describe(data)


if __name__ == "__main__":
    server = Server()
    server.append_worker(Produce)
    server.append_worker(Digest)
    server.run()
