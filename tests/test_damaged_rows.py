"""Damaged rows in a SQLite file are a StorageError naming the table and the row, never
a parser's exception."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import postflow
from conftest import add_team
from postflow.testing import FixedClock

DAMAGE: list[Any] = [
    pytest.param("UPDATE posts SET channels = '[not json'", lambda ws: ws.posts.get(1),
                 "posts", id="post-bad-json"),
    pytest.param("UPDATE posts SET created_at = 'yesterday-ish'", lambda ws: ws.posts.list(),
                 "posts", id="post-bad-timestamp"),
    pytest.param("UPDATE audit SET data = '{broken'", lambda ws: ws.audit_log(),
                 "audit", id="audit-bad-json"),
    pytest.param("UPDATE members SET roles = 'author'", lambda ws: ws.team.list(),
                 "members", id="member-bad-roles"),
    pytest.param("UPDATE channels SET cadence = '{\"quiet\": [\"25:99\", \"x\"]}'",
                 lambda ws: ws.channels.list(), "channels", id="channel-bad-cadence"),
    pytest.param("UPDATE revisions SET created_at = 'never'", lambda ws: ws.revisions(1),
                 "revisions", id="revision-bad-timestamp"),
]


@pytest.mark.parametrize(("damage", "read", "table"), DAMAGE)
def test_damaged_rows_are_storage_errors(tmp_path: Path, damage: str,
                                         read: Callable[[postflow.Workspace], object],
                                         table: str) -> None:
    """The error names the table; the file is not changed by reading it."""
    url = f"sqlite:///{tmp_path / 'damaged.db'}"
    with postflow.open(url, entry_points=False, clock=FixedClock()) as ws:
        add_team(ws)
        ws.posts.create(author="ana", text="Hello", channels=["acme-x"])
    db = sqlite3.connect(tmp_path / "damaged.db")
    with db:
        db.execute(damage)
    db.close()
    before = (tmp_path / "damaged.db").read_bytes()
    with (postflow.open(url, entry_points=False, clock=FixedClock()) as ws,
          pytest.raises(postflow.StorageError) as caught):
        read(ws)
    assert f"damaged row in table {table!r}" in str(caught.value)
    assert (tmp_path / "damaged.db").read_bytes() == before
