"""The ``slack`` channel against a real HTTP server on 127.0.0.1: Block Kit with the
post preview escaped for mrkdwn, a link to approve in the host app, retries and
refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import postflow
import pytest
from postflow import ConfigError
from postflow.testing import FixedClock

from conftest import Hook
from postflow_slack import SlackChannel, SlackPlugin, escape


@pytest.fixture(name="url", params=["memory", "sqlite"])
def _url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'pf.db'}"


@pytest.fixture(name="ws")
def _ws(url: str, hook: Hook, clock: FixedClock) -> Iterator[postflow.Workspace]:
    ws = postflow.open(url, plugins=[SlackPlugin(SlackChannel(timeout=1))],
                       entry_points=False, clock=clock)
    ws.team.add("dee", roles={"admin"})
    ws.team.add("ana", roles={"author"})
    ws.team.add("ben", roles={"approver"})
    ws.channels.add("acme-x", network="x", handle="@acme")
    ws.notifications.configure({
        "settings": {"post_url": "https://app.example.org/posts/{post_id}"},
        "rules": [{"name": "reviewers", "events": ["post.submitted"], "to": ["approvers"],
                   "channels": ["slack"]}],
        "channels": {"slack": {"webhook_url": hook.url, "timeout": 1}},
    }, by="dee")
    yield ws
    ws.close()


def submit(ws: postflow.Workspace, text: str) -> postflow.Post:
    post = ws.posts.create(author="ana", text=text, channels=["acme-x"])
    return ws.submit(post.id, by="ana")


def test_escape() -> None:
    assert escape("<!channel> & <http://x|y>") == "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"


def test_a_submission_reaches_slack_as_block_kit(ws: postflow.Workspace, hook: Hook) -> None:
    post = submit(ws, "Spring <!channel> & <https://evil.example|free> *sale*")
    ws.notifications.run_once(worker="w")
    ((path, headers, body),) = hook.requests
    assert path == "/services/T0/B0/secret"
    assert headers["Content-Type"].startswith("application/json")
    assert headers["X-Postflow-Dedup-Key"] == ws.notifications.outbox()[0].dedup_key
    blocks: list[dict[str, Any]] = body["blocks"]
    assert body["text"]  # the notification's fallback
    assert [b["type"] for b in blocks] == ["section", "section", "context"]
    preview = blocks[1]["text"]["text"]
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|free&gt;" in preview
    assert "<!channel>" not in preview
    assert "<https://evil" not in preview
    assert f"<https://app.example.org/posts/{post.id}|Review and approve>" in preview
    context = blocks[2]["elements"][0]["text"]
    assert "post.submitted" in context
    # the time in each reader's zone, with UTC as the fallback text
    at = ws.history(post.id)[-1].at
    assert f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|" \
           f"{at:%Y-%m-%d %H:%M} UTC>" in context
    assert [n.status for n in ws.notifications.outbox()] == ["sent"]


def test_a_5xx_is_retried_and_a_4xx_fails(ws: postflow.Workspace, hook: Hook,
                                          clock: FixedClock) -> None:
    hook.statuses = [503]
    submit(ws, "First")
    ws.notifications.run_once(worker="w")
    (row,) = ws.notifications.outbox()
    assert (row.status, row.attempts) == ("pending", 1)
    assert "503" in (row.last_error or "")
    clock.advance(hours=2)
    ws.notifications.run_once(worker="w")
    assert [n.status for n in ws.notifications.outbox()] == ["sent"]
    assert len(hook.requests) == 2
    assert hook.requests[0][1]["X-Postflow-Dedup-Key"] == \
        hook.requests[1][1]["X-Postflow-Dedup-Key"]

    hook.statuses = [404]
    submit(ws, "Second")
    ws.notifications.run_once(worker="w")
    failed = ws.notifications.outbox(status="failed")
    assert len(failed) == 1
    assert "404" in (failed[0].last_error or "")


def test_a_timeout_is_retried(ws: postflow.Workspace, hook: Hook) -> None:
    hook.delay = 1.5
    submit(ws, "Slow")
    ws.notifications.run_once(worker="w")
    (row,) = ws.notifications.outbox()
    assert row.status == "pending"
    assert "did not answer" in (row.last_error or "")


def test_settings_are_checked() -> None:
    channel = SlackChannel()
    with pytest.raises(ConfigError, match="unknown setting"):
        channel.configure({"webhook_url": "https://hooks.slack.com/x", "colour": "red"})
    with pytest.raises(ConfigError, match="https"):
        channel.configure({"webhook_url": "http://hooks.slack.com/x"})
    with pytest.raises(ConfigError, match="exactly one"):
        channel.configure({})
    with pytest.raises(ConfigError, match="timeout"):
        channel.configure({"webhook_url_env": "X", "timeout": 0})
    channel.configure({"webhook_url_env": "SLACK_URL", "members": {"ben": "BEN_URL"}})


def test_the_webhook_url_comes_from_the_environment(
        hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    channel = SlackChannel()
    channel.configure({"webhook_url_env": "SLACK_URL", "members": {"ben": "BEN_URL"}})
    monkeypatch.setenv("SLACK_URL", hook.url)
    assert channel.webhook("ana") == hook.url
    from postflow.exceptions import DeliveryError

    with pytest.raises(DeliveryError, match="BEN_URL") as caught:
        channel.webhook("ben")
    assert hook.url not in str(caught.value)


def test_the_entry_point_registers_slack() -> None:
    from postflow_slack import postflow_register_notification_channels

    found: dict[str, Any] = {}
    postflow_register_notification_channels(found.__setitem__)
    assert isinstance(found["slack"], SlackChannel)


def test_a_digest_is_one_message_listing_every_event(ws: postflow.Workspace, hook: Hook,
                                                     clock: FixedClock) -> None:
    ws.notifications.set_preferences("ben", {"digest": "burst"}, by="ben")
    posts = [submit(ws, f"Post {i} & more") for i in range(3)]
    ws.notifications.run_once(worker="w")
    assert hook.requests == []  # held for the burst window
    clock.advance(minutes=3)
    ws.notifications.run_once(worker="w")
    (body,) = hook.bodies()
    sections = [b["text"]["text"] for b in body["blocks"] if b["type"] == "section"][1:]
    assert len(sections) == 3
    for post, text in zip(posts, sections, strict=True):
        assert f"post {post.id}" in text
        assert f"Post {post.id - 1} &amp; more" in text
