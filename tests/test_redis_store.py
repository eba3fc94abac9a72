"""RedisShmIPCMixin against a real redis-server: round trips, key hygiene, the store itself."""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from redis_util import RedisServer, run_redis
from server_util import Server, StartServer, wait_until
from servers.store_objects import build, digest

from mosec.errors import StoreFullError, StoreReferenceError, StoreUnavailableError
from mosec.mixin import RedisShmIPCMixin, redis_worker
from mosec.store.codec import decode, encode
from mosec.store.redis import DEFAULT_TTL_MS, KEY_PREFIX, RedisStore, connect
from mosec.store.settings import REDIS_URL_ENV

PIPELINE = "store_pipeline.py"
#: How long the engine may take to delete the keys of a task that timed out.
RELEASE_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def start_pipeline(start_server: StartServer, url: str, *args: str, **env: str) -> Server:
    return start_server(PIPELINE, *args, env={"TEST_MIXIN": "redis", "TEST_REDIS_URL": url, **env})


def check(server: Server, request: dict[str, Any]) -> dict[str, Any]:
    """Send a request; the second stage must have received the object bit for bit."""
    response = server.post(json=request)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["digest"] == digest(build(request)), request
    return answer


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_round_trips_leave_no_keys(
    start_server: StartServer, redis_server: RedisServer, transport: str
) -> None:
    url = redis_server.url if transport == "tcp" else redis_server.unix_url
    server = start_pipeline(start_server, url)
    requests: list[dict[str, Any]] = [
        {"kind": "array", "n": 3 * 1024 * 1024, "seed": 1},  # 12 MiB float32
        {"kind": "array", "shape": [300, 200], "order": "F", "dtype": "float64"},
        {"kind": "array", "shape": [400, 300], "step": 2, "dtype": "int16"},
        {"kind": "array", "shape": [20000], "dtype": "datetime64[ns]"},
        {"kind": "dict", "n": 200_000, "seed": 3},
        {"kind": "bytes", "n": 1 << 20, "seed": 4},
    ]
    for request in requests:
        answer = check(server, request)
        assert answer["readonly"], request
        assert redis_server.our_keys() == [], request
    # Small outputs travel inline, as a pickle: nothing in Redis, a writable copy.
    assert not check(server, {"kind": "array", "n": 10})["readonly"]
    assert redis_server.dbsize() == 0


def test_errors_in_either_stage_leave_no_keys(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    server = start_pipeline(start_server, redis_server.url)
    big = {"kind": "dict", "n": 200_000}
    response = server.post(json={**big, "second": {"raise": "server"}})
    assert response.status_code == 500
    assert response.text == "internal error: asked to raise server"
    assert redis_server.our_keys() == []
    response = server.post(json={**big, "first": {"raise": "validation"}})
    assert response.status_code == 422
    assert redis_server.our_keys() == []
    check(server, big)  # the pipeline still works
    assert redis_server.our_keys() == []


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_engine_deletes_keys_of_a_task_that_timed_out_between_stages(
    start_server: StartServer, redis_server: RedisServer, tmp_path: Path, transport: str
) -> None:
    # The second stage is held busy by request A (past the server's timeout: its own forward
    # timeout is longer), so request B times out with its keys stored and never consumed.
    # The engine reaches Redis by the same URL as the workers, socket or TCP.
    url = redis_server.url if transport == "tcp" else redis_server.unix_url
    server = start_pipeline(start_server, url, "--timeout", "1500", TEST_SECOND_TIMEOUT_S="30")
    mark, hold = tmp_path / "a-started", tmp_path / "a-release"
    held = {"kind": "dict", "n": 100_000, "second": {"mark": str(mark), "hold": str(hold)}}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(server.post, json=held)
        wait_until(mark.exists, 20, "request A inside the second stage")
        assert redis_server.our_keys() == []  # A's keys were read and deleted (GETDEL)
        second = pool.submit(server.post, json={"kind": "dict", "n": 100_000})
        # B's two large buffers wait in Redis for a consumer that is busy.
        wait_until(lambda: len(redis_server.our_keys()) == 2, 20, "request B's keys")
        assert second.result(timeout=20).status_code == 408
        what = "the engine to delete B's keys"
        wait_until(lambda: not redis_server.our_keys(), RELEASE_TIMEOUT_S, what)
        assert not hold.exists()  # A still holds the stage: nobody but the engine deleted them
        hold.touch()
        assert first.result(timeout=20).status_code == 408
    check(server, {"kind": "array", "n": 100_000})
    assert redis_server.our_keys() == []


def test_two_redis_urls_in_one_server_stop_it_at_start(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    # Another database of the same Redis: a different URL, whose keys the engine cannot reach.
    first, second = redis_server.url, redis_server.url.rsplit("/", 1)[0] + "/1"
    env = {"TEST_MIXIN": "redis", "TEST_REDIS_URL": first, "TEST_SECOND_REDIS_URL": second}
    server = start_server(PIPELINE, env=env, wait=False)
    assert server.wait_exit() != 0, server.logs()
    errors = [record for record in server.json_logs() if record.get("level") == "ERROR"]
    assert len(errors) == 1, server.logs()
    message = errors[0]["message"]
    assert message.startswith("cannot start the server") and "one server uses one Redis" in message
    assert repr(first) in message and repr(second) in message
    assert "Traceback" not in server.logs()  # a clear error, not a crash
    assert "engine started" not in server.logs()
    assert redis_server.our_keys() == []


def test_store_keys_expiry_and_missing_keys(redis_server: RedisServer) -> None:
    store = RedisStore(connect(redis_server.url))
    other = RedisStore(connect(redis_server.unix_url))
    keys = store.put_many([b"x" * 100, memoryview(np.arange(10, dtype=np.float64))])
    assert len(set(keys + [other.new_key(), store.new_key()])) == 4
    assert all(key.startswith(KEY_PREFIX.encode()) for key in keys)
    client = redis_server.client()
    assert all(0 < client.pttl(key) <= DEFAULT_TTL_MS for key in keys)
    packed = store.pack_ids(keys)
    assert store.unpack_ids(memoryview(packed + b"meta"), 2) == (keys, len(packed))
    first, second = store.fetch(keys)
    assert bytes(first) == b"x" * 100
    assert np.array_equal(np.frombuffer(second, np.float64), np.arange(10))
    assert redis_server.our_keys() == []
    with pytest.raises(StoreReferenceError, match="is gone"):
        store.fetch(keys[:1])
    # The codec's references decode with the store that wrote them, any process's store.
    payload = encode(np.ones(100_000, np.float32), store)
    assert decode(payload, other).sum() == 100_000
    assert redis_server.our_keys() == []


def test_a_full_redis_is_a_503_class_error(redis_server: RedisServer) -> None:
    client = redis_server.client()
    store = RedisStore(connect(redis_server.url))
    client.config_set("maxmemory", "2mb")
    try:
        with pytest.raises(StoreFullError):
            store.put_many([bytes(4 << 20)])
    finally:
        client.config_set("maxmemory", "0")
    assert StoreFullError.code == 503
    assert redis_server.our_keys() == []


def test_an_unreachable_redis_is_a_503_class_error(tmp_path: Path) -> None:
    with run_redis(tmp_path) as gone:
        store = RedisStore(connect(gone.url))
        payload = encode(np.ones(1 << 16), store)
        gone.proc.kill()
        gone.proc.wait()
        # Its daemon died: writes and reads alike tell the request to retry elsewhere (503).
        with pytest.raises(StoreUnavailableError):
            store.put_many([bytes(1 << 17)])
        with pytest.raises(StoreUnavailableError):
            decode(payload, store)
    assert StoreUnavailableError.code == 503


def test_set_redis_url_reaches_the_class_and_spawned_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)

    class Stage(RedisShmIPCMixin):
        pass

    Stage.set_redis_url("redis://127.0.0.1:1/0")
    assert Stage._redis_url == "redis://127.0.0.1:1/0"
    assert RedisShmIPCMixin._redis_url is None
    assert os.environ[REDIS_URL_ENV] == "redis://127.0.0.1:1/0"
    assert Stage._mosec_store == "redis"

    class Unset(RedisShmIPCMixin):  # a Worker itself, as in mosec
        def forward(self, data: object) -> object:
            return data

    monkeypatch.delenv(REDIS_URL_ENV)
    monkeypatch.setattr(redis_worker, "_store", None)
    with pytest.raises(RuntimeError, match="set_redis_url"):
        Unset().serialize_ipc(b"data")
