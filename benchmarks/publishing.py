"""Publishing on SQLite: worker throughput (one and four workers) and claim scaling.

A no-op publisher plugin (in-process, registered through ``postflow_register_publishers``
for network ``x``) returns :class:`~postflow.publishing.Published` at once and records
the post id of every call, so what is measured is postflow's own work per post: claim
(lease + audit entry), the delivery recorded ``sending``, the call, and the result
(post ``published``, delivery ``sent``, audit entry) in one transaction.

Time: the databases are built with a :class:`~postflow.testing.FixedClock` (2030-01-01
09:00 UTC) and the workers run on a FixedClock two minutes later, so every post is due
and none is *missed*. The clock only supplies the instants; the SQL is what a worker on
the system clock runs (ISO timestamps compared in the same columns and index).

1. **One worker.** ``N`` posts (5,000; ``--quick``: 1,000) are created, submitted,
   approved and scheduled one minute ahead through the workspace API on
   ``sqlite:///<tmp file>`` (not timed), all on channel ``acme-x``. Each run drains a
   fresh copy of that file: one workspace with the no-op publisher, ``ws.publish_due(
   worker="w1")`` in a loop until it returns ``[]`` (batch: the default 50). Reported:
   posts per second (best of 3); target ≥ 1,000/s, written as the ratio
   ``1,000 / posts per second`` ≤ 1.0. Checks: every post published, the publisher
   called exactly once per post, every outcome ``published``.
2. **Four workers.** The same on a fresh copy per run with 4 processes (``spawn``
   context); each opens its own workspace on the file with its own no-op publisher and
   drains as in (1) under its own worker id. The processes are started and their
   workspaces opened before the clock starts; the time runs from the start signal until
   all four have reported. Reported: posts per second and the ratio to one worker (no
   target: SQLite serialises the writers, each step waits for the write lock). Check:
   the union of the publishers' calls holds every post exactly once and all ended
   ``published``.
3. **Claim scaling.** Databases of 10,000 and 1,000,000 posts (``--quick``: 100,000)
   built by bulk INSERT with :func:`benchmarks.list_scaling.build` (10% scheduled over
   2030, 40% published, the rest without a time), plus 100 posts scheduled before the
   claim's ``now`` (2029-12-31): only those 100 are due. Timed:
   ``ws.storage.claim_due(now, "w", now + 1 min, 50, frozenset(), cid)`` (one write
   transaction: the SELECT, 50 UPDATEs and 50 audit INSERTs); each run's ``now`` is
   one lease later than the previous one, so the earlier claims have expired and every
   run claims the same 50 posts (no restoring in between). Best of 15 (``--quick``: 10),
   sizes alternating; target: 1M / 10k ≤ 2.0 (flat). The claim's SELECT (the shape of
   ``SQLiteStorage.claim_due``) goes through ``storage.explain`` and the check requires
   ``SEARCH … USING INDEX posts_state_time`` and no sort (``TEMP B-TREE``).

``python -m benchmarks.publishing [--quick] [--profile]`` runs this module alone;
``--profile`` prints the cProfile of one one-worker drain instead (top 15 by own time).
"""

from __future__ import annotations

import cProfile
import io
import multiprocessing
import os
import pstats
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import postflow
from benchmarks import list_scaling
from benchmarks._common import REPEAT, Check, Figure, Ratio, Result, gc_note, timed
from postflow.hookspecs import hookimpl
from postflow.publishing import Outgoing, Published
from postflow.testing import FixedClock

NAME = "publishing"
MIN_RATE = 1_000.0  # posts per second, one worker
FLAT_TARGET = 2.0
WORKERS = 4
BATCH_CHANNEL = "acme-x"
START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
DRAIN_AT = START + timedelta(minutes=2)  # the posts are due at START + 1 min
DUE = 100  # posts due in the claim-scaling databases
CLAIM_LIMIT = 50
CLAIM_LEASE = timedelta(minutes=1)
CLAIM_NOW = datetime(2029, 12, 31, 12, 0, tzinfo=UTC)  # before every list_scaling time
CLAIM_SMALL = 10_000

# The SELECT of SQLiteStorage.claim_due (no held channels), for EXPLAIN QUERY PLAN.
CLAIM_SQL = (
    "SELECT id, version, state, author, text, channels, revision, created_at, updated_at, "
    "state_changed_at, campaign, planned_for, scheduled_at, scheduled_zone, approvals, "
    "revised_by, media, published_urls, sequence, claimed_by, claimed_until "
    "FROM posts WHERE state = 'scheduled' "
    "AND scheduled_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?) "
    "ORDER BY scheduled_at, id LIMIT ?"
)


class NoopPublisher:
    """A publisher plugin for network ``x``: succeeds at once, records the post ids."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    @hookimpl
    def postflow_register_publishers(self, register: Callable[[str, Any], None]) -> None:
        register("x", self)

    def publish(self, item: Outgoing) -> Published:
        self.calls.append(item.post_id)
        return Published(f"x-{item.post_id}", f"https://x.example/{item.post_id}")


@dataclass
class Drain:
    """What one worker did: the publisher's calls and the outcomes' results."""

    calls: list[int]
    results: Counter[str]


# -- data -------------------------------------------------------------------------

def build(path: Path, n: int) -> None:
    """``n`` posts scheduled at ``START + 1 min`` through the API, checkpointed."""
    ws = postflow.open(f"sqlite:///{path}", entry_points=False, clock=FixedClock(START))
    try:
        ws.team.add("ana", roles={"author"})
        ws.team.add("ben", roles={"approver"})
        ws.team.add("cy", roles={"publisher"})
        ws.channels.add(BATCH_CHANNEL, network="x", handle="@acme")
        at = START + timedelta(minutes=1)
        create, submit, approve, schedule = (
            ws.posts.create, ws.submit, ws.approve, ws.schedule)
        for i in range(n):
            post = create(author="ana", channels=[BATCH_CHANNEL], text=(
                f"Post {i}: our spring launch is live, read the story at "
                f"https://acme.example/p/{i} #acme"))
            submit(post.id, by="ana")
            approve(post.id, by="ben")
            schedule(post.id, at=at, by="cy")
    finally:
        ws.close()
    _settle(path)


def _settle(path: Path) -> None:
    """Checkpoint the WAL into the file and let the kernel write it back."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    os.sync()


def _copy(source: Path, dest: Path) -> str:
    """A fresh copy of the built file (no WAL: it was checkpointed); its URL."""
    for old in (dest, dest.with_name(dest.name + "-wal"), dest.with_name(dest.name + "-shm")):
        old.unlink(missing_ok=True)
    shutil.copyfile(source, dest)
    os.sync()
    return f"sqlite:///{dest}"


def open_worker(url: str) -> tuple[postflow.Workspace, NoopPublisher]:
    """A workspace on ``url`` at ``DRAIN_AT`` with its own no-op publisher."""
    publisher = NoopPublisher()
    ws = postflow.open(url, entry_points=False, plugins=[publisher],
                       clock=FixedClock(DRAIN_AT))
    return ws, publisher


def drain(ws: postflow.Workspace, publisher: NoopPublisher, worker: str) -> Drain:
    """``ws.publish_due(worker=…)`` until nothing is left."""
    results: Counter[str] = Counter()
    publish_due = ws.publish_due
    while outcomes := publish_due(worker=worker):
        results.update(o.result for o in outcomes)
    return Drain(publisher.calls, results)


def states(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Posts per state and deliveries per status in the file."""
    db = sqlite3.connect(path)
    try:
        posts = dict(db.execute("SELECT state, count(*) FROM posts GROUP BY state"))
        deliveries = dict(db.execute(
            "SELECT status, count(*) FROM deliveries GROUP BY status"))
    finally:
        db.close()
    return posts, deliveries


# -- four worker processes -------------------------------------------------------------

def _worker_main(url: str, worker: str, ready: Queue[Any], go: Event,
                 done: Queue[Any]) -> None:
    """One worker process: open, report ready, wait for the signal, drain, report."""
    ws, publisher = open_worker(url)
    try:
        ready.put(worker)
        go.wait()
        result = drain(ws, publisher, worker)
        done.put((worker, result.calls, dict(result.results)))
    except BaseException as exc:
        done.put((worker, None, repr(exc)))
        raise
    finally:
        ws.close()


class WorkerPool:
    """``WORKERS`` spawned processes on one file, ready to drain at a signal."""

    def __init__(self, url: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready: Queue[Any] = ctx.Queue()
        self.done: Queue[Any] = ctx.Queue()
        self.go = ctx.Event()
        self.processes: list[SpawnProcess] = [
            ctx.Process(target=_worker_main, name=f"postflow-bench-w{i + 1}",
                        args=(url, f"w{i + 1}", self.ready, self.go, self.done))
            for i in range(WORKERS)]
        for process in self.processes:
            process.start()
        for _ in self.processes:
            self.ready.get(timeout=120)
        self.drains: list[Drain] = []

    def run(self) -> None:
        """The timed part: start all workers, wait for every report."""
        self.go.set()
        for _ in self.processes:
            worker, calls, results = self.done.get(timeout=600)
            if calls is None:
                raise RuntimeError(f"worker {worker} failed: {results}")
            self.drains.append(Drain(calls, Counter(results)))

    def join(self) -> None:
        for process in self.processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
                process.join()
        for queue in (self.ready, self.done):
            queue.close()
            queue.join_thread()


# -- claim scaling ---------------------------------------------------------------------

def build_claim_db(path: Path, n: int) -> None:
    """``n`` posts by bulk INSERT (list_scaling's mix, none due) plus ``DUE`` due posts."""
    list_scaling.build(path, n)
    created = (CLAIM_NOW - timedelta(days=2)).isoformat()
    channels = '["acme-x"]'

    def rows() -> list[tuple[object, ...]]:
        return [(n + i, 4, "scheduled", "ana", f"Due post {i}: ready to go out", channels, 1,
                 created, created, created, None, None,
                 (CLAIM_NOW - timedelta(hours=1, seconds=i)).isoformat(), "UTC", "[]")
                for i in range(1, DUE + 1)]

    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(f"INSERT INTO posts ({list_scaling._COLUMNS}) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows())
        db.executemany("INSERT INTO post_channels VALUES (?, ?)",
                       (("acme-x", n + i) for i in range(1, DUE + 1)))
        db.execute("COMMIT")
    finally:
        db.close()
    _settle(path)


def measure_claims(paths: dict[str, Path], runs: int
                   ) -> tuple[dict[str, float], list[str], dict[str, int]]:
    """Best seconds per claim_due at each size, the claim's plan, the due count seen."""
    opened = {label: postflow.open(f"sqlite:///{path}", entry_points=False)
              for label, path in paths.items()}
    best = {label: float("inf") for label in paths}
    due_seen: dict[str, int] = {}
    try:
        for k in range(runs + 1):  # run 0 warms the caches, not counted
            now = CLAIM_NOW + k * (CLAIM_LEASE + timedelta(seconds=1))
            for label, ws in opened.items():
                claimed: list[postflow.Post] = []

                def claim(ws: postflow.Workspace = ws, now: datetime = now,
                          claimed: list[postflow.Post] = claimed, cid: str = f"bench-{k}"
                          ) -> None:
                    claimed.extend(ws.storage.claim_due(
                        now, "w", now + CLAIM_LEASE, CLAIM_LIMIT, frozenset(), cid))
                seconds = timed(claim)
                assert len(claimed) == CLAIM_LIMIT, (label, len(claimed))
                assert all(p.scheduled_at is not None and p.scheduled_at <= now
                           for p in claimed), label
                if k:
                    best[label] = min(best[label], seconds)
        now = CLAIM_NOW + (runs + 1) * (CLAIM_LEASE + timedelta(seconds=1))
        first = next(iter(opened.values()))
        storage: Any = first.storage
        plan: list[str] = storage.explain(CLAIM_SQL, (now.isoformat(), now.isoformat(),
                                                      CLAIM_LIMIT))
        for label, ws in opened.items():
            due_seen[label] = len(ws.storage.claim_due(
                now, "count", now + CLAIM_LEASE, 10 * DUE, frozenset(), "bench-count"))
    finally:
        for ws in opened.values():
            ws.close()
    return best, plan, due_seen


# -- the benchmark -----------------------------------------------------------------

def _check_once(drains: list[Drain], n: int, path: Path) -> tuple[bool, str]:
    """Every post published, the publisher called once per post across ``drains``."""
    calls = Counter(post_id for d in drains for post_id in d.calls)
    results: Counter[str] = Counter()
    for d in drains:
        results.update(d.results)
    dupes = sum(1 for c in calls.values() if c > 1)
    posts, deliveries = states(path)
    ok = (set(calls) == set(range(1, n + 1)) and dupes == 0
          and results == Counter(published=n) and posts == {"published": n}
          and deliveries == {"sent": n})
    return ok, (f"{sum(calls.values()):,} calls for {len(calls):,} posts, {dupes} twice; "
                f"outcomes {dict(results)}; posts {posts}; deliveries {deliveries}")


def run(quick: bool) -> Result:
    n = 1_000 if quick else 5_000
    big = 100_000 if quick else 1_000_000
    claim_runs = 10 if quick else 15
    tmp = Path(tempfile.mkdtemp(prefix="postflow-publishing-"))
    result = Result(NAME)
    try:
        t0 = time.perf_counter()
        base = tmp / "due.db"
        build(base, n)
        built = time.perf_counter() - t0

        best = {"one": float("inf"), "four": float("inf")}
        one_ok: list[tuple[bool, str]] = []
        four_ok: list[tuple[bool, str]] = []
        for repeat in range(REPEAT):
            path = tmp / f"one-{repeat}.db"
            ws, publisher = open_worker(_copy(base, path))
            drained: list[Drain] = []

            def one(ws: postflow.Workspace = ws, publisher: NoopPublisher = publisher,
                    drained: list[Drain] = drained) -> None:
                drained.append(drain(ws, publisher, "w1"))
            try:
                best["one"] = min(best["one"], timed(one))
            finally:
                ws.close()
            one_ok.append(_check_once(drained, n, path))
            path.unlink()

            path = tmp / f"four-{repeat}.db"
            pool = WorkerPool(_copy(base, path))
            try:
                best["four"] = min(best["four"], timed(pool.run))
            finally:
                pool.join()
            four_ok.append(_check_once(pool.drains, n, path))
            four_ok[-1] = (four_ok[-1][0], four_ok[-1][1] + "; per worker " + ", ".join(
                f"{len(d.calls):,}" for d in pool.drains))
            path.unlink()

        rate_one, rate_four = n / best["one"], n / best["four"]
        result.figures += [
            Figure("one worker: posts published per second", rate_one, "posts/s",
                   f"{n:,} due posts, batch 50, no-op publisher; "
                   f"{us_per_post(best['one'], n):.0f} µs/post"),
            Figure(f"{WORKERS} worker processes: posts published per second", rate_four,
                   "posts/s", f"same file, {os.cpu_count()} CPUs; "
                   f"{us_per_post(best['four'], n):.0f} µs/post"),
        ]
        result.ratios += [
            Ratio("1,000 posts/s / one worker's posts/s", MIN_RATE / rate_one, 1.0,
                  f"target ≥ {MIN_RATE:,.0f} posts/s; measured {rate_one:,.0f}"),
            Ratio(f"{WORKERS} workers' posts/s / one worker's", rate_four / rate_one, None,
                  "SQLite serialises writers"),
        ]
        result.checks += [
            Check("one worker: every post published exactly once",
                  all(ok for ok, _ in one_ok), one_ok[-1][1]),
            Check(f"{WORKERS} workers: every post published exactly once",
                  all(ok for ok, _ in four_ok), four_ok[-1][1]),
        ]

        t0 = time.perf_counter()
        paths = {"small": tmp / "claim-small.db", "big": tmp / "claim-big.db"}
        build_claim_db(paths["small"], CLAIM_SMALL)
        build_claim_db(paths["big"], big)
        claim_built = time.perf_counter() - t0
        claims, plan, due_seen = measure_claims(paths, claim_runs)
        sizes = {"small": CLAIM_SMALL + DUE, "big": big + DUE}
        for label in ("small", "big"):
            result.figures.append(Figure(
                f"claim_due(limit={CLAIM_LIMIT}) at {sizes[label]:,} posts, {DUE} due",
                claims[label] * 1e3, "ms",
                f"best of {claim_runs}; SELECT + {CLAIM_LIMIT} UPDATEs + audit, one commit"))
        result.ratios.append(Ratio(
            f"claim at {sizes['big']:,} / {sizes['small']:,} posts",
            claims["big"] / claims["small"], FLAT_TARGET,
            "flat: the time does not grow with the table"))
        uses_index = any("SEARCH" in step and "posts_state_time" in step for step in plan)
        no_sort = not any("TEMP B-TREE" in step for step in plan)
        result.checks += [
            Check("claim SELECT: index posts_state_time, no sort",
                  uses_index and no_sort, " | ".join(plan)),
            Check(f"only the {DUE} due posts claimable at both sizes",
                  set(due_seen.values()) == {DUE},
                  ", ".join(f"{sizes[k]:,} posts: {v}" for k, v in due_seen.items())),
        ]
        result.notes += [
            f"{n:,} due posts built through the API in {built:.1f} s (not timed); a fresh "
            f"copy per run; one and {WORKERS} workers alternate, best of {REPEAT}; "
            f"{gc_note()}",
            f"claim databases built by bulk INSERT in {claim_built:.1f} s "
            "(benchmarks.list_scaling.build + the due posts)",
            "EXPLAIN QUERY PLAN of the claim's SELECT:", *(f"  {step}" for step in plan),
        ]
        if rate_one < MIN_RATE:
            result.notes.append("one worker under target: `python -m benchmarks.publishing "
                                "--profile` shows where the time goes")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def us_per_post(seconds: float, n: int) -> float:
    """Microseconds per post."""
    return seconds / n * 1e6


def profile(quick: bool, top: int = 15) -> str:
    """cProfile of one one-worker drain (top ``top`` functions by own time)."""
    n = 1_000 if quick else 5_000
    tmp = Path(tempfile.mkdtemp(prefix="postflow-publishing-"))
    try:
        path = tmp / "due.db"
        build(path, n)
        ws, publisher = open_worker(f"sqlite:///{path}")
        try:
            profiler = cProfile.Profile()
            profiler.enable()
            drained = drain(ws, publisher, "w1")
            profiler.disable()
        finally:
            ws.close()
        assert len(drained.calls) == n
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    from benchmarks.__main__ import run_standalone

    run_standalone("python -m benchmarks.publishing", run, profile,
                   quick_help="1,000 due posts and 100,000 stored, not 5,000 and 1,000,000",
                   profile_help="print the cProfile of one one-worker drain instead", argv=argv)


if __name__ == "__main__":
    main()
