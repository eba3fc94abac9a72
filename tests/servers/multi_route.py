"""Two routes sharing one batching stage.

- ``/v1/inference``: ``Tag("v1")`` -> ``Shared`` -> ``Finish``;
- ``/inference``: ``Tag("plain")`` -> ``Shared`` (the last stage of this route).

``Shared`` batches up to 8 requests (500 ms wait) from both routes, logs the batch's size and
answers each item with the routes of every item in its batch. The ``Tag`` stages write the file
named by ``tagged`` when they pass a request on; ``Shared`` acts on the request's keys (see
behaviour.py) to hold it.
"""

from behaviour import act, write_atomic

from mosec import Runtime, Server, Worker, get_logger

logger = get_logger("multi_route")


class TagV1(Worker):
    """Marks the request as coming from /v1/inference."""

    route = "v1"

    def forward(self, data):
        data["via"] = self.route
        if "tagged" in data:
            write_atomic(data["tagged"], self.route)
        return data


class TagPlain(TagV1):
    """Marks the request as coming from /inference."""

    route = "plain"


class Shared(Worker):
    """Reports the routes of every item of its batch."""

    def forward(self, data):
        for item in data:
            act({key: item[key] for key in ("mark", "hold") if key in item})
        routes = [item["via"] for item in data]
        logger.info("shared batch of %d", len(data))
        return [{"via": item["via"], "batch": routes, "stage": self.stage} for item in data]


class Finish(Worker):
    """The last stage of /v1/inference."""

    def forward(self, data):
        data["finished"] = True
        return data


if __name__ == "__main__":
    server = Server()
    shared = Runtime(Shared, max_batch_size=8, max_wait_time=500)
    server.register_runtime(
        {
            "/v1/inference": [Runtime(TagV1), shared, Runtime(Finish)],
            "/inference": [Runtime(TagPlain), shared],
        }
    )
    server.run()
