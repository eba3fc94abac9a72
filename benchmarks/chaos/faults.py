"""The faults, one function each, every one under the steady client mix and bounded in time.

A fault gets a ``Context`` (the server, its window in seconds, random numbers, the load) and
returns an ``Outcome``: whether and how fast the server recovered, the statuses the fault itself
explains (a killed worker's in-flight requests get 500 ...), and the tally of the fault's own
requests. The pacing sleeps here are the fault's rhythm, not synchronisation: every wait for a
state polls it with a deadline.
"""

import contextlib
import os
import random
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

import psutil

from benchmarks.chaos.load import HANG_MARGIN_S, Client, Load, Tally
from benchmarks.chaos.target import ROUTE, TIMEOUT_S, ChaosServer
from benchmarks.net import HOST

#: A worker is killed only once it has served this long: a younger one may still be starting,
#: and the supervisors treat deaths before one second as a crash loop (and give up on it).
MIN_VICTIM_AGE_S = 1.5
STORM_THREADS = 4
#: Larger than the arena (16 MiB): refused at once; and one that fits alone but not twice.
NEVER_FITS = 20 << 20
FITS_ONCE = 10 << 20


@dataclass
class Context:
    """What a fault works with.

    Attributes:
        server: the server under test.
        duration_s: the fault's window.
        recovery_s: how long recovery may take before it counts as "no".
        rng: the fault's random numbers.
        workdir: scratch files (the stuck worker's pid).
        concurrency: clients of the steady load.
        seed: the load's seed.
        tally: the steady load's outcomes, over every load the fault ran.
    """

    server: ChaosServer
    duration_s: float
    recovery_s: float
    rng: random.Random
    workdir: Path
    concurrency: int
    seed: int
    tally: Tally = field(default_factory=Tally)

    @contextlib.contextmanager
    def loaded(self) -> Iterator[Load]:
        """The steady load runs inside the ``with`` block; its outcomes go to ``tally``."""
        load = Load(self.server.port, ROUTE, TIMEOUT_S, self.concurrency, self.seed).start()
        self.seed += 1
        try:
            yield load
        finally:
            self.tally.merge(load.stop())


@dataclass
class Outcome:
    """How the server took a fault.

    Attributes:
        recovered: ``True``/``False``; ``None`` where the server makes no promise.
        recovery: the recovery column (``yes 0.8 s``, ``no: ...``, ``exit 1 in 0.3 s``).
        allowed: statuses of the steady load that the fault explains.
        own: the fault's own requests (a storm's connections, the oversized requests ...).
        own_allowed: statuses those may get.
        note: what was done (``6 workers killed``).
        redis_keys: Redis keys left at rest under load, for a Redis store.
    """

    recovered: Optional[bool]
    recovery: str
    allowed: Set[str] = field(default_factory=set)
    own: Tally = field(default_factory=Tally)
    own_allowed: Set[str] = field(default_factory=set)
    note: str = ""
    redis_keys: Optional[int] = None


def _poll(condition: Callable[[], bool], timeout_s: float) -> Optional[float]:
    """Seconds until ``condition()`` held, or ``None`` when ``timeout_s`` passed first."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            return None
        time.sleep(0.05)


def _together(calls: List[Tuple[Callable[..., None], tuple]], timeout_s: float) -> None:
    """Run each ``(function, args)`` in its own thread; wait up to ``timeout_s`` for them all."""
    threads = [threading.Thread(target=function, args=args) for function, args in calls]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))


def _whole(server: ChaosServer) -> bool:
    """Every worker is there and a valid request answers 200."""
    return len(server.workers()) == server.workers_expected and server.serves()


def _recovery(
    server: ChaosServer, seconds: Optional[float], timeout_s: float, why: str = ""
) -> Outcome:
    """The outcome of a fault the server promises to recover from."""
    code = server.tree.exit_code() if server.tree is not None else None
    if code is not None:
        return Outcome(False, f"no: the server exited with {code}")
    if seconds is None:
        return Outcome(False, f"no: {why or 'not whole'} after {timeout_s:.0f} s")
    return Outcome(True, f"yes {seconds:.1f} s")


def none(ctx: Context) -> Outcome:
    """No fault: the client mix alone, the row the others compare to."""
    with ctx.loaded():
        time.sleep(ctx.duration_s)
    return Outcome(None, "n/a")


def kill_worker(ctx: Context) -> Outcome:
    """``kill -9`` a random worker (of any stage) every 0.5-1.5 s; recovery after the last."""
    kills = 0
    last = time.monotonic()
    with ctx.loaded():
        deadline = time.monotonic() + ctx.duration_s
        while time.monotonic() < deadline:
            time.sleep(min(ctx.rng.uniform(0.5, 1.5), max(deadline - time.monotonic(), 0)))
            now = time.time()
            victims = [w for w in ctx.server.workers() if now - w.create_time() > MIN_VICTIM_AGE_S]
            if victims:
                with contextlib.suppress(psutil.Error):
                    ctx.rng.choice(victims).kill()
                    kills += 1
                    last = time.monotonic()
        waited = _poll(lambda: _whole(ctx.server), ctx.recovery_s)
    outcome = _recovery(
        ctx.server, None if waited is None else time.monotonic() - last, ctx.recovery_s
    )
    # A request inside the killed worker is answered 500 at once; one queued for a stage whose
    # only worker was killed waits for the replacement, up to its deadline (408).
    outcome.allowed = {"500", "408"}
    outcome.note = f"{kills} workers killed"
    return outcome


def disconnect_storm(ctx: Context) -> Outcome:
    """Clients that reset their connection mid-request: before, during and after the body."""
    own = Tally()
    with ctx.loaded():
        stop = time.monotonic() + ctx.duration_s
        _together(
            [
                (_storm, (ctx.server.port, stop, random.Random(i), own))
                for i in range(STORM_THREADS)
            ],
            ctx.duration_s + 5,
        )
        waited = _poll(lambda: _whole(ctx.server), ctx.recovery_s)
    outcome = _recovery(ctx.server, waited, ctx.recovery_s)
    outcome.own, outcome.own_allowed = own, {"reset"}
    outcome.note = f"{own.requests} connections reset"
    return outcome


def _storm(port: int, stop: float, rng: random.Random, tally: Tally) -> None:
    """Open, send part or all of a request (a slow one: it is in a worker when we leave), reset."""
    body = b'{"n": 5, "sleep": 0.1}'
    head = (
        f"POST {ROUTE} HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    request = head + body
    while time.monotonic() < stop:
        cut = rng.choice([len(head) // 2, len(head) + len(body) // 2, len(request)])
        try:
            with socket.create_connection((HOST, port), timeout=1.0) as sock:
                # Linger 0: close sends RST, as a client killed mid-request does.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.sendall(request[:cut])
                if cut == len(request):
                    time.sleep(rng.uniform(0.0, 0.15))  # leave while the request is served
            tally.add("reset")
        except OSError:
            tally.add("conn")


def stuck_worker(ctx: Context) -> Outcome:
    """One request makes a stage-1 worker ignore its timeout for good.

    The stuck request must get 408 at the server's deadline, and the load goes on with the
    other stage-1 worker. Recovery means the stuck worker was replaced (its pid gone, every
    worker back): see ``STUCK_WORKER_REPLACED`` in ``benchmarks/tests/test_chaos.py``.
    """
    mark = ctx.workdir / "stuck.pid"
    own = Tally()
    client = Client(ctx.server.port, ROUTE, TIMEOUT_S, random.Random(0))
    body = f'{{"n": 1, "stuck": "{mark}"}}'.encode()
    with ctx.loaded():
        sender = threading.Thread(
            target=lambda: own.add(client.send(body, 1, TIMEOUT_S + HANG_MARGIN_S, False))
        )
        sender.start()
        _poll(mark.exists, TIMEOUT_S + HANG_MARGIN_S)
        time.sleep(ctx.duration_s)
        sender.join(TIMEOUT_S + HANG_MARGIN_S + 1)
        client.close()
        pid = int(mark.read_text()) if mark.exists() else None
        waited = _poll(lambda: not _stuck(pid) and _whole(ctx.server), ctx.recovery_s)
    outcome = _recovery(ctx.server, waited, ctx.recovery_s, f"worker {pid} still stuck")
    outcome.own, outcome.own_allowed = own, {"408"}
    outcome.note = "1 request stuck in forward"
    return outcome


def _stuck(pid: Optional[int]) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def daemon_killed(ctx: Context) -> Outcome:
    """``kill -9`` the Redis store daemon: in-flight requests 503, the server exits non-zero.

    Before that, with the load paused, Redis must hold no key: the stores' objects of finished
    requests are all deleted (the daemon takes the rest with it when it dies).
    """
    import redis

    with ctx.loaded():
        time.sleep(ctx.duration_s / 2)
    client = redis.Redis(host=HOST, port=ctx.server.redis_port)
    try:
        _poll(lambda: client.dbsize() == 0, ctx.recovery_s)
        keys = int(client.dbsize())
    finally:
        client.close()
    pid = ctx.server.redis_pid()
    tree = ctx.server.tree
    assert tree is not None and pid is not None
    with ctx.loaded():
        time.sleep(ctx.duration_s / 2)
        os.kill(pid, signal.SIGKILL)
        exited = _poll(lambda: tree.exit_code() is not None, ctx.recovery_s + TIMEOUT_S)
    code = tree.exit_code()
    if exited is None:
        outcome = Outcome(False, f"no: still running {ctx.recovery_s + TIMEOUT_S:.0f} s later")
    else:
        outcome = Outcome(code not in (None, 0), f"exit {code} in {exited:.1f} s")
    # In flight: 503; arriving while it drains: 503; after it exited: connection refused.
    outcome.allowed = {"503", "conn"}
    outcome.note = "redis-server killed"
    outcome.redis_keys = keys
    return outcome


def overfull_arena(ctx: Context) -> Outcome:
    """Requests whose stage output is larger than the arena's free space (or the arena)."""
    own = Tally()
    with ctx.loaded():
        stop = time.monotonic() + ctx.duration_s
        sizes = (NEVER_FITS, FITS_ONCE, FITS_ONCE)
        _together(
            [(_oversized, (ctx.server, size, stop, own)) for size in sizes],
            ctx.duration_s + TIMEOUT_S + HANG_MARGIN_S,
        )
    fits = lambda: ctx.server.post({"n": 3, "size": FITS_ONCE})[0] == 200  # noqa: E731
    waited = _poll(fits, ctx.recovery_s)
    outcome = _recovery(ctx.server, waited, ctx.recovery_s, "a request that fits still refused")
    # A load request that finds the arena full for the shm-wait gets 503 too.
    outcome.allowed = {"503"}
    outcome.own, outcome.own_allowed = own, {"200", "503"}
    outcome.note = "20 MiB and 2 x 10 MiB outputs, 16 MiB arena"
    return outcome


def _oversized(server: ChaosServer, size: int, stop: float, tally: Tally) -> None:
    client = Client(server.port, ROUTE, TIMEOUT_S, random.Random(size))
    body = f'{{"n": 9, "size": {size}}}'.encode()
    while time.monotonic() < stop:
        tally.add(client.send(body, 1, TIMEOUT_S + HANG_MARGIN_S, False))
    client.close()


@dataclass(frozen=True)
class Fault:
    """A fault and the servers it applies to.

    Attributes:
        name: the ``--faults`` name and the table's test column.
        run: the function.
        stores: the store each runtime's server uses for it; a runtime missing is n/a.
    """

    name: str
    run: Callable[[Context], Outcome]
    stores: Dict[str, str]


_BOTH = {"ours": "shm", "upstream": "pickle"}
FAULTS: Dict[str, Fault] = {
    fault.name: fault
    for fault in (
        Fault("mix", none, _BOTH),
        Fault("kill-worker", kill_worker, _BOTH),
        Fault("disconnect-storm", disconnect_storm, _BOTH),
        Fault("stuck-worker", stuck_worker, _BOTH),
        Fault("daemon-killed", daemon_killed, {"ours": "redis"}),
        Fault("overfull-arena", overfull_arena, {"ours": "shm"}),
    )
}
