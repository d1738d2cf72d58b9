"""Leases that fit slow sends: the heartbeat and the guarded rescue.

* A worker renews the lease of a post it is still sending (``Storage.renew_lease``), so
  a network call three times longer than the lease never lets a second worker in: a real
  HTTP "network" on 127.0.0.1 (:mod:`network_server`) answers after 3 s, the lease is
  1 s, a second worker polls all along, and the network receives the post once.
* A worker that is just finishing and a worker taking its run-out lease over: exactly
  one of them wins, whatever the interleaving (two workspaces on one database, two
  threads released at once, many rounds).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

import postflow
from conftest import _postgres_url, add_team
from network_server import Network
from postflow import hookimpl
from postflow.publishing import Outcome, Outgoing, Published, PublishingSettings
from postflow.testing import FixedClock

MakeWs = Callable[..., postflow.Workspace]


@pytest.fixture(name="shared_url", params=["sqlite", "postgres"])
def _shared_url(request: pytest.FixtureRequest, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database two workspaces (two connections) can share: SQLite, and PostgreSQL
    when the plugin is installed and the test server answers (with ``CI=true`` an
    unreachable server fails instead)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    try:
        import postflow_postgres  # noqa: F401
        import psycopg
    except ImportError:  # the README's test run; .ci/run runs these again with the plugin
        pytest.skip("plugins/postflow-postgres is not installed")
    from conftest import POSTGRES
    try:
        psycopg.connect(POSTGRES, connect_timeout=3).close()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no PostgreSQL for this test: {exc}")
    yield from _postgres_url(monkeypatch)


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_call_three_times_the_lease_is_sent_once(shared_url: str, parallel: int) -> None:
    """Lease 1 s, the network answers after 3 s, a second worker polls every 50 ms the
    whole time (its own connection): each key reaches the network once, the posts are
    published by the first worker (one after another, or 3 at once, each in its own
    thread), the second never claims one, and the leases read from the second
    connection mid-call are still running."""
    lease = timedelta(seconds=1)
    settings = PublishingSettings(lease=lease, parallel=parallel)
    with Network(delay=(3.0, 3.0)) as net:
        ws_a = postflow.open(shared_url, entry_points=False, publishing=settings)
        try:
            add_team(ws_a)
            ws_a.channels.add("slow", network="net", publisher="webhook",
                              settings={"url": net.url})
            ids = []
            for i in range(parallel):
                post = ws_a.posts.create(author="ana", text=f"A slow network {i}",
                                         channels=["slow"])
                ws_a.submit(post.id, by="ana")
                ws_a.approve(post.id, by="ben")
                ws_a.schedule(post.id, at=ws_a.clock.now() + timedelta(seconds=1), by="cy")
                ids.append(post.id)
            ws_b = postflow.open(shared_url, entry_points=False, publishing=settings)
            try:
                time.sleep(1.1)
                outcomes_a: list[Outcome] = []
                outcomes_b: list[Outcome] = []
                running_leases: list[bool] = []
                finished = threading.Event()

                def first() -> None:
                    try:
                        outcomes_a.extend(ws_a.publish_due(worker="A"))
                    finally:
                        finished.set()

                thread = threading.Thread(target=first)
                started = time.monotonic()
                thread.start()
                while any(ws_b.posts.get(i).claimed_by != "A" for i in ids):  # A first
                    assert time.monotonic() - started < 5, "worker A never claimed"
                    time.sleep(0.01)
                while not finished.is_set() or time.monotonic() - started < 4.5:
                    outcomes_b.extend(ws_b.publish_due(worker="B"))
                    for seen in ws_b.storage.get_posts(ids):
                        if seen.state == "scheduled" and seen.claimed_by == "A" and (
                                time.monotonic() - started > 1.5):
                            running_leases.append(seen.claimed_until is not None and
                                                  seen.claimed_until > ws_b.clock.now())
                    time.sleep(0.05)
                thread.join()
                took = time.monotonic() - started
                histories = [ws_b.history(i) for i in ids]
                finals = [ws_b.posts.get(i) for i in ids]
            finally:
                ws_b.close()
        finally:
            ws_a.close()
    assert took >= 3.0
    assert [o.result for o in outcomes_a] == ["published"] * parallel
    assert outcomes_b == []
    assert net.received() == Counter({ws_a.publishing.key(i, "slow", 1): 1 for i in ids})
    assert net.errors == []
    assert [p.state for p in finals] == ["published"] * parallel
    for history in histories:
        assert [(e.action, e.actor) for e in history
                if e.action in ("claim", "publish")] == [("claim", "A"), ("publish", "A")]
    assert running_leases  # sampled after the first lease would have run out
    assert all(running_leases)


class Gate:
    """A network whose calls wait until the test lets them through; counts keys and can
    look a post up by its key (``check``)."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()

    def publish(self, item: Outgoing) -> Published:
        with self.lock:
            self.keys[item.idempotency_key] += 1
        self.entered.set()
        assert self.release.wait(10), "the test never released the call"
        return Published(f"r-{item.post_id}")

    def check(self, item: Outgoing) -> Published | None:
        with self.lock:
            return Published(f"r-{item.post_id}") if self.keys[item.idempotency_key] else None

    @hookimpl
    def postflow_register_publishers(self, register: Callable[[str, Any], None]) -> None:
        register("x", self)


ROUNDS = 12


def finish(ws: postflow.Workspace, outcomes: list[Outcome]) -> None:
    outcomes.extend(ws.publish_due(worker="A"))


def rescue(ws: postflow.Workspace, outcomes: list[Outcome], go: threading.Barrier) -> None:
    go.wait()
    outcomes.extend(ws.publish_due(worker="B"))


def test_a_finishing_worker_and_a_rescuer_never_both_win(
        shared_url: str, make_ws: MakeWs, clock: FixedClock) -> None:
    """Worker A is mid-call when its lease runs out (a stalled heartbeat); then A's
    call returns and worker B's claim runs at the same moment, in two threads on two
    connections. Round after round exactly one wins: either A stores ``publish`` and B
    claims nothing, or B's claim takes the post over and A's result loses its
    compare-and-set (``lost-lease``, the sent delivery kept). The network never gets a
    key twice, and every post ends published."""
    gate = Gate()
    settings = PublishingSettings(lease=timedelta(minutes=5))
    ws_a = make_ws(shared_url, plugins=[gate], publishing=settings)
    ws_b = make_ws(shared_url, plugins=[gate], publishing=settings)
    add_team(ws_a)
    wins: Counter[str] = Counter()
    for _ in range(ROUNDS):
        post = ws_a.posts.create(author="ana", text="Race", channels=["acme-x"])
        ws_a.submit(post.id, by="ana")
        ws_a.approve(post.id, by="ben")
        ws_a.schedule(post.id, at=clock.now() + timedelta(minutes=1), by="cy")
        clock.advance(minutes=2)
        gate.entered.clear()
        gate.release.clear()
        result_a: list[Outcome] = []
        result_b: list[Outcome] = []
        go = threading.Barrier(2)
        thread_a = threading.Thread(target=finish, args=(ws_a, result_a))
        thread_a.start()
        assert gate.entered.wait(10)
        clock.advance(minutes=6)  # A's lease has run out while its call is in flight
        thread_b = threading.Thread(target=rescue, args=(ws_b, result_b, go))
        thread_b.start()
        go.wait()
        gate.release.set()
        thread_a.join(20)
        thread_b.join(20)
        history = [(e.action, e.actor) for e in ws_a.history(post.id)]
        [outcome_a] = result_a
        if outcome_a.result == "published":
            wins["finisher"] += 1
            assert result_b == []
            assert ("claim", "B") not in history
        else:
            wins["rescuer"] += 1
            assert outcome_a.result == "lost-lease"
            assert [o.post_id for o in result_b] == [post.id]
            assert ("claim", "B") in history
            assert ("publish", "A") not in history
            assert [d.status for d in ws_a.deliveries(post.id)] == ["sent"]
            clock.advance(minutes=11)  # B may have waited out the young "sending"
            ws_b.publish_due(worker="B")
        assert ws_a.posts.get(post.id).state == "published"
    assert sum(wins.values()) == ROUNDS
    assert set(gate.keys.values()) == {1}
    assert len(gate.keys) == ROUNDS


def test_a_renewed_lease_refuses_a_person_whose_snapshot_is_older(
        ws: postflow.Workspace, clock: FixedClock) -> None:
    """A renewal keeps the version, so a remembered snapshot of the claimed post may
    show the first lease, run out: a person's change is judged on a fresh read and
    refused while the renewed lease runs, then allowed once it has run out too."""
    post = ws.posts.create(author="ana", text="Held", channels=["acme-x"])
    ws.submit(post.id, by="ana")
    ws.approve(post.id, by="ben")
    ws.schedule(post.id, at=clock.now() + timedelta(minutes=1), by="cy")
    clock.advance(minutes=2)
    now = clock.now()
    [claimed] = ws.storage.claim_due(now, "w1", now + timedelta(minutes=5), 5,
                                     frozenset(), "c")
    with pytest.raises(postflow.InvalidTransition, match="being published by w1"):
        ws.unschedule(post.id, by="cy")  # the engine now remembers this snapshot
    assert ws.storage.renew_lease(post.id, "w1", now + timedelta(minutes=9),
                                  now + timedelta(minutes=3))
    clock.advance(minutes=6)  # the first lease has run out, the renewed one runs
    with pytest.raises(postflow.InvalidTransition, match="being published by w1"):
        ws.unschedule(post.id, by="cy")
    assert ws.storage.get_post(post.id) == attrs.evolve(
        claimed, claimed_until=now + timedelta(minutes=9))
    clock.advance(minutes=4)
    assert ws.unschedule(post.id, by="cy").state == "approved"
