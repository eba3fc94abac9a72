"""``PlasmaShmIPCMixin``: mosec 0.9's Plasma mixin, kept for old scripts, on the Arrow store.

Plasma left pyarrow in version 12, so there is no plasma store to connect to. Scripts written
for mosec 0.9 keep their class name and their ``set_plasma_path`` call; the data goes through
the server's arena in Arrow's format instead (:class:`~mosec.mixin.ArrowShmIPCMixin`).
"""

from __future__ import annotations

from mosec import log
from mosec.mixin.arrow_worker import ArrowShmIPCMixin
from mosec.worker import Worker

logger = log.get_logger("mixin")

# set_plasma_path says why it ignores the path once per process, not once per call.
_explained = False


class PlasmaShmIPCMixin(ArrowShmIPCMixin, Worker):
    """The Arrow mixin under its mosec 0.9 name; ``set_plasma_path`` is accepted and ignored.

    As in mosec, it is a :class:`mosec.Worker` itself.
    """

    @classmethod
    def set_plasma_path(cls, path: str) -> None:
        """Accept a plasma store path from an old script; the arena needs none.

        Args:
            path: the plasma socket path (ignored).
        """
        global _explained
        if not _explained:
            _explained = True
            logger.info(
                "set_plasma_path(%r) is ignored: plasma left pyarrow in version 12, so %s "
                "passes data through the server's shared-memory arena in Arrow's format "
                "(ArrowShmIPCMixin); a plasma store daemon is no longer needed",
                path,
                cls.__name__,
            )
