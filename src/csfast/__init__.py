"""csfast: fast, memory-mapped cryoSPARC .cs datasets.

Read, join, append and assemble tables of items keyed by 64-bit uids.
"""

from ._core import num_threads, set_num_threads
from ._version import __version__
from .column import StrColumn
from .convert import StarWarning, from_star, to_star
from .dataset import Dataset, Field, generate_uids
from .errors import (
    CsArgumentError,
    CsError,
    CsFieldError,
    CsFormatError,
    CsProjectError,
    CsResultError,
    CsUidError,
    CsVersionError,
    InputError,
)
from .format import CsInfo
from .groups import MIN_FIELDS, Result, ResultGroup, result_type_of, write_output
from .inputs import Connection, Input, InputSpec, Slot
from .project import Job, Project, write_job
from .row import Row
from .spill import spill_folder
from .tables import inspect

__all__ = [
    "__version__",
    "CsArgumentError",
    "CsError",
    "CsFieldError",
    "CsFormatError",
    "CsProjectError",
    "CsResultError",
    "CsInfo",
    "CsUidError",
    "CsVersionError",
    "Connection",
    "Dataset",
    "Field",
    "from_star",
    "generate_uids",
    "Input",
    "MIN_FIELDS",
    "InputError",
    "InputSpec",
    "inspect",
    "Job",
    "num_threads",
    "Project",
    "Result",
    "result_type_of",
    "ResultGroup",
    "Row",
    "set_num_threads",
    "spill_folder",
    "StarWarning",
    "StrColumn",
    "Slot",
    "to_star",
    "write_job",
    "write_output",
]
