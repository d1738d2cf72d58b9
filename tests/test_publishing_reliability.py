"""Publishing reliability end to end: real ``postflow worker`` processes on one SQLite file,
a real HTTP "network" on 127.0.0.1 (:mod:`network_server`) behind a ``webhook`` channel.

The network records every request that reached it whole, by ``Idempotency-Key``; "never
twice at the network" is checked strictly: no key may arrive whole more than once, except
where a test scripts a retryable fault for that key (after a 429 or 500 the network has
refused the post, and a reset comes before the body, so the same key legitimately comes
again). A repeat after an unknown outcome would be a bug: postflow never resends those.

The worker processes run only postflow's built-in plugins (installed entry-point plugins
are blocked with ``POSTFLOW_DISABLE_PLUGINS``), so a plugin under development elsewhere
cannot disturb them.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import postflow
from network_server import Network
from postflow.publishing import idempotency_key
from postflow.testing import FixedClock

pytestmark = [pytest.mark.acceptance, pytest.mark.slow]

POSTFLOW = Path(sys.executable).with_name("postflow")
CHANNEL = "net"


def worker_env() -> dict[str, str]:
    """The environment of the worker processes: installed entry-point plugins blocked."""
    names = {ep.name for ep in importlib.metadata.entry_points(group="postflow")}
    names.update(n for n in os.environ.get("POSTFLOW_DISABLE_PLUGINS", "").split(",") if n)
    return {**os.environ, "POSTFLOW_DISABLE_PLUGINS": ",".join(sorted(names))}


def build(path: Path, channels: dict[str, dict[str, str]], posts: list[str]) -> str:
    """A SQLite file with webhook ``channels`` (name: settings) and one post due a minute
    ago on each channel named in ``posts`` (ids 1, 2, ... in that order).

    Built through the API on a FixedClock two minutes in the past, so every post is
    scheduled for a (then) future time that is already due on the real clock.
    """
    start = datetime.now(UTC) - timedelta(minutes=2)
    url = f"sqlite:///{path}"
    ws = postflow.open(url, entry_points=False, clock=FixedClock(start))
    try:
        ws.team.add("ana", roles={"author"})
        ws.team.add("ben", roles={"approver"})
        ws.team.add("cy", roles={"publisher"})
        for name, settings in channels.items():
            ws.channels.add(name, network="net", publisher="webhook", settings=settings)
        at = start + timedelta(minutes=1)
        for i, channel in enumerate(posts):
            post = ws.posts.create(author="ana", text=f"Post {i} https://acme.example/{i}",
                                   channels=[channel])
            ws.submit(post.id, by="ana")
            ws.approve(post.id, by="ben")
            ws.schedule(post.id, at=at, by="cy")
        _INSTANCE[0] = ws.storage.instance_id()  # part of every idempotency key
    finally:
        ws.close()
    return url


_INSTANCE = [""]


def key(post_id: int, channel: str = CHANNEL) -> str:
    """The idempotency key of a post's first revision on ``channel``."""
    return idempotency_key(post_id, channel, 1, _INSTANCE[0])


def states(url: str) -> Counter[str]:
    """Posts per state, read with a plain SQLite connection (the workers keep writing)."""
    db = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
    try:
        return Counter(dict(db.execute("SELECT state, count(*) FROM posts GROUP BY state")))
    finally:
        db.close()


def json_lines(text: str) -> list[dict[str, Any]]:
    """The worker's JSON outcome lines in its stderr (every line is JSON; outcomes are
    the ones with a ``result``)."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if "result" in line]


class Worker:
    """One ``postflow worker`` process, its stderr in a file."""

    def __init__(self, url: str, name: str, folder: Path, *args: str) -> None:
        self.name = name
        self.log = folder / f"worker-{name}.log"
        with self.log.open("w", encoding="utf-8") as stderr:
            self.proc = subprocess.Popen(
                [str(POSTFLOW), "worker", "--db", url, "--id", name, "--log-format", "json",
                 *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                env=worker_env())

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        return json_lines(self.text())

    def started(self) -> bool:
        """Whether its loop runs (the SIGTERM handler is installed before this line)."""
        return f"postflow worker {self.name} started" in self.text()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"worker {self.name} exited with {self.proc.returncode}:\n"
                        f"{self.text()[-3000:]}")

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@pytest.fixture(name="workers")
def _workers() -> Iterator[list[Worker]]:
    """Worker processes a test starts; any still running at teardown are killed."""
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(30)


def wait_for(condition: Callable[[], bool], what: str, *, timeout: float,
             alive: Sequence[Worker] = ()) -> None:
    """Poll ``condition`` until true; fail after ``timeout`` s or if a worker died."""
    deadline = time.monotonic() + timeout
    while not condition():
        for worker in alive:
            worker.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def run_once(url: str, name: str, *args: str) -> tuple[int, str]:
    """``postflow worker --once``: its exit code and stderr."""
    done = subprocess.run(
        [str(POSTFLOW), "worker", "--db", url, "--once", "--id", name, "--log-format", "json",
         *args], capture_output=True, text=True, timeout=120, check=False, env=worker_env())
    return done.returncode, done.stderr


class TestExactlyOnce:
    """Four workers drain 2,000 due posts concurrently, each post exactly once."""

    def test_four_workers_publish_2000_posts_exactly_once(
        self, tmp_path: Path, workers: list[Worker]
    ) -> None:
        """Every key reaches the network once and every post is published once, as logged."""
        total = 2000
        with Network() as net:
            url = build(tmp_path / "social.db", {CHANNEL: {"url": net.url}}, [CHANNEL] * total)
            workers.extend(Worker(url, f"w{n}", tmp_path, "--interval", "0.05",
                                  "--batch", "20") for n in range(1, 5))
            wait_for(lambda: states(url)["published"] == total, "all posts published",
                     timeout=240, alive=workers)
            wait_for(lambda: all(w.started() for w in workers), "the workers' start lines",
                     timeout=60, alive=workers)
            assert [w.terminate() for w in workers] == [0] * 4, [w.text()[-2000:]
                                                                 for w in workers]
        assert net.errors == []
        ws = postflow.open(url, entry_points=False)
        try:
            ids = [p.id for p in ws.posts.list()]
            assert len(ids) == total
            requests = net.snapshot()
            assert Counter(r.key for r in requests) == Counter({key(i): 1 for i in ids})
            assert {r.outcome for r in requests} == {"published"}
            by_key = {r.key: r for r in requests}
            for post_id in ids:
                post = ws.posts.get(post_id)
                assert post.state == "published"
                [delivery] = ws.deliveries(post_id)
                got = by_key[delivery.idempotency_key]
                assert (delivery.status, delivery.idempotency_key, got.post_id,
                        delivery.attempts) == ("sent", key(post_id), post_id, 1)
                assert delivery.remote_id == got.remote_id
                assert post.published_urls[CHANNEL] == \
                    f"https://network.example/{got.remote_id}"
        finally:
            ws.close()
        logged = [line for w in workers for line in w.lines()]
        assert Counter(line["post"] for line in logged) == Counter(ids)
        assert {line["result"] for line in logged} == {"published"}
        per_worker = Counter(line["worker"] for line in logged)
        assert len(per_worker) >= 2, per_worker  # they really ran side by side
        print(f"\nexactly once: {total} posts, per worker {dict(sorted(per_worker.items()))}")


class TestCrashes:
    """kill -9 at random points never loses a post and never sends one twice."""

    def test_twenty_kills_lose_nothing_and_send_nothing_twice(
        self, tmp_path: Path, workers: list[Worker]
    ) -> None:
        """Each post ends published (its key received once) or unconfirmed (at most once)."""
        total, kills_wanted, lease = 500, 20, 1.0
        seed = random.randrange(1 << 32)
        rng = random.Random(seed)
        note = f"(seed {seed})"
        with Network(delay=(0.01, 0.04), seed=seed) as net:
            url = build(tmp_path / "social.db", {CHANNEL: {"url": net.url}}, [CHANNEL] * total)
            alive: list[Worker] = []
            kills = 0
            left_at_kills: list[int] = []
            while kills < kills_wanted:
                while len(alive) < rng.choice((1, 2)):
                    worker = Worker(url, f"c{len(workers) + 1}", tmp_path, "--interval",
                                    "0.05", "--batch", "5", "--lease", str(lease))
                    workers.append(worker)
                    alive.append(worker)
                victim = rng.choice(alive)
                wait_for(victim.started, f"worker {victim.name} to start", timeout=60,
                         alive=alive)
                time.sleep(rng.uniform(0.05, 0.4))
                victim.check_alive()
                left_at_kills.append(states(url)["scheduled"])
                os.kill(victim.proc.pid, signal.SIGKILL)
                assert victim.proc.wait(30) == -signal.SIGKILL
                alive.remove(victim)
                kills += 1
            left_after_kills = states(url)["scheduled"]
            wait_for(lambda: all(w.started() for w in alive), "the workers' start lines",
                     timeout=60, alive=alive)
            assert [w.terminate() for w in alive] == [0] * len(alive), note
            # clean passes once the dead workers' leases have run out, until none is due
            passes = 0
            deadline = time.monotonic() + 180
            while states(url)["scheduled"]:
                assert time.monotonic() < deadline, f"posts left scheduled {note}"
                time.sleep(lease + 0.2)
                passes += 1
                code, stderr = run_once(url, f"final{passes}", "--lease", str(lease))
                assert code == 0, stderr
        # a killed client leaves the network's side of the connection broken: nothing else
        assert all(isinstance(e, ConnectionError) for e in net.errors), net.errors
        received = net.received()
        assert [k for k, n in received.items() if n > 1] == [], f"sent twice {note}"
        assert {r.outcome for r in net.snapshot()} <= {"published", "partial"}
        answered = {r.key: r.remote_id for r in net.snapshot() if r.outcome == "published"}
        published, unconfirmed = [], []
        ws = postflow.open(url, entry_points=False)
        try:
            posts = ws.posts.list()
            assert len(posts) == total
            assert Counter(p.state for p in posts).keys() <= {"published", "failed"}, note
            for post in posts:
                [delivery] = ws.deliveries(post.id)
                assert delivery.idempotency_key == key(post.id)
                if post.state == "published":
                    assert delivery.status == "sent", (post.id, delivery, note)
                    assert received[key(post.id)] == 1, (post.id, note)
                    assert delivery.remote_id == answered[key(post.id)]
                    published.append(post.id)
                else:
                    assert delivery.status == "unconfirmed", (post.id, delivery, note)
                    assert ws.history(post.id)[-1].data["reason"] == "unconfirmed"
                    assert received[key(post.id)] <= 1
                    unconfirmed.append(post.id)
        finally:
            ws.close()
        assert len(published) + len(unconfirmed) == total
        assert unconfirmed, f"no kill landed mid-publish {note}"  # the test's own premise
        reached = sum(1 for i in unconfirmed if received[key(i)])
        print(f"\ncrashes {note}: {kills} kills (posts due at each: {left_at_kills}), "
              f"{left_after_kills} posts left for "
              f"{passes} clean passes; {len(published)} published, {len(unconfirmed)} "
              f"unconfirmed ({reached} of them had reached the network)")


class TestFaultsEndToEnd:
    """Each fault of the network, through ``postflow worker --once``, ends as documented."""

    def test_429_500_reset_and_timeout(self, tmp_path: Path) -> None:
        """429/500/reset wait, then publish with the same key; a timeout is unconfirmed."""
        impatient = "net-impatient"  # only the timeout's channel waits just 0.5 s
        with Network(retry_after=1) as net:
            url = build(tmp_path / "social.db", {
                CHANNEL: {"url": net.url}, impatient: {"url": net.url, "timeout": "0.5"}},
                [CHANNEL, CHANNEL, CHANNEL, impatient])
            keys = {1: key(1), 2: key(2), 3: key(3), 4: key(4, impatient)}
            for post_id, fault in {1: "429", 2: "500", 3: "reset", 4: "timeout"}.items():
                net.script(keys[post_id], [fault])
            before = datetime.now(UTC)
            code, stderr = run_once(url, "first")
            assert code == 0, stderr
            assert {line["post"]: line["result"] for line in json_lines(stderr)} == {
                1: "waiting", 2: "waiting", 3: "waiting", 4: "unconfirmed"}
            ws = postflow.open(url, entry_points=False)
            try:
                expected = {1: "answered HTTP 429", 2: "answered HTTP 500",
                            3: "failed before the body was sent"}
                for post_id, error in expected.items():
                    post = ws.posts.get(post_id)
                    [delivery] = ws.deliveries(post_id)
                    assert (post.state, post.claimed_by, delivery.status,
                            delivery.attempts) == ("scheduled", None, "pending", 1)
                    assert error in (delivery.last_error or ""), delivery
                    # at least the Retry-After (1 s); the backoff (15-30 s at first) rules
                    assert post.claimed_until is not None
                    assert post.claimed_until >= before + timedelta(seconds=1)
                retry_at = max(ws.posts.get(i).claimed_until or before for i in expected)
                [delivery] = ws.deliveries(4)
                assert (ws.posts.get(4).state, delivery.status) == ("failed", "unconfirmed")
                assert "no answer after the post was sent" in (delivery.last_error or "")
                assert ws.history(4)[-1].data["reason"] == "unconfirmed"
            finally:
                ws.close()
            # before the retries are due a pass does nothing
            code, stderr = run_once(url, "early")
            assert (code, json_lines(stderr)) == (0, [])
            wait_for(lambda: datetime.now(UTC) > retry_at + timedelta(seconds=0.2),
                     "the retries to fall due", timeout=60)
            code, stderr = run_once(url, "second")
            assert code == 0, stderr
            assert {line["post"]: line["result"] for line in json_lines(stderr)} == {
                1: "published", 2: "published", 3: "published"}
            # a person retries the unconfirmed post: it is settled again, never resent
            ws = postflow.open(url, entry_points=False)
            try:
                ws.fire(4, "retry", by="cy")
            finally:
                ws.close()
            code, stderr = run_once(url, "third")
            assert code == 0, stderr
            assert {line["post"]: line["result"] for line in json_lines(stderr)} == {
                4: "unconfirmed"}
            code, stderr = run_once(url, "fourth")
            assert (code, json_lines(stderr)) == (0, [])
        assert net.errors == []
        assert {i: net.outcomes(k) for i, k in keys.items()} == {
            1: ["429", "published"], 2: ["500", "published"], 3: ["reset", "published"],
            4: ["timeout"]}
        assert net.received() == Counter({keys[1]: 2, keys[2]: 2, keys[3]: 1, keys[4]: 1})
        ws = postflow.open(url, entry_points=False)
        try:
            assert [ws.posts.get(i).state for i in keys] == ["published"] * 3 + ["failed"]
            assert [(d.status, d.idempotency_key, d.attempts) for i in (1, 2, 3)
                    for d in ws.deliveries(i)] == [("sent", keys[i], 2) for i in (1, 2, 3)]
            assert [d.status for d in ws.deliveries(4)] == ["unconfirmed"]
        finally:
            ws.close()
