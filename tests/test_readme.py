"""The README's promises: its tour runs and its two commands are the ones CI uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


class TestReadme:
    """The README a new user follows."""

    def test_tour_runs(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The Python tour executes as written and its final replay assertion holds."""
        monkeypatch.chdir(tmp_path)
        tour = re.findall(r"```python\n(.*?)```", README, re.S)[0]
        namespace: dict[str, object] = {}
        exec(compile(tour, "README.md", "exec"), namespace)
        post = namespace["post"]
        assert post.revision == 2  # type: ignore[attr-defined]
        assert post.state == "draft"  # type: ignore[attr-defined]
        assert (tmp_path / "social.db").exists()

    def test_opens_with_the_two_commands(self) -> None:
        """The first code block holds the install-and-demo and install-and-test commands."""
        first = re.findall(r"```sh\n(.*?)```", README, re.S)[0].strip().splitlines()
        assert len(first) == 2
        assert first[0].endswith("postflow demo")
        assert "pytest" in first[1]

    def test_ci_runs_the_readme_test_command(self) -> None:
        """.ci/run installs the test extra and runs pytest as the README says."""
        ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
        assert "pip install -q '.[test]'" in ci
        assert "npm ci --prefix tests/icaljs" in ci
        assert "npm ci --prefix tests/icaljs" in README.split("```sh", 1)[1].split("```")[0]
        assert "python -m pytest" in ci
