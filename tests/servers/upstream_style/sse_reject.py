"""Upstream-style SSE route whose first stage rejects bad requests.

``Check`` raises ``ValidationError`` when the request has no ``text``; ``Spell`` streams the text's
characters as events. Runs unchanged on mosec 0.9.8 and on this package.
"""

from mosec import Server, SSEWorker, ValidationError, Worker


class Check(Worker):
    """Insists on a text."""

    def forward(self, data: dict) -> str:
        text = data.get("text")
        if not text:
            raise ValidationError("text is required")
        return text


class Spell(SSEWorker):
    """One event per character."""

    def forward(self, data: str) -> str:
        for char in data:
            self.send_stream_event(char)
        return data


if __name__ == "__main__":
    server = Server()
    server.append_worker(Check)
    server.append_worker(Spell)
    server.run()
