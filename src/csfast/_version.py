"""The version of csfast, from the installed package's metadata (one source).

A module of its own so that modules inside the package (the .csg and job
writers record the version) need not import the package root.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("csfast")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
