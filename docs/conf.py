"""Sphinx configuration for the postflow documentation.

Build with warnings as errors::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

from sphinx.application import Sphinx

# Document the source tree next to this folder, even when another copy is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import postflow

project = "postflow"
author = "postflow maintainers"
copyright = "postflow maintainers"
release = postflow.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []
html_static_path: list[str] = []
html_theme = "alabaster"
html_title = f"postflow {release}"
pygments_style = "sphinx"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = False
autodoc_default_options = {"show-inheritance": True}
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False


def _unset_defaults(
    app: Sphinx, what: str, name: str, obj: object, options: object, signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None]:
    """Show postflow's "argument not given" sentinel as ``<unchanged>``, not an address."""
    if signature and "<object object" in signature:
        signature = signature.replace("<object object>", "<unchanged>")
    return signature, return_annotation


def setup(app: Sphinx) -> None:
    """Register the signature tweak."""
    app.connect("autodoc-process-signature", _unset_defaults)
