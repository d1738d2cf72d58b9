"""The storage contract suite (:mod:`postflow.testing_contract`) on the built-in
backends, ``memory://`` and ``sqlite:///``; plugins/postflow-postgres runs the same
suite on PostgreSQL. Tests of SQLite-only things (damaged rows) are at the end."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import postflow
from postflow import Storage
from postflow.testing_contract import *  # noqa: F403
from postflow.testing_contract import T0, inbox_item, insert, make_entry, notice


@pytest.fixture(name="storage_url")
def _storage_url(url: str) -> str:
    """A new, empty database of each backend conftest's ``url`` gives."""
    return url


@pytest.fixture(name="storage_plugins")
def _storage_plugins(backend: str) -> list[object]:
    """The PostgreSQL plugin when conftest runs ``postgres`` too (opt-in)."""
    if backend != "postgres":
        return []
    import postflow_postgres

    return [postflow_postgres]


@pytest.mark.parametrize(("table", "column", "bad", "read"), [
    ("outbox", "payload", "{not json", lambda s: s.list_notifications()),
    ("outbox", "payload", "[1, 2]", lambda s: s.list_notifications()),
    ("outbox", "not_before", "yesterday", lambda s: s.list_notifications()),
    ("outbox", "payload", "{not json",
     lambda s: s.claim_notifications(T0, "w", T0 + timedelta(minutes=1), 5)),
    ("inbox", "created_at", "soon", lambda s: s.inbox("ben")),
    ("inbox", "payload", "{", lambda s: s.inbox("ben")),
    ("documents", "body", "{", lambda s: s.stored_document("d")),
    ("documents", "body", "[]", lambda s: s.list_documents("")),
    ("posts", "extra_approvers", "[[1]]", lambda s: s.get_post(1)),
    ("posts", "extra_approvers", "nope", lambda s: s.get_post(1)),
])
def test_damaged_notification_rows_raise_storage_error(
        storage_url: str, storage: Storage, table: str, column: str, bad: str,
        read: Callable[[Storage], Any]) -> None:
    """A row the SQLite backend cannot decode is a StorageError naming its table."""
    if not storage_url.startswith("sqlite:"):
        pytest.skip("only SQLite stores rows as text")
    insert(storage)
    storage.enqueue_notifications([notice("a")])
    storage.add_inbox([inbox_item("a")])
    storage.save_document("d", {"a": 1}, make_entry("x"), expected=None)
    db = storage._db  # type: ignore[attr-defined]
    db.execute(f"UPDATE {table} SET {column} = ?", (bad,))
    with pytest.raises(postflow.StorageError, match=f"damaged row in table '{table}'"):
        read(storage)
