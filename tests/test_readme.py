"""The README's promises: its tour runs and its two commands are the ones CI uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _run_tour() -> dict[str, object]:
    """Execute the README's Python tour in the current folder; its namespace."""
    tour = re.findall(r"```python\n(.*?)```", README, re.S)[0]
    namespace: dict[str, object] = {}
    exec(compile(tour, "README.md", "exec"), namespace)
    return namespace


class TestReadme:
    """The README a new user follows."""

    def test_tour_runs(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The Python tour executes as written and its final replay assertion holds."""
        monkeypatch.chdir(tmp_path)
        namespace = _run_tour()
        post = namespace["post"]
        assert post.revision == 2  # type: ignore[attr-defined]
        assert post.state == "draft"  # type: ignore[attr-defined]

    def test_tour_runs_twice_in_one_folder(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A newcomer who runs the tour again in the same folder sees it work again."""
        monkeypatch.chdir(tmp_path)
        first = _run_tour()
        second = _run_tour()
        for namespace in (first, second):
            post = namespace["post"]
            assert (post.id, post.revision) == (1, 2)  # type: ignore[attr-defined]

    def test_tour_channel_publishes_out_of_the_box(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The tour's channel names a built-in publisher, so the worker can send its posts."""
        monkeypatch.chdir(tmp_path)
        ws = _run_tour()["ws"]
        channel = ws.channels.get("acme-x")  # type: ignore[attr-defined]
        assert channel.publisher == "dry-run"
        assert ws.publishing.publisher_for(channel) is not None  # type: ignore[attr-defined]

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
