"""The chaos table (printed, Markdown) and ``benchmarks/RELIABILITY.md``.

Columns: test, target, requests (the steady load's), statuses (``200:951 408:3 gave-up:12``),
hangs, leaked arena bytes / objects, leaked fds, processes and arena files left after a
graceful stop, recovery, and the note (what the fault did, unexplained statuses, the fault's
own requests).
"""

from typing import Any, Dict, List, Optional, Sequence

from benchmarks.chaos.load import HANG_MARGIN_S, KINDS, SHORT_TIMEOUT_S, SHORT_TIMEOUT_SHARE
from benchmarks.chaos.run import Row, Settings
from benchmarks.chaos.target import OURS_ARENA, TIMEOUT_S

HEADER = (
    "| test | target | requests | statuses | hangs | leaked arena B / obj | leaked fds"
    " | left procs / files | recovery | note |"
)
RULE = "| --- | --- | ---: | --- | ---: | --- | ---: | --- | --- | --- |"


def _opt(value: Optional[int]) -> str:
    return "n/a" if value is None else str(value)


def cells(row: Row) -> List[str]:
    """The table cells of one row."""
    if not row.applies:
        return [row.fault, row.target, "", "", "", "", "", "", "n/a", "does not apply"]
    if row.outcome is None:
        return [row.fault, row.target, "", "", "", "", "", "", "", f"failed: {row.error}"]
    outcome = row.outcome
    hangs = row.load.hangs + outcome.own.hangs
    arena = fds = "settling skipped (server exited)"
    if row.leaks is not None:
        arena = f"{_opt(row.leaks.arena_bytes)} / {_opt(row.leaks.arena_objects)}"
        fds = str(row.leaks.fds)
        if row.leaks.tasks:
            arena += f" ({row.leaks.tasks} tasks left)"
    if outcome.redis_keys is not None:
        arena = f"redis keys {outcome.redis_keys}"
    left = "not measured"
    if row.leftovers is not None:
        left = f"{row.leftovers.processes} / {_opt(row.leftovers.files)}"
    notes = [outcome.note] if outcome.note else []
    if outcome.own.requests:
        notes.append(f"own requests {outcome.own.statuses()}")
    unexplained = row.unexpected()
    if unexplained:
        notes.append("unexplained " + " ".join(f"{k}:{n}" for k, n in unexplained.items()))
    if row.error:
        notes.append(f"error: {row.error}")
    return [
        row.fault,
        row.target,
        str(row.load.requests),
        row.load.statuses(),
        str(hangs),
        arena,
        fds,
        left,
        outcome.recovery,
        "; ".join(notes),
    ]


def table(rows: Sequence[Row]) -> str:
    """The Markdown table of a run."""
    lines = [HEADER, RULE]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def page(rows: Sequence[Row], settings: Settings, meta: Dict[str, Any]) -> str:
    """``RELIABILITY.md``: how it was run, the table, what each column means."""
    mix = ", ".join(f"{name} {share:.0%}" for name, share in KINDS)
    return f"""# Reliability: how the server fails

Written by `{meta["command"]}`
on {meta["started"]}: {meta["machine"]}.

Each row is a fresh server (`benchmarks/targets/chaos_server.py`: a 2-process stage that
makes a 128 KiB array, a 1-process stage that checks it), {settings.concurrency} clients of
steady load, a fault for {settings.duration_s:g} s, then up to {settings.recovery_s:g} s to
recover. Server deadline `--timeout {int(TIMEOUT_S * 1000)}`; ours also
`{" ".join(OURS_ARENA)}`.

{table(rows)}
## Reading it

- **client mix**: {mix}. {SHORT_TIMEOUT_SHARE:.0%} of requests have a short client timeout
  ({SHORT_TIMEOUT_S[0]:g}-{SHORT_TIMEOUT_S[1]:g} s) after which the client closes the connection
  (`gave-up`); the rest wait the server's deadline plus {HANG_MARGIN_S:g} s, and one of those
  without an answer is a **hang**. `conn`: the connection closed without an answer; `wrong`: a
  200 with the wrong body. Expected from a healthy server: 200, 400 (bad JSON), 422 (wrong
  type), `gave-up`.
- **leaked**: measured after the load stopped, polling up to 10 s for the server to be back at
  the baseline taken at rest before the fault: arena bytes / objects from our engine's metrics
  (n/a on upstream, which has no arena), the sum of open fds of the server's processes.
  `daemon-killed` reports the Redis keys left at rest under load before the kill instead.
- **left procs / files**: after SIGTERM to the server (the daemon fault: after it exited by
  itself), processes of its tree alive 15 s later, and its arena files left in `/dev/shm`.
- **recovery**: `kill-worker`, `disconnect-storm`: every worker back and a valid request
  served; `stuck-worker`: the stuck process replaced (its pid gone) and every worker back;
  `overfull-arena`: a request that fits answered 200; `daemon-killed`: the server exits
  non-zero (the promise is a clean stop, not a recovery).
- n/a: the fault needs our arena or a registered store daemon.

Run it: `python -m benchmarks chaos` (all faults, ours and upstream), `--short` for the 2.5 s
version that `benchmarks/tests/test_chaos.py` asserts on; see `benchmarks/README.md`.
"""
