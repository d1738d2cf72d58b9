"""Lateness: how long after its due time a post is sent, by a worker that sleeps until
the next due time against one that polls every 5 s.

``postflow worker`` sleeps until the next scheduled post is due (or a retry wait, a
lease or an outbox notice runs out), at most its ``--interval``, which stays the
polling fallback (docs/publishing.rst, "Running the worker"). Before, it slept the
whole interval after each pass, so a post waited up to 5 s.

1. **Wake.** ``N`` posts (200; ``--quick``: 30) on one ``dry-run`` channel are
   created, submitted and approved through the API on a new ``sqlite:///<tmp file>``,
   then scheduled at scattered times (uniform, seeded) over ``WINDOW`` seconds (20;
   ``--quick``: 4), the first ``LEAD`` (3) seconds ahead on the system clock, which
   leaves the worker time to start. Then ``postflow worker --interval 5`` runs in a
   subprocess until every post is sent (or the last is 15 s overdue), and is stopped
   with ``SIGTERM``. A post's lateness is the time the dry-run publisher wrote its line
   (``at``, milliseconds) minus its due time. Reported: p50, p99 and max (in ms, with
   the dry-run line's millisecond resolution); the target is
   p99 ≤ 1 s, written as ``p99 / 1 s`` ≤ 1.0. Checks: every post sent exactly once.
2. **Poll.** The same on a new file with the worker's previous loop (a pass, then a
   fixed 5 s wait) in a subprocess: the lateness polling gives (about 0 to 5 s).

One run each (the lateness of 200 posts is the sample). The machine's load shows in
the figures: a pass that is late to start is late for every post it sends.
``python -m benchmarks.lateness [--quick]`` runs this module alone.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import postflow
from benchmarks._common import Check, Figure, Ratio, Result

NAME = "lateness"
INTERVAL = 5.0  # the worker's polling interval (its default)
LEAD = 3.0  # seconds between scheduling and the first due time
TARGET = 1.0  # p99 lateness, seconds
SEED = 12

# The worker loop before it slept to the next due time: a pass, then the interval.
POLL_LOOP = """
import signal, sys, threading
import postflow
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
ws = postflow.open(sys.argv[1])
print("started", file=sys.stderr, flush=True)
while not stop.is_set():
    ws.create_occurrences()
    ws.publish_due(worker="poll", stop=stop.is_set)
    ws.notifications.run_once(worker="poll")
    stop.wait(float(sys.argv[2]))
ws.close()
"""


def build(folder: Path, n: int, window: float) -> tuple[str, dict[int, datetime]]:
    """A SQLite file with ``n`` approved posts on a dry-run channel writing to
    ``folder/sent.jsonl``, scheduled over ``window`` seconds from ``LEAD`` s on."""
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder / 'social.db'}"
    ws = postflow.open(url, entry_points=False)
    try:
        ws.team.add("ana", roles={"author"})
        ws.team.add("ben", roles={"approver"})
        ws.team.add("cy", roles={"publisher"})
        ws.channels.add("acme-x", network="x", publisher="dry-run",
                        settings={"path": str(folder / "sent.jsonl")})
        ids = []
        for i in range(n):
            post = ws.posts.create(author="ana", text=f"post {i}", channels=["acme-x"])
            ws.submit(post.id, by="ana")
            ws.approve(post.id, by="ben")
            ids.append(post.id)
        rng = random.Random(SEED)
        offsets = sorted(rng.uniform(0, window) for _ in ids)
        rng.shuffle(ids)  # creation order is not due order
        base = datetime.now(UTC) + timedelta(seconds=LEAD)
        due = {}
        for post_id, offset in zip(ids, offsets, strict=True):
            due[post_id] = ws.schedule(post_id, at=base + timedelta(seconds=offset),
                                       by="cy").scheduled_at
    finally:
        ws.close()
    return url, due  # type: ignore[return-value]


def _postflow() -> str:
    here = Path(sys.executable).with_name("postflow")
    return str(here) if here.exists() else (shutil.which("postflow") or "postflow")


def run_worker(command: list[str], folder: Path, due: dict[int, datetime]
               ) -> dict[int, list[datetime]]:
    """Run ``command`` until every post is sent (or the last is 15 s overdue), stop it
    with SIGTERM; when each post was sent (the dry-run file's ``at``)."""
    sent_file = folder / "sent.jsonl"
    last = max(due.values())
    with open(folder / "worker.log", "w", encoding="utf-8") as log:
        worker = subprocess.Popen(command, stderr=log, stdout=log)
        try:
            while datetime.now(UTC) < last + timedelta(seconds=15):
                time.sleep(0.2)
                if sent_file.exists() and len(sent_file.read_bytes().splitlines()) >= len(due):
                    break
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
    sent: dict[int, list[datetime]] = {}
    if sent_file.exists():
        for line in sent_file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            sent.setdefault(int(record["post_id"]), []).append(
                datetime.fromisoformat(record["at"]))
    return sent


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def lateness(due: dict[int, datetime], sent: dict[int, list[datetime]]) -> list[float]:
    return [(sent[p][0] - at).total_seconds() for p, at in due.items() if p in sent]


def run(quick: bool) -> Result:
    n = 30 if quick else 200
    window = 4.0 if quick else 20.0
    tmp = Path(tempfile.mkdtemp(prefix="postflow-lateness-"))
    result = Result(NAME)
    try:
        runs = {}
        for name in ("wake", "poll"):
            folder = tmp / name
            url, due = build(folder, n, window)
            if name == "wake":
                command = [_postflow(), "worker", "--db", url, "--interval", f"{INTERVAL:g}",
                           "--id", "wake"]
            else:
                command = [sys.executable, "-c", POLL_LOOP, url, f"{INTERVAL:g}"]
            sent = run_worker(command, folder, due)
            runs[name] = (due, sent, lateness(due, sent))
        for name, label in (("wake", "sleeping to the next due time"),
                            ("poll", f"polling every {INTERVAL:g} s (before)")):
            _, _, late = runs[name]
            for q, what in ((0.5, "p50"), (0.99, "p99"), (1.0, "max")):
                result.figures.append(Figure(
                    f"{what} lateness, {label}",
                    percentile(late, q) * 1e3 if late else float("nan"), "ms",
                    f"{n} posts over {window:g} s, SQLite"
                    if what == "p50" and name == "wake" else ""))
        _, _, late = runs["wake"]
        p99 = percentile(late, 0.99) if late else float("inf")
        result.ratios.append(Ratio(f"p99 lateness / {TARGET:g} s, worker --interval "
                                   f"{INTERVAL:g}", p99 / TARGET, 1.0,
                                   f"target p99 ≤ {TARGET:g} s; polling: "
                                   f"{percentile(runs['poll'][2], 0.99):.2f} s"
                                   if runs["poll"][2] else ""))
        for name in ("wake", "poll"):
            due, sent, _ = runs[name]
            twice = sum(1 for times in sent.values() if len(times) > 1)
            result.checks.append(Check(
                f"{name}: every post sent exactly once",
                set(sent) == set(due) and not twice,
                f"{len(sent)} of {len(due)} sent, {twice} twice"))
        result.notes.append(
            f"one run each on a new SQLite file, the worker a subprocess; lateness = the "
            f"dry-run line's time - the due time; load {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def profile(quick: bool) -> str:
    """Nothing to profile: the worker sleeps (see ``benchmarks.publishing``)."""
    return "lateness measures sleeping, not CPU time: nothing to profile"


if __name__ == "__main__":
    from benchmarks.__main__ import run_standalone

    run_standalone("python -m benchmarks.lateness", run, profile,
                   "30 posts over 4 s instead of 200 over 20 s", "(nothing to profile)")
