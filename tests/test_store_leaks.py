"""The arena gives back every byte, whichever way a request ends, and leaves /dev/shm clean.

``servers/ipc_arena.py`` runs two ``ShmIPCMixin`` stages of two workers each, with a 1.5 s
``--timeout`` (each stage's own forward timeout is longer, so slow outputs arrive for tasks that
have ended). One run mixes successes, errors raised in either stage, engine timeouts in either
stage, clients that leave mid-request and ``kill -9`` of workers (in set places: holding leases,
holding an input; and at random during concurrent load). Afterwards, once nothing is in flight,
the arena's used bytes and objects are back at their baseline; after the server exits, /dev/shm
holds nothing of its processes.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from arena_util import NS, arena_usage, hold_keys, wait_at_rest
from inflight import Hold, Request
from server_util import Server, StartServer, wait_until

from mosec.supervisor import MIN_UPTIME_S

SHM = Path("/dev/shm")
#: Statuses a request may end with when workers are killed and the engine times out.
CHAOS = {408, 500}
#: The engine's deadline for a request, and how long a slow stage takes (past it).
TIMEOUT_MS = 1500
OVERTIME_S = TIMEOUT_MS / 1000 + 0.3


def parent_of(pid: int) -> int | None:
    """The parent pid of a live process, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return None


def kill_worker(server: Server, pid: int) -> None:
    """``kill -9`` one of this server's worker processes (checked to be its child)."""
    assert parent_of(pid) == server.pid, f"pid {pid} is not a worker of server {server.pid}"
    os.kill(pid, signal.SIGKILL)


def send_and_leave(server: Server, body: dict[str, Any], inside: Hold | None = None) -> None:
    """Send a request on a raw connection and close it without reading the answer (after the
    request is inside ``forward`` when ``inside`` is given)."""
    data = json.dumps(body).encode()
    head = (
        "POST /inference HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode() + data)
        if inside is not None:
            inside.wait_inside()


class Chaos:
    """Kills a random worker every ``every`` finished requests (up to ``until`` of them), never
    leaving a stage without a live worker that has served, and never one younger than the
    supervisor's start window."""

    def __init__(self, server: Server, every: int, most: int, until: int) -> None:
        self.server = server
        self.every = every
        self.most = most
        self.until = until
        self.lock = threading.Lock()
        self.done = 0
        #: The request count at which the next kill is due; a due kill that finds no worker
        #: old enough waits for the next request, not for the next multiple of ``every``.
        self.due = every
        self.killed: set[int] = set()
        #: Per stage, first time each worker pid was seen answering.
        self.seen: tuple[dict[int, float], dict[int, float]] = ({}, {})
        self.rng = random.Random(7)

    def observe(self, pids: list[int]) -> None:
        now = time.monotonic()
        with self.lock:
            for stage, pid in enumerate(pids):
                self.seen[stage].setdefault(pid, now)

    def finished(self) -> None:
        with self.lock:
            self.done += 1
            if self.done < self.due or self.done > self.until or len(self.killed) >= self.most:
                return
            candidates = []
            for stage in range(2):
                alive = [pid for pid in self.seen[stage] if parent_of(pid) == self.server.pid]
                old = [p for p in alive if time.monotonic() - self.seen[stage][p] >= MIN_UPTIME_S]
                if len(alive) >= 2:
                    candidates += old
            if not candidates:
                return
            pid = self.rng.choice(candidates)
            self.killed.add(pid)
            self.due = self.done + self.every
        kill_worker(self.server, pid)


def chaotic_load(server: Server, chaos: Chaos, count: int) -> dict[str, list[int]]:
    """Send ``count`` mixed requests from 6 threads; returns the statuses per kind."""
    rng = random.Random(11)
    client = httpx.Client(base_url=server.url, limits=httpx.Limits(max_connections=8))

    def body(**extra: Any) -> dict[str, Any]:
        # Mostly inline-sized or a little over the 64 KiB threshold, some of a megabyte.
        size = rng.choice([rng.randrange(0, 1 << 16), rng.randrange(1 << 16, 1 << 18), 1 << 20])
        return {"size": size, "seed": rng.randrange(1 << 30), **extra}

    def post(payload: dict[str, Any], timeout: float = 30.0) -> int:
        response = client.post("/inference", json=payload, timeout=timeout)
        if response.status_code == 200:
            chaos.observe(response.json()["pids"])
        return response.status_code

    def impatient(payload: dict[str, Any]) -> int:
        try:
            return post(payload, timeout=0.1)
        except httpx.TimeoutException:
            return 0  # the client left mid-request

    def leave(payload: dict[str, Any]) -> int:
        send_and_leave(server, payload)
        return 0

    kinds: list[tuple[str, int, Callable[[], int]]] = [
        ("ok", 150, lambda: post(body())),
        ("inplace", 40, lambda: post(body(inplace=True, spare=rng.randrange(3)))),
        ("nested", 30, lambda: post(body(nested=True))),
        ("raise1", 25, lambda: post(body(raise1=True, inplace=True, spare=1))),
        ("raise2", 25, lambda: post(body(raise2=True, nested=rng.random() < 0.5))),
        ("timeout1", 2, lambda: post(body(sleep1=OVERTIME_S))),
        ("timeout2", 2, lambda: post(body(sleep2=OVERTIME_S))),
        ("impatient", 10, lambda: impatient(body(sleep2=0.3))),
        ("leave", 16, lambda: leave(body(inplace=True))),
    ]
    plan = [(name, send) for name, times, send in kinds for _ in range(times)]
    rng.shuffle(plan)
    plan = plan[:count]
    statuses: dict[str, list[int]] = {name: [] for name, _, _ in kinds}

    def run(item: tuple[str, Callable[[], int]]) -> None:
        name, send = item
        status = send()
        with chaos.lock:
            statuses[name].append(status)
        chaos.finished()

    with client, concurrent.futures.ThreadPoolExecutor(6) as pool:
        for future in [pool.submit(run, item) for item in plan]:
            future.result()
    return statuses


def our_shm_entries(pids: set[int]) -> list[str]:
    """Entries of /dev/shm whose names carry one of ``pids`` (arena files carry the server's)."""
    return sorted(
        name
        for name in os.listdir(SHM)
        if any(f"-{pid}-" in name or name.endswith(f"-{pid}") for pid in pids)
    )


def test_the_arena_returns_to_baseline_whatever_happens(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(
        "ipc_arena.py", "--shm-size", "64M", "--timeout", str(TIMEOUT_MS), "--workers", "2"
    )
    arena_files = our_shm_entries({server.pid})
    assert len(arena_files) == 1 and arena_files[0].startswith(f"mosec-arena-{server.pid}-")
    baseline = arena_usage(server)
    assert baseline == (0, 0)
    reference_before = server.metric(f"{NS}_ipc_bytes_total", carried="reference")
    pids = {server.pid}

    # A stage-1 worker dies holding three leases (an in-place output and two spares).
    held = Hold(tmp_path, "lessee")
    request = Request(
        server,
        json={"size": 1 << 20, "inplace": True, "spare": 2, "spare_size": 1 << 20}
        | hold_keys(held, "1"),
    )
    victim = held.wait_inside()
    pids.add(victim)
    assert arena_usage(server)[1] == 3
    kill_worker(server, victim)
    assert request.result().status_code in CHAOS
    wait_at_rest(server, baseline)

    # A stage-2 worker dies while it reads its input.
    held = Hold(tmp_path, "reader")
    request = Request(server, json={"size": 1 << 20, "nested": True} | hold_keys(held, "2"))
    victim = held.wait_inside()
    pids.add(victim)
    kill_worker(server, victim)
    assert request.result().status_code in CHAOS
    wait_at_rest(server, baseline)

    # Clients leave while their request is in stage 1 (holding leases), then in stage 2.
    for stage in ("1", "2"):
        held = Hold(tmp_path, f"leaver{stage}")
        send_and_leave(
            server, {"size": 1 << 20, "inplace": True, "spare": 1} | hold_keys(held, stage), held
        )
        wait_until(lambda: server.metric(f"{NS}_remaining_task") == 0, 10, "the task to go")
        held.release()
        wait_at_rest(server, baseline)

    # The engine times out while each stage is still working on its output.
    for stage in ("1", "2"):
        response = server.post(json={"size": 1 << 20, f"sleep{stage}": OVERTIME_S, "inplace": True})
        assert response.status_code == 408
    wait_at_rest(server, baseline)

    # A few hundred mixed requests while workers are killed at random.
    chaos = Chaos(server, every=30, most=6, until=240)
    statuses = chaotic_load(server, chaos, count=300)
    pids |= set(chaos.seen[0]) | set(chaos.seen[1])
    wait_at_rest(server, baseline)
    for pid in chaos.killed:
        wait_until(lambda pid=pid: parent_of(pid) is None, 10, f"killed worker {pid} reaped")

    allowed = {
        "ok": {200} | CHAOS,
        "inplace": {200} | CHAOS,
        "nested": {200} | CHAOS,
        "raise1": {422} | CHAOS,
        "raise2": {500} | CHAOS,
        "timeout1": CHAOS,
        "timeout2": CHAOS,
        "impatient": {0} | CHAOS,
        "leave": {0},
    }
    for name, seen in statuses.items():
        assert set(seen) <= allowed[name], f"{name}: {sorted(set(seen))}"
    assert sum(len(seen) for seen in statuses.values()) == 300
    assert statuses["ok"].count(200) > len(statuses["ok"]) // 2, statuses["ok"]
    assert 422 in statuses["raise1"] and 200 in statuses["inplace"]
    assert len(chaos.killed) >= 3, "the load was too short to kill workers"
    assert server.metric(f"{NS}_ipc_bytes_total", carried="reference") > reference_before + (
        100 << 20
    )

    # Still serving, and still balanced.
    response = server.post(json={"size": 2 << 20, "inplace": True})
    assert response.status_code == 200, response.text
    wait_at_rest(server, baseline)

    assert server.terminate() == 0
    for pid in pids - {server.pid}:
        wait_until(lambda pid=pid: parent_of(pid) is None, 10, f"worker {pid} to exit")
    assert our_shm_entries(pids) == []


def test_an_arena_left_by_a_killed_server_is_swept_at_the_next_start(
    start_server: StartServer,
) -> None:
    crashed = start_server("ipc_arena.py", "--shm-size", "16M", "--workers", "1")
    response = crashed.post(json={"size": 1 << 20})
    assert response.status_code == 200
    workers = set(response.json()["pids"])
    left = our_shm_entries({crashed.pid})
    assert len(left) == 1
    crashed.proc.send_signal(signal.SIGKILL)
    crashed.wait_exit()
    # Its workers see the engine's socket close and exit; the arena file stays behind.
    for pid in workers:
        wait_until(lambda pid=pid: parent_of(pid) is None, 10, f"worker {pid} to exit")
    assert our_shm_entries({crashed.pid}) == left

    successor = start_server("ipc_arena.py", "--shm-size", "16M", "--workers", "1")
    assert our_shm_entries({crashed.pid}) == []
    assert len(our_shm_entries({successor.pid})) == 1
    assert successor.post(json={"size": 1 << 20}).status_code == 200
    assert successor.terminate() == 0
    assert our_shm_entries({successor.pid}) == []
