"""Publishing in one process: leases, deliveries, retries, unknown outcomes, holds.

A real publisher plugin (in-process, registered through ``postflow_register_publishers``)
stands in for the network and records every call; every backend runs every test.
Multi-process and crash tests against a local HTTP network are in
``test_publishing_reliability.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import postflow
from conftest import add_team
from postflow.hookspecs import hookimpl
from postflow.publishing import (
    Outgoing,
    Published,
    PublishingSettings,
    RetryPolicy,
    idempotency_key,
)
from postflow.testing import FixedClock

MakeWs = Callable[..., postflow.Workspace]


class Network:
    """A publisher plugin: answers from a script per channel, records every call."""

    def __init__(self) -> None:
        self.calls: list[Outgoing] = []
        self.script: dict[str, list[Exception | None]] = {}
        self.checkable: dict[str, Published | None] | None = None

    @hookimpl
    def postflow_register_publishers(self, register: Callable[[str, Any], None]) -> None:
        register("x", self)
        register("linkedin", self)

    def publish(self, item: Outgoing) -> Published:
        self.calls.append(item)
        queue = self.script.get(item.channel.name, [])
        error = queue.pop(0) if queue else None
        if error is not None:
            raise error
        return Published(f"{item.channel.name}-{item.post_id}",
                          f"https://{item.channel.network}.example/{item.post_id}")

    def sent(self, channel: str | None = None) -> list[int]:
        return [c.post_id for c in self.calls if channel in (None, c.channel.name)]


class CheckingNetwork(Network):
    """A network that can say whether a key was published (a status check)."""

    def __init__(self) -> None:
        super().__init__()
        self.known: dict[str, Published] = {}

    def check(self, item: Outgoing) -> Published | None:
        return self.known.get(item.idempotency_key)


@pytest.fixture(name="network")
def _network() -> Network:
    return Network()


@pytest.fixture(name="pws")
def _pws(url: str, make_ws: MakeWs, network: Network) -> postflow.Workspace:
    ws = make_ws(url, plugins=[network], publishing=PublishingSettings(
        lease=timedelta(minutes=5), retry=RetryPolicy(max_attempts=3, first_delay=60)))
    add_team(ws)
    return ws


def due(ws: postflow.Workspace, clock: FixedClock, *, minutes: float = 10,
        channels: tuple[str, ...] = ("acme-x",), text: str = "Launch day") -> postflow.Post:
    """A post scheduled ``minutes`` from now."""
    post = ws.posts.create(author="ana", text=text, channels=list(channels))
    ws.submit(post.id, by="ana")
    ws.approve(post.id, by="ben")
    return ws.schedule(post.id, at=clock.now() + timedelta(minutes=minutes), by="cy")


class TestPublishDue:
    """The happy path and what it records."""

    def test_due_posts_are_published_on_every_channel(
        self, pws: postflow.Workspace, network: Network, clock: FixedClock
    ) -> None:
        """Each channel gets one call with its idempotency key; the post is published."""
        post = due(pws, clock, channels=("acme-x", "acme-li"), text="See https://a.example/x")
        later = due(pws, clock, minutes=120)
        clock.advance(minutes=11)
        outcomes = pws.publish_due(worker="w1")
        assert [(o.post_id, o.result) for o in outcomes] == [(post.id, "published")]
        assert [(c.channel.name, c.idempotency_key) for c in network.calls] == [
            ("acme-x", pws.publishing.key(post.id, "acme-x", 1)),
            ("acme-li", pws.publishing.key(post.id, "acme-li", 1))]
        assert network.calls[0].links == ("https://a.example/x",)
        stored = pws.posts.get(post.id)
        assert stored.state == "published"
        assert (stored.claimed_by, stored.claimed_until) == (None, None)
        assert dict(stored.published_urls) == {
            "acme-x": f"https://x.example/{post.id}",
            "acme-li": f"https://linkedin.example/{post.id}"}
        assert {(d.channel, d.status, d.attempts, d.remote_id) for d in
                pws.deliveries(post.id)} == {("acme-x", "sent", 1, f"acme-x-{post.id}"),
                                             ("acme-li", "sent", 1, f"acme-li-{post.id}")}
        assert pws.posts.get(later.id).state == "scheduled"
        assert postflow.replay(pws.history(post.id)) == stored
        assert [e.action for e in pws.history(post.id)][-2:] == ["claim", "publish"]
        assert pws.publish_due(worker="w1") == []  # nothing twice

    def test_a_running_lease_keeps_other_workers_and_people_out(
        self, pws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """A claimed post is not claimed again, and people cannot change it meanwhile."""
        post = due(pws, clock)
        clock.advance(minutes=11)
        [claimed] = pws.storage.claim_due(clock.now(), "w1", clock.now() + timedelta(
            minutes=5), 10, frozenset(), "c1")
        assert claimed.claimed_by == "w1"
        assert pws.publish_due(worker="w2") == []
        with pytest.raises(postflow.InvalidTransition, match="being published by w1"):
            pws.unschedule(post.id, by="cy")
        clock.advance(minutes=6)  # the lease ran out: w1 is presumed dead
        assert [o.result for o in pws.publish_due(worker="w2")] == ["published"]

    def test_late_posts_go_out_with_their_delay_and_old_ones_are_missed(
        self, pws: postflow.Workspace, network: Network, clock: FixedClock
    ) -> None:
        """After downtime a recent post is published late; one past the cut-off fails."""
        old = due(pws, clock, minutes=1)
        recent = due(pws, clock, minutes=24 * 60)
        clock.advance(hours=25)
        outcomes = {o.post_id: o for o in pws.publish_due()}
        assert outcomes[old.id].result == "missed"
        assert pws.posts.get(old.id).state == "failed"
        assert pws.history(old.id)[-1].data["reason"] == "missed"
        assert outcomes[recent.id].result == "published"
        assert outcomes[recent.id].late_by == pytest.approx(3600, abs=1)
        assert network.sent() == [recent.id]


class TestFailures:
    """Retryable, permanent, unexpected and unknown outcomes."""

    def test_retryable_waits_with_backoff_and_never_resends_a_sent_channel(
        self, pws: postflow.Workspace, network: Network, clock: FixedClock
    ) -> None:
        """A rate limit holds the post until Retry-After; only the failed channel goes again."""
        post = due(pws, clock, channels=("acme-x", "acme-li"))
        network.script["acme-li"] = [postflow.RetryableError("429", retry_after=600)]
        clock.advance(minutes=11)
        [first] = pws.publish_due()
        assert first.result == "waiting"
        waiting = pws.posts.get(post.id)
        assert waiting.state == "scheduled"
        assert waiting.claimed_until >= clock.now() + timedelta(seconds=600)  # type: ignore
        clock.advance(minutes=5)
        assert pws.publish_due() == []  # not before Retry-After
        clock.advance(minutes=6)
        assert [o.result for o in pws.publish_due()] == ["published"]
        assert network.sent("acme-x") == [post.id]  # sent once, not again
        assert network.sent("acme-li") == [post.id, post.id]
        assert postflow.replay(pws.history(post.id)) == pws.posts.get(post.id)

    def test_attempts_run_out_then_retry_starts_over(
        self, pws: postflow.Workspace, network: Network, clock: FixedClock
    ) -> None:
        """After max_attempts the post fails; ws.retry schedules it again."""
        post = due(pws, clock)
        network.script["acme-x"] = [postflow.RetryableError("down")] * 3
        clock.advance(minutes=11)
        results = []
        for _ in range(3):
            results += [o.result for o in pws.publish_due()]
            clock.advance(hours=2)
        assert results == ["waiting", "waiting", "failed"]
        failed = pws.posts.get(post.id)
        assert failed.state == "failed"
        assert pws.history(post.id)[-1].data["reason"] == "attempts exhausted"
        pws.fire(post.id, "retry", by="cy")
        assert [o.result for o in pws.publish_due()] == ["published"]
        assert len(network.calls) == 4

    def test_permanent_error_fails_the_post_and_keeps_the_sent_channel(
        self, pws: postflow.Workspace, network: Network, clock: FixedClock
    ) -> None:
        """A rejection fails the post at once; a retry sends only what was not sent."""
        post = due(pws, clock, channels=("acme-x", "acme-li"))
        network.script["acme-li"] = [postflow.PermanentError("token revoked")]
        clock.advance(minutes=11)
        assert [o.result for o in pws.publish_due()] == ["failed"]
        entry = pws.history(post.id)[-1]
        assert entry.data["reason"] == "rejected"
        assert "token revoked" in entry.data["errors"]["acme-li"]
        pws.fire(post.id, "retry", by="cy")
        assert [o.result for o in pws.publish_due()] == ["published"]
        assert network.sent("acme-x") == [post.id]

    def test_outcome_unknown_is_never_resent_until_resolved(
        self, pws: postflow.Workspace, network: Network, clock: FixedClock
    ) -> None:
        """A timeout after sending marks the delivery unconfirmed; a person settles it."""
        post = due(pws, clock)
        network.script["acme-x"] = [postflow.OutcomeUnknownError("timeout after body")]
        clock.advance(minutes=11)
        assert [o.result for o in pws.publish_due()] == ["unconfirmed"]
        assert pws.posts.get(post.id).state == "failed"
        pws.fire(post.id, "retry", by="cy")
        assert [o.result for o in pws.publish_due()] == ["unconfirmed"]
        assert len(network.calls) == 1  # never sent again by itself
        pws.resolve_delivery(post.id, "acme-x", by="cy", published=True, remote_id="r9",
                             url="https://x.example/r9")
        pws.fire(post.id, "retry", by="cy")
        assert [o.result for o in pws.publish_due()] == ["published"]
        assert len(network.calls) == 1
        assert pws.posts.get(post.id).published_urls["acme-x"] == "https://x.example/r9"

    def test_resolved_as_not_sent_is_sent_again(
        self, pws: postflow.Workspace, network: Network, clock: FixedClock
    ) -> None:
        """published=False lets the next attempt send it, with the same key."""
        post = due(pws, clock)
        network.script["acme-x"] = [postflow.OutcomeUnknownError("timeout")]
        clock.advance(minutes=11)
        pws.publish_due()
        pws.resolve_delivery(post.id, "acme-x", by="cy", published=False)
        pws.fire(post.id, "retry", by="cy")
        assert [o.result for o in pws.publish_due()] == ["published"]
        assert [c.idempotency_key for c in network.calls] == [
            pws.publishing.key(post.id, "acme-x", 1)] * 2

    def test_unexpected_exception_is_recorded_and_the_worker_goes_on(
        self, pws: postflow.Workspace, network: Network, clock: FixedClock
    ) -> None:
        """A publisher bug makes that post's outcome unknown; the others go out."""
        broken = due(pws, clock)
        fine = due(pws, clock, minutes=11)
        network.script["acme-x"] = [ZeroDivisionError("bug")]
        clock.advance(minutes=12)
        results = {o.post_id: o.result for o in pws.publish_due()}
        # it may have sent before failing: unknown, never resent by itself
        assert results == {broken.id: "unconfirmed", fine.id: "published"}
        [delivery] = pws.deliveries(broken.id)
        assert delivery.status == "unconfirmed"
        assert delivery.last_error == "unexpected ZeroDivisionError: bug"

    def test_channel_without_publisher_fails_clearly(
        self, pws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """A network nobody publishes to fails the post and names the network."""
        pws.channels.add("acme-tt", network="tiktok")
        post = due(pws, clock, channels=("acme-tt",))
        clock.advance(minutes=11)
        assert [o.result for o in pws.publish_due()] == ["failed"]
        assert "no publisher for network 'tiktok'" in \
            pws.history(post.id)[-1].data["errors"]["acme-tt"]

    def test_a_dead_workers_send_is_checked_not_repeated(
        self, url: str, make_ws: MakeWs, clock: FixedClock
    ) -> None:
        """A delivery left 'sending' is settled by the publisher's status check."""
        network = CheckingNetwork()
        ws = make_ws(url, plugins=[network])
        add_team(ws)
        sent, unsent = due(ws, clock), due(ws, clock)
        clock.advance(minutes=11)
        now = clock.now()
        ws.storage.claim_due(now, "dead", now + timedelta(minutes=5), 10, frozenset(), "c")
        for post in (sent, unsent):  # what the dead worker got as far as
            ws.storage.save_deliveries(post.id, [postflow.Delivery(
                post.id, "acme-x", 1, "sending", idempotency_key(post.id, "acme-x", 1), 1,
                updated_at=now)], worker="dead", now=now)
        network.known[idempotency_key(sent.id, "acme-x", 1)] = Published("r1", None)
        clock.advance(minutes=6)  # the lease ran out, but a slow call may still be on
        young = {o.post_id: o.result for o in ws.publish_due(worker="next")}
        # a "yes" from the network is trusted at once; a "no" may only mean "not yet"
        assert young == {sent.id: "published", unsent.id: "waiting"}
        assert network.sent() == []
        clock.advance(minutes=5)  # twice the lease after the mark: the "no" is believed
        results = {o.post_id: o.result for o in ws.publish_due(worker="next")}
        assert results == {unsent.id: "published"}
        assert network.sent() == [unsent.id]  # only the one the network never saw


class TestPause:
    """Crisis pauses hold publishing at once; posts stay scheduled."""

    def test_pause_all_then_resume(self, pws: postflow.Workspace, network: Network,
                                   clock: FixedClock) -> None:
        """Nothing goes out while paused; resuming lets it go."""
        post = due(pws, clock)
        [hold] = pws.pause(by="cy", reason="brand crisis")
        assert (hold.scope, hold.reason, hold.by) == ("*", "brand crisis", "cy")
        clock.advance(minutes=11)
        assert pws.publish_due() == []
        assert pws.posts.get(post.id).state == "scheduled"
        assert pws.resume(by="cy") == ["*"]
        assert [o.result for o in pws.publish_due()] == ["published"]
        assert [e.action for e in pws.audit_log() if e.action in ("pause", "resume")] == [
            "pause", "resume"]

    def test_pause_one_channel(self, pws: postflow.Workspace, network: Network,
                               clock: FixedClock) -> None:
        """A held channel's posts wait; the others go out."""
        held = due(pws, clock, channels=("acme-x", "acme-li"))
        free = due(pws, clock, channels=("acme-li",))
        pws.pause(by="dee", reason="account compromised", channels=["acme-x"])
        clock.advance(minutes=11)
        assert [o.post_id for o in pws.publish_due()] == [free.id]
        pws.resume(by="dee", channels=["acme-x"])
        assert [o.post_id for o in pws.publish_due()] == [held.id]

    @pytest.mark.parametrize(("call", "error"), [
        (lambda ws: ws.pause(by="cy", reason="  "), postflow.ValidationFailed),
        (lambda ws: ws.pause(by="cy", reason="x", channels=["nope"]),
         postflow.ValidationFailed),
        (lambda ws: ws.pause(by="ana", reason="x"), postflow.PermissionDenied),
        (lambda ws: ws.resume(by="cy"), postflow.InvalidTransition),
    ])
    def test_bad_pauses(self, pws: postflow.Workspace, call: Callable[..., Any],
                        error: type[Exception]) -> None:
        """Empty reasons, unknown channels, authors, and resuming nothing are refused."""
        with pytest.raises(error):
            call(pws)
        assert pws.holds() == []


class TestSettings:
    """Publishing settings are checked when the workspace opens."""

    @pytest.mark.parametrize("kwargs", [{"lease": timedelta(0)},
                                        {"lease": timedelta(seconds=-5)},
                                        {"missed_after": timedelta(0)}, {"batch": 0}])
    def test_bad_settings(self, kwargs: dict[str, Any]) -> None:
        """A lease that is not positive (and similar) is a ConfigError."""
        with pytest.raises(postflow.ConfigError):
            PublishingSettings(**kwargs)

    def test_backoff_grows_with_jitter_and_respects_retry_after(self) -> None:
        """Delays double per attempt within [0.5, 1] of the step; Retry-After is honoured up
        to max_delay."""
        import random

        policy = RetryPolicy(first_delay=10, max_delay=100)
        rng = random.Random(7)
        for attempt, step in ((1, 10), (2, 20), (3, 40), (5, 100), (9, 100)):
            delay = policy.delay(attempt, None, rng)
            assert step * 0.5 <= delay <= step
        assert policy.delay(1, 80.0, rng) == 80.0  # the network asked for longer
        assert policy.delay(1, 5000.0, rng) == 100.0  # but not beyond max_delay


class TestChannelPublisher:
    """Channels name their publisher and its settings."""

    def test_publisher_setting_overrides_the_network(
        self, pws: postflow.Workspace, network: Network, clock: FixedClock
    ) -> None:
        """A channel with publisher='x' on network 'mastodon' is published by 'x'."""
        channel = pws.channels.add("acme-md", network="mastodon", publisher="x",
                                   settings={"url": "https://social.example"})
        assert pws.channels.get("acme-md") == channel
        assert dict(channel.settings) == {"url": "https://social.example"}
        post = due(pws, clock, channels=("acme-md",))
        clock.advance(minutes=11)
        assert [o.result for o in pws.publish_due()] == ["published"]
        assert network.calls[0].channel.settings["url"] == "https://social.example"
        updated = pws.channels.update("acme-md", publisher=None, settings={"a": "b"})
        assert (updated.publisher, dict(updated.settings)) == (None, {"a": "b"})
        assert pws.audit_log()[-1].data["settings"] == ("a",)  # names, not values
        assert post.id in network.sent()

    def test_settings_must_be_text(self, pws: postflow.Workspace) -> None:
        """Settings that are not text to text are refused."""
        with pytest.raises(postflow.ValidationFailed):
            pws.channels.add("bad", network="x", settings={"port": 8080})  # type: ignore
        assert pws.storage.get_channel("bad") is None


class TestPublishingReviewFindings:
    """Defects found while building the publishers, each pinned."""

    def test_an_unknown_outcome_blocks_a_new_revision(
        self, pws: postflow.Workspace, network: Network, clock: FixedClock
    ) -> None:
        """Editing a post whose delivery is unconfirmed does not send the new revision."""
        post = due(pws, clock)
        network.script["acme-x"] = [postflow.OutcomeUnknownError("timeout")]
        clock.advance(minutes=11)
        assert [o.result for o in pws.publish_due()] == ["unconfirmed"]
        pws.fire(post.id, "retry", by="cy")
        pws.unschedule(post.id, by="cy")
        pws.edit(post.id, by="ana", text="second take")
        pws.submit(post.id, by="ana")
        pws.approve(post.id, by="ben")
        pws.schedule(post.id, at=clock.now() + timedelta(minutes=1), by="cy")
        clock.advance(minutes=2)
        assert [o.result for o in pws.publish_due()] == ["unconfirmed"]
        assert len(network.calls) == 1

    def test_long_retry_waits_are_not_missed(
        self, pws: postflow.Workspace, network: Network, clock: FixedClock
    ) -> None:
        """A post that was tried is retried after a day's waits, not failed as missed."""
        post = due(pws, clock)
        network.script["acme-x"] = [postflow.RetryableError("down")] * 2
        clock.advance(minutes=11)
        for _ in range(2):
            assert [o.result for o in pws.publish_due()] == ["waiting"]
            clock.advance(hours=20)
        assert [o.result for o in pws.publish_due()] == ["published"]
        assert pws.posts.get(post.id).state == "published"


class SlowNetwork(Network):
    """A network whose publish takes longer than the lease (the clock moves meanwhile)."""

    def __init__(self, clock: FixedClock) -> None:
        super().__init__()
        self.clock = clock
        self.during: Callable[[], None] | None = None

    def publish(self, item: Outgoing) -> Published:
        if self.during is not None:
            during, self.during = self.during, None
            during()  # another worker acts while this call is in flight
        return super().publish(item)


def test_a_lease_lost_mid_call_keeps_the_result_and_never_resends(
    url: str, make_ws: MakeWs, clock: FixedClock
) -> None:
    """When a slow call outlives the lease, the next worker does not send again and the
    first worker's 'sent' is kept."""
    network = SlowNetwork(clock)
    ws = make_ws(url, plugins=[network], publishing=PublishingSettings(
        lease=timedelta(minutes=1)))
    add_team(ws)
    post = due(ws, clock)
    clock.advance(minutes=11)
    second: list[Any] = []

    def other_worker() -> None:
        clock.advance(minutes=2)  # the first worker's lease has run out
        second.extend(ws.publish_due(worker="w2"))

    network.during = other_worker
    [first] = ws.publish_due(worker="w1")
    assert first.result == "lost-lease"
    assert [o.result for o in second] == ["unconfirmed"]  # w2 saw 'sending', sent nothing
    assert len(network.calls) == 1
    [delivery] = ws.deliveries(post.id)
    assert delivery.status == "sent"  # w1's answer from the network is kept
    ws.fire(post.id, "retry", by="cy")
    assert [o.result for o in ws.publish_due(worker="w3")] == ["published"]
    assert len(network.calls) == 1
    assert postflow.replay(ws.history(post.id)) == ws.posts.get(post.id)


def test_retry_after_exhausted_attempts_starts_over(
    pws: postflow.Workspace, network: Network, clock: FixedClock
) -> None:
    """A person's retry gives a post whose attempts ran out the full number again."""
    post = due(pws, clock)
    network.script["acme-x"] = [postflow.RetryableError("down")] * 5
    clock.advance(minutes=11)
    for _ in range(3):
        pws.publish_due()
        clock.advance(hours=2)
    assert pws.posts.get(post.id).state == "failed"  # 3 attempts (the fixture's policy)
    pws.fire(post.id, "retry", by="cy")
    results = []
    for _ in range(3):
        results += [o.result for o in pws.publish_due()]
        clock.advance(hours=2)
    assert results == ["waiting", "waiting", "published"]  # 2 more failures, then sent


def test_a_pause_during_a_batch_holds_the_rest(
    pws: postflow.Workspace, network: Network, clock: FixedClock
) -> None:
    """Posts claimed before a pause but not yet sent are released, not sent."""
    posts = [due(pws, clock) for _ in range(3)]
    clock.advance(minutes=11)
    original = network.publish

    def pause_on_first(item: Outgoing) -> Published:
        if not network.calls:
            pws.pause(by="cy", reason="crisis")
        return original(item)

    network.publish = pause_on_first  # type: ignore[method-assign]
    results = [o.result for o in pws.publish_due()]
    assert results == ["published", "held", "held"]
    assert len(network.calls) == 1
    for post in posts[1:]:
        stored = pws.posts.get(post.id)
        assert (stored.state, stored.claimed_by, stored.claimed_until) == (
            "scheduled", None, None)
        assert postflow.replay(pws.history(post.id)) == stored
    pws.resume(by="cy")
    assert [o.result for o in pws.publish_due()] == ["published", "published"]


def test_a_retry_after_that_is_not_a_number_is_ignored() -> None:
    """A header's unparsable text does not reach the arithmetic."""
    assert postflow.RetryableError("x", retry_after="120").retry_after == 120.0  # type: ignore
    assert postflow.RetryableError("x", retry_after="soon").retry_after is None  # type: ignore
    assert postflow.RetryableError("x", retry_after=-5).retry_after is None


def test_bad_limit(pws: postflow.Workspace) -> None:
    """publish_due(limit=) must be a positive whole number on every backend."""
    for limit in (0, -1, 2.5):
        with pytest.raises(postflow.ValidationFailed):
            pws.publish_due(limit=limit)  # type: ignore[arg-type]


def test_resolve_waits_for_a_running_lease(
    pws: postflow.Workspace, network: Network, clock: FixedClock
) -> None:
    """A person cannot settle a delivery while a worker holds the post."""
    post = due(pws, clock)
    network.script["acme-x"] = [postflow.OutcomeUnknownError("timeout")]
    clock.advance(minutes=11)
    pws.publish_due()
    pws.fire(post.id, "retry", by="cy")
    now = clock.now()
    pws.storage.claim_due(now, "w9", now + timedelta(minutes=5), 5, frozenset(), "c")
    with pytest.raises(postflow.InvalidTransition, match="being published by w9"):
        pws.resolve_delivery(post.id, "acme-x", by="cy", published=True)
    clock.advance(minutes=6)
    assert pws.resolve_delivery(post.id, "acme-x", by="cy", published=True).status == "sent"


def test_stop_releases_the_posts_not_started(
    pws: postflow.Workspace, network: Network, clock: FixedClock
) -> None:
    """Once stop says yes, the rest of the batch is released, not sent."""
    posts = [due(pws, clock) for _ in range(3)]
    clock.advance(minutes=11)
    outcomes = pws.publish_due(stop=lambda: bool(network.calls))
    assert [o.result for o in outcomes] == ["published", "released", "released"]
    for post in posts[1:]:
        stored = pws.posts.get(post.id)
        assert (stored.state, stored.claimed_until) == ("scheduled", None)
    assert [o.result for o in pws.publish_due()] == ["published", "published"]


def test_two_databases_never_share_a_key(tmp_path: Any, make_ws: MakeWs) -> None:
    """Post 1 of staging and post 1 of production get different idempotency keys."""
    staging = make_ws(f"sqlite:///{tmp_path / 'staging.db'}")
    production = make_ws(f"sqlite:///{tmp_path / 'production.db'}")
    assert staging.publishing.key(1, "acme-x", 1) != production.publishing.key(
        1, "acme-x", 1)
    assert staging.publishing.key(1, "acme-x", 1) == idempotency_key(
        1, "acme-x", 1, staging.storage.instance_id())


def test_a_workflow_the_worker_cannot_finish_is_refused(make_ws: MakeWs) -> None:
    """Without 'fail' from 'scheduled' the worker refuses to start, naming what is missing."""
    import copy

    from postflow.workflow import DEFAULT_WORKFLOW
    definition = copy.deepcopy(dict(DEFAULT_WORKFLOW))
    for transition in definition["transitions"]:  # 'fail' only from 'published'
        if transition["trigger"] == "fail":
            transition["source"] = "published"
    ws = make_ws("memory://", workflow=postflow.Workflow.from_dict(definition))
    with pytest.raises(postflow.ConfigError, match="needs a 'fail' transition"):
        ws.publish_due()
