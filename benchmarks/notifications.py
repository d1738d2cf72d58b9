"""Notification delivery on SQLite: one worker's notifications per second against the posts
per second the same worker publishes, in the same run.

1. **Build** (not timed): one SQLite file with ``N`` posts due (``N`` = 5,000;
   ``--quick``: 1,000), made through the API as in :mod:`benchmarks.publishing`, and
   ``N`` pending notices in its outbox (``post.approved`` for ten members, channel
   ``null``, the payload routing writes for an approval), queued with
   ``storage.enqueue_notifications``.
2. **Publish**: on a fresh copy, one workspace with the no-op publisher of
   :mod:`benchmarks.publishing` runs ``ws.publish_due(worker="w1")`` until nothing is due.
3. **Deliver**: on a fresh copy, one workspace runs ``ws.notifications.deliver(
   worker="w1")`` (batch 100) until nothing is claimed: claim, render through the
   templates, send to the ``null`` channel (does nothing), settle each message in its own
   transaction. Publish and deliver alternate, best of 3.
   Target: notifications per second ≥ posts per second, written as the ratio
   ``posts/s / notifications/s`` ≤ 1.0.
4. **SMTP** (reported): ``M`` notices (1,000; ``--quick``: 200) on the ``email`` channel
   to a local ``aiosmtpd`` server on 127.0.0.1 (one SMTP connection per message, as the
   channel does), one run. Checks: every notice ``sent``, every Message-ID received once.

``python -m benchmarks.notifications [--quick] [--profile]`` runs this module alone;
``--profile`` prints the cProfile of one delivery drain instead.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import postflow
from benchmarks import publishing
from benchmarks._common import REPEAT, Check, Figure, Ratio, Result, gc_note, timed
from postflow.notices import Notice
from postflow.testing import FixedClock

NAME = "notifications"
MEMBERS = 10
BATCH = 100


def enqueue(path: Path, n: int, channel: str, **email: Any) -> None:
    """``n`` due notices on ``channel`` for ``MEMBERS`` members (added with addresses)."""
    ws = postflow.open(f"sqlite:///{path}", entry_points=False,
                       clock=FixedClock(publishing.START))
    try:
        known = {m.name for m in ws.team.list()}
        if "dee" not in known:
            ws.team.add("dee", roles={"admin"}, email="dee@example.org")
        for m in range(MEMBERS):
            if f"m{m}" not in known:
                ws.team.add(f"m{m}", roles={"approver"}, email=f"m{m}@example.org")
        if email:
            ws.notifications.configure({"channels": {"email": email}}, by="dee")
        at = publishing.START
        ws.storage.enqueue_notifications([
            Notice(id=0, dedup_key=f"{channel[0]}{i:031d}", event_key=f"{i}:post.approved",
                   event="post.approved", recipient=f"m{i % MEMBERS}", channel=channel,
                   created_at=at, not_before=at, payload={
                       "key": f"{i}:post.approved", "kind": "post.approved",
                       "at": at.isoformat(), "actor": "ben", "post_id": i + 1,
                       "stage": "review", "urgent": False,
                       "data": {"text": f"Post {i}: our spring launch is live, read the "
                                        f"story at https://acme.example/p/{i} #acme",
                                "author": "ana", "channels": ["acme-x"], "campaign": None,
                                "stage": "review", "final": True}})
            for i in range(n)])
    finally:
        ws.close()


def open_notifier(url: str) -> postflow.Workspace:
    """A workspace on ``url`` at the time the notices are due."""
    return postflow.open(url, entry_points=False, clock=FixedClock(publishing.DRAIN_AT))


def drain_notices(ws: postflow.Workspace, worker: str = "w1") -> Counter[str]:
    """``ws.notifications.deliver`` until nothing is claimed; the messages' outcomes."""
    outcomes: Counter[str] = Counter()
    deliver = ws.notifications.deliver
    while True:
        report = deliver(worker=worker, limit=BATCH)
        if not report.claimed:
            return outcomes
        outcomes.update(sent=report.sent, retried=report.retried, failed=report.failed,
                        lost=report.lost)


def outbox(path: Path) -> dict[str, int]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT status, count(*) FROM outbox GROUP BY status"))
    finally:
        db.close()


class _Smtp:
    """aiosmtpd on 127.0.0.1 (a free port), counting Message-IDs."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.ids: Counter[str] = Counter()
        lock = threading.Lock()
        ids = self.ids

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                content = envelope.original_content or envelope.content
                for line in bytes(content).split(b"\r\n"):
                    if line.lower().startswith(b"message-id:"):
                        with lock:
                            ids[line.split(b":", 1)[1].strip().decode()] += 1
                        break
                return "250 OK"

        class AnyPort(Controller):
            def _trigger_server(self) -> None:
                if self.port == 0:
                    server: Any = self.server
                    self.port = server.sockets[0].getsockname()[1]
                super()._trigger_server()  # type: ignore[no-untyped-call]

        self.controller = AnyPort(Handler(), hostname="127.0.0.1", port=0, ready_timeout=20)

    def __enter__(self) -> _Smtp:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def run(quick: bool) -> Result:
    n = 1_000 if quick else 5_000
    m = 200 if quick else 1_000
    tmp = Path(tempfile.mkdtemp(prefix="postflow-notifications-"))
    result = Result(NAME)
    try:
        t0 = time.perf_counter()
        base = tmp / "due.db"
        publishing.build(base, n)
        enqueue(base, n, "null")
        publishing._settle(base)
        built = time.perf_counter() - t0

        best = {"publish": float("inf"), "deliver": float("inf")}
        published_ok: list[tuple[bool, str]] = []
        delivered_ok: list[tuple[bool, str]] = []
        for repeat in range(REPEAT):
            path = tmp / f"publish-{repeat}.db"
            ws, publisher = publishing.open_worker(publishing._copy(base, path))
            drained: list[publishing.Drain] = []

            def publish(ws: postflow.Workspace = ws,
                        publisher: publishing.NoopPublisher = publisher,
                        drained: list[publishing.Drain] = drained) -> None:
                drained.append(publishing.drain(ws, publisher, "w1"))
            try:
                best["publish"] = min(best["publish"], timed(publish))
            finally:
                ws.close()
            published_ok.append(publishing._check_once(drained, n, path))
            path.unlink()

            path = tmp / f"deliver-{repeat}.db"
            ws = open_notifier(publishing._copy(base, path))
            outcomes: list[Counter[str]] = []

            def deliver(ws: postflow.Workspace = ws,
                        outcomes: list[Counter[str]] = outcomes) -> None:
                outcomes.append(drain_notices(ws))
            try:
                best["deliver"] = min(best["deliver"], timed(deliver))
            finally:
                ws.close()
            states = outbox(path)
            delivered_ok.append((states == {"sent": n} and outcomes[0]["sent"] == n,
                                 f"outbox {states}; messages {dict(outcomes[0])}"))
            path.unlink()

        posts_rate, notice_rate = n / best["publish"], n / best["deliver"]
        result.figures += [
            Figure("one worker: posts published per second (no-op publisher)", posts_rate,
                   "posts/s", f"{n:,} due posts, batch 50; "
                   f"{best['publish'] / n * 1e6:.0f} µs/post"),
            Figure("one worker: notifications delivered per second (null)", notice_rate,
                   "notices/s", f"{n:,} due notices, batch {BATCH}, rendered, settled one "
                   f"by one; {best['deliver'] / n * 1e6:.0f} µs/notice"),
        ]
        result.ratios.append(Ratio(
            "posts/s / notifications/s (one worker, same run)", posts_rate / notice_rate,
            1.0, f"target: notifications/s ≥ posts/s; {notice_rate:,.0f} vs "
                 f"{posts_rate:,.0f}"))
        result.checks += [
            Check("publish: every post published exactly once",
                  all(ok for ok, _ in published_ok), published_ok[-1][1]),
            Check("deliver: every notice sent once (null channel)",
                  all(ok for ok, _ in delivered_ok), delivered_ok[-1][1]),
        ]

        try:
            import aiosmtpd  # noqa: F401
        except ImportError:
            result.skipped.append("SMTP delivery: aiosmtpd is not installed")
        else:
            path = tmp / "smtp.db"
            with _Smtp() as smtp:
                publishing.build(path, 0)
                enqueue(path, m, "email", host="127.0.0.1", port=smtp.controller.port,
                        timeout=10)
                ws = open_notifier(f"sqlite:///{path}")
                smtp_out: list[Counter[str]] = []
                try:
                    seconds = timed(lambda: smtp_out.append(drain_notices(ws)))
                finally:
                    ws.close()
                ids = Counter(smtp.ids)
            states = outbox(path)
            result.figures.append(Figure(
                "one worker: notifications delivered per second (local SMTP)", m / seconds,
                "notices/s", f"{m:,} notices to aiosmtpd on 127.0.0.1, one connection "
                f"each, one run; {seconds / m * 1e3:.1f} ms/notice"))
            expected = {f"<e{i:031d}@postflow>" for i in range(m)}
            result.checks.append(Check(
                "SMTP: every notice sent, every Message-ID received once",
                states == {"sent": m} and set(ids) == expected
                and set(ids.values()) == {1},
                f"outbox {states}; {len(ids):,} Message-IDs, "
                f"{sum(ids.values()):,} messages; outcomes {dict(smtp_out[0])}"))
        result.notes.append(
            f"{n:,} due posts and {n:,} due notices built in {built:.1f} s (not timed); "
            f"a fresh copy per run; publish and deliver alternate, best of {REPEAT}; "
            f"{gc_note()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def profile(quick: bool, top: int = 15) -> str:
    """cProfile of one delivery drain (top ``top`` functions by own time)."""
    n = 1_000 if quick else 5_000
    tmp = Path(tempfile.mkdtemp(prefix="postflow-notifications-"))
    try:
        path = tmp / "due.db"
        publishing.build(path, 0)
        enqueue(path, n, "null")
        ws = open_notifier(f"sqlite:///{path}")
        try:
            profiler = cProfile.Profile()
            profiler.enable()
            outcomes = drain_notices(ws)
            profiler.disable()
        finally:
            ws.close()
        assert outcomes["sent"] == n, outcomes
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    from benchmarks.__main__ import run_standalone

    run_standalone("python -m benchmarks.notifications", run, profile,
                   quick_help="1,000 posts and notices and 200 by SMTP, not 5,000 and 1,000",
                   profile_help="print the cProfile of one delivery drain instead", argv=argv)


if __name__ == "__main__":
    main()
