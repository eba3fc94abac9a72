"""The server's one configuration, built once, and what it emits for the engine and the workers.

Flow (see ARCHITECTURE.md, "Configuration"): :mod:`mosec.args` parses the flags and ``MOSEC_*``
variables (defaults from ``mosec._engine.default_config()``, written once in Rust);
:meth:`ServerConfig.from_flags` turns them into this typed object; the server then asks it for
the engine's JSON config (:meth:`ServerConfig.engine_config`) and for each worker process's
settings (:attr:`ServerConfig.log_json`, :meth:`ServerConfig.forward_timeout_s`, the store
settings of :mod:`mosec.store.settings`). Nothing else reads the parsed flags.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Any

from mosec.args import FLAGS


@dataclass(frozen=True)
class ServerConfig:
    """Every server-wide setting, typed; field names are the engine config's keys.

    Attributes:
        path: the directory for the worker socket; ``None`` for a new temporary one.
        address: the address HTTP binds.
        port: the port HTTP binds (0: the OS picks).
        namespace: the prefix of the metric names.
        timeout_ms: the request deadline, and every stage's default ``forward`` timeout.
        capacity: the most requests in flight (one more is 429).
        max_request_size: the largest body in bytes (413).
        wait_ms: the default ``max_wait_time`` of batching stages.
        header_timeout_ms: how long a client may take to send a request head.
        max_connections: the most HTTP connections open at once (more wait in the backlog).
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
        compression: gzip/zstd bodies both ways.
        shm_size: the arena's bytes.
        shm_wait_ms: how long a producer waits for room in a full arena before its request fails.
        shm_alloc_min: the smallest numpy array an arena stage's ``forward`` makes in the arena
            (0: none).
        dry_run: run the examples through the stages instead of serving.
    """

    path: str | None
    address: str
    port: int
    namespace: str
    timeout_ms: int
    capacity: int
    max_request_size: int
    wait_ms: int
    header_timeout_ms: int
    max_connections: int
    log_level: str
    compression: bool
    shm_size: int
    shm_wait_ms: int
    shm_alloc_min: int
    dry_run: bool

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> ServerConfig:
        """Build it from :func:`mosec.args.parse_arguments`'s result.

        ``--debug`` is ``--log-level debug``.
        """
        values = {flag.config_key or flag.dest: getattr(args, flag.dest) for flag in FLAGS}
        if values.pop("debug"):
            values["log_level"] = "debug"
        return cls(**values)

    @property
    def log_json(self) -> bool:
        """JSON lines, except with the debug level (readable text for a person at a terminal)."""
        return self.log_level != "debug"

    def forward_timeout_s(self, stage_timeout_s: float) -> float:
        """A stage's ``forward`` timeout in seconds: its own, or the request deadline when 0."""
        return float(stage_timeout_s) if stage_timeout_s else self.timeout_ms / 1000

    def engine_config(self, **parts: Any) -> dict[str, Any]:
        """The engine's config: every setting of this object the engine reads, plus ``parts``.

        Args:
            **parts: what the server adds (``socket_path``, ``stages``, ``routes``, ``openapi``,
                ``swagger_dir`` and the store settings).
        """
        config = {
            field.name: getattr(self, field.name)
            for field in fields(self)
            if field.name not in _SERVER_ONLY
        }
        config["log_json"] = self.log_json
        config.update(parts)
        return config


#: Settings only the Python side uses (the engine has no such key).
_SERVER_ONLY = frozenset({"path", "dry_run"})
