"""Flows beyond a line: ensembles, switches, a thread stage and pinned processes.

Routes (JSON in and out unless said otherwise):

- ``/ensemble``: ``Prepare`` -> Ensemble([``Add(1)``, ``Add(10)``, [``Add(100)``, ``Double``]])
  -> ``Collect``: ``{"n": n}`` answers ``{"slots": [n+1, n+10, 2*(n+100)]}``; ``{"fail": k}``
  makes member k raise ``ValidationError`` (fail fast: the request is a 422).
- ``/ensemble-soft``: the same members with ``fail_fast=False``: a failed member's slot reads
  ``"error <status>: <message>"``.
- ``/switch``: Switch(``Parity``, [[``Even``], [``Odd``], [``Add(1)``, ``Even``]]) -> the
  branch's answer; ``{"branch": i}`` forces branch i (out of range: a 500).
- ``/threads``: ``WhoAmI`` on 3 threads of one process.
- ``/pinned``: ``WhoAmI`` in two processes pinned to CPU 0 and CPU 1.
- ``/tensor``: ``MakeTensor`` (``ShmIPCMixin``) -> Ensemble of three ``Digest`` members ->
  ``Agree``: a 12 MiB array fanned out through the arena, each member digesting it in place.
  ``{"raise_member": k}`` fails member k; behaviour keys (``mark2``/``hold2``) hold the last
  member, as in ``behaviour.py``.

Every member of a route batches (``max_batch_size=4``), so items of concurrent requests meet.
"""

from __future__ import annotations

import hashlib
import os
import threading

import numpy as np

try:  # run as a script (tests/servers on the path) or imported as servers.flows by a test
    from behaviour import act
except ImportError:
    from servers.behaviour import act

from mosec import Ensemble, Runtime, Server, Switch, ValidationError, Worker
from mosec.mixin import ShmIPCMixin

TENSOR_BYTES = 12 << 20


class Prepare(Worker):
    """Passes the request on."""

    def forward(self, data: dict) -> dict:
        return data


class Add(Worker):
    """Adds its amount (from its class) to ``n``; fails when asked to, by member number."""

    amount = 0
    member = 0

    def forward(self, data: list) -> list:
        answers = []
        for item in data:
            if item.get("fail") == self.member:
                raise ValidationError(f"member {self.member} refuses")
            answers.append({**item, "n": item["n"] + self.amount})
        return answers


class Add1(Add):
    """Member 1."""

    amount, member = 1, 1


class Add10(Add):
    """Member 2."""

    amount, member = 10, 2


class Add100(Add):
    """Member 3's first stage."""

    amount, member = 100, 3


class Double(Worker):
    """Member 3's second stage."""

    def forward(self, data: dict) -> dict:
        return {**data, "n": data["n"] * 2}


class Collect(Worker):
    """Joins the members' outputs (or errors) into one answer."""

    def forward(self, data: list) -> dict:
        slots = []
        for slot in data:
            if isinstance(slot, Exception):
                slots.append(f"error {getattr(slot, 'code', '?')}: {slot}")
            else:
                slots.append(slot["n"])
        return {"slots": slots}


class Parity(Worker):
    """Chooses the branch: ``n % 2``, unless the request names one."""

    def forward(self, data: list) -> list:
        return [item.get("branch", item["n"] % 2) for item in data]


class Even(Worker):
    """Says even."""

    def forward(self, data: dict) -> dict:
        return {"n": data["n"], "branch": "even"}


class Odd(Worker):
    """Says odd."""

    def forward(self, data: dict) -> dict:
        return {"n": data["n"], "branch": "odd"}


class WhoAmI(Worker):
    """Says where it runs."""

    def forward(self, data: dict) -> dict:
        act(data)
        return {
            "pid": os.getpid(),
            "thread": threading.get_ident(),
            "worker_id": self.worker_id,
            "cpus": sorted(os.sched_getaffinity(0)),
        }


class MakeTensor(ShmIPCMixin, Worker):
    """A 12 MiB array made from the request's seed, written into the arena in place."""

    def forward(self, data: dict) -> dict:
        array = self.shm_empty((TENSOR_BYTES,), np.uint8)
        array[:] = np.random.default_rng(data["seed"]).integers(0, 256, TENSOR_BYTES, np.uint8)
        return {"array": array, "request": data}


class Digest(ShmIPCMixin, Worker):
    """Digests the array it reads in place; fails or holds when asked to."""

    member = 0

    def forward(self, data: dict) -> dict:
        request = data["request"]
        if request.get("raise_member") == self.member:
            raise ValidationError(f"digest member {self.member} refuses")
        if self.member == 3:
            act({key[:-1]: value for key, value in request.items() if key.endswith("2")})
        return {"sha256": hashlib.sha256(data["array"]).hexdigest(), "member": self.member}


class Digest1(Digest):
    """Member 1."""

    member = 1


class Digest2(Digest):
    """Member 2."""

    member = 2


class Digest3(Digest):
    """Member 3 (the one that can be held)."""

    member = 3


class Agree(ShmIPCMixin, Worker):
    """The members' digests, which must agree."""

    def forward(self, data: list) -> dict:
        return {"digests": [slot["sha256"] for slot in data]}


def routes() -> dict:
    """The routes, built fresh (the in-process tests build their own server from them)."""
    batch = {"max_batch_size": 4, "max_wait_time": 5}

    def members() -> list:
        return [
            Runtime(Add1, **batch),
            Runtime(Add10, **batch),
            [Runtime(Add100, **batch), Runtime(Double)],
        ]

    branches = [[Runtime(Even)], [Runtime(Odd)], [Runtime(Add1, **batch), Runtime(Even)]]
    digests = [Runtime(Digest1), Runtime(Digest2), Runtime(Digest3)]
    return {
        "/ensemble": [Runtime(Prepare), Ensemble(members()), Runtime(Collect)],
        "/ensemble-soft": [
            Runtime(Prepare),
            Ensemble(members(), fail_fast=False),
            Runtime(Collect),
        ],
        "/switch": [Switch(Runtime(Parity, **batch), branches)],
        "/threads": [Runtime(WhoAmI, threads=3)],
        "/pinned": [Runtime(WhoAmI, cpus=[[0], [1]])],
        "/tensor": [Runtime(MakeTensor), Ensemble(digests), Runtime(Agree)],
    }


if __name__ == "__main__":
    server = Server()
    server.register_runtime(routes())
    server.run()
