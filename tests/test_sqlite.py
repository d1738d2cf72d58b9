"""What only the SQLite backend promises: the file, its schema version, its indexes."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import postflow
from conftest import add_team
from postflow import StorageError
from postflow.storage import sqlite as sqlite_backend
from postflow.storage.sqlite import SCHEMA_VERSION, SQLiteStorage
from postflow.testing import FixedClock

MakeWs = Callable[..., postflow.Workspace]


def url_of(path: Path) -> str:
    """The sqlite URL of a file."""
    return f"sqlite:///{path}"


def digest(path: Path) -> str:
    """A hash of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection to a file, outside postflow."""
    return sqlite3.connect(path, isolation_level=None)


def stored_version(path: Path) -> str:
    """The schema_version postflow_meta holds."""
    db = raw(path)
    try:
        return str(db.execute(
            "SELECT value FROM postflow_meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        db.close()


@pytest.fixture(name="db_path")
def _db_path(tmp_path: Path) -> Path:
    return tmp_path / "social.db"


@pytest.fixture(name="sqlite_ws")
def _sqlite_ws(db_path: Path, make_ws: MakeWs) -> postflow.Workspace:
    """A workspace on a new SQLite file with the standard team."""
    ws = make_ws(url_of(db_path))
    add_team(ws)
    return ws


def storage_of(ws: postflow.Workspace) -> SQLiteStorage:
    """The workspace's storage, which must be SQLite."""
    assert isinstance(ws.storage, SQLiteStorage)
    return ws.storage


def walk(ws: postflow.Workspace, clock: FixedClock) -> postflow.Post:
    """Create a post and take it to scheduled, with one request for changes on the way."""
    post = ws.posts.create(author="ana", text="hello", channels=["acme-x", "acme-li"],
                           campaign="spring")
    ws.submit(post.id, by="ana")
    ws.request_changes(post.id, by="ben", comment="shorter")
    ws.edit(post.id, by="ana", text="hi")
    ws.submit(post.id, by="ana")
    ws.approve(post.id, by="bea", comment="ok")
    return ws.schedule(post.id, at=clock.now() + timedelta(days=1), by="cy")


class TestFile:
    """A new SQLite file and reopening it."""

    def test_wal_and_schema_version(self, sqlite_ws: postflow.Workspace, db_path: Path) -> None:
        """The file is in WAL mode and postflow_meta records the current schema version."""
        db = raw(db_path)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
        assert {"postflow_meta", "posts", "post_channels", "revisions", "audit",
                "members", "channels", "campaigns"} <= tables
        assert stored_version(db_path) == str(SCHEMA_VERSION)
        assert storage_of(sqlite_ws).schema_version() == SCHEMA_VERSION

    def test_reopening_keeps_everything(self, sqlite_ws: postflow.Workspace, db_path: Path,
                                        make_ws: MakeWs, clock: FixedClock) -> None:
        """A second workspace on the same file sees the posts, history, revisions and team."""
        post = walk(sqlite_ws, clock)
        other = sqlite_ws.posts.create(author="aaron", text="second", channels=["acme-x"])
        before = {
            "posts": sqlite_ws.posts.list(),
            "history": sqlite_ws.history(post.id),
            "revisions": sqlite_ws.revisions(post.id),
            "team": sqlite_ws.team.list(),
            "channels": sqlite_ws.channels.list(),
            "campaigns": sqlite_ws.campaigns.list(),
            "log": sqlite_ws.audit_log(),
        }
        sqlite_ws.close()
        again = make_ws(url_of(db_path))
        after = {
            "posts": again.posts.list(),
            "history": again.history(post.id),
            "revisions": again.revisions(post.id),
            "team": again.team.list(),
            "channels": again.channels.list(),
            "campaigns": again.campaigns.list(),
            "log": again.audit_log(),
        }
        assert after == before
        assert again.posts.get(post.id) == post
        assert postflow.replay(again.history(post.id)) == post
        assert again.posts.get(other.id).text == "second"

    def test_ids_are_not_reused_after_reopening(self, sqlite_ws: postflow.Workspace,
                                                 db_path: Path, make_ws: MakeWs) -> None:
        """Post and audit ids keep increasing in a reopened file."""
        first = sqlite_ws.posts.create(author="ana", text="one", channels=["acme-x"])
        last_entry = sqlite_ws.audit_log()[-1].id
        sqlite_ws.close()
        again = make_ws(url_of(db_path))
        second = again.posts.create(author="ana", text="two", channels=["acme-x"])
        assert second.id > first.id
        assert again.history(second.id)[0].id > last_entry

    def test_reopened_workspace_continues_the_workflow(
        self, sqlite_ws: postflow.Workspace, db_path: Path, make_ws: MakeWs
    ) -> None:
        """A post submitted before closing can be approved after reopening."""
        post = sqlite_ws.posts.create(author="ana", text="one", channels=["acme-x"])
        sqlite_ws.submit(post.id, by="ana")
        sqlite_ws.close()
        again = make_ws(url_of(db_path))
        assert again.approve(post.id, by="ben").state == "approved"

    def test_relative_path_is_relative_to_the_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_ws: MakeWs
    ) -> None:
        """sqlite:///name.db creates name.db in the current directory."""
        monkeypatch.chdir(tmp_path)
        make_ws("sqlite:///relative.db")
        assert (tmp_path / "relative.db").exists()

    def test_zero_byte_file_becomes_a_new_database(self, db_path: Path,
                                                    make_ws: MakeWs) -> None:
        """An empty file (as `touch` makes) is initialised like a new database."""
        db_path.touch()
        ws = make_ws(url_of(db_path))
        add_team(ws)
        assert stored_version(db_path) == str(SCHEMA_VERSION)
        assert [m.name for m in ws.team.list()][:2] == ["aaron", "al"]


class TestSchemaVersion:
    """The schema-version table and forward migrations."""

    def test_newer_database_is_refused(self, sqlite_ws: postflow.Workspace, db_path: Path,
                                       make_ws: MakeWs) -> None:
        """A file from a newer postflow raises StorageError naming both versions."""
        sqlite_ws.close()
        newer = SCHEMA_VERSION + 3
        db = raw(db_path)
        db.execute("UPDATE postflow_meta SET value = ? WHERE key = 'schema_version'",
                   (str(newer),))
        db.close()
        with pytest.raises(StorageError) as caught:
            make_ws(url_of(db_path))
        message = str(caught.value)
        assert f"schema version {newer}" in message
        assert f"up to {SCHEMA_VERSION}" in message
        assert stored_version(db_path) == str(newer)

    @pytest.mark.parametrize("value", ["", "two", "-1"])
    def test_invalid_version_is_refused(self, sqlite_ws: postflow.Workspace, db_path: Path,
                                        make_ws: MakeWs, value: str) -> None:
        """A schema_version that is not a number gives StorageError."""
        sqlite_ws.close()
        db = raw(db_path)
        db.execute("UPDATE postflow_meta SET value = ? WHERE key = 'schema_version'",
                   (value,))
        db.close()
        with pytest.raises(StorageError, match="schema_version"):
            make_ws(url_of(db_path))

    def test_forward_migration_runs_once_on_open(
        self, sqlite_ws: postflow.Workspace, db_path: Path, make_ws: MakeWs,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An older file is migrated on open, its version updated, and not migrated again."""
        post = sqlite_ws.posts.create(author="ana", text="kept", channels=["acme-x"])
        sqlite_ws.close()
        calls: list[int] = []

        def add_notes(db: sqlite3.Connection) -> None:
            calls.append(int(db.execute(
                "SELECT value FROM postflow_meta WHERE key = 'schema_version'"
            ).fetchone()[0]))
            db.execute("CREATE TABLE notes (post_id INTEGER, body TEXT)")

        target = SCHEMA_VERSION + 1
        monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", target)
        monkeypatch.setitem(sqlite_backend.MIGRATIONS, target, add_notes)
        migrated = make_ws(url_of(db_path))
        assert calls == [target - 1]
        assert storage_of(migrated).schema_version() == target
        assert stored_version(db_path) == str(target)
        assert migrated.posts.get(post.id).text == "kept"
        migrated.close()
        make_ws(url_of(db_path))
        assert calls == [target - 1]
        db = raw(db_path)
        try:
            assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
        finally:
            db.close()

    def test_failing_migration_leaves_the_file_at_its_version(
        self, sqlite_ws: postflow.Workspace, db_path: Path, make_ws: MakeWs,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A migration that fails half-way gives StorageError and rolls everything back."""
        sqlite_ws.close()

        def broken(db: sqlite3.Connection) -> None:
            db.execute("CREATE TABLE half_done (x INTEGER)")
            db.execute("ALTER TABLE no_such_table ADD COLUMN y INTEGER")

        target = SCHEMA_VERSION + 1
        monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", target)
        monkeypatch.setitem(sqlite_backend.MIGRATIONS, target, broken)
        with pytest.raises(StorageError):
            make_ws(url_of(db_path))
        assert stored_version(db_path) == str(target - 1)
        db = raw(db_path)
        try:
            assert db.execute("SELECT count(*) FROM sqlite_master "
                              "WHERE name = 'half_done'").fetchone()[0] == 0
        finally:
            db.close()


def write_random(path: Path) -> None:
    """Bytes that are not a database."""
    path.write_bytes(random.Random(1234).randbytes(8192))


def write_text(path: Path) -> None:
    """A short text file."""
    path.write_text("name,email\nana,ana@example.org\n")


def write_foreign(path: Path) -> None:
    """Someone else's SQLite database (rollback journal, their own tables)."""
    db = raw(path)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO customers (name) VALUES (?)", [("a",), ("b",)])
    db.close()


NOT_OURS = {"random-bytes": write_random, "text": write_text, "foreign-sqlite": write_foreign}


class TestNotOurs:
    """Files postflow must not use, and URLs it cannot open."""

    @pytest.mark.parametrize("write", NOT_OURS.values(), ids=NOT_OURS.keys())
    def test_refused_with_storage_error_and_left_unchanged(self, db_path: Path,
                                                           write: Callable[[Path], None]) -> None:
        """postflow.open raises StorageError (not a sqlite3 error) and leaves the file alone."""
        write(db_path)
        before = digest(db_path)
        siblings = sorted(p.name for p in db_path.parent.iterdir())
        with pytest.raises(StorageError) as caught:
            postflow.open(url_of(db_path), entry_points=False)
        assert str(db_path) in str(caught.value)
        assert not isinstance(caught.value, sqlite3.Error)
        assert digest(db_path) == before
        assert sorted(p.name for p in db_path.parent.iterdir()) == siblings

    def test_foreign_database_message_names_its_tables(self, db_path: Path) -> None:
        """The error for someone else's database says it is not postflow's and what it holds."""
        write_foreign(db_path)
        with pytest.raises(StorageError, match=r"not a postflow one.*customers"):
            postflow.open(url_of(db_path), entry_points=False)
        db = raw(db_path)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            assert db.execute("SELECT count(*) FROM customers").fetchone()[0] == 2
        finally:
            db.close()

    def test_missing_folder_gives_storage_error(self, tmp_path: Path) -> None:
        """A sqlite URL in a folder that does not exist raises StorageError and creates nothing."""
        missing = tmp_path / "nowhere" / "deeper"
        with pytest.raises(StorageError, match="does not exist"):
            postflow.open(url_of(missing / "social.db"), entry_points=False)
        assert not (tmp_path / "nowhere").exists()

    def test_directory_instead_of_file_gives_storage_error(self, tmp_path: Path) -> None:
        """A URL naming a directory raises StorageError, not a sqlite3 error."""
        with pytest.raises(StorageError):
            postflow.open(url_of(tmp_path), entry_points=False)

    @pytest.mark.parametrize("url", ["sqlite://", "sqlite:///"])
    def test_url_without_path_is_a_config_error(self, url: str) -> None:
        """A sqlite URL without a file path is refused as configuration."""
        with pytest.raises(postflow.ConfigError, match="sqlite"):
            postflow.open(url, entry_points=False)


class TestQueryPlan:
    """The listing queries use the indexes (EXPLAIN QUERY PLAN)."""

    @pytest.fixture(name="storage")
    def _storage(self, sqlite_ws: postflow.Workspace, clock: FixedClock) -> SQLiteStorage:
        """The SQLite storage with a few posts in several states, scheduled and not."""
        for n in range(6):
            post = sqlite_ws.posts.create(author="ana", text=f"post {n}", channels=["acme-x"])
            if n % 2:
                sqlite_ws.submit(post.id, by="ana")
                sqlite_ws.approve(post.id, by="ben")
                sqlite_ws.schedule(post.id, at=clock.now() + timedelta(hours=n), by="cy")
        return storage_of(sqlite_ws)

    def plan(self, ws: postflow.Workspace, **filters: object) -> list[str]:
        """The query plan lines of ws.posts.list(**filters)."""
        storage = storage_of(ws)
        sql, params = storage.list_sql(ws.posts.query(**filters))  # type: ignore[arg-type]
        return storage.explain(sql, params)

    def test_state_and_time_range_use_posts_state_time(
        self, sqlite_ws: postflow.Workspace, storage: SQLiteStorage
    ) -> None:
        """A state + time range listing searches posts_state_time without a scan or a sort."""
        start = datetime(2030, 1, 1, tzinfo=UTC)
        lines = self.plan(sqlite_ws, state="scheduled", between=(start, start + timedelta(7)),
                          limit=100)
        assert any("posts_state_time" in line and line.startswith("SEARCH")
                   for line in lines), lines
        assert not any(line.startswith("SCAN posts") for line in lines), lines
        assert not any("TEMP B-TREE" in line for line in lines), lines
        found = sqlite_ws.posts.list(state="scheduled", between=(start, start + timedelta(7)),
                                     limit=100)
        assert len(found) == 3

    def test_channel_filter_uses_the_post_channels_key(
        self, sqlite_ws: postflow.Workspace, storage: SQLiteStorage
    ) -> None:
        """A channel listing searches post_channels by its primary key, never scanning it."""
        lines = self.plan(sqlite_ws, channel="acme-x")
        assert any("post_channels" in line and line.startswith("SEARCH")
                   and "PRIMARY KEY" in line for line in lines), lines
        assert not any(line.startswith("SCAN post_channels") for line in lines), lines
        assert len(sqlite_ws.posts.list(channel="acme-x")) == 6


class TestFailedWrites:
    """A database error in the middle of a write."""

    def test_error_mid_transaction_rolls_back_and_is_a_storage_error(
        self, sqlite_ws: postflow.Workspace, db_path: Path
    ) -> None:
        """When the audit insert fails, the post update of the same call is undone."""
        post = sqlite_ws.posts.create(author="ana", text="hello", channels=["acme-x"])
        other = raw(db_path)
        other.execute("ALTER TABLE audit RENAME TO audit_moved")
        with pytest.raises(StorageError, match="write failed"):
            sqlite_ws.submit(post.id, by="ana")
        other.execute("ALTER TABLE audit_moved RENAME TO audit")
        other.close()
        assert sqlite_ws.posts.get(post.id).state == "draft"
        assert sqlite_ws.posts.get(post.id).version == post.version
        assert [e.action for e in sqlite_ws.history(post.id)] == ["create"]
        assert sqlite_ws.submit(post.id, by="ana").state == "review"

    def test_locked_database_is_a_storage_error(
        self, db_path: Path, make_ws: MakeWs
    ) -> None:
        """A writer that cannot get the lock in time gets StorageError, not sqlite3's error."""
        ws = make_ws(url_of(db_path))
        add_team(ws)
        post = ws.posts.create(author="ana", text="hello", channels=["acme-x"])
        storage_of(ws)._db.execute("PRAGMA busy_timeout = 50")
        blocker = raw(db_path)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StorageError, match="cannot start a write"):
                ws.submit(post.id, by="ana")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert ws.submit(post.id, by="ana").state == "review"
