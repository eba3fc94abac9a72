"""The OCR pipeline (examples/ocr) reads rendered text end to end, on the arena, batching lines.

A few small pictures with known text (one line upside down, one tilted) go to a real server
concurrently with two bad bodies; the test checks what was read, that lines of several requests
shared recognition batches, that the bad bodies got 400 while the rest of the burst was
answered, and that the arena is back to its idle use afterwards.
"""

from __future__ import annotations

import concurrent.futures
import sys

import httpx
from server_util import EXAMPLES, StartServer, wait_until

OCR = EXAMPLES / "ocr"
sys.path.insert(0, str(OCR))

import accuracy  # noqa: E402  (examples/ocr, on the path above)
import bundle  # noqa: E402
import numpy as np  # noqa: E402
import rendering  # noqa: E402
import scenes  # noqa: E402

#: Rounds of the small pictures sent in one burst: enough for the recogniser to batch.
ROUNDS = 3
SERVER_ARGS = ("--timeout", "60000", "--shm-size", "128M")
ARENA_ENV = {"OCR_IPC": "ShmIPCMixin", "OCR_INPLACE": "1"}
ARENA_USED = "mosec_service_shm_used_bytes"


def post(url: str, body: bytes) -> httpx.Response:
    """POST one body on a connection of its own (the burst's requests are concurrent)."""
    return httpx.post(url + "/inference", content=body, timeout=60.0)


def squeeze(text: str) -> str:
    """The text without spaces: the model sometimes drops the space after a short word."""
    return text.replace(" ", "")


def test_reads_rendered_text_batches_lines_and_refuses_corrupt_images(
    start_server: StartServer,
) -> None:
    server = start_server(OCR / "pipeline.py", *SERVER_ARGS, env=ARENA_ENV)
    images = rendering.render_all(scenes.SMALL)
    # Ready means warmed up: what the warm-ups leased in the arena (shm_empty arrays they never
    # handed over) is already back, so the idle arena holds nothing.
    assert server.metric(ARENA_USED) == 0
    truncated = images[0].body[: len(images[0].body) // 2]
    bodies = [image.body for image in images] * ROUNDS + [b"not an image", truncated]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: post(server.url, body), bodies))

    good, bad = answers[:-2], answers[-2:]
    assert [r.status_code for r in bad] == [400, 400], [r.text for r in bad]
    assert all(r.text.startswith("decoding error: ") for r in bad), [r.text for r in bad]
    assert [r.status_code for r in good] == [200] * len(good), [r.text for r in good]
    pairs = []
    for index, response in enumerate(good):
        image, answer = images[index % len(images)], response.json()
        pairs.append((image.expected, answer["text"]))
        # Every character of every line, in reading order (the upside-down line included).
        assert squeeze(answer["text"]) == squeeze(image.expected), (image.name, answer)
        assert [answer["width"], answer["height"]] == list(image.size)
        assert len(answer["lines"]) == len(image.lines)
        for line in answer["lines"]:
            assert 0.5 <= line["confidence"] <= 1.0, line
            assert len(line["box"]) == 4, line
            assert all(0 <= x <= image.size[0] and 0 <= y <= image.size[1] for x, y in line["box"])
    assert accuracy.accuracy(pairs) >= 0.95

    # Lines of several requests were read in one recognition batch.
    batches = server.metric("mosec_service_batch_size_count", stage="Recognize_4")
    requests = server.metric("mosec_service_batch_size_sum", stage="Recognize_4")
    assert requests > batches > 0, (requests, batches)
    assert server.metric("mosec_service_ipc_bytes_total", carried="reference") > 0
    wait_until(lambda: server.metric(ARENA_USED) == 0, 10, "the arena empty again")
    assert server.terminate() == 0


def test_bundle_round_trip_is_one_numbin_array() -> None:
    image = np.arange(2000 * 1500 * 3, dtype=np.uint64).astype(np.uint8).reshape(1500, 2000, 3)
    boxes = np.random.default_rng(0).random((5, 4, 2), dtype=np.float32)
    packed = bundle.pack({"image": image, "boxes": boxes, "none": np.zeros((0,), np.int32)})
    # One plain 2-D uint8 array: what NumBinIPCMixin carries (each dimension in 16 bits).
    assert packed.dtype == np.uint8 and packed.ndim == 2 and max(packed.shape) < 2**16
    packed.setflags(write=False)  # as a consumer gets it from the arena
    fields = bundle.unpack(packed)
    np.testing.assert_array_equal(fields["image"], image)
    np.testing.assert_array_equal(fields["boxes"], boxes)
    assert fields["none"].shape == (0,) and not fields["image"].flags.writeable
    assert fields["image"].base is not None  # a view into the bundle, not a copy


def test_character_accuracy() -> None:
    assert accuracy.distance("kitten", "sitting") == 3
    assert accuracy.score("Launch at 9:15", "Launch  at9:15") == (1, 14)
    assert accuracy.accuracy([("abcd", "abcd"), ("abcd", "")]) == 0.5
    assert accuracy.accuracy([("ab", "completely different")]) == 0.0
