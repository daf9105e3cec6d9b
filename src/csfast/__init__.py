"""csfast: fast, memory-mapped cryoSPARC .cs datasets.

Read, join, append and assemble tables of items keyed by 64-bit uids.
"""

from ._core import num_threads, set_num_threads
from .dataset import Dataset, Field, generate_uids
from .errors import CsError, CsFieldError, CsFormatError, CsUidError
from .format import CsInfo, inspect

__version__ = "0.1.0"

__all__ = [
    "CsError",
    "CsFieldError",
    "CsFormatError",
    "CsInfo",
    "CsUidError",
    "Dataset",
    "Field",
    "generate_uids",
    "inspect",
    "num_threads",
    "set_num_threads",
]
