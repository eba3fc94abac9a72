"""The forward timeout (``mosec.forward_timeout``, ``engine/src/py/forward_watch.rs``) in this
process: a call past its deadline is interrupted near it, a call that ended leaves no alarm
behind, and a shorter timeout than the one before is kept too. Over HTTP the same timeout is
tested with real workers (``test_status.py``, ``test_stream.py``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from mosec import forward_timeout
from mosec.errors import MosecTimeoutError


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    """The timeout's SIGALRM handler for the test, the previous one restored after."""
    previous = signal.getsignal(signal.SIGALRM)
    forward_timeout.install()
    yield
    signal.signal(signal.SIGALRM, previous)


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def _interrupted_after(timeout_s: float) -> float:
    started = time.monotonic()
    with pytest.raises(MosecTimeoutError, match="forward exceeded its timeout"):
        forward_timeout.call(_sleep, 30.0, timeout_s)
    return time.monotonic() - started


def test_a_call_past_its_timeout_is_interrupted_near_the_deadline() -> None:
    waited = _interrupted_after(0.2)
    assert 0.2 <= waited < 5.0, waited


def test_a_call_that_ends_in_time_leaves_no_alarm() -> None:
    assert forward_timeout.call(_sleep, 0.01, 0.2) == "slept"
    # Past where its deadline was: nothing interrupts this sleep.
    assert _sleep(0.4) == "slept"


def test_a_shorter_timeout_than_the_last_one_is_kept() -> None:
    assert forward_timeout.call(_sleep, 0.0, 60.0) == "slept"  # the watch now naps 60 s
    waited = _interrupted_after(0.2)
    assert waited < 5.0, waited


def test_restarting_gives_a_streaming_call_more_time() -> None:
    def chatty(rounds: int) -> str:
        for _ in range(rounds):
            time.sleep(0.1)
            forward_timeout.restart(0.3)  # an event sent
        return "done"

    # Six tenths of a second in all, twice the timeout, but never 0.3 s without an event.
    assert forward_timeout.call(chatty, 6, 0.3) == "done"


def test_an_alarm_for_no_running_call_is_ignored() -> None:
    assert forward_timeout.call(_sleep, 0.0, 1.0) == "slept"
    os.kill(os.getpid(), signal.SIGALRM)  # as if it arrived after its call ended
    assert _sleep(0.05) == "slept"
