"""The server's command-line flags and their ``MOSEC_*`` environment variables.

Every flag can also be set as ``MOSEC_<NAME>`` (``--max-request-size`` is
``MOSEC_MAX_REQUEST_SIZE``). A flag on the command line beats the variable, which beats the
default. The defaults are read from the engine (``mosec._engine.default_config()``) so that each
one is written once, in Rust. Unknown arguments are left for the user's own parser.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from mosec import _engine
from mosec.log import level_number

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(text: str) -> bool:
    """Read a boolean written as a word.

    Args:
        text: one of ``true/1/yes/on`` or ``false/0/no/off`` (any case).

    Raises:
        ValueError: for any other word.
    """
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected one of true/false/1/0/yes/no/on/off, got {text!r}")


def _log_level(text: str) -> str:
    level_number(text)  # raises ValueError for an unknown word
    return text.lower()


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a port number (0-65535), got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be zero or a positive integer, got {text!r}")
    return value


def _named(name: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Wrap a parser so argparse's errors say "invalid <name> value" instead of its __name__."""

    def wrapper(text: str) -> Any:
        return parse(text)

    wrapper.__name__ = name
    return wrapper


@dataclass(frozen=True)
class _Flag:
    """One flag: its name, the engine config key holding its default, its parser and help."""

    name: str
    config_key: str | None
    parse: Callable[[str], Any]
    help: str

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return "MOSEC_" + self.dest.upper()


def parse_size(text: str) -> int:
    """Parse a byte size: a number of bytes, or one with a K, M, G or T suffix (powers of 1024).

    Args:
        text: e.g. ``"1073741824"``, ``"512M"``, ``"2G"`` (a trailing ``B``/``iB`` is allowed).

    Returns:
        The size in bytes.

    Raises:
        ValueError: when the text is not such a size, or is zero.
    """
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = cleaned, ""
    if cleaned and cleaned[-1] in units:
        number, unit = cleaned[:-1], cleaned[-1]
    try:
        value = int(float(number) * units[unit])
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use bytes, or a suffix: 512M, 2G)") from None
    if value <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return value


def parse_size_or_off(text: str) -> int:
    """Parse a size like :func:`parse_size`, or ``0``/``off`` for "none" (0).

    Raises:
        ValueError: when the text is neither.
    """
    if text.strip().lower() in ("0", "off"):
        return 0
    return parse_size(text)


_POSITIVE = _named("positive integer", _positive_int)
_SIZE = _named("size", parse_size)
_SIZE_OR_OFF = _named("size or off", parse_size_or_off)
_NON_NEGATIVE = _named("non-negative integer", _non_negative_int)
_PORT = _named("port", _port)
_LOG_LEVEL = _named("log level", _log_level)

_FLAGS = (
    _Flag("path", None, str, "directory for the worker sockets (default: a new temporary one)"),
    _Flag("capacity", "capacity", _POSITIVE, "most requests in flight; one more gets 429"),
    _Flag("timeout", "timeout_ms", _POSITIVE, "request deadline in milliseconds (408)"),
    _Flag("wait", "wait_ms", _NON_NEGATIVE, "default batch max_wait_time in milliseconds"),
    _Flag("address", "address", str, "address the HTTP server binds"),
    _Flag("port", "port", _PORT, "port the HTTP server binds"),
    _Flag("namespace", "namespace", str, "prefix of the Prometheus metric names"),
    _Flag("log-level", "log_level", _LOG_LEVEL, "debug, info, warning or error"),
    _Flag("max-request-size", "max_request_size", _POSITIVE, "largest body in bytes (413)"),
    _Flag("shm-size", "shm_size", _SIZE, "bytes of the shared-memory arena (e.g. 512M, 2G)"),
    _Flag(
        "header-timeout",
        "header_timeout_ms",
        _POSITIVE,
        "milliseconds a client has to send a whole request head (also the idle keep-alive "
        "limit); a slower client is disconnected",
    ),
    _Flag(
        "max-connections",
        "max_connections",
        _POSITIVE,
        "most HTTP connections open at once; more wait in the kernel's backlog until one closes",
    ),
    _Flag(
        "shm-wait",
        "shm_wait_ms",
        _NON_NEGATIVE,
        "milliseconds a stage waits for room in a full arena before its request fails (503)",
    ),
    _Flag(
        "shm-alloc-min",
        "shm_alloc_min",
        _SIZE_OR_OFF,
        "smallest numpy array a stage with an arena mixin makes in the arena during forward, "
        "so that returning it hands it over without a copy (0 or off: never)",
    ),
)


#: Booleans: ``--name`` alone is true, ``--name false`` (or the variable) sets it either way.
_SWITCHES = (
    _Flag("debug", None, parse_bool, "debug logs in readable text (same as --log-level debug)"),
    _Flag(
        "compression",
        "compression",
        parse_bool,
        "accept gzip/zstd request bodies and compress responses by accept-encoding",
    ),
    _Flag(
        "dry-run",
        None,
        parse_bool,
        "run every route's warm-up examples through its stages without HTTP, print the "
        "timings and exit",
    ),
)
_BOOLEAN = _named("boolean", parse_bool)

#: Every flag and switch: the one mapping from a flag to its engine config key (``None`` for the
#: settings only the server reads), used by :class:`mosec.config.ServerConfig`.
FLAGS = _FLAGS + _SWITCHES


def default_config() -> dict[str, Any]:
    """The engine's configuration with every default, as a dict."""
    config: dict[str, Any] = json.loads(_engine.default_config())
    return config


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """Build the flag parser whose defaults already include the environment.

    Args:
        environ: the variables to read (``os.environ`` when omitted).

    Returns:
        The parser. A ``MOSEC_*`` variable with a bad value makes it exit with a usage error.
    """
    environ = os.environ if environ is None else environ
    defaults = default_config()
    parser = argparse.ArgumentParser(
        description="mosec model server",
        # Abbreviations are accepted as mosec accepts them ("--time 5000" is --timeout): a
        # script's own flag must not be a prefix of one of ours (or it is taken as ours).
        allow_abbrev=True,
    )
    for flag in _FLAGS:
        default = defaults[flag.config_key] if flag.config_key else None
        parser.add_argument(
            f"--{flag.name}",
            dest=flag.dest,
            type=flag.parse,
            default=_from_env(parser, flag.env, flag.parse, environ, default),
            help=f"{flag.help} [env {flag.env}; default %(default)s]",
        )
    for switch in _SWITCHES:
        default = defaults[switch.config_key] if switch.config_key else False
        parser.add_argument(
            f"--{switch.name}",
            dest=switch.dest,
            nargs="?",
            const=True,
            type=_BOOLEAN,
            default=_from_env(parser, switch.env, parse_bool, environ, default),
            help=f"{switch.help} [env {switch.env}; default %(default)s]",
        )
    return parser


def _from_env(
    parser: argparse.ArgumentParser,
    name: str,
    parse: Callable[[str], Any],
    environ: Mapping[str, str],
    default: Any,
) -> Any:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        return parse(text)
    except ValueError as err:
        parser.error(f"environment variable {name}={text!r}: {err}")


def parse_arguments(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[argparse.Namespace, list[str]]:
    """Parse the server's flags, leaving the rest for the user.

    Args:
        argv: the arguments (``sys.argv[1:]`` when omitted).
        environ: the variables to read (``os.environ`` when omitted).

    Returns:
        The parsed flags (with ``log_level`` forced to ``debug`` by ``--debug``) and the
        arguments that are not ours.
    """
    args, rest = build_parser(environ).parse_known_args(argv)
    if args.debug:
        args.log_level = "debug"
    return args, rest
