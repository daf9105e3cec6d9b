"""Converters: pandas, Arrow (Parquet, Arrow IPC), RELION STAR, cryosparc-tools.

Each converter imports its optional library (pandas, pyarrow, starfile,
cryosparc-tools) only when called; install them with the extras
``csfast[pandas]``, ``csfast[arrow]``, ``csfast[star]``.
"""

from .arrow import from_arrow, to_arrow
from .cryosparc import from_cryosparc, to_cryosparc
from .files import (
    FORMATS,
    convert,
    format_of,
    read,
    read_arrow,
    read_parquet,
    write,
    write_arrow,
    write_csdat,
    write_parquet,
)
from .frames import from_pandas, to_pandas
from .poses import euler_to_rotvec, rotvec_to_euler
from .star import StarWarning, from_star, to_star

__all__ = [
    "FORMATS",
    "StarWarning",
    "convert",
    "euler_to_rotvec",
    "format_of",
    "from_arrow",
    "from_cryosparc",
    "from_pandas",
    "from_star",
    "read",
    "read_arrow",
    "read_parquet",
    "rotvec_to_euler",
    "to_arrow",
    "to_cryosparc",
    "to_pandas",
    "to_star",
    "write",
    "write_arrow",
    "write_csdat",
    "write_parquet",
]
