"""Lifecycle per post on ``sqlite:///`` against plain ``sqlite3`` and django-fsm.

postflow: the lifecycle of :mod:`benchmarks.lifecycle_memory` on ``sqlite:///<tmp>``,
four committed transactions per post.

Baseline 1, plain ``sqlite3``: a hand-written app doing the same writes on the same
schema (the file is created by ``postflow.open`` so tables and indexes are
postflow's own), WAL, ``synchronous=NORMAL``, one ``BEGIN IMMEDIATE … COMMIT`` per step:

* create: INSERT posts + INSERT post_channels + INSERT revisions + INSERT audit;
* submit / approve / schedule: ``UPDATE posts SET <changed columns> WHERE id = ? AND
  version = ?`` (rowcount checked) + INSERT audit.

It writes the same values postflow does: ISO timestamps taken per step, a correlation
id (random prefix + counter) and JSON ``data`` per audit entry, the approval as JSON.

Baseline 2, django-fsm + the Django ORM on SQLite (WAL and ``synchronous=NORMAL`` by
``init_command``, ``BEGIN IMMEDIATE`` by ``transaction_mode``), run as a subprocess
in the benchmark's own virtual environment: see :mod:`benchmarks.django_baseline`.

Target: postflow ≤ 1.5x plain sqlite3; the django-fsm ratio is reported.
"""

from __future__ import annotations

import itertools
import json
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import postflow
from benchmarks import _bench_venv
from benchmarks._common import (
    REPEAT,
    Figure,
    Ratio,
    Result,
    best_of,
    future,
    gc_note,
    open_team,
    release,
    run_lifecycle,
    texts,
    us_per,
)

NAME = "lifecycle_sqlite"
TARGET = 1.5

_INSERT_POST = (
    "INSERT INTO posts (version, state, author, text, channels, revision, created_at, "
    "updated_at, state_changed_at, campaign, planned_for, scheduled_at, scheduled_zone, "
    "approvals) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_AUDIT = (
    "INSERT INTO audit (post_id, action, actor, at, correlation_id, from_state, to_state, "
    "revision, comment, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_MOVE = (
    "UPDATE posts SET version = ?, state = ?, updated_at = ?, state_changed_at = ? "
    "WHERE id = ? AND version = ?"
)
_APPROVE = (
    "UPDATE posts SET version = ?, state = ?, updated_at = ?, state_changed_at = ?, "
    "approvals = ? WHERE id = ? AND version = ?"
)
_SCHEDULE = (
    "UPDATE posts SET version = ?, state = ?, updated_at = ?, state_changed_at = ?, "
    "scheduled_at = ?, scheduled_zone = ? WHERE id = ? AND version = ?"
)


def sqlite3_baseline(path: Path, bodies: list[str], at: datetime) -> None:
    """The same four transactions per post, by hand."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    at_utc = at.isoformat()
    prefix = secrets.token_hex(8)  # correlation ids: random prefix + counter, as postflow
    ids = (f"{prefix}-{i:x}" for i in itertools.count())
    channels = json.dumps(["acme-x"])

    def step(sql: str, params: tuple[object, ...], post_id: int, action: str, actor: str,
             from_state: str, to_state: str, now: str, data: str | None) -> None:
        db.execute("BEGIN IMMEDIATE")
        if db.execute(sql, params).rowcount != 1:
            db.execute("ROLLBACK")
            raise RuntimeError(f"post {post_id} changed under {action}")
        db.execute(_INSERT_AUDIT, (post_id, action, actor, now, next(ids),
                                   from_state, to_state, 1, None, data))
        db.execute("COMMIT")

    try:
        for text in bodies:
            now = datetime.now(UTC).isoformat()
            db.execute("BEGIN IMMEDIATE")
            post_id = db.execute(_INSERT_POST, (
                1, "draft", "ana", text, channels, 1, now, now, now, None, None, None,
                None, "[]")).lastrowid
            db.execute("INSERT INTO post_channels VALUES (?, ?)", ("acme-x", post_id))
            db.execute("INSERT INTO revisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (post_id, 1, text, channels, None, "ana", now, "[]"))
            db.execute(_INSERT_AUDIT, (
                post_id, "create", "ana", now, next(ids), None, "draft", 1,
                None, json.dumps({"text": text, "channels": ["acme-x"]})))
            db.execute("COMMIT")
            assert post_id is not None
            now = datetime.now(UTC).isoformat()
            step(_MOVE, (2, "review", now, now, post_id, 1), post_id, "submit", "ana",
                 "draft", "review", now, None)
            now = datetime.now(UTC).isoformat()
            approvals = json.dumps([["ben", "review", 1, now, None]])
            step(_APPROVE, (3, "approved", now, now, approvals, post_id, 2), post_id,
                 "approve", "ben", "review", "approved", now, json.dumps({"stage": "review"}))
            now = datetime.now(UTC).isoformat()
            step(_SCHEDULE, (4, "scheduled", now, now, at_utc, "UTC", post_id, 3), post_id,
                 "schedule", "cy", "approved", "scheduled", now,
                 json.dumps({"scheduled_at": at_utc, "scheduled_zone": "UTC"}))
    finally:
        db.close()


def run(quick: bool, django: bool = True) -> Result:
    n = 1_000 if quick else 10_000
    bodies = texts(n)
    at = future()
    tmp = Path(tempfile.mkdtemp(prefix="postflow-bench-"))
    result = Result(NAME, notes=[f"best of {REPEAT} runs; {gc_note()}", f"files in {tmp}"])
    counter = iter(range(10**6))
    opened: list[postflow.Workspace] = []

    def fresh(stem: str) -> Path:
        path = tmp / f"{stem}-{next(counter)}.db"
        # the schema (and the team's rows) exactly as postflow creates them
        open_team(f"sqlite:///{path}").close()
        return path

    def postflow_run() -> Callable[[], None]:
        release(opened, n)
        ws = postflow.open(f"sqlite:///{fresh('postflow')}", entry_points=False)
        opened.append(ws)
        return lambda: run_lifecycle(ws, bodies, at)

    def sqlite3_run() -> Callable[[], None]:
        path = fresh("sqlite3")
        return lambda: sqlite3_baseline(path, bodies, at)

    try:
        best = best_of({"sqlite3": sqlite3_run, "postflow": postflow_run})
        release(opened, n)
        pf, base = us_per(best["postflow"], n), us_per(best["sqlite3"], n)
        result.figures += [
            Figure("postflow sqlite:/// lifecycle", pf, "µs/post",
                   f"{n} posts, 4 committed transactions each"),
            Figure("plain sqlite3, same writes", base, "µs/post",
                   f"{n} posts, 4 committed transactions each"),
        ]
        result.ratios.append(Ratio("postflow / sqlite3", pf / base, TARGET))
        if django:
            # the ORM is ~10x slower per post: fewer posts in --quick keep CI under a minute
            _django(result, tmp, 300 if quick else n, pf)
        else:
            result.skipped.append("django-fsm baseline (--no-django)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _django(result: Result, tmp: Path, n: int, pf: float) -> None:
    python, why = _bench_venv.ensure()
    if python is None:
        result.skipped.append(f"django-fsm baseline: {why}")
        return
    out = _bench_venv.run_script(python, "django_baseline.py",
                                 ["--posts", str(n), "--repeat", str(REPEAT),
                                  "--dir", str(tmp)])
    dj = float(out["us_per_post"])
    result.figures.append(Figure(
        "django-fsm + Django ORM, same lifecycle", dj, "µs/post",
        f"{n} posts; Django {out['django']}, {out['fsm_package']} {out['fsm']}"))
    result.ratios.append(Ratio("postflow / django-fsm", pf / dj))
    result.notes.append(f"django-fsm baseline: {out['note']}")
