"""Typed msgpack routes, plus a plain JSON route and a streaming one, for the OpenAPI document.

- ``/typed``: a ``Person`` in, a ``Greeting`` out;
- ``/typed-batch``: the same, batching up to 4 (``List[Person]`` -> ``List[Greeting]``);
- ``/json``: a plain JSON echo;
- ``/events``: a server-sent event stream.
"""

from typing import List, Optional

import msgspec

from mosec import Server, SSEWorker, Worker
from mosec.mixin import TypedMsgPackMixin


class Person(msgspec.Struct):
    """Who to greet."""

    name: str
    age: int
    nickname: Optional[str] = None


class Greeting(msgspec.Struct):
    """What the service answers."""

    text: str
    adult: bool


def greet(person: Person) -> Greeting:
    """Greet one person."""
    return Greeting(text=f"hello {person.nickname or person.name}", adult=person.age >= 18)


class Greet(TypedMsgPackMixin, Worker):
    """Greets one person."""

    example = Person(name="warm", age=1)

    def forward(self, data: Person) -> Greeting:
        assert isinstance(data, Person)
        return greet(data)


class GreetMany(TypedMsgPackMixin, Worker):
    """Greets a batch of people."""

    def forward(self, data: List[Person]) -> List[Greeting]:
        assert all(isinstance(person, Person) for person in data)
        return [greet(person) for person in data]


class Echo(Worker):
    """Echoes JSON."""

    def forward(self, data):
        return data


class Events(SSEWorker):
    """Streams the words of ``text``."""

    def forward(self, data):
        for word in data.get("text", "").split():
            self.send_stream_event(word)
        return data


if __name__ == "__main__":
    server = Server()
    server.append_worker(Greet, route="/typed")
    server.append_worker(GreetMany, max_batch_size=4, route="/typed-batch")
    server.append_worker(Echo, route="/json")
    server.append_worker(Events, route="/events")
    server.run()
