"""The ``webhook`` notification channel against a real HTTP server on 127.0.0.1 (a thread):
signed JSON with an ``Idempotency-Key``; 5xx and timeouts retried, 4xx failed."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import postflow
from postflow.notices import Notice
from postflow.notifications.channels import WebhookChannel
from postflow.notifications.delivery import Deliverer, DeliverySettings
from postflow.testing import FixedClock

SECRET = "hook-secret"


class Hook:
    """A receiver: records (headers, body); answers from a script, else 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[str] = []  # "500", "400", "sleep", "redirect"
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with hook.lock:
                    hook.requests.append((dict(self.headers.items()), body))
                    fault = hook.script.pop(0) if hook.script else None
                if fault == "sleep":
                    time.sleep(1.5)
                    return
                code = int(fault) if fault else 200
                answer = b'{"ok": true, "evil": "\\u0000' + b"x" * 100000 + b'"}'
                self.send_response(code)
                self.send_header("Content-Length", str(len(answer)))
                if code == 302:
                    self.send_header("Location", "http://example.org/")
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc"

    def __enter__(self) -> Hook:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name="hook")
def _hook() -> Iterator[Hook]:
    with Hook() as hook:
        yield hook


@pytest.fixture(name="ws")
def _ws(make_ws: Callable[..., postflow.Workspace],
        monkeypatch: pytest.MonkeyPatch) -> postflow.Workspace:
    monkeypatch.setenv("POSTFLOW_TEST_HOOK_SECRET", SECRET)
    ws = make_ws("memory://")
    ws.team.add("ben", roles={"approver"})
    return ws


def deliverer(ws: postflow.Workspace, hook: Hook, **more: Any) -> Deliverer:
    return Deliverer(ws.storage, ws.team.get, ws.hooks.register_notification_channels(),
                     {"webhook": {"url": hook.url, "secret_env": "POSTFLOW_TEST_HOOK_SECRET",
                                  **more}},
                     DeliverySettings(max_attempts=3, post_url="https://app/posts/{post_id}"),
                     clock=ws.clock.now)


def enqueue(ws: postflow.Workspace) -> Notice:
    now = ws.clock.now()
    [notice] = ws.storage.enqueue_notifications([
        Notice(id=0, dedup_key="d" * 32, event_key="7:post.submitted", event="post.submitted",
               recipient="ben", channel="webhook", created_at=now, not_before=now,
               payload={"post_id": 4, "text": "Spring <b>sale</b>"})])
    return notice


def row(ws: postflow.Workspace) -> Notice:
    [notice] = ws.storage.list_notifications()
    return notice


def test_signed_json_with_idempotency_key(ws: postflow.Workspace, hook: Hook) -> None:
    notice = enqueue(ws)
    report = deliverer(ws, hook).deliver(ws.clock.now(), worker="w")
    assert report.sent == 1, report.errors
    [(headers, body)] = hook.requests
    assert headers["Idempotency-Key"] == notice.dedup_key
    assert headers["Content-Type"] == "application/json"
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Postflow-Signature"], expected)
    document = json.loads(body)
    assert document["dedup_key"] == notice.dedup_key
    assert document["recipient"] == "ben"
    assert document["post_url"] == "https://app/posts/4"
    assert document["events"] == [{"post_id": 4, "text": "Spring <b>sale</b>",
                                   "event": "post.submitted"}]
    assert row(ws).status == "sent"


def test_no_secret_no_signature(ws: postflow.Workspace, hook: Hook) -> None:
    enqueue(ws)
    d = deliverer(ws, hook)
    d.channel_settings = {"webhook": {"url": hook.url}}
    assert d.deliver(ws.clock.now(), worker="w").sent == 1
    assert "X-Postflow-Signature" not in hook.requests[0][0]


def test_500_is_retried_with_the_same_key(ws: postflow.Workspace, hook: Hook) -> None:
    enqueue(ws)
    hook.script = ["500"]
    clock = ws.clock
    assert isinstance(clock, FixedClock)
    d = deliverer(ws, hook)
    assert d.deliver(clock.now(), worker="w").retried == 1
    first = row(ws)
    assert (first.status, first.attempts) == ("pending", 1)
    assert "answered HTTP 500" in (first.last_error or "")
    assert "token" not in (first.last_error or "")  # the URL's query never shows
    assert first.next_attempt_at is not None
    clock.set(first.next_attempt_at)
    assert d.deliver(clock.now(), worker="w").sent == 1
    keys = [h["Idempotency-Key"] for h, _ in hook.requests]
    assert keys == ["d" * 32] * 2


def test_timeout_is_retried(ws: postflow.Workspace, hook: Hook) -> None:
    enqueue(ws)
    hook.script = ["sleep"]
    report = deliverer(ws, hook, timeout=0.3).deliver(ws.clock.now(), worker="w")
    assert report.retried == 1
    assert "no answer within 0.3 s" in (row(ws).last_error or "")


@pytest.mark.parametrize("code", ["400", "302"])
def test_4xx_and_redirects_fail_at_once(ws: postflow.Workspace, hook: Hook,
                                        code: str) -> None:
    enqueue(ws)
    hook.script = [code]
    report = deliverer(ws, hook).deliver(ws.clock.now(), worker="w")
    assert (report.failed, report.retried) == (1, 0)
    assert (row(ws).status, row(ws).last_error) == (
        "failed", f"channel 'webhook': http://127.0.0.1:{hook.server.server_address[1]}: "
                  f"answered HTTP {code}")


def test_retries_run_out(ws: postflow.Workspace, hook: Hook) -> None:
    enqueue(ws)
    hook.script = ["503"] * 3
    clock = ws.clock
    assert isinstance(clock, FixedClock)
    d = deliverer(ws, hook)
    for _ in range(3):
        d.deliver(clock.now(), worker="w")
        clock.advance(hours=2)
    assert (row(ws).status, row(ws).attempts) == ("failed", 3)
    assert "gave up after 3 attempts" in (row(ws).last_error or "")


@pytest.mark.parametrize(("settings", "problem"), [
    ({}, "needs the setting 'url'"),
    ({"url": "ftp://x/"}, "channels.webhook.url must be an http"),
    ({"url": "http://x/", "timeout": -1}, "channels.webhook.timeout"),
    ({"url": "http://x/", "secret_env": "A B"}, "channels.webhook.secret_env"),
    ({"url": "http://x/", "extra": 1}, "unknown setting 'extra'"),
])
def test_bad_settings(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(postflow.ConfigError, match=problem):
        WebhookChannel().configure(settings)
