"""The ``apprise`` channel with Apprise's ``json://`` target against a real HTTP server
on 127.0.0.1: delivery, retries, tags, Apprise 1 and 2 answers, checked settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import apprise
import postflow
import pytest
from postflow import ConfigError
from postflow.exceptions import DeliveryError
from postflow.testing import FixedClock

from conftest import Receiver
from postflow_apprise import AppriseChannel, ApprisePlugin, outcome


@pytest.fixture(name="url", params=["memory", "sqlite"])
def _url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'pf.db'}"


def workspace(url: str, clock: FixedClock, settings: dict[str, Any]) -> postflow.Workspace:
    ws = postflow.open(url, plugins=[ApprisePlugin()], entry_points=False, clock=clock)
    ws.team.add("dee", roles={"admin"})
    ws.team.add("ana", roles={"author"})
    ws.team.add("ben", roles={"approver"})
    ws.channels.add("acme-x", network="x", handle="@acme")
    ws.notifications.configure({
        "rules": [{"name": "reviewers", "events": ["post.submitted"], "to": ["approvers"],
                   "channels": ["apprise"]}],
        "channels": {"apprise": settings},
    }, by="dee")
    return ws


@pytest.fixture(name="ws")
def _ws(url: str, receiver: Receiver, clock: FixedClock) -> Iterator[postflow.Workspace]:
    ws = workspace(url, clock, {"urls": [receiver.url], "timeout": 5})
    yield ws
    ws.close()


def submit(ws: postflow.Workspace, text: str) -> None:
    post = ws.posts.create(author="ana", text=text, channels=["acme-x"])
    ws.submit(post.id, by="ana")


def test_a_submission_reaches_the_apprise_target(ws: postflow.Workspace,
                                                 receiver: Receiver) -> None:
    submit(ws, "Spring beta opens")
    ws.notifications.run_once(worker="w")
    (body,) = receiver.bodies
    assert body["type"] == "info"
    assert body["title"]
    assert "Spring beta opens" in body["message"]
    assert [n.status for n in ws.notifications.outbox()] == ["sent"]


def test_a_failure_is_retried_then_delivered(ws: postflow.Workspace, receiver: Receiver,
                                             clock: FixedClock) -> None:
    receiver.statuses = [500]
    submit(ws, "First")
    ws.notifications.run_once(worker="w")
    (row,) = ws.notifications.outbox()
    assert (row.status, row.attempts) == ("pending", 1)
    assert "could not deliver" in (row.last_error or "")
    clock.advance(hours=2)
    ws.notifications.run_once(worker="w")
    assert [n.status for n in ws.notifications.outbox()] == ["sent"]


def test_tags_select_targets(url: str, receiver: Receiver, clock: FixedClock) -> None:
    ws = workspace(url, clock, {"urls": [f"ops={receiver.url}"], "tags": ["ops"]})
    submit(ws, "Tagged")
    ws.notifications.run_once(worker="w")
    assert len(receiver.bodies) == 1
    ws.close()
    ws = workspace(url.replace("pf.db", "other.db"), clock,
                   {"urls": [f"ops={receiver.url}"], "tags": ["marketing"]})
    submit(ws, "No target")
    ws.notifications.run_once(worker="w")
    (row,) = ws.notifications.outbox()
    assert row.status == "failed"
    assert "no Apprise target" in (row.last_error or "")
    assert len(receiver.bodies) == 1
    ws.close()


def test_urgent_messages_use_the_failure_type(receiver: Receiver) -> None:
    channel = AppriseChannel()
    channel.configure({"urls": [receiver.url]})
    channel.send(SimpleNamespace(dedup_key="k", recipient=SimpleNamespace(name="ben"),
                                 subject="Post 3 failed", text="x.com said no",
                                 urgent=True))
    assert receiver.bodies[0]["type"] == "failure"


def test_apprise_1_and_2_answers() -> None:
    assert outcome(True)[:2] == (True, False)
    assert outcome(False)[:2] == (False, True)
    assert outcome(None)[:2] == (False, False)
    status = apprise.AppriseResultStatus
    for name, expected in (("SUCCESS", (True, False)), ("FAILURE", (False, True)),
                           ("PARTIAL", (False, True)), ("TIMEOUT", (False, True)),
                           ("NOMATCH", (False, False))):
        result = apprise.AppriseResult(status=getattr(status, name))
        assert outcome(result)[:2] == expected, name


def test_settings_are_checked(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    channel = AppriseChannel()
    with pytest.raises(ConfigError, match="unknown setting"):
        channel.configure({"urls": [receiver.url], "colour": "red"})
    with pytest.raises(ConfigError, match="nope://"):
        channel.configure({"urls": ["nope://somewhere"]})
    with pytest.raises(ConfigError, match="set urls"):
        channel.configure({})
    with pytest.raises(ConfigError, match="tags"):
        channel.configure({"urls": [receiver.url], "tags": "ops"})
    channel.configure({"urls_env": "APPRISE_URLS"})
    with pytest.raises(DeliveryError, match="APPRISE_URLS"):
        channel.targets("ben")
    monkeypatch.setenv("APPRISE_URLS", f"{receiver.url}, {receiver.url}")
    assert channel.targets("ben") == [receiver.url, receiver.url]


def test_the_entry_point_registers_apprise() -> None:
    from postflow_apprise import postflow_register_notification_channels

    found: dict[str, Any] = {}
    postflow_register_notification_channels(found.__setitem__)
    assert isinstance(found["apprise"], AppriseChannel)
