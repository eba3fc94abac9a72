"""A server whose default ``serialize``/``deserialize`` are under test (see json_cases.py).

Routes:

- ``/inference``: answers ``CASES[data["case"]]`` through the default JSON ``serialize``;
- ``/decoded``: answers what the default ``deserialize`` made of the body, as its type and repr.
"""

from json_cases import CASES

from mosec import Server, Worker


class Answer(Worker):
    """Answers the named case."""

    def forward(self, data):
        return CASES[data["case"]]


class Decoded(Worker):
    """Shows what the body decoded to."""

    def forward(self, data):
        return {"type": type(data).__name__, "repr": repr(data)}


if __name__ == "__main__":
    server = Server()
    server.append_worker(Answer)
    server.append_worker(Decoded, route="/decoded")
    server.run()
