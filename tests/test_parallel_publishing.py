"""Parallel sends in one worker pass (``PublishingSettings.parallel``, the per-network
and per-channel limits): a real HTTP "network" on 127.0.0.1 (:mod:`network_server`)
that takes 200 ms per request, counts requests by idempotency key and records how many
it handled at once, per channel path; ``webhook`` channels point at it.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import postflow
from network_server import Network
from postflow.publishing import PublishingSettings
from postflow.testing import FixedClock
from test_publishing_reliability import (
    CHANNEL,
    Worker,
    _workers,  # noqa: F401 - the ``workers`` fixture
    build,
    key,
    run_once,
    states,
    wait_for,
)

DELAY = 0.2  # seconds the network takes per request


def setup(ws: postflow.Workspace, net: Network, posts: dict[str, int],
          **settings: str) -> dict[str, list[int]]:
    """Webhook channels on network ``net`` (one per name in ``posts``, each at its own
    path) and that many posts due on each; the post ids per channel."""
    ws.team.add("ana", roles={"author"})
    ws.team.add("ben", roles={"approver"})
    ws.team.add("cy", roles={"publisher"})
    ids: dict[str, list[int]] = {}
    for name in posts:
        ws.channels.add(name, network="net", publisher="webhook",
                        settings={"url": f"{net.url}/{name}", **settings})
    for name, count in posts.items():
        for i in range(count):
            post = ws.posts.create(author="ana", text=f"{name} {i}", channels=[name])
            ws.submit(post.id, by="ana")
            ws.approve(post.id, by="ben")
            ws.schedule(post.id, at=ws.clock.now() + timedelta(minutes=1), by="cy")
            ids.setdefault(name, []).append(post.id)
    return ids


def open_ws(make_ws: Callable[..., postflow.Workspace], url: str, **settings: Any
            ) -> postflow.Workspace:
    return make_ws(url, publishing=PublishingSettings(**settings))


def test_sixteen_at_once_publish_each_post_once_far_faster_than_serial(
        url: str, make_ws: Callable[..., postflow.Workspace], clock: FixedClock) -> None:
    """48 posts, 16 at once, 200 ms each: every post published, each key received once,
    in about 3 x 200 ms (serially: 9.6 s); never more than 16 requests at once."""
    with Network(delay=(DELAY, DELAY)) as net:
        ws = open_ws(make_ws, url, parallel=16)
        ids = setup(ws, net, {"c1": 24, "c2": 24})
        clock.advance(minutes=2)
        started = time.monotonic()
        outcomes = ws.publish_due(worker="w1")
        took = time.monotonic() - started
    all_ids = ids["c1"] + ids["c2"]
    assert [o.post_id for o in outcomes] == sorted(all_ids)  # claim order kept
    assert {o.result for o in outcomes} == {"published"}
    assert net.errors == []
    expected = Counter({ws.publishing.key(i, c, 1): 1 for c, group in ids.items()
                        for i in group})
    assert net.received() == expected
    for post_id in all_ids:
        post = ws.posts.get(post_id)
        [delivery] = ws.deliveries(post_id)
        assert (post.state, post.claimed_by, delivery.status, delivery.attempts) == (
            "published", None, "sent", 1)
        assert [e.action for e in ws.history(post_id)][-2:] == ["claim", "publish"]
    assert ws.publish_due(worker="w1") == []
    serial = len(all_ids) * DELAY
    assert took < serial / 4, (took, serial)
    assert 8 <= net.peak["*"] <= 16, net.peak


def test_a_channel_limit_holds(
        url: str, make_ws: Callable[..., postflow.Workspace], clock: FixedClock) -> None:
    """A channel limited to 2 never has more than 2 requests at once while an unlimited
    one has many."""
    with Network(delay=(DELAY, DELAY)) as net:
        ws = open_ws(make_ws, url, parallel=8, channel_limits={"slow": 2})
        setup(ws, net, {"slow": 8, "fast": 8})
        clock.advance(minutes=2)
        outcomes = ws.publish_due(worker="w1")
        assert {o.result for o in outcomes} == {"published"}
        assert net.peak["/hook/slow"] == 2, net.peak
        assert net.peak["/hook/fast"] >= 4, net.peak
        assert set(net.received().values()) == {1}


def test_a_network_limit_caps_its_channels_together(
        url: str, make_ws: Callable[..., postflow.Workspace], clock: FixedClock) -> None:
    """Two channels of one network limited to 3 have at most 3 requests at once."""
    with Network(delay=(DELAY, DELAY)) as net:
        ws = open_ws(make_ws, url, parallel=8, network_limits={"net": 3})
        setup(ws, net, {"a": 6, "b": 6})
        clock.advance(minutes=2)
        started = time.monotonic()
        outcomes = ws.publish_due(worker="w1")
        took = time.monotonic() - started
        assert {o.result for o in outcomes} == {"published"}
        assert net.peak["*"] == 3, net.peak
        assert took >= 4 * DELAY * 0.9  # 12 posts, 3 at a time
        assert set(net.received().values()) == {1}


def test_failures_retries_and_unknown_outcomes_in_parallel(
        url: str, make_ws: Callable[..., postflow.Workspace], clock: FixedClock) -> None:
    """429, 500, a reset and a timeout among parallel sends end as they do serially: the
    retryable ones wait and go out once on the next pass, the timeout is unconfirmed and
    never resent, the rest are published once."""
    with Network(delay=(0.05, 0.05)) as net:
        ws = open_ws(make_ws, url, parallel=8)
        ids = setup(ws, net, {"c": 12}, timeout="1", deadline="3")["c"]
        faults = {ids[0]: ["429"], ids[1]: ["500"], ids[2]: ["reset"], ids[3]: ["timeout"],
                  ids[4]: ["429", "500"]}
        for post_id, script in faults.items():
            net.script(ws.publishing.key(post_id, "c", 1), script)
        clock.advance(minutes=2)
        first = {o.post_id: o.result for o in ws.publish_due(worker="w1")}
        assert first == {i: ("waiting" if i in (ids[0], ids[1], ids[2], ids[4]) else
                             "unconfirmed" if i == ids[3] else "published") for i in ids}
        for _ in range(3):
            clock.advance(hours=2)
            ws.publish_due(worker="w1")
        states_now = {i: ws.posts.get(i).state for i in ids}
        assert states_now == {i: "failed" if i == ids[3] else "published" for i in ids}
        [timed_out] = ws.deliveries(ids[3])
        assert timed_out.status == "unconfirmed"
        received = net.received()
        for post_id in ids:
            k = ws.publishing.key(post_id, "c", 1)
            refused = sum(1 for f in faults.get(post_id, []) if f in ("429", "500"))
            # a reset comes before the body: it never counts as received
            assert received[k] == refused + 1, (post_id, net.outcomes(k))


class RunningClock(FixedClock):
    """A FixedClock that also moves with real time (leases run out as they would)."""

    def __init__(self) -> None:
        super().__init__()
        self.began = time.monotonic()

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=time.monotonic() - self.began)


def test_a_post_whose_lease_ran_out_in_the_queue_is_not_sent(
        url: str, make_ws: Callable[..., postflow.Workspace]) -> None:
    """One at a time on a channel limited to 1, 200 ms each, with a 0.7 s lease: the
    posts still queued when their lease ends (the 5th and 6th at least) are not sent by
    this pass (``lost-lease``) and go out once on a later one."""
    clock = RunningClock()
    with Network(delay=(DELAY, DELAY)) as net:
        ws = make_ws(url, clock=clock, publishing=PublishingSettings(
            parallel=4, channel_limits={"c": 1}, lease=timedelta(seconds=0.7)))
        ids = setup(ws, net, {"c": 6})["c"]
        clock.advance(minutes=2)
        first = [o.result for o in ws.publish_due(worker="w1")]
        assert set(first) == {"published", "lost-lease"}, first
        assert first[-2:] == ["lost-lease"] * 2, first
        assert all(ws.deliveries(o) == [] for o, r in zip(ids, first, strict=True)
                   if r == "lost-lease")  # nothing recorded, nothing sent
        deadline = time.monotonic() + 20
        while any(ws.posts.get(i).state == "scheduled" for i in ids):
            assert time.monotonic() < deadline
            ws.publish_due(worker="w2")
            time.sleep(0.1)
        assert {ws.posts.get(i).state for i in ids} == {"published"}
        assert net.received() == Counter({ws.publishing.key(i, "c", 1): 1 for i in ids})
        assert net.peak["/hook/c"] == 1


def test_stop_releases_the_posts_not_started(
        url: str, make_ws: Callable[..., postflow.Workspace], clock: FixedClock) -> None:
    """``stop`` saying yes mid-pass: the posts in flight finish, the others are released
    unsent (scheduled, unclaimed, no delivery) and published by the next pass."""
    with Network(delay=(DELAY, DELAY)) as net:
        ws = open_ws(make_ws, url, parallel=3)
        setup(ws, net, {"c": 9})
        clock.advance(minutes=2)
        asked: list[int] = []

        def stop() -> bool:
            asked.append(1)
            return len(asked) > 1  # after the first posts are under way

        outcomes = {o.post_id: o.result for o in ws.publish_due(worker="w1", stop=stop)}
        assert list(outcomes.values()).count("published") == 3, outcomes
        released = [i for i, r in outcomes.items() if r == "released"]
        assert len(released) == 6
        for post_id in released:
            post = ws.posts.get(post_id)
            assert (post.state, post.claimed_by, ws.deliveries(post_id)) == (
                "scheduled", None, [])
        assert {o.result for o in ws.publish_due(worker="w1")} == {"published"}
        assert set(net.received().values()) == {1}
        assert len(net.received()) == 9


def test_a_pause_mid_pass_holds_the_posts_not_started(
        url: str, make_ws: Callable[..., postflow.Workspace], clock: FixedClock) -> None:
    """A pause that comes while the first posts are in flight: those finish, the posts
    started after it are released ``held`` with nothing recorded, and go out once when
    publishing resumes."""
    import threading

    with Network(delay=(DELAY, DELAY)) as net:
        ws = open_ws(make_ws, url, parallel=2)
        ids = setup(ws, net, {"c": 8})["c"]
        clock.advance(minutes=2)
        pauser = threading.Timer(DELAY / 2, lambda: ws.pause(by="cy", reason="crisis"))
        pauser.start()
        first = [o.result for o in ws.publish_due(worker="w1")]
        pauser.join()
        assert first[:2] == ["published", "published"], first
        assert "held" in first, first
        assert set(first) == {"published", "held"}, first
        for post_id, result in zip(ids, first, strict=True):
            if result == "held":
                post = ws.posts.get(post_id)
                assert (post.state, post.claimed_by, ws.deliveries(post_id)) == (
                    "scheduled", None, [])
        ws.resume(by="cy")
        assert {o.result for o in ws.publish_due(worker="w1")} == {"published"}
        assert net.received() == Counter({ws.publishing.key(i, "c", 1): 1 for i in ids})


@pytest.mark.parametrize(("settings", "words"), [
    ({"parallel": 0}, ["parallel", "1 to 256"]),
    ({"parallel": 257}, ["parallel"]),
    ({"parallel": True}, ["parallel", "int"]),
    ({"parallel": "4"}, ["parallel"]),
    ({"network_limits": {"mastodon": 0}}, ["network_limits['mastodon']"]),
    ({"network_limits": {"x": True}}, ["network_limits['x']"]),
    ({"channel_limits": {"acme-x": 2.5}}, ["channel_limits['acme-x']"]),
    ({"channel_limits": {"": 2}}, ["channel_limits", "not a name"]),
    ({"channel_limits": [("acme-x", 2)]}, ["channel_limits", "mapping"]),
])
def test_bad_parallel_settings_name_the_key(settings: dict[str, Any],
                                             words: list[str]) -> None:
    with pytest.raises(postflow.ConfigError) as caught:
        PublishingSettings(**settings)
    for word in words:
        assert word in str(caught.value)


def test_limits_are_read_only_copies() -> None:
    limits = {"acme-x": 2}
    settings = PublishingSettings(parallel=4, channel_limits=limits)
    limits["acme-x"] = 99
    assert settings.channel_limits == {"acme-x": 2}
    with pytest.raises(TypeError):
        settings.channel_limits["acme-x"] = 3  # type: ignore[index]
    assert PublishingSettings().parallel == 1


# -- the worker process -----------------------------------------------------------------

@pytest.mark.acceptance
def test_worker_parallel_option_with_a_channel_limit(tmp_path: Path) -> None:
    """``postflow worker --once --parallel 8 --channel-limit net=3``: all published
    once, at most 3 at once on the channel; a malformed limit is a usage error."""
    with Network(delay=(0.1, 0.1)) as net:
        url = build(tmp_path / "social.db", {CHANNEL: {"url": net.url}}, [CHANNEL] * 24)
        code, stderr = run_once(url, "p1", "--parallel", "8", "--channel-limit",
                                f"{CHANNEL}=3")
        assert code == 0, stderr
        assert net.peak["*"] == 3, net.peak
        assert net.received() == Counter({key(i): 1 for i in range(1, 25)})
        assert states(url) == Counter({"published": 24})
        code, stderr = run_once(url, "p2", "--parallel", "8", "--channel-limit", "net")
        assert code == 2, stderr
        assert "NAME=N" in stderr


@pytest.mark.acceptance
@pytest.mark.slow
def test_kill_9_mid_parallel_batch_loses_nothing_and_sends_nothing_twice(
        tmp_path: Path, workers: list[Worker]) -> None:
    """Workers sending 8 at once are killed with SIGKILL 6 times mid-batch; clean passes
    then finish: every post is published (its key received once) or unconfirmed (at
    most once at the network), as with serial workers."""
    total, kills_wanted, lease = 200, 6, 1.0
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    note = f"(seed {seed})"
    with Network(delay=(0.05, 0.15), seed=seed) as net:
        url = build(tmp_path / "social.db", {CHANNEL: {"url": net.url}}, [CHANNEL] * total)
        for kill in range(kills_wanted):
            victim = Worker(url, f"k{kill}", tmp_path, "--interval", "0.05", "--batch",
                            "16", "--parallel", "8", "--lease", str(lease))
            workers.append(victim)
            wait_for(victim.started, f"worker {victim.name} to start", timeout=60,
                     alive=[victim])
            time.sleep(rng.uniform(0.1, 0.5))
            victim.check_alive()
            os.kill(victim.proc.pid, signal.SIGKILL)
            assert victim.proc.wait(30) == -signal.SIGKILL
        passes = 0
        deadline = time.monotonic() + 120
        while states(url)["scheduled"]:
            assert time.monotonic() < deadline, f"posts left scheduled {note}"
            time.sleep(lease + 0.2)
            passes += 1
            code, stderr = run_once(url, f"final{passes}", "--lease", str(lease),
                                    "--parallel", "8")
            assert code == 0, stderr
    assert all(isinstance(e, ConnectionError) for e in net.errors), net.errors
    received = net.received()
    assert [k for k, n in received.items() if n > 1] == [], f"sent twice {note}"
    ws = postflow.open(url, entry_points=False)
    try:
        posts = ws.posts.list()
        assert len(posts) == total
        unconfirmed = 0
        for post in posts:
            [delivery] = ws.deliveries(post.id)
            if post.state == "published":
                assert delivery.status == "sent", (post.id, delivery, note)
                assert received[key(post.id)] == 1, (post.id, note)
            else:
                assert (post.state, delivery.status) == ("failed", "unconfirmed"), note
                assert received[key(post.id)] <= 1
                unconfirmed += 1
    finally:
        ws.close()
    assert unconfirmed, f"no kill landed mid-send {note}"
    print(f"\nparallel crashes {note}: {kills_wanted} kills, {passes} clean passes, "
          f"{total - unconfirmed} published, {unconfirmed} unconfirmed")
