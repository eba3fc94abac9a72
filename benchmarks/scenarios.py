"""Scenarios: what one benchmark measures.

A scenario names the request a client sends, the worker graph the server runs (``spec``, handed to
the target script as JSON), the default load (concurrency) and what a correct answer contains.
Every target runs the same scenario with the same request and load, so their numbers compare.
"""

import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

MIB = 1 << 20


@dataclass(frozen=True)
class Scenario:
    """One workload, the same for every target.

    Attributes:
        name: the name given to ``--scenario``.
        description: one line for the table and the README.
        kind: the worker graph the target script builds (echo, pipeline, tensor, batch, vision,
            ocr).
        request: the JSON document POSTed by every request.
        expect: keys and values a correct JSON answer must contain (checked once per server).
        concurrency: default number of open connections of the load generator.
        ipc: what crosses between stages: ``none`` (one stage), ``json`` or ``tensor``; decides
            which IPC mixins can run it and which would only repeat the pickle target.
        params: the scenario's server-side parameters, merged into ``spec``.
        timeout_s: per-request timeout for the load generator and the server.
        min_duration_s: shortest measured run, even in ``--quick`` (a 192 MiB request takes
            about a second here, so a 2 s run would measure one or two requests).
        missing: why the scenario cannot run yet, or ``None`` when it can.
        raw_body: makes a non-JSON request body (an image, say); ``request`` is unused then.
        content_type: the request's content type.
    """

    name: str
    description: str
    kind: str
    request: Dict[str, Any]
    expect: Dict[str, Any]
    concurrency: int
    ipc: str = "none"
    params: Dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 10.0
    min_duration_s: int = 1
    missing: Optional[str] = None
    raw_body: Optional[Callable[[], bytes]] = None
    content_type: str = "application/json"

    @property
    def spec(self) -> Dict[str, Any]:
        """The server side of the scenario, as handed to the target script."""
        return {"kind": self.kind, **self.params}

    @property
    def body(self) -> bytes:
        """The HTTP request body."""
        if self.raw_body is not None:
            return self.raw_body()
        return json.dumps(self.request).encode()

    def check(self, answer: Any) -> Optional[str]:
        """Return why ``answer`` is wrong, or ``None`` when it has every expected key and value."""
        if not isinstance(answer, dict):
            return f"expected a JSON object, got {answer!r:.80}"
        for key, value in self.expect.items():
            if key not in answer:
                return f"missing key {key!r} in {answer!r:.80}"
            if value is not None and answer[key] != value:
                return f"{key!r} is {answer[key]!r}, expected {value!r}"
        return None


@functools.lru_cache(maxsize=1)
def _vision_image() -> bytes:
    """One of the demo's sample pictures (scikit-image's astronaut, JPEG-encoded in memory).

    Cached: encoding the samples takes a while, and the body is asked for on every run.
    """
    folder = str(Path(__file__).resolve().parent.parent / "examples" / "vision")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    from images import sample_images  # the demo's own module

    return next(image.body for image in sample_images() if image.name.startswith("astronaut"))


@functools.lru_cache(maxsize=1)
def _ocr_image() -> bytes:
    """The OCR scenario's picture: 3 MP with three lines of text, rendered in memory.

    Cached: rendering takes a while, and the body is asked for on every run.
    """
    folder = str(Path(__file__).resolve().parent.parent / "examples" / "ocr")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import rendering  # the demo's own modules
    import scenes

    return rendering.render(scenes.BENCHMARK).body


def _tensor(name: str, size: int, concurrency: int, timeout_s: float, min_s: int) -> Scenario:
    """A two-stage tensor hand-off: stage 1 makes ``size`` bytes of float32, stage 2 reads them."""
    elements = size // 4
    return Scenario(
        name=name,
        description=f"2 stages, stage 1 makes a {size // MIB} MiB float32 tensor, stage 2 reads it",
        kind="tensor",
        request={"value": 1.0},
        expect={"elements": elements, "first": 1.0},
        concurrency=concurrency,
        ipc="tensor",
        params={"tensor_bytes": size},
        timeout_s=timeout_s,
        min_duration_s=min_s,
    )


_ECHO = {"id": 7, "text": "hello mosec", "tags": ["a", "b"]}

SCENARIOS: Tuple[Scenario, ...] = (
    Scenario(
        name="echo",
        description="1 stage, small JSON echoed back",
        kind="echo",
        request=_ECHO,
        expect=_ECHO,
        concurrency=16,
    ),
    Scenario(
        name="pipeline",
        description="3 stages passing a small JSON document",
        kind="pipeline",
        request=_ECHO,
        expect={"hops": 3, "id": 7},
        concurrency=16,
        ipc="json",
    ),
    _tensor("tensor-1m", MIB, concurrency=8, timeout_s=10.0, min_s=1),
    _tensor("tensor-12m", 12 * MIB, concurrency=4, timeout_s=30.0, min_s=2),
    _tensor("tensor-192m", 192 * MIB, concurrency=2, timeout_s=60.0, min_s=5),
    Scenario(
        name="batch",
        description="1 stage, dynamic batching (batch 16, wait 10 ms) under 64 connections",
        kind="batch",
        request={"x": [0.5] * 64},
        expect={"y": None, "batch": None},
        concurrency=64,
        params={"max_batch_size": 16, "max_wait_ms": 10},
    ),
    Scenario(
        name="vision",
        description="the demo's pipeline: JPEG decode, resize, batched onnxruntime CNN, top-3",
        kind="vision",
        request={},
        expect={"top": None},
        concurrency=16,
        ipc="vision",
        timeout_s=30.0,
        min_duration_s=2,
        raw_body=_vision_image,
        content_type="image/jpeg",
    ),
    Scenario(
        name="ocr",
        description="the demo's OCR pipeline (PP-OCRv4): decode, batched detection, crop and "
        "angle, batched recognition, JSON",
        kind="ocr",
        request={},
        expect={"text": None, "lines": None},
        concurrency=8,
        ipc="ocr",
        # A request takes about a second of CPU here: shorter runs would count a handful.
        timeout_s=60.0,
        min_duration_s=20,
        raw_body=_ocr_image,
        content_type="image/jpeg",
    ),
)


def by_name(name: str) -> Scenario:
    """Return the scenario called ``name``.

    Raises:
        KeyError: no scenario has that name.
    """
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise KeyError(name)
