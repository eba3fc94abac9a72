"""The Rust engine (see docs/engine-interface.md)."""

from typing import final

from typing_extensions import Self

__all__ = [
    "ArenaClient",
    "Engine",
    "StoreFullError",
    "StoreReferenceError",
    "default_config",
    "version",
]

def default_config() -> str:
    """JSON of the engine config with every default."""

def version() -> str:
    """The crate version, e.g. ``"0.1.0"``."""

@final
class Engine:
    """The HTTP server, task table, batcher and worker links, in Rust-owned threads."""

    def __new__(cls, config_json: str) -> Self:
        """Parse and validate the config; ValueError when it is invalid."""

    def start(self) -> None:
        """Bind HTTP and the worker socket and start the threads; OSError on a taken port."""

    def port(self) -> int:
        """The HTTP port bound (useful with port 0)."""

    def is_ready(self) -> bool:
        """Whether every stage has all its workers connected (the rule of ``GET /``)."""

    def connected_workers(self) -> list[int]:
        """The connected worker count of each stage, by stage index."""

    def shutdown(self, drain_timeout_ms: int) -> bool:
        """Drain (new requests 503) up to the timeout, then stop; True when nothing was left."""

    def fail_inflight(self, status: int, message: str) -> int:
        """Answer every in-flight task now with this status and message; returns how many."""

    def arena_path(self) -> str | None:
        """Path of the shared-memory arena file, or None when no stage uses the arena."""

class StoreFullError(MemoryError):
    """The store has no room for the object within the wait allowed."""

class StoreReferenceError(ValueError):
    """A store reference is stale, forged, or from another arena."""

@final
class ArenaClient:
    """A worker's handle on the server's arena: allocation and validation in Rust."""

    def __new__(cls, path: str) -> Self:
        """Map the arena file at ``path``."""

    @property
    def path(self) -> str:
        """Path of the arena file."""

    @property
    def capacity(self) -> int:
        """Usable bytes."""

    def alloc(self, size: int, timeout_ms: int) -> tuple[bytes, int]:
        """Lease ``size`` bytes (waiting up to the timeout); the reference and its offset."""

    def seal(self, reference_bytes: bytes) -> None:
        """Mark a leased object complete, readable from now on."""

    def locate(self, reference_bytes: bytes) -> tuple[int, int]:
        """Validate a sealed object's reference; its ``(offset, size)`` in the file."""

    def free(self, reference_bytes: bytes) -> None:
        """Free an object."""

    def stats(self) -> tuple[int, int, int]:
        """``(capacity, used_bytes, objects)``."""
