"""Parallel sends: one worker, 16 posts in flight, against a network that takes 200 ms.

Publishing is network-bound: a worker sending one post after another against a network
that answers in 200 ms cannot exceed 5 posts/s, however fast postflow is. With
``PublishingSettings(parallel=16)`` one worker pass sends up to 16 posts at once, each
in its own thread under its own claim and lease (docs/publishing.rst, "Parallel
sends").

The network is a local HTTP server (``ThreadingHTTPServer`` on 127.0.0.1, in this
process) that reads each webhook POST, sleeps 200 ms, answers ``200`` with an id, and
counts requests by ``Idempotency-Key`` and how many it handles at once. The posts are on
one ``webhook`` channel pointing at it, so what runs is the real path: claim, the
delivery recorded ``sending``, the HTTP call (``Expect: 100-continue``, signed body), the
result and the post ``published`` in one transaction.

1. **Parallel.** ``N`` posts (800; ``--quick``: 160) are created, submitted, approved and
   scheduled through the API on a new ``sqlite:///<tmp file>`` per run (not timed), due
   a minute ago on the system clock. Each run drains it with one workspace on the system
   clock, ``PublishingSettings(parallel=16, batch=64)``: ``ws.publish_due(worker="w1")``
   in a loop until it returns ``[]``. Reported: posts per second (best of 3;
   ``--quick``: 1); target ≥ 50, written as ``50 / posts per second`` ≤ 1.0. Checks:
   every post published, every key received exactly once, at most 16 requests at once
   (and 16 reached).
2. **Serial.** The same with ``parallel=1`` on ``S`` posts (25; ``--quick``: 10),
   once: the serial limit (5 posts/s), for comparison.

``python -m benchmarks.parallel_sends [--quick]`` runs this module alone.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import postflow
from benchmarks._common import REPEAT, Check, Figure, Ratio, Result, gc_note, timed
from postflow.publishing import PublishingSettings
from postflow.testing import FixedClock

NAME = "parallel_sends"
DELAY = 0.2  # seconds the network takes per request
PARALLEL = 16
BATCH = 64
MIN_RATE = 50.0  # posts per second, one worker with 16 parallel sends
CHANNEL = "acme-hook"


class Network:
    """A local network that takes ``DELAY`` per post; counts keys and concurrency."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()
        network = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # so that Expect: 100-continue gets its 100

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                with network._lock:
                    network.in_flight += 1
                    network.peak = max(network.peak, network.in_flight)
                try:
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                    post_id = json.loads(body)["post_id"]
                    time.sleep(DELAY)
                    with network._lock:
                        network.keys[self.headers["Idempotency-Key"]] += 1
                    answer = json.dumps({"id": f"n-{post_id}",
                                         "url": f"https://net.example/{post_id}"}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(answer)
                    self.close_connection = True
                finally:
                    with network._lock:
                        network.in_flight -= 1

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def reset(self) -> None:
        with self._lock:
            self.keys.clear()
            self.peak = 0

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def build(path: Path, n: int, url: str) -> list[str]:
    """``n`` posts on one webhook channel, due a minute ago; their idempotency keys."""
    start = datetime.now(UTC) - timedelta(minutes=2)
    ws = postflow.open(f"sqlite:///{path}", entry_points=False, clock=FixedClock(start))
    try:
        ws.team.add("ana", roles={"author"})
        ws.team.add("ben", roles={"approver"})
        ws.team.add("cy", roles={"publisher"})
        ws.channels.add(CHANNEL, network="hooks", publisher="webhook",
                        settings={"url": url})
        at = start + timedelta(minutes=1)
        keys = []
        for i in range(n):
            post = ws.posts.create(author="ana", channels=[CHANNEL],
                                   text=f"Post {i}: https://acme.example/p/{i}")
            ws.submit(post.id, by="ana")
            ws.approve(post.id, by="ben")
            ws.schedule(post.id, at=at, by="cy")
            keys.append(ws.publishing.key(post.id, CHANNEL, 1))
    finally:
        ws.close()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return keys


def drain(url: str, parallel: int) -> Counter[str]:
    """One worker on the system clock publishes until nothing is due; the results."""
    ws = postflow.open(url, entry_points=False, publishing=PublishingSettings(
        parallel=parallel, batch=BATCH))
    results: Counter[str] = Counter()
    try:
        while outcomes := ws.publish_due(worker="w1"):
            results.update(o.result for o in outcomes)
    finally:
        ws.close()
    return results


def run(quick: bool) -> Result:
    n = 160 if quick else 800
    serial_n = 10 if quick else 25
    repeat = 1 if quick else REPEAT
    tmp = Path(tempfile.mkdtemp(prefix="postflow-parallel-"))
    network = Network()
    result = Result(NAME)
    try:
        best = float("inf")
        built = 0.0
        checks: list[tuple[bool, str]] = []
        for i in range(repeat):
            t0 = time.perf_counter()
            keys = build(tmp / f"run-{i}.db", n, network.url)
            built = time.perf_counter() - t0
            url = f"sqlite:///{tmp / f'run-{i}.db'}"
            network.reset()
            outcomes: list[Counter[str]] = []
            seconds = timed(lambda url=url, outcomes=outcomes: outcomes.append(  # type: ignore[misc]
                drain(url, PARALLEL)))
            best = min(best, seconds)
            twice = sum(1 for c in network.keys.values() if c > 1)
            ok = (outcomes[0] == Counter(published=n)
                  and network.keys == Counter(dict.fromkeys(keys, 1))
                  and network.peak == PARALLEL)
            checks.append((ok, f"outcomes {dict(outcomes[0])}; {len(network.keys):,} keys "
                               f"received, {twice} twice; at most {network.peak} at once"))

        serial_keys = build(tmp / "serial.db", serial_n, network.url)
        serial_url = f"sqlite:///{tmp / 'serial.db'}"
        network.reset()
        serial_outcomes: list[Counter[str]] = []
        serial = timed(lambda: serial_outcomes.append(drain(serial_url, 1)))
        serial_ok = (serial_outcomes[0] == Counter(published=serial_n)
                     and network.keys == Counter(dict.fromkeys(serial_keys, 1))
                     and network.peak == 1)

        rate, serial_rate = n / best, serial_n / serial
        result.figures += [
            Figure(f"one worker, {PARALLEL} parallel sends, {DELAY * 1e3:.0f} ms network",
                   rate, "posts/s", f"{n:,} due posts, batch {BATCH}, webhook channel, "
                   f"SQLite, best of {repeat}"),
            Figure(f"one worker, serial (parallel=1), {DELAY * 1e3:.0f} ms network",
                   serial_rate, "posts/s", f"{serial_n} due posts; the limit is "
                   f"{1 / DELAY:.0f} posts/s"),
        ]
        result.ratios += [
            Ratio(f"{MIN_RATE:.0f} posts/s / one worker's posts/s with {PARALLEL} parallel "
                  "sends", MIN_RATE / rate, 1.0,
                  f"target ≥ {MIN_RATE:.0f} posts/s; measured {rate:,.1f} "
                  f"({rate / serial_rate:.1f}x serial)"),
        ]
        result.checks += [
            Check(f"{PARALLEL} parallel: every post published, each key received once, "
                  f"{PARALLEL} at once at most", all(ok for ok, _ in checks), checks[-1][1]),
            Check("serial: every post published, each key once, one at a time", serial_ok,
                  f"outcomes {dict(serial_outcomes[0])}; at most {network.peak} at once"),
        ]
        result.notes += [
            f"{n:,} due posts built through the API in {built:.1f} s per run (not timed), "
            f"a new file each run; the network runs in this process ({gc_note()})",
        ]
    finally:
        network.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def profile(quick: bool, top: int = 15) -> str:
    """cProfile of one parallel drain (the main thread only: the sends run in others)."""
    import cProfile
    import io
    import pstats

    n = 160 if quick else 800
    tmp = Path(tempfile.mkdtemp(prefix="postflow-parallel-"))
    network = Network()
    try:
        build(tmp / "due.db", n, network.url)
        profiler = cProfile.Profile()
        profiler.enable()
        drain(f"sqlite:///{tmp / 'due.db'}", PARALLEL)
        profiler.disable()
    finally:
        network.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    from benchmarks.__main__ import run_standalone

    run_standalone("python -m benchmarks.parallel_sends", run, profile,
                   quick_help="160 posts, one run (800, best of 3)",
                   profile_help="print the cProfile of one parallel drain instead",
                   argv=argv)


if __name__ == "__main__":
    main()
