"""Former home of the arena mapping, kept so that older imports keep working.

The mapping is :class:`mosec.store.mapping.ArenaMapping` now (``Arena`` here), and this
process's one is :func:`mosec.store.mapping.arena_mapping` (``current`` here).
"""

from mosec.store.mapping import ArenaMapping as Arena
from mosec.store.mapping import arena_mapping as current
from mosec.store.settings import ARENA_ENV, WAIT_ENV

__all__ = ["ARENA_ENV", "WAIT_ENV", "Arena", "current"]
