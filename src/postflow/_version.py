"""The installed version of postflow, looked up when first asked for.

Reading a distribution's metadata scans ``sys.path``: about a sixth of the time
``import postflow`` would take, so it is not done at import.
"""

from __future__ import annotations

import functools

DISTRIBUTION = "postflow-editorial"
"""The distribution (PyPI) name; the import name is always ``postflow``. ``postflow`` on
PyPI is an unrelated project."""


@functools.cache
def version() -> str:
    """The installed version, ``0.0.0`` when running from a source tree."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"
