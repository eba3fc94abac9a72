"""The one indirection: which ``mpserver`` implementation the tests exercise.

Worker processes are spawned, so they import this module again; they inherit
``MPSERVER_MODULE`` from the environment and therefore load the same module.
"""

from __future__ import annotations

import importlib
import os

MODULE_NAME = os.environ.get("MPSERVER_MODULE", "mosec.mpserver")
mp = importlib.import_module(MODULE_NAME)

# True when the suite runs against mpservice itself (used only in messages).
IS_MPSERVICE = MODULE_NAME.startswith("mpservice")
