"""The flags and their ``MOSEC_*`` variables: CLI beats env beats the engine's defaults."""

from __future__ import annotations

import json

import pytest
from server_util import StartServer

from mosec import _engine
from mosec.args import parse_arguments, parse_bool
from mosec.config import ServerConfig

DEFAULTS = json.loads(_engine.default_config())
STAGE = [{"name": "Echo_1", "num": 1, "max_batch_size": 1, "max_wait_time_ms": 0}]
ROUTE = [{"path": "/inference", "stages": [0], "mime": "application/json"}]
SWITCHES = [
    ("--debug", "debug", "MOSEC_DEBUG"),
    ("--compression", "compression", "MOSEC_COMPRESSION"),
    ("--dry-run", "dry_run", "MOSEC_DRY_RUN"),
]


def parse(argv: list[str], env: dict[str, str] | None = None):
    return parse_arguments(argv, env or {})


def test_defaults_come_from_the_engine() -> None:
    args, rest = parse([])
    assert rest == []
    assert args.port == DEFAULTS["port"]
    assert args.address == DEFAULTS["address"]
    assert args.timeout == DEFAULTS["timeout_ms"]
    assert args.wait == DEFAULTS["wait_ms"]
    assert args.capacity == DEFAULTS["capacity"]
    assert args.namespace == DEFAULTS["namespace"]
    assert args.max_request_size == DEFAULTS["max_request_size"]
    assert args.log_level == DEFAULTS["log_level"]
    assert args.debug is False
    assert args.path is None


def test_the_documented_defaults() -> None:
    args, _ = parse([])
    assert (args.port, args.address, args.timeout, args.wait) == (8000, "0.0.0.0", 3000, 10)
    assert (args.capacity, args.namespace) == (1024, "mosec_service")
    assert args.max_request_size == 10 * 1024 * 1024


def test_env_beats_default_and_cli_beats_env() -> None:
    env = {"MOSEC_PORT": "9001", "MOSEC_MAX_REQUEST_SIZE": "2048", "MOSEC_NAMESPACE": "from_env"}
    args, _ = parse([], env)
    assert (args.port, args.max_request_size, args.namespace) == (9001, 2048, "from_env")
    args, _ = parse(["--port", "9002", "--max-request-size", "4096"], env)
    assert (args.port, args.max_request_size, args.namespace) == (9002, 4096, "from_env")


def test_every_flag_has_a_variable() -> None:
    env = {
        "MOSEC_PATH": "/tmp/x",
        "MOSEC_CAPACITY": "7",
        "MOSEC_TIMEOUT": "1234",
        "MOSEC_WAIT": "5",
        "MOSEC_ADDRESS": "127.0.0.2",
        "MOSEC_PORT": "1",
        "MOSEC_NAMESPACE": "ns",
        "MOSEC_LOG_LEVEL": "warning",
        "MOSEC_MAX_REQUEST_SIZE": "9",
    }
    args, _ = parse([], env)
    assert (args.path, args.capacity, args.timeout, args.wait) == ("/tmp/x", 7, 1234, 5)
    assert (args.address, args.port, args.namespace) == ("127.0.0.2", 1, "ns")
    assert (args.log_level, args.max_request_size) == ("warning", 9)


@pytest.mark.parametrize("word", ["true", "1", "yes", "on", "TRUE", " On "])
def test_true_words(word: str) -> None:
    assert parse_bool(word) is True
    args, _ = parse([], {"MOSEC_DEBUG": word})
    assert args.debug is True and args.log_level == "debug"


@pytest.mark.parametrize("word", ["false", "0", "no", "off", "False"])
def test_false_words(word: str) -> None:
    assert parse_bool(word) is False
    args, _ = parse([], {"MOSEC_DEBUG": word})
    assert args.debug is False and args.log_level == "info"


def test_debug_flag_forms() -> None:
    assert parse(["--debug"])[0].debug is True
    assert parse(["--debug", "false"])[0].debug is False
    assert parse(["--debug=off"], {"MOSEC_DEBUG": "on"})[0].debug is False
    assert parse(["--debug"], {"MOSEC_DEBUG": "off"})[0].debug is True


@pytest.mark.parametrize(("flag", "dest", "variable"), SWITCHES)
def test_switches_take_the_same_forms(flag: str, dest: str, variable: str) -> None:
    assert getattr(parse([])[0], dest) is False
    assert getattr(parse([flag])[0], dest) is True
    assert getattr(parse([flag, "no"])[0], dest) is False
    assert getattr(parse([], {variable: "yes"})[0], dest) is True
    assert getattr(parse([f"{flag}=0"], {variable: "1"})[0], dest) is False


def test_compression_default_comes_from_the_engine() -> None:
    assert parse([])[0].compression is DEFAULTS["compression"]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MOSEC_DEBUG": "maybe"}, "MOSEC_DEBUG"),
        ({"MOSEC_COMPRESSION": "gzip"}, "MOSEC_COMPRESSION"),
        ({"MOSEC_DRY_RUN": "perhaps"}, "MOSEC_DRY_RUN"),
        ({"MOSEC_PORT": "eighty"}, "MOSEC_PORT"),
        ({"MOSEC_PORT": "70000"}, "MOSEC_PORT"),
        ({"MOSEC_CAPACITY": "0"}, "MOSEC_CAPACITY"),
        ({"MOSEC_LOG_LEVEL": "loud"}, "MOSEC_LOG_LEVEL"),
    ],
)
def test_bad_variables_are_clear_errors(
    env: dict[str, str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse([], env)
    assert exit_info.value.code == 2
    assert needle in capsys.readouterr().err


def test_bad_flags_are_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--timeout", "soon"])
    assert "--timeout" in capsys.readouterr().err


def test_user_flags_pass_through() -> None:
    args, rest = parse(["--model", "resnet", "--port", "8080", "--path-to-weights", "w.bin"])
    assert args.port == 8080
    assert rest == ["--model", "resnet", "--path-to-weights", "w.bin"]
    # Abbreviations are ours, as in mosec 0.9.8: "--time" is "--timeout".
    args, rest = parse(["--time", "5000", "--model", "m"])
    assert args.timeout == 5000 and rest == ["--model", "m"]


def test_precedence_end_to_end(start_server: StartServer) -> None:
    env = {"MOSEC_NAMESPACE": "from_env", "MOSEC_MAX_REQUEST_SIZE": "1000"}
    server = start_server("behave.py", "--max-request-size", "2000", env=env)
    body = b"[" + b"1," * 700 + b"1]"
    assert 1000 < len(body) <= 2000
    assert server.post(content=body).status_code == 200  # the CLI's 2000 beat the env's 1000
    too_large = server.post(content=b"1" * 2001)
    assert too_large.status_code == 413
    # Its body was left unread: the connection closes, and says so, so that the client does
    # not send its next request on it.
    assert too_large.headers["connection"] == "close"
    # The env's namespace beat the default.
    assert server.metric("from_env_remaining_task") == 0
    assert "from_env_throughput" in server.metrics()
    assert "mosec_service_" not in server.metrics()


def test_one_config_emits_what_the_engine_reads() -> None:
    args, _ = parse(["--timeout", "5000", "--debug"], {"MOSEC_SHM_WAIT": "250"})
    config = ServerConfig.from_flags(args)
    assert (config.timeout_ms, config.shm_wait_ms, config.log_level) == (5000, 250, "debug")
    assert not config.log_json  # debug logs are text, for a person
    engine = config.engine_config(socket_path="/tmp/x.sock")
    assert engine["timeout_ms"] == 5000 and engine["log_json"] is False
    assert engine["socket_path"] == "/tmp/x.sock"
    # Only keys the engine knows (it refuses unknown ones), and every flag it has a key for.
    assert set(engine) <= set(DEFAULTS)
    assert {"address", "port", "capacity", "wait_ms", "shm_size", "shm_wait_ms"} <= set(engine)
    # A stage's forward timeout: its own, or the request deadline.
    assert (config.forward_timeout_s(0), config.forward_timeout_s(2)) == (5.0, 2.0)
    _engine.Engine(json.dumps(config.engine_config(routes=ROUTE, stages=STAGE)))
