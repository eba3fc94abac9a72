"""Former home of the server's store settings, kept for the server and older imports.

Everything here lives in :mod:`mosec.store.settings` now.
"""

from mosec.store.settings import engine_settings, export_to_workers

__all__ = ["engine_settings", "export_to_workers"]
