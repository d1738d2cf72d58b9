"""``postflow db copy`` between SQLite files (PostgreSQL: the plugin's tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import postflow
from postflow.cli import cli
from postflow.cli.demo import run_demo
from postflow.storage.sqlite import SQLiteStorage
from postflow.testing_contract import same_answers


def test_copy_of_the_demo_answers_the_same(tmp_path: Path) -> None:
    source = tmp_path / "team.db"
    run_demo(source, fresh=True, echo=lambda _: None)
    done = CliRunner().invoke(cli, ["db", "copy", f"sqlite:///{source}",
                                    f"sqlite:///{tmp_path}/copy.db", "--json"],
                              catch_exceptions=False)
    assert done.exit_code == 0, done.output
    rows = json.loads(done.output)["rows"]
    assert rows["posts"] == 5
    assert rows["audit"] > 20
    a = SQLiteStorage(f"sqlite:///{source}")
    b = SQLiteStorage(f"sqlite:///{tmp_path}/copy.db")
    try:
        same_answers(a, b)
    finally:
        a.close()
        b.close()


def test_refusals(tmp_path: Path) -> None:
    source = tmp_path / "team.db"
    run_demo(source, fresh=True, echo=lambda _: None)
    runner = CliRunner()
    with pytest.raises(postflow.ConfigError, match="not empty"):
        runner.invoke(cli, ["db", "copy", f"sqlite:///{source}", f"sqlite:///{source}"],
                      catch_exceptions=False)
    with pytest.raises(postflow.NotFound):
        runner.invoke(cli, ["db", "copy", f"sqlite:///{tmp_path}/missing.db",
                            f"sqlite:///{tmp_path}/new.db"], catch_exceptions=False)
    with pytest.raises(postflow.ConfigError, match="cannot copy"):
        runner.invoke(cli, ["db", "copy", f"sqlite:///{source}", "memory://"],
                      catch_exceptions=False)
    assert not (tmp_path / "new.db").exists()
