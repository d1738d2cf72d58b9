"""``postflow db init``: how a team starts a database from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import postflow

POSTFLOW = Path(sys.executable).parent / "postflow"

LEGAL = 'extends = "default"\nname = "legal"\nroles = ["legal"]\n' \
        '[[stages]]\nname = "legal"\nroles = ["legal"]\n'


def invoke(*args: str) -> tuple[int, str]:
    done = subprocess.run([str(POSTFLOW), *args], capture_output=True, text=True,
                          timeout=120, check=False)
    return done.returncode, done.stdout + done.stderr


class TestDbInit:
    """A new database with its workflow and first admin; never over an existing one."""

    def test_a_team_starts_from_nothing(self, tmp_path: Path) -> None:
        """init, then the first admin adds the team; the workflow is the file's."""
        (tmp_path / "legal.toml").write_text(LEGAL, encoding="utf-8")
        url = f"sqlite:///{tmp_path / 'team.db'}"
        code, out = invoke("db", "init", "--db", url, "--workflow",
                           str(tmp_path / "legal.toml"), "--admin", "root")
        assert code == 0, out
        assert "'legal'" in out
        code, out = invoke("team", "add", "ana", "--role", "author", "--by", "root",
                           "--db", url)
        assert code == 0, out
        with postflow.open(url, entry_points=False) as ws:
            assert ws.workflow.name == "legal"
            assert [m.name for m in ws.team.list()] == ["ana", "root"]

    def test_never_over_an_existing_database(self, tmp_path: Path) -> None:
        """A second init is refused and changes nothing."""
        url = f"sqlite:///{tmp_path / 'team.db'}"
        assert invoke("db", "init", "--db", url)[0] == 0
        before = (tmp_path / "team.db").read_bytes()
        code, out = invoke("db", "init", "--db", url, "--admin", "root")
        assert code == 78
        assert "exists already" in out
        assert (tmp_path / "team.db").read_bytes() == before

    def test_other_commands_point_to_init(self, tmp_path: Path) -> None:
        """A missing file is not created by a typo; the message says how to make one."""
        url = f"sqlite:///{tmp_path / 'typo.db'}"
        code, out = invoke("team", "list", "--db", url)
        assert code == 66
        assert "postflow db init" in out
        assert not (tmp_path / "typo.db").exists()
