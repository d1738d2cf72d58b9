"""``postflow workflow show`` and ``postflow workflow apply`` on a real SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import postflow

pytestmark = pytest.mark.acceptance

POSTFLOW = Path(sys.executable).parent / "postflow"

LEGAL = """\
extends = "default"
name = "with-legal"
roles = ["legal"]
stages = [{ name = "legal", roles = ["legal"], quorum = 1, due = "48h" }]
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"POSTFLOW_URL", "POSTFLOW_USER"}}
    return subprocess.run([str(POSTFLOW), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, encoding="utf-8", timeout=120, check=False)


@pytest.fixture(name="db")
def _db(tmp_path: Path) -> str:
    """A database on the default workflow with an admin and a post in review."""
    url = f"sqlite:///{tmp_path / 'team.db'}"
    with postflow.open(url, entry_points=False) as ws:
        ws.team.add("dee", roles={"admin"})
        ws.team.add("ana", roles={"author"})
        ws.channels.add("acme-x", network="x", publisher="dry-run")
        post = ws.posts.create(author="ana", text="Launch", channels=["acme-x"])
        ws.submit(post.id, by="ana")
    (tmp_path / "legal.toml").write_text(LEGAL, encoding="utf-8")
    return url


class TestWorkflowCommands:
    """Showing the stored workflow and applying another one."""

    def test_show_without_a_file_prints_the_stored_workflow(
            self, db: str, tmp_path: Path) -> None:
        """``workflow show --db`` reads the database's workflow, not the built-in one."""
        with postflow.open(db, entry_points=False) as ws:
            ws.apply_workflow(postflow.Workflow.from_toml(tmp_path / "legal.toml"),
                              by="dee")
        shown = run("workflow", "show", "--db", db, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert "with-legal" in shown.stdout
        assert "legal" in shown.stdout

    def test_apply_stores_it_and_later_opens_use_it(self, db: str, tmp_path: Path) -> None:
        """After ``apply``, the post needs the legal stage too; the trail says who."""
        done = run("workflow", "apply", "legal.toml", "--db", db, "--by", "dee",
                   cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "applied" in done.stdout
        with postflow.open(db, entry_points=False) as ws:
            assert ws.workflow.name == "with-legal"
            assert [s.name for s in ws.workflow.stages][-1] == "legal"
            entry = ws.audit_log()[-1]
            assert (entry.action, entry.actor) == ("workflow.apply", "dee")
        again = run("workflow", "apply", "legal.toml", "--db", db, "--by", "dee",
                    cwd=tmp_path)
        assert "nothing changed" in again.stdout

    def test_apply_refuses_a_workflow_that_orphans_posts(
            self, db: str, tmp_path: Path) -> None:
        """A workflow without the post's state is refused, naming the post; nothing
        changes; ``--map`` renames the state instead."""
        with postflow.open(db, entry_points=False) as ws:
            before = ws.audit_log()
        toml = tmp_path / "small.toml"
        toml.write_text(
            'name = "small"\nstates = ["draft", "checking", "approved", "scheduled", '
            '"published", "failed", "archived"]\ninitial = "draft"\n'
            'approval_state = "checking"\n'
            'transitions = [\n'
            '  { trigger = "submit", source = "draft", dest = "checking" },\n'
            '  { trigger = "approve", source = "checking", dest = "approved" },\n'
            '  { trigger = "schedule", source = "approved", dest = "scheduled" },\n'
            '  { trigger = "publish", source = ["approved", "scheduled"], '
            'dest = "published" },\n'
            '  { trigger = "fail", source = "scheduled", dest = "failed" },\n'
            '  { trigger = "retry", source = "failed", dest = "scheduled" },\n'
            '  { trigger = "archive", source = ["draft", "published"], dest = "archived" },\n'
            ']\n', encoding="utf-8")
        refused = run("workflow", "apply", str(toml), "--db", db, "--by", "dee",
                      cwd=tmp_path)
        assert refused.returncode != 0
        assert "post 1" in refused.stderr
        with postflow.open(db, entry_points=False) as ws:
            assert ws.audit_log() == before
        mapped = run("workflow", "apply", str(toml), "--db", db, "--by", "dee",
                     "--map", "review=checking", cwd=tmp_path)
        assert mapped.returncode == 0, mapped.stderr
        with postflow.open(db, entry_points=False) as ws:
            assert ws.posts.get(1).state == "checking"

    def test_apply_needs_an_admin(self, db: str, tmp_path: Path) -> None:
        """An author may not change the workflow."""
        refused = run("workflow", "apply", "legal.toml", "--db", db, "--by", "ana",
                      cwd=tmp_path)
        assert refused.returncode != 0
        assert "admin" in refused.stderr
        with postflow.open(db, entry_points=False) as ws:
            assert ws.workflow.name == "default"

    def test_opening_with_a_different_workflow_file_is_refused(
            self, db: str, tmp_path: Path) -> None:
        """``--workflow`` naming another workflow is an error, not a silent switch."""
        refused = run("board", "--db", db, "--workflow", "legal.toml", cwd=tmp_path)
        assert refused.returncode != 0
        assert "with-legal" in refused.stderr
        assert "default" in refused.stderr
