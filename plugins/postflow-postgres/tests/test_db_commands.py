"""``postflow db status|migrate`` on ``postgresql://`` URLs, through the
``postflow_schema`` hook (the command line does not import the plugin)."""

from __future__ import annotations

import json
from typing import Any

import postflow
import psycopg
import pytest
from click.testing import CliRunner
from postflow.cli import cli

import postflow_postgres
from postflow_postgres import PostgresSchema, migrate, schema_status


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(name="version_2")
def _version_2(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The plugin at schema version 2 (a migration that adds a table); the list records
    each time the migration runs."""
    ran: list[int] = []

    def to_2(conn: psycopg.Connection[Any]) -> None:
        conn.execute("CREATE TABLE extra (x int)")
        ran.append(2)

    monkeypatch.setattr(postflow_postgres, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(postflow_postgres.MIGRATIONS, 2, to_2)
    monkeypatch.setitem(postflow_postgres.MIGRATION_NOTES, 2, "the extra table")
    return ran


def _create_at_1(storage_url: str) -> None:
    """A database at schema version 1 (this plugin's first)."""
    with postflow.open(storage_url) as ws:
        ws.team.add("ana", roles={"admin"})


def test_status_of_an_up_to_date_schema(storage_url: str) -> None:
    _create_at_1(storage_url)
    done = run("db", "status", "--db", storage_url)
    assert done.exit_code == 0, done.output
    assert "schema version 1 (this postflow: 1)" in done.output
    assert "Up to date." in done.output
    assert schema_status(storage_url) == (1, 1, [])


def test_status_of_a_missing_schema_changes_nothing(
        storage_url: str, admin: psycopg.Connection[Any]) -> None:
    """No postflow schema there: refused, and the schema is not created."""
    with pytest.raises(postflow.StorageError, match="is not a postflow database"):
        run("db", "status", "--db", storage_url)
    schema = postflow_postgres.split_url(storage_url)[1]["schema"]
    assert admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                         (schema,)).fetchone() is None
    assert schema_status(storage_url) == (None, postflow_postgres.SCHEMA_VERSION, [])
    with pytest.raises(postflow.StorageError, match="not a postflow database"):
        migrate(storage_url)


def test_status_lists_pending_migrations_and_migrate_runs_them(
        storage_url: str, version_2: list[int], admin: psycopg.Connection[Any]) -> None:
    monkey_version = postflow_postgres.SCHEMA_VERSION
    postflow_postgres.SCHEMA_VERSION = 1
    try:
        _create_at_1(storage_url)
    finally:
        postflow_postgres.SCHEMA_VERSION = monkey_version
    done = run("db", "status", "--db", storage_url, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["pending"] == [{"version": 2, "adds": "the extra table"}]
    assert json.loads(done.output)["schema_version"] == 1
    text = run("db", "status", "--db", storage_url).output
    assert "Pending migrations (1):\n  2: the extra table" in text
    assert "back the database up first" in text
    assert version_2 == []  # status migrates nothing

    # a read-only command refuses the older schema instead of migrating it
    with pytest.raises(postflow.MigrationRequired, match="postflow db migrate"):
        run("team", "list", "--db", storage_url)
    assert version_2 == []

    done = run("db", "migrate", "--db", storage_url)
    assert done.exit_code == 0, done.output
    assert "migrated from schema version 1 to 2" in done.output
    assert version_2 == [2]
    assert schema_status(storage_url) == (2, 2, [])
    again = run("db", "migrate", "--db", storage_url)
    assert "up to date; nothing to do" in again.output
    assert version_2 == [2]
    listed = run("team", "list", "--db", storage_url)
    assert listed.exit_code == 0, listed.output
    assert "ana" in listed.output


def test_two_hosts_migrating_at_once(storage_url: str, version_2: list[int]) -> None:
    """Two migrations at once (threads standing in for hosts) run the step once."""
    import threading

    postflow_postgres.SCHEMA_VERSION = 1
    try:
        _create_at_1(storage_url)
    finally:
        postflow_postgres.SCHEMA_VERSION = 2
    results: list[tuple[int, int]] = []
    threads = [threading.Thread(target=lambda: results.append(migrate(storage_url)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert version_2 == [2]
    assert sorted(results) == [(1, 2), (2, 2)] or sorted(results) == [(1, 2), (1, 2)]
    assert PostgresSchema(storage_url).version() == 2


def test_db_copy_moves_a_sqlite_team_to_postgresql_with_its_history(
        storage_url: str, tmp_path: Any) -> None:
    """``postflow db copy sqlite:///… postgresql://…`` of the demo's database (posts in
    every state, a publication, notifications): every read answers the same, each post
    replays from its trail; copied back into a new SQLite file, it still does; a
    destination with rows is refused."""
    from postflow.cli.demo import run_demo
    from postflow.storage.sqlite import SQLiteStorage
    from postflow.testing_contract import same_answers

    source = tmp_path / "team.db"
    run_demo(source, fresh=True, echo=lambda _: None)
    with postflow.open(f"sqlite:///{source}") as ws:
        ws.pause(by="dee", reason="checking the copy")
    done = run("db", "copy", f"sqlite:///{source}", storage_url)
    assert done.exit_code == 0, done.output
    assert "posts: 5" in done.output
    assert "Counts checked" in done.output
    back = tmp_path / "back.db"
    done = run("db", "copy", storage_url, f"sqlite:///{back}", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["rows"]["posts"] == 5
    original = SQLiteStorage(f"sqlite:///{source}")
    pg = postflow_postgres.PostgresStorage(storage_url, pool_size=2)
    returned = SQLiteStorage(f"sqlite:///{back}")
    try:
        assert original.holds()
        same_answers(original, pg)
        same_answers(original, returned)
    finally:
        original.close()
        pg.close()
        returned.close()
    with pytest.raises(postflow.ConfigError, match="not empty"):
        run("db", "copy", f"sqlite:///{source}", storage_url)
    empty = storage_url.replace("schema=", "schema=x")  # no such schema: not created
    with pytest.raises(postflow.NotFound, match="not a postflow database"):
        run("db", "copy", empty, f"sqlite:///{tmp_path}/never.db")
    assert not (tmp_path / "never.db").exists()
    with postflow.open(storage_url) as ws:  # the workspace works on with new ids
        post = ws.posts.create(author="ana", channels=["acme-x"], text="after the move")
        assert post.id == 6
