"""Every bad input of the core issue: a specific error, and nothing stored changes."""

from __future__ import annotations

import copy
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import postflow
from conftest import add_team
from postflow import workflow_store
from postflow.testing import FixedClock
from postflow.workflow import DEFAULT_WORKFLOW

Workspace = postflow.Workspace
Post = postflow.Post
Context = Post | Path
Setup = Callable[[Workspace, FixedClock, Path], Context]
Call = Callable[[Workspace, Any, FixedClock], object]


def quorum_two() -> postflow.Workflow:
    """The default workflow with two approvers needed, so one can try to approve twice."""
    data = copy.deepcopy(dict(DEFAULT_WORKFLOW))
    data["stages"] = [{"name": "review", "roles": ["approver"], "quorum": 2}]
    return postflow.Workflow.from_dict(data)


@pytest.fixture(name="bad_ws")
def _bad_ws(url: str, make_ws: Callable[..., Workspace]) -> Workspace:
    """A workspace (each backend) with the standard team, max (author and approver)
    and a review stage needing two approvers."""
    ws = make_ws(url, workflow=quorum_two())
    add_team(ws)
    ws.team.add("max", roles={"author", "approver"})
    return ws


# -- setups: each returns the post (or file) the bad call is made on -----------------


def nothing(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Post:
    """An unrelated draft, so there is something stored that must not change."""
    return ws.posts.create(author="aaron", text="Bystander", channels=["acme-x"])


def a_draft(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Post:
    """A draft by ana."""
    return ws.posts.create(author="ana", text="Hello", channels=["acme-x"],
                           campaign="spring")


def in_review(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Post:
    """A post in review."""
    post = a_draft(ws, clock, tmp_path)
    return ws.submit(post.id, by="ana")


def half_approved(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Post:
    """A post in review that ben has approved (one of two approvals)."""
    post = in_review(ws, clock, tmp_path)
    return ws.approve(post.id, by="ben")


def own_in_review(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Post:
    """A post by max (author and approver) in review."""
    post = ws.posts.create(author="max", text="Mine", channels=["acme-x"])
    return ws.submit(post.id, by="max")


def approved(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Post:
    """An approved post."""
    post = half_approved(ws, clock, tmp_path)
    return ws.approve(post.id, by="bea")


def published(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Post:
    """A published post."""
    post = approved(ws, clock, tmp_path)
    return ws.mark_published(post.id, by="cy")


def archived(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Post:
    """An archived post (it was approved and scheduled first)."""
    post = approved(ws, clock, tmp_path)
    ws.schedule(post.id, at=clock.now() + timedelta(days=1), by="cy")
    return ws.archive(post.id, by="cy")


def edited_draft(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Post:
    """A draft edited once: its version-1 snapshot is stale (returned as the context)."""
    post = a_draft(ws, clock, tmp_path)
    ws.edit(post.id, by="ana", text="Hello again")
    return post


def bad_toml(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Path:
    """A workflow file that is not TOML."""
    path = tmp_path / "workflow.toml"
    path.write_text('name = "broken"\nstates = ["draft", "review"\n[[transitions]]\n')
    return path


def invalid_workflow(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Path:
    """A TOML workflow file whose transition names an unknown state."""
    path = tmp_path / "workflow.toml"
    path.write_text('name = "odd"\nstates = ["draft", "review"]\n\n[[transitions]]\n'
                    'trigger = "submit"\nsource = "draft"\ndest = "reveiw"\n')
    return path


def foreign_sqlite(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Path:
    """A SQLite database some other program wrote."""
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO customers (name) VALUES ('Acme')")
    db.commit()
    db.close()
    return path


def not_sqlite(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Path:
    """A file that is not a database at all."""
    path = tmp_path / "notes.db"
    path.write_text("These are my notes, not a database.\n" * 50)
    return path


def newer_postflow(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Path:
    """A postflow database whose schema version is from the future."""
    path = tmp_path / "future.db"
    postflow.open(f"sqlite:///{path}", entry_points=False).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE postflow_meta SET value = '999' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    return path


def unknown_extends(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Path:
    """A workflow file extending a workflow that does not exist."""
    path = tmp_path / "workflow.toml"
    path.write_text('extends = "standard"\nroles = ["legal"]\n', encoding="utf-8")
    return path


def latin1_workflow(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Path:
    """A workflow file saved as Latin-1."""
    path = tmp_path / "workflow.toml"
    path.write_bytes('name = "R\u00e9daction"\nextends = "default"\n'.encode("latin-1"))
    return path


def legal_db(ws: Workspace, clock: FixedClock, tmp_path: Path) -> Path:
    """A SQLite database made with a legal stage (closed again)."""
    path = tmp_path / "legal.db"
    legal = postflow.Workflow.from_dict({"extends": "default", "name": "legal",
                                         "roles": ["legal"],
                                         "stages": [{"name": "legal", "roles": ["legal"]}]})
    with postflow.open(f"sqlite:///{path}", workflow=legal, entry_points=False) as other:
        add_team(other)
        other.posts.create(author="ana", text="Hello", channels=["acme-x"])
    return path


def tiny_workflow() -> postflow.Workflow:
    """A workflow without the default's draft and review states."""
    return postflow.Workflow.from_dict({
        "name": "tiny", "states": ["idea", "approved"],
        "transitions": [{"trigger": "approve", "source": "idea", "dest": "approved"}]})


def open_db(path: Path) -> object:
    """Open a workspace on a SQLite file (closing it should it open)."""
    postflow.open(f"sqlite:///{path}", entry_points=False).close()
    return None


def in_an_hour(clock: FixedClock) -> datetime:
    """A valid time to schedule at."""
    return clock.now() + timedelta(hours=1)


CASES: list[Any] = [
    pytest.param(nothing, lambda ws, p, c: ws.posts.create(
        author="ana", text="", channels=["acme-x"]),
        postflow.ValidationFailed, ["new post", "the text is empty", "empty-text"],
        id="empty-text"),
    pytest.param(nothing, lambda ws, p, c: ws.posts.create(
        author="ana", text=" \n\t ", channels=["acme-x"]),
        postflow.ValidationFailed, ["the text is empty", "empty-text"],
        id="whitespace-text"),
    pytest.param(a_draft, lambda ws, p, c: ws.edit(p.id, by="ana", text="   "),
        postflow.ValidationFailed, ["post {id}", "empty-text"],
        id="whitespace-text-edit"),
    pytest.param(nothing, lambda ws, p, c: ws.posts.create(
        author="ana", text="Hi", channels=["acme-x", "acme-tiktok"]),
        postflow.ValidationFailed, ["[acme-tiktok]", "no channel called 'acme-tiktok'",
                                    "unknown-channel"],
        id="unknown-channel"),
    pytest.param(a_draft, lambda ws, p, c: ws.edit(p.id, by="ana", channels=["acme-fb"]),
        postflow.ValidationFailed, ["post {id}", "no channel called 'acme-fb'"],
        id="unknown-channel-edit"),
    pytest.param(a_draft, lambda ws, p, c: ws.fire(p.id, "launch", by="ana"),
        postflow.InvalidTransition, ["post {id}", "no trigger 'launch'", "submit"],
        id="unknown-trigger"),
    pytest.param(a_draft, lambda ws, p, c: ws.schedule(p.id, at=in_an_hour(c), by="cy"),
        postflow.InvalidTransition, ["post {id} is 'draft'", "'schedule'",
                                     "possible: submit, archive"],
        id="trigger-not-allowed-here"),
    pytest.param(published, lambda ws, p, c: ws.submit(p.id, by="ana"),
        postflow.InvalidTransition, ["post {id} is 'published'", "possible: archive"],
        id="submit-published"),
    pytest.param(in_review, lambda ws, p, c: ws.fire(p.id, "request_changes", by="ben"),
        postflow.ValidationFailed, ["post {id}", "'request_changes' needs a comment",
                                    "comment-required"],
        id="request-changes-without-comment"),
    pytest.param(in_review, lambda ws, p, c: ws.request_changes(p.id, by="ben",
                                                                comment="  "),
        postflow.ValidationFailed, ["post {id}", "comment-required"],
        id="request-changes-blank-comment"),
    pytest.param(approved, lambda ws, p, c: ws.schedule(
        p.id, at=c.now() - timedelta(minutes=1), by="cy"),
        postflow.ValidationFailed, ["post {id}", "not in the future", "in-the-past"],
        id="schedule-in-the-past"),
    pytest.param(approved, lambda ws, p, c: ws.schedule(p.id, at=c.now(), by="cy"),
        postflow.ValidationFailed, ["post {id}", "in-the-past"],
        id="schedule-now"),
    pytest.param(approved, lambda ws, p, c: ws.schedule(
        p.id, at=datetime(2031, 1, 1, 9, 0), by="cy"),
        postflow.ValidationFailed, ["post {id}", "timezone-aware", "naive-datetime"],
        id="schedule-naive"),
    pytest.param(half_approved, lambda ws, p, c: ws.approve(p.id, by="ben"),
        postflow.ValidationFailed, ["post {id}", "ben already approved revision 1",
                                    "already-approved"],
        id="approve-twice"),
    pytest.param(own_in_review, lambda ws, p, c: ws.approve(p.id, by="max"),
        postflow.PermissionDenied, ["max may not approve post {id}", "own post",
                                    "four-eyes"],
        id="approve-own-post"),
    pytest.param(published, lambda ws, p, c: ws.edit(p.id, by="ana", text="Oops"),
        postflow.InvalidTransition, ["post {id} is 'published'", "cannot be edited"],
        id="edit-published"),
    pytest.param(archived, lambda ws, p, c: ws.edit(p.id, by="ana", text="Oops"),
        postflow.InvalidTransition, ["post {id} is 'archived'", "cannot be edited"],
        id="edit-archived"),
    pytest.param(edited_draft, lambda ws, p, c: ws.submit(
        p.id, by="ana", expected_version=p.version),
        postflow.ConflictError, ["post {id} is at version 2, not 1"],
        id="stale-version"),
    pytest.param(edited_draft, lambda ws, p, c: ws.edit(
        p.id, by="ana", text="Mine wins", expected_version=p.version),
        postflow.ConflictError, ["post {id}", "changed since"],
        id="stale-version-edit"),
    pytest.param(a_draft, lambda ws, p, c: ws.submit(p.id, by="zed"),
        postflow.PermissionDenied, ["'zed' is not a member"],
        id="unknown-member"),
    pytest.param(nothing, lambda ws, p, c: ws.posts.create(
        author="zed", text="Hi", channels=["acme-x"]),
        postflow.PermissionDenied, ["'zed' is not a member"],
        id="unknown-member-create"),
    pytest.param(bad_toml, lambda ws, p, c: postflow.Workflow.from_toml(p),
        postflow.ConfigError, ["workflow.toml", "not valid TOML"],
        id="malformed-workflow-file"),
    pytest.param(invalid_workflow, lambda ws, p, c: postflow.Workflow.from_toml(p),
        postflow.ConfigError, ["workflow.toml", "unknown state 'reveiw'"],
        id="invalid-workflow-file"),
    pytest.param(unknown_extends, lambda ws, p, c: postflow.Workflow.from_toml(p),
        postflow.ConfigError, ["workflow.toml", "'extends' names unknown workflow "
                               "'standard'", "built in: default"],
        id="extends-unknown-workflow"),
    pytest.param(latin1_workflow, lambda ws, p, c: postflow.Workflow.from_toml(p),
        postflow.ConfigError, ["workflow.toml", "not UTF-8"],
        id="non-utf8-workflow-file"),
    pytest.param(nothing, lambda ws, p, c: workflow_store.resolve_workflow(
        ws.storage, postflow.Workflow.default(), clock=c),
        workflow_store.WorkflowMismatch, [
            "is used with workflow 'default', not with the given workflow 'default'",
            "stage 'review' changed: quorum 2 -> 1"],
        id="open-with-a-conflicting-workflow"),
    pytest.param(legal_db, lambda ws, p, c: postflow.open(
        f"sqlite:///{p}", entry_points=False, workflow=postflow.Workflow.default()),
        workflow_store.WorkflowMismatch, [
            "legal.db is used with workflow 'legal', not with the given workflow 'default'",
            "roles removed: legal", "stages removed: legal"],
        id="reopen-with-a-conflicting-workflow"),
    pytest.param(half_approved, lambda ws, p, c: ws.apply_workflow(tiny_workflow(),
                                                                   by="dee"),
        postflow.ValidationFailed, ["cannot apply workflow 'tiny'",
                                    "post {id} is in state 'review'", "unknown-state"],
        id="apply-a-workflow-that-orphans-posts"),
    pytest.param(foreign_sqlite, lambda ws, p, c: open_db(p),
        postflow.StorageError, ["other.db", "not a postflow one", "customers"],
        id="foreign-sqlite-database"),
    pytest.param(not_sqlite, lambda ws, p, c: open_db(p),
        postflow.StorageError, ["notes.db", "not a usable postflow database"],
        id="not-a-database"),
    pytest.param(newer_postflow, lambda ws, p, c: open_db(p),
        postflow.StorageError, ["future.db", "newer postflow", "999"],
        id="database-from-newer-postflow"),
]


def snapshot(ws: Workspace, context: Context) -> dict[str, object]:
    """Everything stored that a refused call must leave alone."""
    posts = ws.posts.list()
    state: dict[str, object] = {
        "posts": posts,
        "histories": {p.id: ws.history(p.id) for p in posts},
        "revisions": {p.id: ws.revisions(p.id) for p in posts},
        "audit": ws.audit_log(),
        "team": ws.team.list(),
        "channels": ws.channels.list(),
        "workflow": ws.storage.stored_workflow(),
    }
    if isinstance(context, Path):
        state["file"] = context.read_bytes()
        state["folder"] = sorted(f.name for f in context.parent.iterdir())
    return state


class TestBadInput:
    """Each bad input raises its specific error and changes nothing stored."""

    @pytest.mark.parametrize(("setup", "call", "error", "fragments"), CASES)
    def test_refused(
        self, bad_ws: Workspace, clock: FixedClock, tmp_path: Path, setup: Setup,
        call: Call, error: type[postflow.PostflowError], fragments: list[str],
    ) -> None:
        """The call raises exactly ``error`` naming the problem; the store is unchanged."""
        assert issubclass(error, postflow.PostflowError)
        context = setup(bad_ws, clock, tmp_path)
        before = snapshot(bad_ws, context)
        audit_length = len(bad_ws.audit_log())
        post_id = context.id if isinstance(context, Post) else None
        stored = bad_ws.posts.get(post_id) if post_id is not None else None
        history_length = len(bad_ws.history(post_id)) if post_id is not None else None
        with pytest.raises(error) as info:
            call(bad_ws, context, clock)
        assert type(info.value) is error
        message = str(info.value)
        for fragment in fragments:
            fragment = fragment.format(id=post_id)
            assert fragment in message, (fragment, message)
        assert snapshot(bad_ws, context) == before
        assert len(bad_ws.audit_log()) == audit_length
        if post_id is not None:
            assert bad_ws.posts.get(post_id) == stored
            assert len(bad_ws.history(post_id)) == history_length
