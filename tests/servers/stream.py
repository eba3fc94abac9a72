"""Server-sent events.

Routes:

- ``/stream``: one event per word of ``text``; then, by the request's keys:
  ``fail_before`` raises ValidationError before any event; ``fail_after`` raises ServerError
  after that many events; ``ticks`` sends that many ``tick <n>`` events, ``pace`` seconds apart,
  writing the last tick sent to the file ``progress``; when the work is stopped because the
  client left, the last tick is written to the file ``stopped``;
- ``/batch``: the same worker batching up to 4 requests (100 ms wait); each event names the
  position of its request in the batch and the batch size: ``<word> <index>/<size>``.

``mark`` and ``hold`` act as in behaviour.py, before any event.
"""

import time
from pathlib import Path

from behaviour import act, write_atomic

from mosec import Server, ServerError, SSEWorker, StreamCancelled, ValidationError, get_logger

logger = get_logger("stream")


class Words(SSEWorker):
    """Streams words and ticks (see the module docstring)."""

    example = {"text": "warm up"}

    def forward(self, data):
        batch = data if isinstance(data, list) else [data]
        for item in batch:
            act({key: item[key] for key in ("mark", "hold") if key in item})
        for index, item in enumerate(batch):
            if item.get("fail_before"):
                raise ValidationError("refused before streaming")
            suffix = f" {index}/{len(batch)}" if isinstance(data, list) else ""
            for count, word in enumerate(item.get("text", "").split(), 1):
                self.send_stream_event(word + suffix, index=index)
                if count == item.get("fail_after"):
                    raise ServerError("failed while streaming")
            if "ticks" in item:
                self._tick(item, index)
        return data

    def _tick(self, item, index):
        tick = -1
        try:
            for tick in range(item["ticks"]):
                self.send_stream_event(f"tick {tick}", index=index)
                write_atomic(item["progress"], str(tick))
                time.sleep(item.get("pace", 0.01))
        except StreamCancelled:
            logger.info("client left at tick %d", tick)
            write_atomic(Path(item["stopped"]), str(tick))
            raise


class BatchedWords(Words):
    """The same, batching."""


if __name__ == "__main__":
    server = Server()
    server.append_worker(Words, route="/stream")
    server.append_worker(BatchedWords, max_batch_size=4, max_wait_time=100, route="/batch")
    server.run()
