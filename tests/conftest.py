"""Shared test setup: makes the helper modules in tests/ importable.

With --import-mode=importlib pytest does not put tests/ on sys.path, so the
hand-written-file helpers (npyfiles.py) would not import otherwise.
"""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
