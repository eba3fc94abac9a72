"""A small progress bar on stderr: redrawn in place on a terminal, one line per step otherwise."""

import sys
import time
from typing import Optional, TextIO


class Progress:
    """Counts steps toward ``total`` and shows the current one with an estimate of time left.

    Args:
        total: the number of steps.
        stream: where to draw (stderr by default).
        width: characters of the bar itself.
    """

    def __init__(self, total: int, stream: Optional[TextIO] = None, width: int = 24):
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._start = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, label: str) -> str:
        """The text of the bar for the current count and ``label``."""
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self._start
        eta = ""
        if 0 < self.done < self.total:
            eta = f" ~{elapsed / self.done * (self.total - self.done):.0f}s left"
        return f"[{bar}] {self.done}/{self.total} {elapsed:.0f}s{eta} {label}"

    def show(self, label: str) -> None:
        """Draw the bar with ``label`` as the step now running."""
        if self._tty:
            self.stream.write("\r\x1b[2K" + self.line(label))
        else:
            self.stream.write(self.line(label) + "\n")
        self.stream.flush()

    def advance(self, label: str = "") -> None:
        """Count one step done and redraw."""
        self.done = min(self.done + 1, self.total)
        self.show(label)

    def note(self, text: str) -> None:
        """Print a message above the bar."""
        if self._tty:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
