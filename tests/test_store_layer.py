"""The store layer in one process: one exception class per store error, and the old import paths.

An engine started in this process makes a small arena; the tests map it as a worker does.
"""

from __future__ import annotations

import gc
import json
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from mosec import _engine, errors
from mosec.store import arena, codec, mapping, settings
from mosec.store import redis as store_redis

#: Bytes of the engine's test arena.
ARENA_BYTES = 1 << 20


@pytest.fixture(scope="module")
def arena_path() -> Iterator[str]:
    """The arena file of an engine started in this process (it serves no HTTP)."""
    with tempfile.TemporaryDirectory(prefix="mosec_store_") as folder:
        config = json.loads(_engine.default_config())
        config.update(
            address="127.0.0.1",
            port=0,
            socket_path=str(Path(folder) / "engine.sock"),
            use_arena=True,
            shm_size=ARENA_BYTES,
            log_level="error",
            stages=[{"name": "A", "num": 1, "max_batch_size": 1, "max_wait_time_ms": 0}],
            routes=[{"path": "/inference", "stages": [0], "mime": "application/json"}],
        )
        engine = _engine.Engine(json.dumps(config))
        engine.start()
        try:
            path = engine.arena_path()
            assert path
            yield path
        finally:
            engine.shutdown(0)


@pytest.fixture
def arena_map(arena_path: str) -> mapping.ArenaMapping:
    """A mapping of the test arena that does not wait for room."""
    return mapping.ArenaMapping(arena_path, wait_ms=0)


def test_the_extension_defines_no_exception_of_its_own() -> None:
    public = [name for name in dir(_engine) if not name.startswith("_")]
    assert public
    for name in public:
        if not name.isupper():  # the wire format's numbers are plain ints and strings
            assert getattr(_engine, name).__module__ == "mosec._engine", name
    assert not any(
        isinstance(value, type) and issubclass(value, BaseException)
        for value in vars(_engine).values()
    )


def test_a_full_arena_raises_the_user_facing_store_full_error(
    arena_map: mapping.ArenaMapping,
) -> None:
    with pytest.raises(errors.StoreFullError) as caught:
        arena_map.alloc(2 * ARENA_BYTES)
    assert type(caught.value) is errors.StoreFullError
    assert str(caught.value).startswith("shared-memory arena: ")
    assert errors.error_response(caught.value)[0] == 503


def test_a_bad_arena_reference_raises_the_user_facing_reference_error(
    arena_map: mapping.ArenaMapping,
) -> None:
    reference = arena_map.put(memoryview(bytes(100)))
    arena_map.free(reference)
    for bad in (reference, bytes(32), b"short"):
        with pytest.raises(errors.StoreReferenceError) as caught:
            arena_map.readable(bad)
        assert type(caught.value) is errors.StoreReferenceError
    with pytest.raises(errors.StoreReferenceError):
        arena_map.free(reference)
    assert arena_map.stats()[1:] == (0, 0)


def arena_mappings(path: str) -> int:
    """How many mappings of the arena file this process has."""
    return sum(path in line for line in Path("/proc/self/maps").read_text().splitlines())


def test_python_views_share_the_clients_mapping_and_keep_it_alive(arena_path: str) -> None:
    gc.collect()  # mappings of earlier tests' fixtures, held only by cycles (tracebacks)
    before = arena_mappings(arena_path)  # the engine's own, and any still held
    client = _engine.ArenaClient(arena_path)
    buffer = client.buffer()
    view = memoryview(buffer)
    assert arena_mappings(arena_path) == before + 1  # the client's, nothing more
    assert len(view) == len(buffer) == Path(arena_path).stat().st_size
    assert not view.readonly and view.format == "B" and view.ndim == 1

    reference, offset = client.alloc(4096, 0)
    array = np.frombuffer(buffer, dtype=np.uint32, count=1024, offset=offset)
    array[:] = np.arange(1024, dtype=np.uint32)
    client.seal(reference)
    assert client.locate(reference) == (offset, 4096)

    # The views outlive the client and the buffer object: the mapping stays until the last.
    del client, buffer
    gc.collect()
    assert arena_mappings(arena_path) == before + 1
    assert np.array_equal(array, np.arange(1024)) and view[offset + 4] == 1
    del view
    gc.collect()
    assert arena_mappings(arena_path) == before + 1  # still held by the array
    mapping.ArenaMapping(arena_path, wait_ms=0).free(reference)
    del array
    gc.collect()
    assert arena_mappings(arena_path) == before


def test_ids_that_do_not_unpack_are_reference_errors(arena_map: mapping.ArenaMapping) -> None:
    arena_store = arena.ArenaStore(arena_map)
    # redis-py connects on the first command: unpacking ids needs no server.
    redis_objects = store_redis.RedisStore(redis.Redis())
    cut_short = [
        lambda: arena_store.unpack_ids(memoryview(bytes(arena.ID_LEN - 1)), 1),
        lambda: redis_objects.unpack_ids(memoryview(b"\x05"), 1),
        lambda: redis_objects.unpack_ids(memoryview(struct.pack("<H", 5) + b"abc"), 1),
        lambda: codec.decode(b"\x01\x01", arena_store),
        lambda: codec.decode(codec.HEAD.pack(arena.KIND, 0), arena_store),
        lambda: codec.decode(codec.HEAD.pack(arena.KIND, 1) + bytes(8), arena_store),
    ]
    for unpack in cut_short:
        with pytest.raises(errors.StoreReferenceError):
            unpack()


def test_the_server_refuses_two_redis_urls() -> None:
    class First:
        _mosec_store = "redis"
        _redis_url = "redis://127.0.0.1:1/0"

    class Second(First):
        _redis_url = "redis://127.0.0.1:1/1"

    class Again(First):
        pass

    found = settings.engine_settings([First, Again])
    assert found["redis_url"] == First._redis_url
    with pytest.raises(ValueError) as caught:
        settings.engine_settings([First, Again, Second])
    assert First._redis_url in str(caught.value) and Second._redis_url in str(caught.value)


def test_the_mixins_import_from_mosec_mixin_as_before() -> None:
    import mosec.mixin
    from mosec.mixin import shm_worker

    for name in mosec.mixin.__all__:
        mixin = getattr(mosec.mixin, name)
        assert mixin.__name__ == name
    assert shm_worker.ShmIPCMixin is mosec.mixin.ShmIPCMixin
