"""Workers for test_worker_link.py (importable by the spawned worker processes)."""

from __future__ import annotations

import time
from typing import Any

from mosec import ValidationError, Worker


class Echo(Worker):
    """Returns its input; reports what the process set before ``__init__``."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_in_init = (self.worker_id, self.stage, self.max_batch_size)

    def forward(self, data: Any) -> Any:
        if isinstance(data, dict) and data.get("whoami"):
            return {"init": list(self.seen_in_init)}
        return data


class BatchEcho(Worker):
    """Batched echo with the batch size; rejects the whole batch on request."""

    def forward(self, data: list[Any]) -> list[Any]:
        if any(isinstance(item, dict) and item.get("reject") for item in data):
            raise ValidationError("rejected")
        return [{"size": len(data), "item": item} for item in data]


class ShortBatch(Worker):
    """A batched forward that returns one item too few."""

    def forward(self, data: list[Any]) -> list[Any]:
        return data[:-1]


class Sleepy(Worker):
    """Sleeps as long as asked."""

    def forward(self, data: Any) -> Any:
        time.sleep(data["sleep"])
        return data


class InitFails(Worker):
    """Its ``__init__`` raises: the process cannot serve."""

    def __init__(self) -> None:
        super().__init__()
        raise RuntimeError("no model")

    def forward(self, data: Any) -> Any:
        return data
