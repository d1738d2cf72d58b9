"""Escalation approvers (``Post.extra_approvers``) and per-stage due times.

An escalation may make a member an approver of ONE post at ONE stage, whatever their
roles (the four-eyes rule still applies); a stage's due time counts from when the post
reached it. Both backends store the pairs, ``postflow.replay`` rebuilds them, and a
schema 5 SQLite file migrates to 6 keeping its posts.
"""

from __future__ import annotations

import copy
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

import postflow
from conftest import add_team
from postflow.storage import sqlite as sqlite_backend
from postflow.testing import FixedClock
from postflow.workflow import DEFAULT_WORKFLOW

MakeWs = Callable[..., postflow.Workspace]


def two_stages() -> postflow.Workflow:
    data = copy.deepcopy(dict(DEFAULT_WORKFLOW))
    data.update(name="two_stages", roles=["legal"], stages=[
        {"name": "editorial", "roles": ["approver"], "due": "24h"},
        {"name": "legal", "roles": ["legal"], "quorum": 2, "due": "12h"},
    ])
    return postflow.Workflow.from_dict(data)


@pytest.fixture(name="ews")
def _ews(url: str, make_ws: MakeWs) -> postflow.Workspace:
    ws = make_ws(url, workflow=two_stages())
    add_team(ws)
    ws.team.add("lou", roles={"legal"})
    ws.team.add("liz", roles={"legal"})
    return ws


def submitted(ws: postflow.Workspace, text: str = "Launch") -> postflow.Post:
    post = ws.posts.create(author="ana", text=text, channels=["acme-x"])
    return ws.submit(post.id, by="ana")


class TestExtraApprovers:
    def test_an_extra_approver_may_approve_only_that_posts_stage(
            self, ews: postflow.Workspace) -> None:
        ws = ews
        post, other = submitted(ws), submitted(ws, "Other")
        ws.approve(post.id, by="ben")
        ws.approve(other.id, by="ben")  # both wait at legal now
        with pytest.raises(postflow.PermissionDenied, match="stage 'legal'"):
            ws.approve(post.id, by="al")
        escalated = ws.engine.escalate(post.id, "legal", "al")
        assert escalated.extra_approvers == (("legal", "al"),)
        assert escalated.version == ws.posts.get(post.id).version
        assert ws.posts.get(post.id) == escalated
        assert "approve" in ws.allowed(post.id, by="al")
        assert "approve" not in ws.allowed(other.id, by="al")
        with pytest.raises(postflow.PermissionDenied):
            ws.approve(other.id, by="al")  # another post: still not eligible
        [entry] = [e for e in ws.history(post.id) if e.action == "escalate"]
        assert (entry.actor, dict(entry.data)) == ("system", {"stage": "legal",
                                                              "member": "al"})
        pending = {p.post_id: p for p in ws.approvals()}
        assert "al" in pending[post.id].waiting_on
        assert "al" not in pending[other.id].waiting_on
        assert [p.post_id for p in ws.approvals(member="al")] == [post.id]
        done = ws.approve(post.id, by="al")
        assert [(a.member, a.stage) for a in done.approvals][-1] == ("al", "legal")
        with pytest.raises(postflow.ValidationFailed, match="already approved"):
            ws.approve(post.id, by="al")
        assert ws.approve(post.id, by="lou").state == "approved"

    def test_an_extra_approver_of_a_later_stage_waits_for_it(
            self, ews: postflow.Workspace) -> None:
        ws = ews
        post = submitted(ws)
        ws.engine.escalate(post.id, "legal", "al")
        with pytest.raises(postflow.PermissionDenied, match="stage 'editorial'"):
            ws.approve(post.id, by="al")
        ws.approve(post.id, by="ben")
        assert ws.approve(post.id, by="al").state == "review"

    def test_four_eyes_still_applies(self, ews: postflow.Workspace) -> None:
        ws = ews
        post = submitted(ws)
        ws.engine.escalate(post.id, "editorial", "ana")
        with pytest.raises(postflow.PermissionDenied, match="four-eyes"):
            ws.approve(post.id, by="ana")
        assert "ana" not in ws.approvals()[0].waiting_on

    def test_escalate_is_idempotent_and_checked(self, ews: postflow.Workspace) -> None:
        ws = ews
        post = submitted(ws)
        first = ws.engine.escalate(post.id, "legal", "al", by="dee")
        assert ws.engine.escalate(post.id, "legal", "al") == first  # nothing written
        assert [e.actor for e in ws.history(post.id) if e.action == "escalate"] == ["dee"]
        with pytest.raises(postflow.ValidationFailed, match="no approval stage"):
            ws.engine.escalate(post.id, "nope", "al")
        with pytest.raises(postflow.ValidationFailed, match="not an active member"):
            ws.engine.escalate(post.id, "legal", "ghost")
        with pytest.raises(postflow.PermissionDenied):
            ws.engine.escalate(post.id, "legal", "lou", by="ben")  # not an admin
        draft = ws.posts.create(author="ana", text="Draft", channels=["acme-x"])
        with pytest.raises(postflow.InvalidTransition, match="not waiting for approval"):
            ws.engine.escalate(draft.id, "legal", "al")

    def test_escalate_reaches_change_watchers(self, ews: postflow.Workspace) -> None:
        ws = ews
        post = submitted(ws)
        start = ws.storage.last_change()[0]
        ws.engine.escalate(post.id, "legal", "al")
        assert [e.action for e in ws.audit_log(after_id=start)] == ["escalate"]

    def test_replay_equals_the_stored_post(self, ews: postflow.Workspace) -> None:
        ws = ews
        post = submitted(ws)
        ws.engine.escalate(post.id, "legal", "al")
        ws.approve(post.id, by="ben")
        ws.engine.escalate(post.id, "legal", "cy")
        ws.approve(post.id, by="al")
        stored = ws.posts.get(post.id)
        assert stored.extra_approvers == (("legal", "al"), ("legal", "cy"))
        assert postflow.replay(ws.history(post.id)) == stored

    def test_extra_approvers_survive_reopening(self, tmp_path: Path, make_ws: MakeWs) -> None:
        url = f"sqlite:///{tmp_path / 'esc.db'}"
        ws = make_ws(url, workflow=two_stages())
        add_team(ws)
        post = submitted(ws)
        escalated = ws.engine.escalate(post.id, "legal", "al")
        ws.close()
        again = make_ws(url, workflow=two_stages())
        assert again.posts.get(post.id) == escalated


class TestStageDueTimes:
    def test_each_stage_is_due_from_when_it_was_reached(
            self, ews: postflow.Workspace, clock: FixedClock) -> None:
        ws = ews
        post = submitted(ws)
        entered = clock.now()
        editorial, legal = ws.stages(post.id)
        assert (editorial.reached_at, editorial.due_at) == (entered,
                                                            entered + timedelta(hours=24))
        assert (legal.reached_at, legal.due_at, legal.overdue) == (None, None, False)
        clock.advance(hours=30)
        editorial, legal = ws.stages(post.id)
        assert editorial.overdue
        assert not legal.overdue
        reached = clock.now()
        ws.approve(post.id, by="ben")
        editorial, legal = ws.stages(post.id)
        assert not editorial.overdue  # satisfied
        assert (legal.reached_at, legal.due_at) == (reached, reached + timedelta(hours=12))
        [pending] = ws.approvals()
        assert (pending.stage, pending.since, pending.due_at, pending.overdue) == (
            "legal", reached, reached + timedelta(hours=12), False)
        clock.advance(hours=6)
        ws.approve(post.id, by="lou")  # one of two: legal still waits, due unchanged
        assert ws.stages(post.id)[1].due_at == reached + timedelta(hours=12)
        clock.advance(hours=7)
        assert ws.stages(post.id)[1].overdue
        assert [p.post_id for p in ws.approvals(overdue=True)] == [post.id]

    def test_a_stage_reached_by_the_quorum_completing_approval(
            self, clock: FixedClock) -> None:
        workflow = postflow.Workflow.from_dict({**copy.deepcopy(dict(DEFAULT_WORKFLOW)),
                                                "name": "q", "roles": ["legal"], "stages": [
            {"name": "a", "roles": ["approver"], "quorum": 2, "due": "1h"},
            {"name": "b", "roles": ["legal"], "due": "2h"}]})
        t0 = clock.now()
        approvals = (postflow.Approval("ben", "a", 1, t0 + timedelta(minutes=10)),
                     postflow.Approval("bea", "a", 1, t0 + timedelta(minutes=50)))
        a, b = workflow.stage_status(approvals, t0, t0 + timedelta(hours=5))
        assert (a.due_at, a.overdue) == (t0 + timedelta(hours=1), False)
        assert b.reached_at == t0 + timedelta(minutes=50)
        assert (b.due_at, b.overdue) == (t0 + timedelta(minutes=170), True)
        a, b = workflow.stage_status(approvals[:1], t0, t0 + timedelta(hours=5))
        assert a.overdue
        assert (b.reached_at, b.due_at, b.overdue) == (None, None, False)
        assert all(s.due_at is None for s in workflow.stage_status(approvals, None, t0))


class TestStorage:
    def test_both_backends_store_the_pairs(self, ews: postflow.Workspace) -> None:
        post = submitted(ews)
        changed = attrs.evolve(post, version=post.version + 1,
                               extra_approvers=[["legal", "al"], ("editorial", "cy")])
        assert changed.extra_approvers == (("legal", "al"), ("editorial", "cy"))
        ews.storage.update_post(changed, expected_version=post.version, entries=[],
                                previous=post)
        assert ews.storage.get_post(post.id) == changed
        assert ews.storage.list_posts(postflow.PostQuery())[-1] == changed


def test_sqlite_migration_5_to_6_keeps_posts(tmp_path: Path, make_ws: MakeWs,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema 5 file (made by this postflow with the version 6 migration withheld) is
    migrated on open: posts kept, no extra approvers, the new tables usable; migrating
    twice changes nothing."""
    path = tmp_path / "five.db"
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_backend, "SCHEMA_VERSION", 5)
        patch.setattr(sqlite_backend, "_POST_COLUMNS",
                      sqlite_backend._POST_COLUMNS.replace(", extra_approvers", ""))
        real = sqlite_backend._post_unchecked
        patch.setattr(sqlite_backend, "_post_unchecked", lambda r: real((*r, "[]")))
        patch.setattr(sqlite_backend.SQLiteStorage, "_insert_post", _insert_v5)
        old = make_ws(f"sqlite:///{path}")
        add_team(old)
        post = old.posts.create(author="ana", text="Kept", channels=["acme-x"])
        post = old.submit(post.id, by="ana")
        old.close()
    assert sqlite_backend.stored_schema_version(str(path)) == 5
    columns = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(posts)")}
    assert "extra_approvers" not in columns
    with pytest.raises(postflow.MigrationRequired):
        make_ws(f"sqlite:///{path}?migrate=no")
    found, now, backup = sqlite_backend.migrate_file(str(path))
    assert (found, now) == (5, 6)
    assert backup is not None
    assert backup.exists()
    ws = make_ws(f"sqlite:///{path}")
    stored = ws.posts.get(post.id)
    assert stored == post
    assert stored.extra_approvers == ()
    assert ws.engine.escalate(post.id, "review", "cy").extra_approvers == (("review", "cy"),)
    storage = ws.storage
    assert storage.enqueue_notifications([])  == []
    db = sqlite3.connect(path)
    sqlite_backend._migrate_to_6(db)  # twice: nothing changes, nothing fails
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"documents", "outbox", "inbox", "marks"} <= tables
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"outbox_due", "outbox_digest", "inbox_member"} <= indexes


def _insert_v5(self: Any, db: sqlite3.Connection, post: postflow.Post,
               revision: postflow.Revision, entries: Any) -> postflow.Post:
    """SQLiteStorage._insert_post as schema 5 wrote it (no extra_approvers column)."""
    cursor = db.execute(
        f"INSERT INTO posts ({sqlite_backend._POST_COLUMNS}) VALUES (NULL"
        + ", ?" * 22 + ")",
        (post.version, post.state, post.author, post.text,
         self._channels_json(post.channels), post.revision,
         self._ts(post.created_at), self._ts(post.updated_at),
         self._ts(post.state_changed_at), *self._mutable_tail(post),
         post.revised_by, "[]", "{}", post.sequence, None, None, None, None))
    post_id = cursor.lastrowid
    db.executemany("INSERT INTO post_channels VALUES (?, ?)",
                   [(c, post_id) for c in post.channels])
    self._insert_revision(db, post_id, revision)
    self._append(db, entries, post_id)
    return attrs.evolve(post, id=post_id)
