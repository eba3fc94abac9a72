"""The Rust engine (see docs/engine-interface.md)."""

from typing import final

from typing_extensions import Self

__all__ = ["Engine", "default_config", "version"]

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
