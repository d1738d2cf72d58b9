"""Edge cases found by mutation testing: each test kills a mutant the rest of the suite
let live."""

from __future__ import annotations

import copy
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import pytest

import postflow
from conftest import add_team
from postflow import engine as engine_module
from postflow.engine import RESERVED_DATA_KEYS
from postflow.hookspecs import hookimpl
from postflow.storage import PostQuery
from postflow.storage import sqlite as sqlite_backend
from postflow.testing import FixedClock
from postflow.workflow import DEFAULT_WORKFLOW

MakeWs = Callable[..., postflow.Workspace]


def definition(**changes: Any) -> dict[str, Any]:
    """A deep copy of the default workflow with top-level keys replaced."""
    data = copy.deepcopy(dict(DEFAULT_WORKFLOW))
    data.update(changes)
    return data


def scheduled_post(ws: postflow.Workspace, clock: FixedClock) -> postflow.Post:
    """A post scheduled a day from now."""
    post = ws.posts.create(author="ana", text="hello", channels=["acme-x"])
    ws.submit(post.id, by="ana")
    ws.approve(post.id, by="ben")
    return ws.schedule(post.id, at=clock.now() + timedelta(days=1), by="cy")


class TestWriteCache:
    """The workspace's cache of snapshots it wrote."""

    def test_no_op_edit_is_judged_on_a_fresh_read(
        self, tmp_path: Path, make_ws: MakeWs
    ) -> None:
        """An edit back to text another process replaced is a real change, not a no-op."""
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        first = make_ws(url)
        add_team(first)
        second = make_ws(url)
        post = first.posts.create(author="ana", text="A", channels=["acme-x"])
        second.edit(post.id, by="ana", text="B")
        again = first.edit(post.id, by="ana", text="A")
        assert again.text == "A"
        assert again.revision == 3
        assert second.posts.get(post.id).text == "A"

    def test_cache_is_bounded(self, ws: postflow.Workspace,
                              monkeypatch: pytest.MonkeyPatch) -> None:
        """The cache never holds more snapshots than its size and keeps the newest."""
        for size in (2, 8):
            monkeypatch.setattr(engine_module, "_CACHE_SIZE", size)
            ws.engine.recent.clear()
            posts = [ws.posts.create(author="ana", text="x", channels=["acme-x"])
                     for _ in range(3 * size)]
            assert 0 < len(ws.engine.recent) <= size
            assert ws.engine.recent[posts[-1].id] == posts[-1]
            assert posts[0].id not in ws.engine.recent

    def test_forked_child_gets_its_own_correlation_ids(self) -> None:
        """A child process does not repeat its parent's correlation id prefix."""
        parent = engine_module.new_correlation_id().split("-")[0]
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.write(write, engine_module.new_correlation_id().encode())
            os._exit(0)
        os.waitpid(pid, 0)
        child = os.read(read, 100).decode()
        os.close(read)
        os.close(write)
        assert not child.startswith(parent)


class TestPostRules:
    """Rules on posts the other tests only touch in passing."""

    def test_restore_clears_the_old_schedule(self, ws: postflow.Workspace,
                                             clock: FixedClock) -> None:
        """A scheduled post archived and restored comes back as a draft with no time."""
        post = scheduled_post(ws, clock)
        ws.archive(post.id, by="cy")
        restored = ws.restore(post.id, by="cy")
        assert (restored.state, restored.scheduled_at, restored.scheduled_zone) == (
            "draft", None, None)
        assert postflow.replay(ws.history(post.id)) == restored

    # "at" is fire()'s own time argument, so it never reaches the extra data
    @pytest.mark.parametrize("key", sorted(RESERVED_DATA_KEYS - {"at"}))
    def test_every_reserved_key_is_refused(self, ws: postflow.Workspace, key: str) -> None:
        """No key postflow writes itself can be passed as extra data."""
        post = ws.posts.create(author="ana", text="x", channels=["acme-x"])
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.fire(post.id, "submit", by="ana", **{key: "forged"})
        assert info.value.problems[0].code == "reserved-data-key"

    def test_planned_for_must_be_a_day(self, ws: postflow.Workspace) -> None:
        """A datetime is not a planned date."""
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.posts.create(author="ana", text="x", channels=["acme-x"],
                            planned_for=datetime(2030, 1, 2, tzinfo=UTC))
        assert info.value.problems[0].code == "not-a-date"
        assert ws.posts.count() == 0

    def test_negative_limit_is_refused(self, ws: postflow.Workspace) -> None:
        """A negative limit is bad input, not 'everything but the last'."""
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.posts.list(limit=-1)
        assert info.value.problems[0].code == "bad-limit"

    def test_custom_trigger_without_roles_is_for_admins(self, make_ws: MakeWs,
                                                        url: str) -> None:
        """A transition defined without roles may be fired by admins only."""
        data = definition()
        data["transitions"].append({"trigger": "hold", "source": "draft", "dest": "archived"})
        ws = make_ws(url, workflow=postflow.Workflow.from_dict(data))
        add_team(ws)
        post = ws.posts.create(author="ana", text="x", channels=["acme-x"])
        with pytest.raises(postflow.PermissionDenied, match="admin"):
            ws.fire(post.id, "hold", by="ana")
        assert ws.fire(post.id, "hold", by="dee").state == "archived"

    def test_due_time_is_not_yet_overdue(self, make_ws: MakeWs, url: str,
                                         clock: FixedClock) -> None:
        """At exactly its due time a stage is due, not overdue."""
        data = definition(stages=[{"name": "review", "roles": ["approver"], "due": "1h"}])
        ws = make_ws(url, workflow=postflow.Workflow.from_dict(data))
        add_team(ws)
        post = ws.posts.create(author="ana", text="x", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        clock.advance(hours=1)
        assert ws.stages(post.id)[0].overdue is False
        clock.advance(seconds=1)
        assert ws.stages(post.id)[0].overdue is True


class TestWorkflowLoading:
    """Definitions the loader must refuse."""

    @pytest.mark.parametrize(("mutate", "fragment"), [
        (lambda d: (d.pop("stages"), d.update(transitions=[
            t for t in d["transitions"] if t["trigger"] != "approve"])),
         "'approval_state' needs an 'approve' trigger"),
        (lambda d: d["transitions"].append(
            {"trigger": "publish", "source": "failed", "dest": "archived",
             "roles": ["publisher", "admin"]}), "defined twice"),
        (lambda d: d.update(stages=[{"name": "legal", "roles": ["approver"],
                                     "members": ["lee"], "quorum": "all"}]),
         "quorum 'all'"),
        (lambda d: d["transitions"][0].update(author_only="yes"), "'author_only'"),
        (lambda d: d.update(stages=[{"name": "review", "roles": ["approver"],
                                     "due": "0h"}]), "must be positive"),
    ], ids=["approval-state-without-approve", "merge-conflict", "all-with-roles",
            "flag-not-bool", "zero-due"])
    def test_refused(self, mutate: Callable[[dict[str, Any]], object],
                     fragment: str) -> None:
        """Each broken definition raises ConfigError naming the problem."""
        data = definition(approval_state="review")
        mutate(data)
        with pytest.raises(postflow.ConfigError, match=fragment):
            postflow.Workflow.from_dict(data)

    def test_unreachable_cycle(self) -> None:
        """States that only reach each other are unreachable from the initial state."""
        data = {"states": ["draft", "limbo", "void"], "transitions": [
            {"trigger": "go", "source": "limbo", "dest": "void"},
            {"trigger": "back", "source": "void", "dest": "limbo"}]}
        with pytest.raises(postflow.ConfigError, match="cannot be reached"):
            postflow.Workflow.from_dict(data)


class TestTimeline:
    """The time index of every backend follows state and schedule changes."""

    def test_published_posts_keep_their_time(self, ws: postflow.Workspace,
                                             clock: FixedClock) -> None:
        """A post published from the schedule is found by a time-range query."""
        post = scheduled_post(ws, clock)
        ws.mark_published(post.id, by="cy")
        assert [p.id for p in ws.posts.list(state="published", between=(None, None))] == [
            post.id]
        assert ws.posts.list(state="scheduled", between=(None, None)) == []

    def test_channel_edit_drops_the_post_from_the_timeline(
        self, ws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """An edit that changes channels and unschedules removes the time entry too."""
        post = scheduled_post(ws, clock)
        ws.edit(post.id, by="ana", channels=["acme-li"])
        assert ws.posts.list(between=(None, None)) == []
        assert ws.posts.count(between=(None, None)) == 0

    def test_zone_only_change_is_stored(self, ws: postflow.Workspace,
                                        clock: FixedClock) -> None:
        """A snapshot whose only change is the zone is written in full."""
        post = scheduled_post(ws, clock)
        moved = postflow.models.replace(post, version=post.version + 1,
                                        scheduled_zone="Europe/Berlin")
        ws.storage.update_post(moved, expected_version=post.version, entries=[],
                               previous=post)
        assert ws.storage.get_post(post.id) == moved
        assert ws.storage.list_posts(PostQuery(states=frozenset({"scheduled"}),
                                               start=clock.now()))[0] == moved


class _NoOffset(tzinfo):
    """A tzinfo that never knows its offset."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None


class TestTimeInput:
    """Time input that is aware in name only."""

    def test_zone_without_offset_counts_as_naive(self, ws: postflow.Workspace,
                                                 clock: FixedClock) -> None:
        """A tzinfo whose utcoffset() is None is refused like a naive datetime."""
        post = scheduled_post(ws, clock)
        ws.unschedule(post.id, by="cy")
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.schedule(post.id, at=datetime(2031, 1, 1, tzinfo=_NoOffset()), by="cy")
        assert info.value.problems[0].code == "naive-datetime"


class First:
    """Records when it is called."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name

    @hookimpl
    def postflow_after_transition(self) -> None:
        """Note the call."""
        self.log.append(self.name)


class TestAfterTransitionOrder:
    """After-transition plugins run in pluggy's order."""

    def test_last_registered_runs_first(self, make_ws: MakeWs) -> None:
        """As with every pluggy hook, the plugin registered last is called first."""
        log: list[str] = []
        ws = make_ws("memory://", plugins=[First(log, "a"), First(log, "b")])
        add_team(ws)
        post = ws.posts.create(author="ana", text="x", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        assert log == ["b", "a"]


class TestMigrations:
    """Forward migrations of the SQLite schema."""

    def test_missing_migration_is_a_storage_error(
        self, tmp_path: Path, make_ws: MakeWs, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A file two versions behind with no migration for the gap is refused clearly."""
        path = tmp_path / "old.db"
        make_ws(f"sqlite:///{path}").close()
        current = sqlite_backend.SCHEMA_VERSION
        monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", current + 2)
        with pytest.raises(postflow.StorageError,
                           match=f"no migration from schema version {current} "):
            postflow.open(f"sqlite:///{path}", entry_points=False)

    def test_version_1_file_is_migrated_with_its_posts(self, tmp_path: Path) -> None:
        """A file written by the first schema opens at the current version, posts intact."""
        path = tmp_path / "v1.db"
        db = sqlite3.connect(path, isolation_level=None)
        for statement in sqlite_backend._SCHEMA_V1.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT INTO postflow_meta VALUES ('schema_version', '1')")
        at = "2026-11-01T09:00:00+00:00"
        db.execute(
            "INSERT INTO posts VALUES (7, 3, 'review', 'ana', 'old text', '[\"acme-x\"]', 1, "
            "?, ?, ?, NULL, '2026-12-24', NULL, NULL, '[]', NULL)", (at, at, at))
        db.execute("INSERT INTO revisions VALUES (7, 1, 'old text', '[\"acme-x\"]', NULL, "
                   "'ana', ?)", (at,))
        db.close()
        ws = postflow.open(f"sqlite:///{path}", entry_points=False)
        try:
            storage = ws.storage
            assert isinstance(storage, sqlite_backend.SQLiteStorage)
            assert storage.schema_version() == sqlite_backend.SCHEMA_VERSION
            post = ws.posts.get(7)
            assert (post.text, post.version, post.planned_for) == (
                "old text", 3, date(2026, 12, 24))
            assert (post.media, dict(post.published_urls), post.sequence) == ((), {}, 0)
            assert ws.revisions(7)[0].media == ()
            assert storage.calendar_candidates(
                datetime(2026, 1, 1, tzinfo=UTC), None, date(2026, 12, 1), None) == [(7, 3)]
        finally:
            ws.close()
