"""The Rust engine (see ARCHITECTURE.md, "The extension API")."""

from typing import Any, final

from typing_extensions import Buffer, Self

__all__ = [
    "ARENA_REFERENCE_LEN",
    "EVENT_STREAM_MIME",
    "FLAG_EGRESS",
    "FLAG_INGRESS",
    "FLAG_JOINED",
    "FLAG_REFERENCE",
    "FLAG_REQUEST_ID",
    "KIND_BATCH",
    "KIND_CANCEL",
    "KIND_EVENT",
    "KIND_HELLO",
    "KIND_RESULT",
    "METRICS_MIME",
    "REQUEST_ID_MAX_LEN",
    "RESERVED_PATHS",
    "RESERVED_PREFIX",
    "STORE_ARENA",
    "STORE_REDIS",
    "TEXT_PLAIN_MIME",
    "ArenaBuffer",
    "ArenaClient",
    "Engine",
    "ForwardWatch",
    "default_config",
    "dumps_indent2",
    "numpy_failed_frees",
    "set_numpy_handler",
    "version",
]

def default_config() -> str:
    """JSON of the engine config with every default."""

def version() -> str:
    """The crate version, e.g. ``"0.1.0"``."""

def dumps_indent2(value: object) -> bytes | None:
    """``json.dumps(value, indent=2).encode()`` for plain values, else None (run ``json``)."""

@final
class ForwardWatch:
    """A process's forward timeout: a thread alarms the process (SIGALRM) past a deadline."""

    def __init__(self) -> None: ...
    def start(self, timeout_s: float) -> None:
        """A call starts (or sends a stream event): its time is up ``timeout_s`` from now."""

    def stop(self) -> None:
        """The call ended: no alarm for it."""

    def expired(self) -> bool:
        """Whether a call runs past its deadline (an alarm otherwise is stale)."""

# The wire formats' numbers, from their one definition (engine/src/protocol.rs, refs.rs,
# config.rs, shm::Reference).
KIND_HELLO: int
KIND_BATCH: int
KIND_RESULT: int
KIND_EVENT: int
KIND_CANCEL: int
FLAG_INGRESS: int
FLAG_EGRESS: int
FLAG_REQUEST_ID: int
FLAG_JOINED: int
FLAG_REFERENCE: int
STORE_ARENA: int
STORE_REDIS: int
ARENA_REFERENCE_LEN: int
RESERVED_PATHS: list[str]
RESERVED_PREFIX: str

# What the HTTP side answers (engine/src/http/), for the OpenAPI document.
TEXT_PLAIN_MIME: str
METRICS_MIME: str
EVENT_STREAM_MIME: str
REQUEST_ID_MAX_LEN: int

@final
class Engine:
    """The HTTP server, task table, batcher and worker links, in Rust-owned threads."""

    def __new__(cls, config_json: str) -> Self:
        """Parse and validate the config; ValueError when it is invalid."""

    def start(self) -> None:
        """Bind HTTP and the worker socket and start the threads; OSError on a taken port.

        HTTP connections are refused until :meth:`listen`.
        """

    def listen(self, wait_ms: int) -> bool:
        """Accept HTTP once every stage had all its workers connected, waiting up to ``wait_ms``.

        True when listening; OSError when the bound port cannot listen.
        """

    def port(self) -> int:
        """The HTTP port bound (useful with port 0)."""

    def is_ready(self) -> bool:
        """Whether the engine accepts HTTP connections and is not draining."""

    def connected_workers(self) -> list[int]:
        """The connected worker count of each stage, by stage index."""

    def call(self, path: str, payload: bytes, timeout_ms: int) -> tuple[int, bytes]:
        """Run ``payload`` through the route at ``path`` in-process; ``(status, body)``.

        Admitted and run as an HTTP POST of ``payload`` to that route would be (503 while
        draining, 429 at capacity, 413 over the body limit, 404 for no such route, 400 for a
        streaming route), from :meth:`start` on: no :meth:`listen` needed. ``timeout_ms`` is
        the deadline (408 past it; 0 means the server's timeout). The body is the output, a
        JOINED container for a route that ends with an ensemble, or the error message. Blocks
        only the calling thread, with the GIL released; RuntimeError when not running.
        """

    def submit(
        self, path: str, payload: bytes, timeout_ms: int, token: int, stored: bool = False
    ) -> None:
        """Start :meth:`call` without waiting; its answer comes out of :meth:`completions`.

        ``token`` names the call in that answer. Every submitted call is answered exactly
        once (503 when the engine stops first); RuntimeError when not running. With
        ``stored``, ``payload`` is a store reference whose objects the call takes over: they
        are released when it ends, also when it is refused (400 for a reference the stores
        refuse).
        """

    def completions(self, wait_ms: int) -> list[tuple[int, int, bytes]] | None:
        """The ``(token, status, body)`` of the calls answered since the last look.

        Waits up to ``wait_ms`` (GIL released) for the first one: an empty list when none
        came. None once the engine has stopped and every answer has been taken.
        """

    def shutdown(self, drain_timeout_ms: int) -> bool:
        """Drain (new requests 503) up to the timeout, then stop; True when nothing was left."""

    def fail_inflight(self, status: int, message: str) -> int:
        """Answer every in-flight task now with this status and message; returns how many."""

    def arena_path(self) -> str | None:
        """Path of the shared-memory arena file, or None when no stage uses the arena."""

    def stuck_workers_fd(self) -> int:
        """A descriptor readable while stuck workers wait to be taken; valid until shutdown.

        RuntimeError when not running.
        """

    def stuck_workers(self) -> list[tuple[int, int, int, int]]:
        """Workers busy past their forward timeout plus the grace, found since the last call.

        Each is ``(stage index, worker id, pid, busy ms)``; its link waits for it to be
        killed, its tasks have had 500.
        """

@final
class ArenaBuffer(Buffer):
    """A process's one mapping of the arena file, whole, as a writable buffer of bytes.

    Made by :meth:`ArenaClient.buffer`. Views of it (``memoryview``, numpy arrays) keep the
    mapping alive, also after the client is gone.
    """

    def __len__(self) -> int:
        """Bytes of the mapping (the arena file's length)."""

def set_numpy_handler(api: Any, handler: Any) -> Any:
    """Make ``handler`` NumPy's memory handler in the current context; the previous one."""

def numpy_failed_frees() -> int:
    """Frees of arena arrays whose block did not validate, in this process so far."""

@final
class ArenaClient:
    """A worker's handle on the server's arena: allocation and validation in Rust.

    Its store errors are the classes of :mod:`mosec.errors`: ``StoreFullError`` when no room
    appears within the wait, ``StoreReferenceError`` for a reference that is stale, forged,
    from another arena or cut short. The arena file itself fails with ``OSError``.
    """

    def __new__(cls, path: str) -> Self:
        """Map the arena file at ``path``."""

    @property
    def path(self) -> str:
        """Path of the arena file."""

    @property
    def capacity(self) -> int:
        """Usable bytes."""

    def buffer(self) -> ArenaBuffer:
        """The client's mapping of the whole file, to view with ``memoryview`` or numpy."""

    def alloc(self, size: int, timeout_ms: int) -> tuple[bytes, int]:
        """Lease ``size`` bytes (waiting up to the timeout); the reference and its offset."""

    def seal(self, reference_bytes: bytes) -> None:
        """Mark a leased object complete, readable from now on."""

    def locate(self, reference_bytes: bytes) -> tuple[int, int]:
        """Validate a sealed object's reference; its ``(offset, size)`` in the file."""

    def free(self, reference_bytes: bytes) -> None:
        """Free an object (drop one task's hold on a shared one)."""

    def numpy_handler(self, api: Any, min_size: int) -> Any:
        """NumPy's memory handler (a ``mem_handler`` capsule) for this arena.

        It puts array data of at least ``min_size`` bytes in the arena, held by the array;
        ``api`` is NumPy's ``_ARRAY_API`` capsule.
        """

    def share_held(self, offset: int) -> bytes:
        """Hand over the block an array of this process holds at ``offset``; its reference."""

    def share(self, reference_bytes: bytes) -> None:
        """Hand a sealed object over once more (an input passed straight through)."""

    def stats(self) -> tuple[int, int, int]:
        """``(capacity, used_bytes, objects)``."""
