"""``ws.posts.list(state="scheduled", between=(a, b), limit=100)`` on SQLite, 10k vs 1M.

The databases are built FAST, deliberately bypassing the API: ``postflow.open`` creates
the file (schema, indexes, team, channel), then rows go straight into postflow's
``posts`` and ``post_channels`` tables with ``executemany`` in one transaction (no
revisions or audit rows: the list call reads neither). Going through the API would
take minutes for a million posts, and what is measured here is the read.

Data: ~10% of posts scheduled, with times spread over a year; ~40% published (with
times over the same year, so a time index alone would not do); the rest drafts,
posts in review, approved and archived (no time). The list asks for a three-month
window of scheduled posts: ~250 match at 10k, ~25,000 at 1M, the first 100 are returned.

After building, the file is checkpointed and ``os.sync()`` waits for the kernel to
write it back, so the timed reads do not compete with that writeback.

Reported: the median of many list calls at each size (the windows rotate over the
year), their ratio (target: flat, ≤ 2x), and SQLite's EXPLAIN QUERY PLAN for the call.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import postflow
from benchmarks._common import Check, Figure, Ratio, Result

NAME = "list_scaling"
TARGET = 2.0
LIMIT = 100
WINDOW = timedelta(days=90)  # ~250 scheduled posts match at 10k, ~25,000 at 1M
YEAR_START = datetime(2030, 1, 1, tzinfo=UTC)  # in the future of any test clock
STATES = (["scheduled"] * 10 + ["published"] * 40 + ["draft"] * 20 + ["review"] * 10
          + ["approved"] * 10 + ["archived"] * 10)
_COLUMNS = (
    "id, version, state, author, text, channels, revision, created_at, updated_at, "
    "state_changed_at, campaign, planned_for, scheduled_at, scheduled_zone, approvals"
)


def build(path: Path, n: int, seed: int = 2) -> None:
    """A postflow database with ``n`` posts, bypassing the API (see module docs)."""
    ws = postflow.open(f"sqlite:///{path}", entry_points=False)
    ws.team.add("ana", roles={"author"})
    ws.channels.add("acme-x", network="x", handle="@acme")
    ws.close()
    rng = random.Random(seed)
    created = datetime(2029, 6, 1, tzinfo=UTC).isoformat()
    channels = json.dumps(["acme-x"])
    year = 365 * 24 * 3600

    def rows() -> Iterator[tuple[object, ...]]:
        for i in range(1, n + 1):
            state = STATES[i % len(STATES)] if i % 7 else rng.choice(STATES)
            at = None
            if state in ("scheduled", "published"):
                at = (YEAR_START + timedelta(seconds=rng.randrange(year))).isoformat()
            yield (i, 4, state, "ana", f"Post {i}: a post of a typical length for a "
                   "social network, with a link and two #hashtags", channels, 1, created,
                   created, created, None, None, at, "UTC" if at else None, "[]")

    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(f"INSERT INTO posts ({_COLUMNS}) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows())
        db.executemany("INSERT INTO post_channels VALUES (?, ?)",
                       (("acme-x", i) for i in range(1, n + 1)))
        db.execute("COMMIT")
        db.execute("ANALYZE")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    # Let the kernel finish writing the freshly built file back before anything is
    # timed: otherwise the first reads compete with hundreds of MiB of writeback and
    # measure the disk, not the query.
    os.sync()


def windows(count: int) -> list[tuple[datetime, datetime]]:
    """Three-month windows starting on different days over the year."""
    step = timedelta(days=270 / count)
    return [(YEAR_START + i * step, YEAR_START + i * step + WINDOW)
            for i in range(count)]


def measure(path: Path, calls: int) -> tuple[float, list[str], int]:
    """Median seconds of the list call, its query plan, and rows returned."""
    ws = postflow.open(f"sqlite:///{path}", entry_points=False)
    try:
        spans = windows(calls)
        for span in spans[:5]:  # warm the page cache and the statement cache
            ws.posts.list(state="scheduled", between=span, limit=LIMIT)
        times = []
        got = LIMIT
        for span in spans:
            start = time.perf_counter()
            posts = ws.posts.list(state="scheduled", between=span, limit=LIMIT)
            times.append(time.perf_counter() - start)
            got = min(got, len(posts))
            assert all(p.state == "scheduled" for p in posts)
        storage = ws.storage
        sql, params = storage.list_sql(
            ws.posts.query(state="scheduled", between=spans[0], limit=LIMIT))
        plan = storage.explain(sql, params)
    finally:
        ws.close()
    return statistics.median(times), plan, got


def run(quick: bool) -> Result:
    small, big = 10_000, 100_000 if quick else 1_000_000
    calls = 50 if quick else 200
    tmp = Path(tempfile.mkdtemp(prefix="postflow-list-"))
    result = Result(NAME)
    try:
        medians = {}
        plan: list[str] = []
        for n in (small, big):
            path = tmp / f"posts-{n}.db"
            start = time.perf_counter()
            build(path, n)
            built = time.perf_counter() - start
            medians[n], plan, got = measure(path, calls)
            result.figures.append(Figure(
                f"list(state='scheduled', between=3 months, limit={LIMIT}) at {n:,} posts",
                medians[n] * 1e3, "ms",
                f"median of {calls}; {got}+ rows each; built in {built:.1f} s via executemany"))
        result.ratios.append(Ratio(f"{big:,} / {small:,} posts", medians[big] / medians[small],
                                   TARGET, "flat: the time does not grow with the table"))
        uses_index = any("posts_state_time" in step for step in plan)
        no_sort = not any("TEMP B-TREE" in step for step in plan)
        result.checks.append(Check("query uses the (state, scheduled_at, id) index",
                                   uses_index and no_sort, " | ".join(plan)))
        result.notes += ["EXPLAIN QUERY PLAN:", *(f"  {step}" for step in plan),
                         "databases built by bulk INSERT into postflow's schema, bypassing "
                         "the API on purpose (see benchmarks/list_scaling.py)"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result
