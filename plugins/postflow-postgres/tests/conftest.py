"""Fixtures: a fresh schema per test on the PostgreSQL server of the machine.

The server's address comes from ``$POSTFLOW_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). When it cannot be reached the tests
are skipped, unless ``CI=true``: then they fail, so a CI run never passes without them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence

import psycopg
import pytest
from postflow._urls import redact_url

import postflow_postgres

SERVER = os.environ.get("POSTFLOW_TEST_POSTGRES_URL",
                        "postgresql://postgres@127.0.0.1:5432/test")


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    """A connection to the test server, or a skip (a failure with ``CI=true``)."""
    try:
        return psycopg.connect(SERVER, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = (f"PostgreSQL test server {redact_url(SERVER)} is unreachable "
                  f"(set POSTFLOW_TEST_POSTGRES_URL): {exc}".strip())
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(name="admin")
def _admin_fixture() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    conn = _admin()
    yield conn
    conn.close()


def with_params(url: str, **params: str) -> str:
    """``url`` with query parameters added."""
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{url}{'&' if '?' in url else '?'}{extra}"


@pytest.fixture(name="storage_url")
def _storage_url(admin: psycopg.Connection[tuple[object, ...]]) -> Iterator[str]:
    """A URL of a new, empty schema, dropped after the test.

    Its connections carry the schema's name as ``application_name``; teardown checks
    that none of them is left open (every pool the test opened was closed)."""
    schema = f"pf_test_{uuid.uuid4().hex[:16]}"
    yield with_params(SERVER, schema=schema, application_name=schema)
    left: Sequence[tuple[object, ...]] = []
    for _ in range(50):  # a closed connection's backend exits a moment later
        left = admin.execute("SELECT pid, state FROM pg_stat_activity "
                             "WHERE application_name = %s", (schema,)).fetchall()
        if not left:
            break
        time.sleep(0.05)
    admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    assert not left, f"connections left open by the test: {left}"


@pytest.fixture(name="storage_plugins")
def _storage_plugins() -> list[object]:
    """The plugin module, registered whether or not its entry point is installed."""
    return [postflow_postgres]
