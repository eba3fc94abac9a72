"""Worker and servlet classes for the mpserver tests.

They live at module level in an importable module because ``ProcessServlet`` spawns
its processes, which import the worker class by name. Every wait here is bounded.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from ._target import mp


class MyError(Exception):
    """A user exception type; the caller must see exactly this type."""


class InitError(Exception):
    """Raised by a worker's ``__init__``."""


class UnrebuildableError(Exception):
    """Pickles, but cannot be rebuilt by unpickling.

    ``args`` has one item and ``__init__`` needs two.
    """

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


def wait_for_file(path: str, max_wait: float) -> bool:
    """Block until ``path`` exists or ``max_wait`` seconds pass; return whether it exists."""
    deadline = time.monotonic() + max_wait
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def touch(path: str | Path) -> None:
    Path(path).write_text("1")


# --------------------------------------------------------------------------- simple workers


class Double(mp.Worker):
    def call(self, x):
        return x * 2


class Negate(mp.Worker):
    def call(self, x):
        return -x


class AddN(mp.Worker):
    """Extra servlet keyword arguments (``n``) reach ``__init__``."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = n

    def call(self, x):
        return x + self.n


class Failing(mp.Worker):
    """Raises ``MyError`` for negative inputs."""

    def call(self, x):
        if x < 0:
            raise MyError(f"negative input {x}")
        return x * 10


class Info(mp.Worker):
    """Reports where and how it runs."""

    def call(self, x):
        return {
            "x": x,
            "pid": os.getpid(),
            "thread": threading.get_ident(),
            "worker_index": self.worker_index,
            "batch_size": self.batch_size,
            "batch_wait_time": self.batch_wait_time,
            "affinity": sorted(os.sched_getaffinity(0)),
        }


class ReportOnInit(mp.Worker):
    """Writes ``{pid, worker_index, affinity}`` to ``report_dir`` when built; marks cleanup.

    The report is written from ``__init__``, so every process of the servlet reports
    whether or not it gets an item.
    """

    def __init__(self, report_dir, **kwargs):
        super().__init__(**kwargs)
        self.report_dir = report_dir
        info = {
            "pid": os.getpid(),
            "worker_index": self.worker_index,
            "affinity": sorted(os.sched_getaffinity(0)),
        }
        Path(report_dir, f"init-{self.worker_index}.json").write_text(json.dumps(info))

    def call(self, x):
        return sorted(os.sched_getaffinity(0))

    def cleanup(self, exc=None):
        Path(self.report_dir, f"cleanup-{self.worker_index}.json").write_text(
            json.dumps({"pid": os.getpid(), "exc": repr(exc)})
        )


class Gate(mp.Worker):
    """``call((name, gate, max_wait))``: mark ``{gate}.started-{name}``, then wait for the gate.

    Returns ``(name, opened, pid, thread)``; ``opened`` is False if the wait ran out.
    """

    def call(self, x):
        name, gate, max_wait = x
        touch(f"{gate}.started-{name}")
        opened = wait_for_file(gate, max_wait)
        return (name, opened, os.getpid(), threading.get_ident())


class Sleepy(mp.Worker):
    """``call((x, seconds))`` sleeps (simulated work) and returns ``x``."""

    def call(self, x):
        value, seconds = x
        time.sleep(seconds)
        return value


class Describe(mp.Worker):
    """Returns a text naming the input's type: an exception object is data to it."""

    def call(self, x):
        return f"{type(x).__name__}:{x}"


def square(x):
    return x * x


def combine(x):
    """Joins an ``[x, double(x)]`` ensemble result."""
    original, doubled = x
    return original + doubled


# --------------------------------------------------------------------------- batching workers


class BatchRecorder(mp.Worker):
    """Batched: each result is ``(x, len(batch))`` so the caller sees the batch sizes."""

    def call(self, batch):
        assert isinstance(batch, list), type(batch)
        n = len(batch)
        return [(x, n) for x in batch]


class BatchInfo(mp.Worker):
    """Batched: each result is ``(x, batch_size, batch_wait_time, len(batch))``."""

    def call(self, batch):
        return [(x, self.batch_size, self.batch_wait_time, len(batch)) for x in batch]


class PreprocessBatch(mp.Worker):
    """Batched with a ``preprocess`` that rejects ``'bad'`` with ``KeyError``."""

    def preprocess(self, x):
        if x == "bad":
            raise KeyError(x)
        return int(x)

    def call(self, batch):
        return [v * 10 for v in batch]


class PreprocessSingle(mp.Worker):
    """Non-batched with ``preprocess``."""

    def preprocess(self, x):
        if x == "bad":
            raise KeyError(x)
        return int(x)

    def call(self, x):
        return x * 10


class WrongCount(mp.Worker):
    """Batched; ``'short'`` makes the batch result one too short, ``'long'`` one too long."""

    def call(self, batch):
        out = [x for x in batch]
        if "short" in batch:
            out = out[:-1]
        elif "long" in batch:
            out = out + ["extra"]
        return out


# --------------------------------------------------------------------------- misbehaving workers


class Killer(mp.Worker):
    """``'die'`` kills the worker process with ``os._exit``; other inputs are doubled."""

    def call(self, x):
        if x == "die":
            os._exit(3)
        return x * 2


class BadException(mp.Worker):
    """``'raise'`` raises an exception that cannot be rebuilt by unpickling."""

    def call(self, x):
        if x == "raise":
            raise UnrebuildableError("a", "b")
        return x * 2


class BadReturn(mp.Worker):
    """``'lock'`` returns an unpicklable object."""

    def call(self, x):
        if x == "lock":
            return threading.Lock()
        return x * 2


class FailsInit(mp.Worker):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        raise InitError("cannot start")

    def call(self, x):
        return x


# --------------------------------------------------------------------------- switches


class SignSwitch(mp.SwitchServlet):
    """Branch 0 for ``x >= 0``, branch 1 otherwise."""

    def switch(self, x):
        return 0 if x >= 0 else 1


class ModSwitch(mp.SwitchServlet):
    """Branch ``x % 3``."""

    def switch(self, x):
        return x % 3


class BadSwitch(mp.SwitchServlet):
    """``'oob'`` gives an out-of-range branch index; ``'raise'`` raises ``MyError``."""

    def switch(self, x):
        if x == "oob":
            return 7
        if x == "raise":
            raise MyError("switch failed")
        return 0


# --------------------------------------------------------------------------- Solute-shaped flow
# A STAND-IN for mpservice's documented Solute/GetHead/GetTail/GetLen example, whose text is
# not shipped in any mpservice distribution we could read (see docs/mpserver-contract.md §11).
# Same names and shape (an ensemble of three getters joined by a final step); our own code.


class Solute:
    """A picklable record: a name and a sequence."""

    def __init__(self, name, seq):
        self.name = name
        self.seq = seq

    def __eq__(self, other):
        return isinstance(other, Solute) and (self.name, self.seq) == (other.name, other.seq)

    def __repr__(self):
        return f"Solute({self.name!r}, {self.seq!r})"


class GetHead(mp.Worker):
    def call(self, x):
        return x.seq[0]


class GetTail(mp.Worker):
    def call(self, x):
        return x.seq[-1]


class GetLen(mp.Worker):
    def call(self, x):
        return len(x.seq)


def describe_solute(x):
    solute, head, tail, n = x
    return f"{solute.name}: head={head} tail={tail} len={n}"
