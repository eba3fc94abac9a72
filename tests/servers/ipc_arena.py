"""Two arena stages (``ShmIPCMixin``) that misbehave on request, for the leak and limit tests.

``--workers N`` (this script's own flag, default 2) sets the processes per stage. Both stages
have a 30 s forward timeout of their own, so with a short ``--timeout`` the engine gives up on a
slow request first and the stage's output arrives for a task that has ended.

Stage 1 (``Produce``) reads the JSON request. Keys (all optional):

- ``size``: payload bytes (default 0), random bytes seeded by ``seed`` (default 0);
- ``inplace``: write the output into an array from ``self.shm_empty`` and return it whole;
- ``slice``: with ``inplace``, return a slice of that array instead (so it is copied);
- ``spare``: how many more ``shm_empty`` arrays (``spare_size`` bytes each) to leave unused;
- ``nested``: return a dict holding the array and a second copy of it (pickle path);
- ``mark1`` / ``hold1``: write the pid to ``mark1``, then wait until ``hold1`` exists; done after
  the arrays above are allocated and before they are filled, so a kill leaves leases behind;
- ``sleep1``: seconds to sleep; ``raise1``: raise a ``ValidationError`` (422);
- ``forge``: return a hand-made reference payload instead (see :func:`forged`);
- ``keep``: a path: write the reference payload this output got there (for ``forge: replay``).

Stage 1 puts a 2048-byte JSON header in front of the payload: the request's options, its pid and,
for ``inplace``, the arena offset of the array it wrote. Stage 2 (``Consume``) reads it back:

- ``mark2`` / ``hold2`` / ``sleep2`` / ``raise2`` as above (``raise2`` is a ``ServerError``, 500);
- ``digests2``: a path: digest the payload before ``mark2`` and again after the hold/sleep, and
  write ``{"start", "end", "offset"}`` there (the answer of a request that timed out is lost);

and answers ``{"pids": [stage1, stage2], "sha256": <payload digest>, "offset": <arena offset
of the array it received, or null>, "inplace_offset": ..., "writeable": <bool>}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np

from mosec import Server, ServerError, ValidationError, Worker
from mosec.mixin import ShmIPCMixin
from mosec.store.arena import arena_store

HEADER = 2048
HOLD_LIMIT_S = 60.0


def payload(size: int, seed: int) -> np.ndarray:
    """The random payload of a request (the test builds the same to compare)."""
    return np.frombuffer(np.random.default_rng(seed).bytes(size), dtype=np.uint8)


def write_atomic(path: str, text: str) -> None:
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def write_atomic_bytes(path: str, data: bytes) -> None:
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def behave(data: dict, stage: str) -> None:
    """The mark / hold / sleep / raise keys of one stage."""
    if f"mark{stage}" in data:
        write_atomic(data[f"mark{stage}"], str(os.getpid()))
    if f"hold{stage}" in data:
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not os.path.exists(data[f"hold{stage}"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    if f"sleep{stage}" in data:
        time.sleep(float(data[f"sleep{stage}"]))
    if data.get(f"raise{stage}"):
        error = ValidationError if stage == "1" else ServerError
        raise error(f"asked to raise in stage {stage}")


def forged(kind: str, data: dict) -> bytes:
    """A reference payload made by hand: ``reference := 1 | count:u16 | 32-byte refs | meta``.

    Kinds: ``generation`` (a freed object's reference with a later generation), ``arena`` (another
    arena's id), ``offset`` (outside the arena), ``unsealed`` (a live object never sealed),
    ``garbage`` (a head cut short), ``store`` (a store kind the server does not run; ``store-empty``
    the same naming no object),
    ``partial`` (one valid object, then a forged one), ``replay`` (the payload saved by an
    earlier request's ``keep``).
    """
    store = arena_store()
    meta = b"a" + bytes([3]) + b"|u1" + bytes([1]) + struct.pack("<q", 64)
    if kind == "replay":
        return Path(data["replay"]).read_bytes()
    if kind == "garbage":
        return b"\x01\x01\x00" + b"\x00" * 7
    if kind == "store":
        return b"\x09\x01\x00" + bytes(32) + meta
    if kind == "store-empty":
        return b"\x09\x00\x00" + meta
    if kind == "unsealed":
        reference, _ = store.mapping.alloc(64)
        return b"\x01\x01\x00" + reference + meta
    valid = store.put_many([memoryview(bytes(64))])[0]
    arena_id, offset, size, generation = struct.unpack("<QQQQ", valid)
    if kind == "partial":
        bad = struct.pack("<QQQQ", arena_id, offset, size, generation + 1_000_000)
        return b"\x01\x02\x00" + valid + bad + meta
    store.discard([valid])
    if kind == "generation":
        bad = struct.pack("<QQQQ", arena_id, offset, size, generation + 1_000_000)
    elif kind == "arena":
        bad = struct.pack("<QQQQ", arena_id ^ 0x5A5A, offset, size, generation)
    elif kind == "offset":
        bad = struct.pack("<QQQQ", arena_id, 1 << 50, size, generation)
    else:
        raise ValidationError(f"unknown forgery {kind!r}")
    return b"\x01\x01\x00" + bad + meta


class Produce(ShmIPCMixin, Worker):
    """Builds the output the request describes."""

    def forward(self, data):
        size = int(data.get("size", 0))
        header = {"request": data, "pid": os.getpid(), "inplace_offset": None}
        spares = [
            self.shm_empty(int(data.get("spare_size", 4096)), np.uint8)
            for _ in range(int(data.get("spare", 0)))
        ]
        out = None
        if data.get("inplace"):
            out = self.shm_empty(HEADER + size, np.uint8)
            header["inplace_offset"] = arena_store().mapping.offset_of(out)
        behave(data, "1")
        if "forge" in data:
            return {"forge": data["forge"]}
        if out is None:
            out = np.empty(HEADER + size, np.uint8)
        out[:HEADER] = np.frombuffer(json.dumps(header).encode().ljust(HEADER), np.uint8)
        out[HEADER:] = payload(size, int(data.get("seed", 0)))
        for spare in spares:
            spare.fill(0xAB)
        if data.get("slice"):
            return out[: HEADER + size // 2]
        if data.get("nested"):
            return {"array": out, "copy": np.array(out), "tag": b"nested"}
        return out

    def deserialize(self, data):
        # Kept for serialize_ipc (one request at a time: this stage does not batch).
        self.request = super().deserialize(data)
        return self.request

    def serialize_ipc(self, data):
        if isinstance(data, dict) and "forge" in data:
            encoded = forged(data["forge"], self.request)
        else:
            encoded = super().serialize_ipc(data)
        if "keep" in self.request:
            write_atomic_bytes(self.request["keep"], encoded)
        return encoded


class Consume(ShmIPCMixin, Worker):
    """Checks what arrived and digests it."""

    def forward(self, data):
        array = data["array"] if isinstance(data, dict) else data
        if isinstance(data, dict):
            assert np.array_equal(data["array"], data["copy"]) and data["tag"] == b"nested"
        header = json.loads(bytes(array[:HEADER]))
        request = header["request"]
        watched = "digests2" in request
        start = hashlib.sha256(array[HEADER:]).hexdigest() if watched else None
        behave(request, "2")
        end = hashlib.sha256(array[HEADER:]).hexdigest()
        offset = arena_store().mapping.offset_of(array)
        if watched:
            digests = {"start": start, "end": end, "offset": offset}
            write_atomic(request["digests2"], json.dumps(digests))
        return {
            "pids": [header["pid"], os.getpid()],
            "sha256": end,
            "size": int(array.size - HEADER),
            "offset": offset,
            "inplace_offset": header["inplace_offset"],
            "writeable": bool(array.flags.writeable),
        }


def _workers() -> int:
    if "--workers" in sys.argv:
        return int(sys.argv[sys.argv.index("--workers") + 1])
    return 2


if __name__ == "__main__":
    server = Server()
    server.append_worker(Produce, num=_workers(), timeout=30)
    server.append_worker(Consume, num=_workers(), timeout=30)
    server.run()
