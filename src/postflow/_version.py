"""The installed version of postflow, for messages and User-Agent headers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("postflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
