"""The worker honours the "a call may still be in flight" guard on every path.

A delivery marked ``sending`` or found ``unconfirmed`` less than twice the lease ago
may belong to a call still on its way: the publisher's ``check()`` is believed only when
it finds the post. A check that cannot tell (raises) or says "not found" leaves the
delivery as it is; nothing is sent again until the guard has passed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import postflow
from conftest import add_team
from postflow import hookimpl
from postflow.publishing import Outgoing, Published, PublishingSettings, idempotency_key
from postflow.testing import FixedClock
from test_publishing import due

MakeWs = Callable[..., postflow.Workspace]


class Unsure:
    """Publishes after scripted errors; its check() raises or says "not found"."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.script: dict[str, list[Exception]] = {}
        self.check_raises = True

    def publish(self, item: Outgoing) -> Published:
        self.calls.append(item.channel.name)
        queue = self.script.get(item.channel.name, [])
        if queue:
            raise queue.pop(0)
        return Published(f"r-{item.post_id}", f"https://n.example/{item.post_id}")

    def check(self, item: Outgoing) -> Published | None:
        if self.check_raises:
            raise postflow.OutcomeUnknownError("cannot tell yet")
        return None

    @hookimpl
    def postflow_register_publishers(self, register: Callable[[str, Any], None]) -> None:
        register("x", self)
        register("linkedin", self)


def test_a_young_sending_delivery_waits_when_the_check_cannot_tell(
    url: str, make_ws: MakeWs, clock: FixedClock
) -> None:
    """A check that raises while the dead worker's call may be in flight does not make
    the delivery unconfirmed (failing the post): the post waits, then it is judged."""
    network = Unsure()
    ws = make_ws(url, plugins=[network], publishing=PublishingSettings())
    add_team(ws)
    post = due(ws, clock)
    clock.advance(minutes=11)
    now = clock.now()
    ws.storage.claim_due(now, "dead", now + timedelta(minutes=5), 10, frozenset(), "c")
    ws.storage.save_deliveries(post.id, [postflow.Delivery(
        post.id, "acme-x", 1, "sending", idempotency_key(post.id, "acme-x", 1), 1,
        updated_at=now)], worker="dead", now=now)
    clock.advance(minutes=6)
    assert [o.result for o in ws.publish_due()] == ["waiting"]
    assert ws.deliveries(post.id)[0].status == "sending"
    clock.advance(minutes=5)
    assert [o.result for o in ws.publish_due()] == ["unconfirmed"]
    assert network.calls == []


def test_a_young_unconfirmed_delivery_is_not_resent_on_a_retry_pass(
    url: str, make_ws: MakeWs, clock: FixedClock
) -> None:
    """Multi-channel: acme-x's call got no answer, acme-li asks for a retry. On the
    retry pass a minute later the check says "not found", but the call may still be on
    its way: acme-x is not sent again; twice the lease later it is."""
    network = Unsure()
    network.check_raises = False
    network.script = {"acme-x": [postflow.OutcomeUnknownError("no answer")],
                      "acme-li": [postflow.RetryableError("HTTP 503", retry_after=60)]}
    ws = make_ws(url, plugins=[network], publishing=PublishingSettings())
    add_team(ws)
    post = due(ws, clock, channels=("acme-x", "acme-li"))
    clock.advance(minutes=11)
    assert [o.result for o in ws.publish_due()] == ["waiting"]
    clock.advance(minutes=1)
    assert [o.result for o in ws.publish_due()] == ["unconfirmed"]  # acme-li went out
    assert network.calls == ["acme-x", "acme-li", "acme-li"]
    ws.fire(post.id, "retry", by="cy")
    clock.advance(minutes=11)
    assert [o.result for o in ws.publish_due()] == ["published"]
    assert network.calls.count("acme-x") == 2
