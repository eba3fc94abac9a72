"""The catalog of targets: which server script, under which runtime, with which IPC mixin.

A target name is ``<runtime>-<ipc>`` for mosec (``ours-pickle``, ``upstream-redis``), or the
runtime's name for single-flavour stacks (``litserve``, ``ray-serve``). Adding an IPC mixin is
one ``Ipc`` entry in ``IPCS``; adding a serving stack is one ``Script`` (a file in ``targets/``)
plus its targets. The peers (Ray Serve, PyTriton, BentoML, mpservice) run in the full run only:
``--quick``, which CI runs, leaves them out unless they are named.
"""

import signal
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Tuple

from benchmarks.scenarios import Scenario
from benchmarks.wire import BENTOML_WIRE, JSON_WIRE, TRITON_WIRE, Wire

ALL_KINDS = frozenset({"echo", "pipeline", "tensor", "batch", "vision", "ocr"})


@dataclass(frozen=True)
class Script:
    """A server script in ``benchmarks/targets``.

    Attributes:
        file: file name in ``benchmarks/targets``.
        route: the path that requests are POSTed to.
        health: a GET path that answers 200 once the server listens.
        kinds: scenario kinds the script can express.
        timeout_flag: whether it takes mosec's ``--timeout`` (milliseconds).
        stop_signal: the signal that shuts it down gracefully.
        wire: how its protocol carries the scenario's request and answer (``JSON_WIRE``: as is).
    """

    file: str
    route: str
    health: str
    kinds: FrozenSet[str]
    timeout_flag: bool
    stop_signal: int = signal.SIGTERM
    wire: Wire = JSON_WIRE

    def argv(self, port: int, timeout_s: float) -> List[str]:
        """Command-line flags for a server listening on 127.0.0.1 only."""
        flags = ["--address", "127.0.0.1", "--port", str(port)]
        if self.timeout_flag:
            flags += ["--timeout", str(int(timeout_s * 1000))]
        return flags


MOSEC = Script("mosec_server.py", "/inference", "/", ALL_KINDS, timeout_flag=True)
LITSERVE = Script(
    "litserve_server.py",
    "/predict",
    "/health",
    frozenset({"echo", "batch"}),
    timeout_flag=False,
    stop_signal=signal.SIGINT,  # LitServe shuts down on Ctrl-C; SIGTERM leaves it waiting
)
_PEER_KINDS = frozenset({"echo", "pipeline", "tensor", "batch"})
RAY = Script("ray_server.py", "/inference", "/-/healthz", _PEER_KINDS, timeout_flag=False)
PYTRITON = Script(
    "pytriton_server.py",
    "/v2/models/bench/infer",
    "/v2/health/ready",
    frozenset({"echo", "batch"}),  # no server-side composition of models: see the script
    timeout_flag=False,
    stop_signal=signal.SIGINT,  # what PyTriton's serve() documents
    wire=TRITON_WIRE,
)
BENTOML = Script(
    "bentoml_server.py", "/inference", "/readyz", _PEER_KINDS, timeout_flag=False, wire=BENTOML_WIRE
)
MPSERVICE = Script("mpservice_server.py", "/inference", "/health", _PEER_KINDS, timeout_flag=False)
STUB = Script("stub_server.py", "/inference", "/", frozenset({"echo"}), timeout_flag=False)


@dataclass(frozen=True)
class Ipc:
    """An inter-stage IPC flavour of mosec.

    Attributes:
        name: the second half of the target name.
        mixin: class name in ``mosec.mixin``; ``None`` for the default (pickle).
        carries: payload kinds it can move between stages (``json``, ``tensor``, ``vision``:
            the vision example's pipeline, fixed to the shared-memory mixin; ``ocr``: the
            demo's OCR pipeline, whose stage outputs are single uint8 arrays).
        runtimes: runtimes that have (or will have) this mixin.
        daemon: a service the harness must start for it (``redis``), or ``None``.
        server_args: extra command-line flags for the server (a store size, say).
        inplace: the producer asks the mixin for its output array (``shm_empty``) and fills it,
            instead of making a numpy array that the mixin then copies (zero-copy hand-off).
    """

    name: str
    mixin: Optional[str]
    carries: FrozenSet[str]
    runtimes: Tuple[str, ...]
    daemon: Optional[str] = None
    server_args: Tuple[str, ...] = ()
    inplace: bool = False


_ANY = frozenset({"json", "tensor"})
# The OCR pipeline picks its mixin from the target's (examples/ocr/ipc.py).
_OCR = frozenset({"ocr"})

IPCS: Tuple[Ipc, ...] = (
    Ipc("pickle", None, _ANY | _OCR, ("ours", "upstream")),
    Ipc("numbin", "NumBinIPCMixin", frozenset({"tensor"}) | _OCR, ("ours", "upstream")),
    Ipc("shm", "ShmIPCMixin", _ANY | _OCR, ("ours",)),
    # The vision pipeline is written on ShmIPCMixin with in-place outputs: only this runs it.
    Ipc(
        "shm-inplace",
        "ShmIPCMixin",
        frozenset({"tensor", "vision"}) | _OCR,
        ("ours",),
        inplace=True,
    ),
    # The plain producer again, with NumPy's arena handler off: the copy it saves, measured.
    Ipc(
        "shm-copy",
        "ShmIPCMixin",
        frozenset({"tensor"}) | _OCR,
        ("ours",),
        server_args=("--shm-alloc-min", "0"),
    ),
    Ipc("redis", "RedisShmIPCMixin", _ANY, ("ours", "upstream"), daemon="redis"),
    Ipc("arrow", "ArrowShmIPCMixin", _ANY, ("ours",)),
)


@dataclass(frozen=True)
class Target:
    """One server under test.

    Attributes:
        name: the name given to ``--targets``.
        runtime: key into ``runtimes.RUNTIMES``.
        script: the server script it runs.
        ipc: the mosec IPC flavour, ``None`` for stacks without one.
        hidden: left out of the default selection (the harness's own test target).
        full_only: a peer installed from PyPI for the full run; ``--quick`` leaves it out unless
            it is named.
    """

    name: str
    runtime: str
    script: Script
    ipc: Optional[Ipc] = None
    hidden: bool = False
    full_only: bool = False

    def unsupported(self, scenario: Scenario) -> Optional[str]:
        """Why this target cannot express ``scenario``, or ``None``."""
        if scenario.kind not in self.script.kinds:
            return f"{self.script.file} cannot express the {scenario.kind} scenario"
        if self.ipc is not None and scenario.ipc != "none" and scenario.ipc not in self.ipc.carries:
            return f"{self.ipc.mixin or 'pickle'} cannot carry {scenario.ipc} between stages"
        return None

    def redundant(self, scenario: Scenario) -> Optional[str]:
        """Why running ``scenario`` would only repeat another target, or ``None``.

        A non-default IPC mixin changes nothing in a single-stage scenario.
        """
        if self.ipc is not None and self.ipc.mixin is not None and scenario.ipc == "none":
            return f"one stage, no IPC: same as {self.runtime}-pickle"
        return None


def _build() -> Dict[str, Target]:
    targets = []
    for runtime in ("ours", "upstream"):
        for ipc in IPCS:
            if runtime in ipc.runtimes:
                targets.append(Target(f"{runtime}-{ipc.name}", runtime, MOSEC, ipc))
    targets.append(Target("litserve", "litserve", LITSERVE))
    targets.append(Target("ray-serve", "ray", RAY, full_only=True))
    targets.append(Target("pytriton", "pytriton", PYTRITON, full_only=True))
    targets.append(Target("bentoml", "bentoml", BENTOML, full_only=True))
    targets.append(Target("mpservice", "mpservice", MPSERVICE, full_only=True))
    targets.append(Target("stub", "stub", STUB, hidden=True))
    return {target.name: target for target in targets}


TARGETS: Dict[str, Target] = _build()
