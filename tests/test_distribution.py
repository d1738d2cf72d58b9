"""postflow's distribution name: ``postflow`` on PyPI is an unrelated project."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

import postflow

ROOT = Path(__file__).resolve().parent.parent
NAME = "postflow-editorial"


def _pyproject(path: Path) -> dict[str, object]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


class TestDistributionName:
    """The distribution is ``postflow-editorial``; import name and command stay ``postflow``."""

    def test_pyproject_name(self) -> None:
        """pyproject.toml names the distribution, and the dev extra refers to it."""
        project = _pyproject(ROOT / "pyproject.toml")["project"]
        assert project["name"] == NAME == postflow.DISTRIBUTION  # type: ignore[index]
        assert project["scripts"] == {"postflow": "postflow.cli:main"}  # type: ignore[index]
        extras = project["optional-dependencies"]  # type: ignore[index]
        assert extras["dev"] == [f"{NAME}[test,lint,docs]"]

    def test_version_is_read_from_the_installed_distribution(self) -> None:
        """``__version__`` comes from the installed ``postflow-editorial`` metadata."""
        assert postflow.__version__ == importlib.metadata.version(NAME)
        assert postflow.__version__ != "0.0.0"

    @pytest.mark.parametrize("name", ["postflow-mastodon", "postflow-slack",
                                      "postflow-apprise"])
    def test_plugins_depend_on_our_distribution(self, name: str) -> None:
        """The in-repo plugins depend on ``postflow-editorial``, never on bare ``postflow``."""
        plugin = _pyproject(ROOT / "plugins" / name / "pyproject.toml")
        deps = plugin["project"]["dependencies"]  # type: ignore[index]
        assert any(re.match(rf"{NAME}\b", d) for d in deps)
        assert not [d for d in deps if re.fullmatch(r"postflow\s*([<>=!~;\[].*)?", d)]

    @pytest.mark.parametrize(
        "path", ["docs/plugins.rst", "docs/publishing.rst", "plugins/README.md"]
    )
    def test_docs_examples_depend_on_our_distribution(self, path: str) -> None:
        """Example plugin pyproject files in the docs depend on ``postflow-editorial``."""
        text = (ROOT / path).read_text(encoding="utf-8")
        assert not re.search(r'dependencies = \["postflow["<>=~!]', text)
        assert NAME in text

    @pytest.mark.parametrize("path", ["docs/quickstart.rst", "docs/plugins.rst"])
    def test_docs_warn_about_the_unrelated_project(self, path: str) -> None:
        """The install and plugins pages say the PyPI ``postflow`` is another project."""
        text = (ROOT / path).read_text(encoding="utf-8")
        assert "unrelated" in text
        assert NAME in text
