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
