"""csfast's version: the installed package's metadata, whose one source is meson.build."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("csfast")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
