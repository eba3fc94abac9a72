"""How a target's HTTP requests and answers encode a scenario's request and answer.

Every target answers the same request with the same answer, but not every stack speaks plain
JSON documents: Triton speaks tensors in its HTTP/JSON protocol, and a BentoML ``batchable`` API
takes and returns a batch. A ``Wire`` turns the scenario's request into the body that a target's
protocol expects, and the target's answer back into the scenario's answer, which
``Scenario.check`` then judges like any other. ``JSON_WIRE`` is the identity: the scenario's
own body.
"""

import json
from typing import Any, Dict, List

from benchmarks.scenarios import Scenario


class Wire:
    """The scenario's own body and content type; the answer is the JSON document returned."""

    def body(self, scenario: Scenario) -> bytes:
        """The HTTP request body for ``scenario``."""
        return scenario.body

    def content_type(self, scenario: Scenario) -> str:
        """The request's content type."""
        return scenario.content_type

    def answer(self, scenario: Scenario, body: bytes) -> Any:
        """The scenario's answer carried by the response ``body``.

        Raises:
            ValueError: the body is not what this protocol answers.
        """
        return json.loads(body)


class TritonWire(Wire):
    """Triton's HTTP/JSON inference protocol (KServe v2).

    A request's list of floats ``x`` becomes an ``FP32`` tensor of shape ``[1, n]`` (a batch of
    one, for a model with a batcher); any other request becomes its JSON text in one ``BYTES``
    tensor ``doc``. The answer's outputs become a document of their first elements, and a ``doc``
    output is the answer's JSON text itself.
    """

    def body(self, scenario: Scenario) -> bytes:
        request = scenario.request
        x = request.get("x")
        if isinstance(x, list) and len(request) == 1:
            tensor = {"name": "x", "shape": [1, len(x)], "datatype": "FP32", "data": x}
        else:
            text = json.dumps(request)
            tensor = {"name": "doc", "shape": [1], "datatype": "BYTES", "data": [text]}
        return json.dumps({"inputs": [tensor]}).encode()

    def content_type(self, scenario: Scenario) -> str:
        return "application/json"

    def answer(self, scenario: Scenario, body: bytes) -> Any:
        reply = json.loads(body)
        outputs: List[Dict[str, Any]] = reply.get("outputs") if isinstance(reply, dict) else None
        if not outputs:
            raise ValueError(f"no Triton outputs in {body[:200]!r}")
        values = {output["name"]: output["data"][0] for output in outputs}
        if "doc" in values:
            return json.loads(values["doc"])
        return values


class BentoWire(Wire):
    """BentoML: plain JSON, except that a batching scenario goes through a ``batchable`` API,
    which takes each field as a batch (here of one) and answers a list (here of one)."""

    def body(self, scenario: Scenario) -> bytes:
        if scenario.kind != "batch":
            return super().body(scenario)
        return json.dumps({key: [value] for key, value in scenario.request.items()}).encode()

    def answer(self, scenario: Scenario, body: bytes) -> Any:
        answer = json.loads(body)
        if scenario.kind != "batch":
            return answer
        if not isinstance(answer, list) or len(answer) != 1:
            raise ValueError(f"expected a batch of one answer, got {body[:200]!r}")
        return answer[0]


JSON_WIRE = Wire()
TRITON_WIRE = TritonWire()
BENTOML_WIRE = BentoWire()
